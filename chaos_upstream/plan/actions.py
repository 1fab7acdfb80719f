"""Wire actions: the small frozen values a plan is made of, and the only things the server executes.

Invariant: a plan's actions are Send and Wait, ending in exactly one terminal action (Close, Reset,
HalfClose, Hang or KeepAlive). Wait times are offsets from the moment the plan starts, so a plan
with gaps accumulates no drift however long each send takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Send:
    """Write these bytes."""

    data: bytes


@dataclass(frozen=True)
class Wait:
    """Send nothing until `until` seconds after the plan started."""

    until: float


@dataclass(frozen=True)
class Close:
    """Close with a FIN (over TLS, after a close_notify unless `close_notify` is false)."""

    close_notify: bool = True


@dataclass(frozen=True)
class Reset:
    """Abort with an RST."""


@dataclass(frozen=True)
class HalfClose:
    """Send a FIN, read until the peer closes (or `limit` seconds), then close."""

    limit: float | None = None


@dataclass(frozen=True)
class Hang:
    """Read and discard until the peer closes (or `limit` seconds), then close."""

    limit: float | None = None


@dataclass(frozen=True)
class KeepAlive:
    """Wait for the next request; close with a FIN after `idle_close` seconds without one."""

    idle_close: float | None = None


Terminal = Close | Reset | HalfClose | Hang | KeepAlive
Action = Send | Wait | Terminal


@dataclass(frozen=True)
class Response:
    """What the planned bytes declare, for the journal and the verifier to judge truncation by."""

    status: int | None = None
    """The final status code sent, when the status line was well-formed."""
    content_length: int | None = None
    """The declared Content-Length, when exactly one valid value was sent."""
    chunked: bool = False
    """Transfer-Encoding: chunked was sent."""
    last_chunk: bool = False
    """The terminating zero-size chunk was sent."""
    head_complete: bool = False
    """The blank line ending the final head was sent."""
    body_bytes: int = 0
    """Body payload bytes sent (chunk framing not counted)."""


@dataclass(frozen=True)
class Plan:
    """Everything the server will do for one request (or one accepted connection)."""

    scenario: str
    rule: int | None
    """Index of the rule that applied; None for the scenario's default steps."""
    actions: tuple[Action, ...]
    response: Response = field(default_factory=Response)

    @property
    def terminal(self) -> Terminal:
        return self.actions[-1]  # type: ignore[return-value]
