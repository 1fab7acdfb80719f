"""What a proxy's configuration is rendered from, and the arithmetic of its timeouts.

Invariants:
- A `ProxySettings` is built and checked by `Launcher.settings`: at least one upstream, ports in
  1..65535, route prefixes that begin and end with "/"; the renderers trust it.
- Timeouts are whole milliseconds, at least 1 (`timeout_ms`), so every proxy can be given them.
- A workdir put between double quotes in a configuration holds no quote, backslash or line break
  (`quotable` refuses one that does).
- An `UpstreamTls` names absolute files whose paths hold no space, quote, backslash or line break
  (so every configuration can take them bare or quoted), a client certificate only with its key, and
  a `server_name` that is a DNS name: nginx, Apache and nghttpx check an IP literal against DNS
  names only and fail it even on a certificate with that IP among its names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.proxies.ports import LOOPBACK, host_port

CLIENT_TIMEOUT_S = 30
"""Client-side timeouts, far above any proxy_timeout under test: only the upstream side may expire."""

UNQUOTABLE = frozenset('"\\\n\r')
"""Characters a double-quoted path cannot hold without escaping, in nginx, Apache and lighttpd alike."""


DNS_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*")
"""A host name: dot-separated labels of letters, digits, "-" and "_" (the upstream's `NAME.chaos`)."""

CLIENT_PEM = "upstream-client.pem"
"""In workdir: the client certificate chain and its key in one file, for the proxies that take one."""


@dataclass(frozen=True)
class UpstreamTls:
    """TLS towards the upstream(s): trust `ca`, send `server_name` as SNI and check the certificate
    against it (`verify`), or (`verify=False`) switch TLS on with the proxy's own defaults and
    nothing else it does not itself require (each launcher's docstring says what that is).  The
    client certificate, when given, is presented either way (mTLS)."""

    ca: Path
    """The CA file (PEM) the proxy is to trust."""
    server_name: str = "localhost"
    """The SNI sent and the name the certificate is checked against: a DNS name, never an IP."""
    verify: bool = True
    client_cert: Path | None = None
    """The certificate chain (PEM) to present to an upstream that asks for one; with `client_key`."""
    client_key: Path | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if not DNS_NAME.fullmatch(self.server_name) or _is_ip(self.server_name):
            raise ValueError(f"the upstream's TLS server name must be a DNS name, not {self.server_name!r}")
        for path in self.paths:
            if not path.is_absolute() or (UNQUOTABLE | set(" \t")) & set(str(path)):
                raise ValueError(f"a TLS file for the upstream is an absolute path without spaces, quotes, "
                                 f"backslashes or line breaks: {str(path)!r}")

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file named: the CA, then the client certificate and key when given."""
        return (self.ca, *(path for path in (self.client_cert, self.client_key) if path is not None))

    @property
    def client_pem(self) -> str:
        """The client certificate chain, then its key: one PEM text ("" without a client certificate)."""
        if self.client_cert is None or self.client_key is None:
            return ""
        chain = self.client_cert.read_text()
        return chain + ("" if chain.endswith("\n") else "\n") + self.client_key.read_text()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def client_pem_files(settings: ProxySettings) -> dict[str, str]:
    """`CLIENT_PEM` for a proxy that takes certificate and key in one file: when a client
    certificate is set, else no file."""
    return {CLIENT_PEM: settings.tls.client_pem} if settings.tls and settings.tls.client_cert else {}


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
    tls: UpstreamTls | None = None
    """TLS to every upstream and every route's address alike; None: plain HTTP."""
    h2: bool = False
    """HTTP/2 to every upstream and every route's address alike (h2c without `tls`, h2 by ALPN with
    it); False: HTTP/1.1, over TLS too."""

    @property
    def scheme(self) -> str:
        """"https" under `tls`, else "http"."""
        return "http" if self.tls is None else "https"

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
