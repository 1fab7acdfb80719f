"""Varnish as the proxy under test, in its ordinary reverse-proxy set-up.  (STUB: to be written.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.launcher import Launcher, ProxySettings


@dataclass(frozen=True)
class VarnishLauncher(Launcher):
    name: str = "varnish"
    binary: str = "varnishd"
    version_prefix: str = "?"
    config_name: str = "default.vcl"
    package: str = "varnish"

    def render(self, settings: ProxySettings) -> str:
        raise NotImplementedError

    def check_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError

    def run_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError
