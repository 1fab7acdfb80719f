"""The wire steps a scenario is made of: a tagged union on `kind`.

Every step is data. What bytes and waits a step becomes is decided by the planner; the server only
executes the resulting actions. Byte strings in scenario files are Latin-1: each character from
U+0000 to U+00FF is the byte of the same value (write `"\\r\\n"`, `"\\x00"`, `"\\xff"` in YAML
double-quoted strings), so any byte sequence can be written and none is silently re-encoded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator

from chaos_upstream.model.base import Model
from chaos_upstream.model.durations import Duration

MAX_BODY_BYTES = 64 * 1024 * 1024
"""A planned body is held in memory: 64 MiB is far past any proxy buffer and still cheap to hold."""

MAX_HEAD_PAD_BYTES = 16 * 1024 * 1024
"""Header padding cap: 16 MiB is 64 times nginx's and HAProxy's largest usual head buffer."""


def to_bytes(raw: Any) -> bytes:
    """Latin-1 text (or bytes) to bytes; a character past U+00FF is an error, never re-encoded."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError("expected a string of bytes")
    try:
        return str(raw).encode("latin-1")
    except UnicodeEncodeError as exc:
        bad = str(raw)[exc.start]
        raise ValueError(
            f"character {bad!r} is not a byte: byte strings are Latin-1, write bytes as \\xNN"
        ) from None


Text = Annotated[
    bytes,
    PlainValidator(to_bytes),
    PlainSerializer(lambda b: b.decode("latin-1"), return_type=str),
    WithJsonSchema({"type": "string", "description": "Latin-1 text: one character per byte."}),
]


def to_fields(raw: Any) -> Any:
    """Accept a mapping {name: value} as well as the list of [name, value] pairs it stands for."""
    if isinstance(raw, dict):
        return [[name, value] for name, value in raw.items()]
    return raw


Fields = Annotated[
    list[tuple[Text, Text]],
    BeforeValidator(to_fields, json_schema_input_type=Union[dict[str, str], list[tuple[str, str]]]),
]
"""Header or trailer fields: `[[name, value], ...]` (order and duplicates kept), or a mapping."""


class Status(Model):
    """Send a status line: `VERSION CODE REASON\\r\\n`, or exactly the bytes of `raw`."""

    kind: Literal["status"]
    code: int = Field(200, ge=0, le=999)
    """The status code; use `raw` for anything that is not three digits."""
    reason: Text | None = None
    """The reason phrase; the standard one for the code when omitted."""
    version: Text = b"HTTP/1.1"
    """The protocol version token."""
    raw: Text | None = None
    """The whole line as bytes, CRLF included: replaces code, reason and version."""


class Headers(Model):
    """Send header fields as written (any names, duplicates kept, order kept), then the blank line."""

    kind: Literal["headers"]
    fields: Fields = []
    """`[[name, value], ...]` or a mapping; nothing is normalised or checked."""
    end: bool = True
    """Send the blank line that ends the head; false leaves the head unterminated."""
    pad_to: int | None = Field(None, ge=1, le=MAX_HEAD_PAD_BYTES)
    """Add filler fields (`X-Chaos-Pad-NNNNN`, 1 KiB lines) until these fields total this many bytes."""


class Payload(Model):
    """Body bytes given as `content`, or as `length` bytes of filler: exactly one of them."""

    content: Text | None = None
    """The bytes to send."""
    length: int | None = Field(None, ge=0, le=MAX_BODY_BYTES)
    """Send this many bytes of a filler whose every 64-byte line names its own offset."""

    @model_validator(mode="after")
    def _one_source(self) -> Payload:
        if (self.content is None) == (self.length is None):
            raise ValueError("give exactly one of content or length")
        return self


class Body(Payload):
    """Send body bytes as they are (no framing): given `content`, or `length` bytes of filler."""

    kind: Literal["body"]


class Chunked(Model):
    """Send a body in chunked framing: chunks of the given sizes, then (optionally) the last chunk."""

    kind: Literal["chunked"]
    chunks: list[Annotated[int, Field(ge=1, le=MAX_BODY_BYTES)]] = Field(max_length=100_000)
    """The size of each chunk, in order; the data is filler that names its own offsets."""
    last: bool = True
    """Send the terminating zero-size chunk (and trailers); false leaves the body unterminated."""
    trailers: Fields = []
    """Trailer fields after the last chunk."""


class Raw(Model):
    """Send exactly these bytes, `repeat` times."""

    kind: Literal["raw"]
    data: Text
    """The bytes."""
    repeat: int = Field(1, ge=1, le=MAX_BODY_BYTES)
    """How many times to send them back to back."""


class Sleep(Model):
    """Wait before the next step, sending nothing."""

    kind: Literal["sleep"]
    duration: Duration
    """How long: seconds, a multiple of T, or a distribution."""


class Drip(Model):
    """Send `length` body bytes of filler (no framing) in pieces of `size`, one piece every `every`."""

    kind: Literal["drip"]
    length: int = Field(ge=1, le=MAX_BODY_BYTES)
    """Total bytes."""
    size: int = Field(1, ge=1, le=MAX_BODY_BYTES)
    """Bytes per piece."""
    every: Duration
    """The gap between two pieces (drawn anew for each gap when a distribution)."""


class Close(Model):
    """Close the connection with a FIN, after everything before it has been sent."""

    kind: Literal["close"]
    close_notify: bool = True
    """Over TLS, send close_notify before the FIN; false: a bare FIN, which leaves the session (and
    a body it ends) unconfirmed (RFC 8446 §6.1). Nothing changes over plain HTTP."""


class Reset(Model):
    """Abort the connection with an RST (SO_LINGER 0): unread and unsent bytes are discarded."""

    kind: Literal["reset"]


class HalfClose(Model):
    """Shut down the sending side (FIN), keep reading until the peer closes, then close."""

    kind: Literal["half-close"]
    limit: Duration | None = None
    """Give up waiting for the peer after this long; forever when omitted."""


class Hang(Model):
    """Hold the connection open, reading and discarding, until the peer leaves."""

    kind: Literal["hang"]
    limit: Duration | None = None
    """Close after this long if the peer is still there; forever when omitted."""


class KeepAlive(Model):
    """The response is complete: keep the connection for the next request."""

    kind: Literal["keep-alive"]
    idle_close: Duration | None = None
    """Close (FIN) the connection once it has been idle this long: the keep-alive race."""


Step = Annotated[
    Union[Status, Headers, Body, Chunked, Raw, Sleep, Drip, Close, Reset, HalfClose, Hang, KeepAlive],
    Field(discriminator="kind"),
]
"""Any wire step."""

TERMINAL_STEPS = (Close, Reset, HalfClose, Hang, KeepAlive)
"""Steps that end the response; one may stand only last. Without one, the planner closes (FIN)."""
