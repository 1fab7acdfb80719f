"""What a proxy's configuration is rendered from, and the arithmetic of its timeouts.

Invariants:
- A `ProxySettings` is built and checked by `Launcher.settings`: at least one upstream, ports in
  1..65535, route prefixes that begin and end with "/"; the renderers trust it.
- Timeouts are whole milliseconds, at least 1 (`timeout_ms`), so every proxy can be given them.
- A workdir put between double quotes in a configuration holds no quote, backslash or line break
  (`quotable` refuses one that does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.ports import LOOPBACK, host_port

CLIENT_TIMEOUT_S = 30
"""Client-side timeouts, far above any proxy_timeout under test: only the upstream side may expire."""

UNQUOTABLE = frozenset('"\\\n\r')
"""Characters a double-quoted path cannot hold without escaping, in nginx, Apache and lighttpd alike."""


def quotable(workdir: Path, product: str) -> str:
    """workdir as text to put between double quotes in a configuration; such a workdir is refused."""
    text = str(workdir)
    if UNQUOTABLE & set(text):
        raise ValueError(f"{product} cannot be given a workdir containing quotes, backslashes "
                         f"or line breaks: {text!r}")
    return text


def timeout_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1: both proxies read `500ms` but no fractions."""
    if seconds <= 0:
        raise ValueError(f"proxy_timeout must be positive, not {seconds!r}")
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class ProxySettings:
    """What a configuration is rendered from; built and checked by `Launcher.config`."""

    listen_port: int
    upstreams: tuple[tuple[str, int], ...]
    proxy_timeout_ms: int
    workdir: Path
    variant: str = "default"
    """Which of the launcher's configurations (see `Launcher.variants`)."""
    routes: tuple[tuple[str, tuple[str, int]], ...] = ()
    """(path prefix, upstream address) pairs: requests whose path begins with the prefix go to that
    address alone, everything else to `upstreams`.  Prefixes begin and end with "/"."""
    client_timeout_s: int = CLIENT_TIMEOUT_S

    @property
    def listen(self) -> str:
        return host_port(LOOPBACK, self.listen_port)

    @property
    def servers(self) -> list[str]:
        return [host_port(host, port) for host, port in self.upstreams]

    @property
    def proxy_timeout_s(self) -> int:
        """The timeout in whole seconds, for a proxy that takes no fraction (its `timeout_step_ms`
        of 1000 has rounded it up already)."""
        return self.proxy_timeout_ms // 1000

    @property
    def routed(self) -> list[tuple[str, str]]:
        """(path prefix, `host:port`) of each route, in order."""
        return [(prefix, host_port(*address)) for prefix, address in self.routes]
