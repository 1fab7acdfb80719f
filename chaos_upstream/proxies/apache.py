"""Apache httpd (mod_proxy) as the proxy under test, in its ordinary reverse-proxy set-up.  (STUB: to be written.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.launcher import Launcher, ProxySettings


@dataclass(frozen=True)
class ApacheLauncher(Launcher):
    name: str = "apache"
    binary: str = "apache2"
    version_prefix: str = "?"
    config_name: str = "httpd.conf"
    package: str = "apache2"

    def render(self, settings: ProxySettings) -> str:
        raise NotImplementedError

    def check_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError

    def run_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError
