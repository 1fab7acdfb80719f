"""HTTP/2 wire actions: what a plan for one request's stream is made of, beside `Wait` and the
connection's endings (`Close`, `Reset`) and `Hang` of plan.actions.

Invariant: an HTTP/2 plan's actions are these, Wait, and at most one Close, Reset or Hang, last. A
plan whose actions neither end the stream (END_STREAM, RST_STREAM) nor end with one of those holds
the stream open, as `Hang` without a limit does.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos_upstream.plan.actions import Close, Hang, Reset, Wait

Field = tuple[bytes, bytes]


@dataclass(frozen=True)
class Headers:
    """A HEADERS frame: `:status`, then `fields` as they are (informational when status < 200)."""

    status: int
    fields: tuple[Field, ...] = ()
    end_stream: bool = False


@dataclass(frozen=True)
class Data:
    """DATA frames carrying `data` (flow control decides how many), END_STREAM on the last when asked."""

    data: bytes
    end_stream: bool = False


@dataclass(frozen=True)
class Trailers:
    """A HEADERS frame of trailer fields, with END_STREAM."""

    fields: tuple[Field, ...]


@dataclass(frozen=True)
class RstStream:
    """RST_STREAM with the error code of that name (RFC 9113 §7)."""

    code: str


@dataclass(frozen=True)
class GoAway:
    """GOAWAY with the error code of that name; last-stream-id below the stream's (`before`) or its own (`this`)."""

    code: str
    last_stream: str = "before"


@dataclass(frozen=True)
class Frame:
    """Any frame, as bytes: on the stream, or on stream 0 when `connection`."""

    type: int
    flags: int = 0
    connection: bool = False
    payload: bytes = b""


H2Action = Headers | Data | Trailers | RstStream | GoAway | Frame | Wait | Close | Reset | Hang


def ends_stream(action: object) -> bool:
    """Whether the action, once sent, leaves the stream with nothing more to send."""
    return (isinstance(action, (Headers, Data)) and action.end_stream) or isinstance(action, (Trailers, RstStream))
