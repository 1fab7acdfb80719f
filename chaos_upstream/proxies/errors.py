"""What can go wrong when a real reverse proxy is used: the exceptions of `chaos_upstream.proxies`.

Every one derives from `ChaosUpstreamError`; `UnknownProxy` is also a KeyError, as a failed lookup
in `LAUNCHERS` would be.
"""

from __future__ import annotations

from chaos_upstream.errors import ChaosUpstreamError


class ProxyError(ChaosUpstreamError):
    """A real reverse proxy could not be used."""


class ProxyNotInstalled(ProxyError):
    """The proxy's binary is not installed; the message says where it was looked for."""


class ProxyFailed(ProxyError):
    """The proxy rejected its configuration, or did not start; the message carries its output."""


class PortTaken(ProxyFailed):
    """The proxy exited because another process bound its port first; another port may do."""


class UnknownProxy(ChaosUpstreamError, KeyError):
    """No launcher is known by that name."""

    def __str__(self) -> str:
        return str(self.args[0])
