"""The HTTP/2 steps a scenario's `http2` list is made of: frames on the request's stream (or on the
connection), waits, and the connection's endings; a tagged union on `kind`.

Every step is data, as in `steps`: the planner decides the frames, the server sends them. Field
names and values are Latin-1 byte strings written as they are (an upper-case name or a
`connection` field is sent as written: that is the fault of `h2-uppercase-header` and
`h2-connection-header`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from chaos_upstream.model.base import Model
from chaos_upstream.model.steps import Close, Fields, Hang, Payload, Reset, Sleep, Text

ERROR_CODES = {
    "NO_ERROR": 0x0, "PROTOCOL_ERROR": 0x1, "INTERNAL_ERROR": 0x2, "FLOW_CONTROL_ERROR": 0x3, "SETTINGS_TIMEOUT": 0x4,
    "STREAM_CLOSED": 0x5, "FRAME_SIZE_ERROR": 0x6, "REFUSED_STREAM": 0x7, "CANCEL": 0x8, "COMPRESSION_ERROR": 0x9,
    "CONNECT_ERROR": 0xA, "ENHANCE_YOUR_CALM": 0xB, "INADEQUATE_SECURITY": 0xC, "HTTP_1_1_REQUIRED": 0xD,
}
"""RFC 9113 §7: the error codes of RST_STREAM and GOAWAY, by name."""

ErrorCode = Literal[
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
    "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
]


class H2Headers(Model):
    """A HEADERS frame on the stream: `:status`, then the fields as written (names are sent as they
    are: HTTP/2 wants them in lower case)."""

    kind: Literal["h2-headers"]
    status: int = Field(200, ge=100, le=599)
    fields: Fields = []
    end_stream: bool = False
    """Set END_STREAM: a response with no body."""


class H2Data(Payload):
    """DATA on the stream: `content`, or `length` bytes of filler; in frames as large as the peer
    allows, each sent as its flow-control window opens."""

    kind: Literal["h2-data"]
    end_stream: bool = False
    """Set END_STREAM on the last frame: the response is complete."""


class H2Trailers(Model):
    """A HEADERS frame of trailer fields, with END_STREAM."""

    kind: Literal["h2-trailers"]
    fields: Fields = Field(min_length=1)


class H2RstStream(Model):
    """RST_STREAM on the stream, whatever its state (also after END_STREAM, which RFC 9113 §8.1
    allows with NO_ERROR)."""

    kind: Literal["h2-rst-stream"]
    code: ErrorCode = "INTERNAL_ERROR"


class H2Goaway(Model):
    """GOAWAY on the connection: no stream above `last_stream` will be processed. The connection
    stays open (streams at or below it may go on) until a `close` or `reset` step."""

    kind: Literal["h2-goaway"]
    code: ErrorCode = "NO_ERROR"
    last_stream: Literal["before", "this"] = "before"
    """`before`: the last stream id below this request's (0 for the connection's first), so this
    request was not processed and may be retried, even a POST (RFC 9113 §6.8); `this`: up to this
    request's stream."""


class H2Frame(Model):
    """Any frame as bytes: a 9-octet header of the payload's length, `type`, `flags` and the stream,
    then `payload`. What the `h2` library would refuse to send (DATA on stream 0, say)."""

    kind: Literal["h2-frame"]
    type: int = Field(ge=0, le=255)
    """The frame type (0 DATA, 1 HEADERS, 3 RST_STREAM, 4 SETTINGS, 7 GOAWAY, 8 WINDOW_UPDATE...)."""
    flags: int = Field(0, ge=0, le=255)
    stream: Literal["this", "connection"] = "this"
    """The request's stream, or stream 0 (the connection)."""
    payload: Text = b""


H2Step = Annotated[
    Union[H2Headers, H2Data, H2Trailers, H2RstStream, H2Goaway, H2Frame, Sleep, Close, Reset, Hang],
    Field(discriminator="kind"),
]
"""Any HTTP/2 step. `close` and `reset` end the whole connection (every stream on it); `hang` holds
the stream, sending nothing, until the peer resets it or leaves (or its `limit`, then RST_STREAM(CANCEL))."""

H2_TERMINAL_STEPS = (Close, Reset, Hang)
