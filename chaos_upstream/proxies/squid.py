"""Squid as the proxy under test, in its ordinary reverse-proxy set-up.  (STUB: to be written.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.launcher import Launcher, ProxySettings


@dataclass(frozen=True)
class SquidLauncher(Launcher):
    name: str = "squid"
    binary: str = "squid"
    version_prefix: str = "?"
    config_name: str = "squid.conf"
    package: str = "squid"

    def render(self, settings: ProxySettings) -> str:
        raise NotImplementedError

    def check_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError

    def run_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError
