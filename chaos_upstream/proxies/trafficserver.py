"""Apache Traffic Server as the proxy under test, in its ordinary reverse-proxy set-up.  (STUB: to be written.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.launcher import Launcher, ProxySettings


@dataclass(frozen=True)
class TrafficServerLauncher(Launcher):
    name: str = "trafficserver"
    binary: str = "traffic_server"
    version_prefix: str = "?"
    config_name: str = "records.config"
    package: str = "trafficserver"

    def render(self, settings: ProxySettings) -> str:
        raise NotImplementedError

    def check_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError

    def run_args(self, conf: Path, workdir: Path) -> list[str]:
        raise NotImplementedError
