"""The one exception tree of chaos-upstream: every error it raises on purpose derives from
ChaosUpstreamError, and is defined here.

Configuration errors (the user's input is wrong: exit 2, nothing started) are kept apart from peer
errors (the other end of a connection misbehaved: normal, journaled, never fatal), from a worker of
`serve --workers` that ended on its own, and from a real reverse proxy that could not be used (the
errors of `chaos_upstream.proxies`, which re-exports them). `UnknownProxy` is also a KeyError, as a
failed lookup in `LAUNCHERS` would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class ChaosUpstreamError(Exception):
    """Base of every error chaos-upstream raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file, at a line, in a field."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '(file)'}: {self.message}"


class ConfigError(ChaosUpstreamError):
    """The user's configuration or scenario files are wrong; carries every problem found."""

    def __init__(self, problems: list[Problem] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownScenario(ChaosUpstreamError):
    """A request or a command named a scenario that is not loaded."""


class NotClientHello(ChaosUpstreamError):
    """The bytes a client sent first to a TLS listener are not a TLS ClientHello."""


class PeerGone(ChaosUpstreamError):
    """The peer closed or reset the connection, or stopped reading it; `how` says which ("closed",
    "reset" or "stalled")."""

    def __init__(self, how: str) -> None:
        self.how = how
        super().__init__(f"peer {how} the connection")


class WorkerCrashed(ChaosUpstreamError):
    """A worker process of `serve --workers` ended without being asked to."""


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


def unwrap(exc: BaseException, kind: type[E]) -> E | None:
    """The `kind` error that `exc` is, or that it holds as the only error of nested exception
    groups (what trio nurseries raise), else None."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, kind) else None
