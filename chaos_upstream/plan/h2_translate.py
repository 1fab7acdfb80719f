"""An HTTP/1.1 plan read as what it means over HTTP/2: the same response, in frames, at the same times.

Pure. The head becomes one HEADERS frame once its blank line would have gone out (a head dripped
slowly arrives late, whole); body bytes become DATA as they were sent (chunked framing is decoded,
its trailers become a trailer HEADERS); a response complete by its length, its last chunk or the
close that ends a close-delimited body ends with END_STREAM. A response cut short (a close or reset
before it was complete) becomes RST_STREAM(INTERNAL_ERROR) on its stream alone: the connection, which
other requests may share over HTTP/2, lives on. A response held unfinished holds its stream.

What HTTP/2 has no form of is refused with the reason (`NoEquivalent`), never approximated: a
status line that is not `HTTP/1.x CODE ...`, a field line that is no field, broken chunk framing,
bytes past the response's end, interim 101.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chaos_upstream.plan.actions import Close, HalfClose, Hang, KeepAlive, Plan, Response, Send, Wait
from chaos_upstream.plan.h2_actions import Data, H2Action, Headers, RstStream, Trailers
from chaos_upstream.plan.wirebytes import HEAD_END

STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*")
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
"""HTTP/1.1 fields that only frame or route the connection: HTTP/2 has none of them (RFC 9113 §8.2.2)."""
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
STATUS_BEGUN = re.compile(rb"H(T(T(P(/(1(\.([01]( ([1-5]([0-9]([0-9]( [^\r\n]*)?)?)?)?)?)?)?)?)?)?)?)?")
"""The beginning of a status line, cut anywhere."""
MAX_SIZE_LINE = 1024
"""A chunk-size line longer than this is broken framing, not one still coming."""


@dataclass(frozen=True)
class NoEquivalent:
    """An HTTP/1.1 plan HTTP/2 cannot say, and why."""

    scenario: str
    reason: str

    def __str__(self) -> str:
        return f"scenario {self.scenario} has no HTTP/2 equivalent: {self.reason}"


class _Refused(Exception):
    pass


def translate(plan: Plan, method: str = "GET") -> Plan | NoEquivalent:
    """`plan` (HTTP/1.1 bytes) as an HTTP/2 plan for the request's stream, or why there is none."""
    reader = _Reader(method)
    try:
        for action in plan.actions:
            if isinstance(action, Send):
                reader.feed(action.data)
            elif isinstance(action, Wait):
                reader.out.append(action)
            else:
                reader.end(action)
    except _Refused as refused:
        return NoEquivalent(plan.scenario, str(refused))
    return Plan(plan.scenario, plan.rule, tuple(reader.out), Response(**reader.response))  # type: ignore[arg-type]


@dataclass
class _Reader:
    """Reads the response's bytes as they are sent and writes the frames they mean."""

    method: str
    out: list[H2Action] = field(default_factory=list)
    pending: bytes = b""
    phase: str = "head"
    """head, body (by length, close-delimited or chunked), trailers, done."""
    remaining: int | None = None
    """With a Content-Length: the body bytes still to come."""
    chunked: bool = False
    chunk_state: str = "size"
    """In chunked framing: size (a chunk-size line next), data, crlf (after a chunk's data), trailers."""
    chunk_left: int = 0
    response: dict[str, object] = field(default_factory=lambda: dict(vars(Response(chunked=True))))
    """What the stream declares; `chunked` means, over HTTP/2, that the body's end is marked in-band
    (END_STREAM), and `last_chunk` that it was sent."""

    def feed(self, data: bytes) -> None:
        self.pending += data
        while self.pending and self.phase != "done":
            if not (self._head() if self.phase == "head" else self._chunks() if self.chunked else self._body()):
                return
        if self.pending:
            raise _Refused(f"it sends {len(self.pending)} bytes after its response's end")

    def end(self, terminal: object) -> None:
        """The plan's ending, for the stream: END_STREAM, RST_STREAM or a hold."""
        if self.phase == "done":
            return
        if self.phase == "head" and self.pending:
            first, newline, _ = self.pending.partition(b"\n")
            if not (STATUS_LINE if newline else STATUS_BEGUN).fullmatch(first.rstrip(b"\r")):
                raise _Refused(f"its status line {first[:40]!r} has no HTTP/2 form (:status carries a code, nothing else)")
        if isinstance(terminal, (Close, HalfClose)) and self.phase == "body" and self.remaining is None and not self.chunked:
            self._finish(Data(b"", end_stream=True))  # the close ends a close-delimited body: complete
        elif isinstance(terminal, (KeepAlive, Hang)):
            limit = terminal.idle_close if isinstance(terminal, KeepAlive) else terminal.limit
            self.out.append(Hang(limit))  # unfinished and held: the proxy waits, as it would over HTTP/1.1
        else:  # a close or reset before the response was complete: this stream is aborted
            self.out.append(RstStream("INTERNAL_ERROR"))

    def _head(self) -> bool:
        found = HEAD_END.search(self.pending)
        if found is None:
            return False
        first, *lines = self.pending[: found.start()].split(b"\n")
        self.pending = self.pending[found.end() :]
        status = STATUS_LINE.fullmatch(first.rstrip(b"\r"))
        if status is None:
            raise _Refused(f"its status line {first[:40]!r} has no HTTP/2 form (:status carries a code, nothing else)")
        code, fields = int(status.group(1)), tuple(_field(line.rstrip(b"\r")) for line in lines)
        if code == 101:
            raise _Refused("101 Switching Protocols has no HTTP/2 form")
        kept = tuple((name, value) for name, value in fields if name not in CONNECTION_SPECIFIC)
        self.out.append(Headers(code, kept))
        if code < 200:
            return True
        lengths = {value for name, value in fields if name == b"content-length"}
        self.chunked = any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in fields)
        if self.chunked and lengths:
            raise _Refused("it sends Content-Length and chunked framing together, which HTTP/2 has no form of")
        length = int(next(iter(lengths))) if len(lengths) == 1 and next(iter(lengths)).isdigit() else None
        self.response.update(status=code, content_length=length, head_complete=True)
        self.remaining = 0 if self.method == "HEAD" or code in (204, 304) else length
        self.phase = "body"
        if self.remaining == 0:
            self._finish(Data(b"", end_stream=True))
        return True

    def _body(self) -> bool:
        data, self.pending = self.pending, b""
        if self.remaining is not None:
            if len(data) > self.remaining:
                raise _Refused(f"it sends more body than its Content-Length ({len(data) - self.remaining} bytes more)")
            self.remaining -= len(data)
        self._data(data, end=self.remaining == 0)
        return False

    def _chunks(self) -> bool:
        """Decode what has come of the chunked framing; False when it needs more bytes."""
        if self.chunk_state == "data":
            data, self.pending = self.pending[: self.chunk_left], self.pending[self.chunk_left :]
            self.chunk_left -= len(data)
            self._data(data, end=False)
            self.chunk_state = "data" if self.chunk_left else "crlf"
            return not self.chunk_left
        if self.chunk_state == "crlf":
            if not b"\r\n".startswith(self.pending[:2]):
                raise _Refused("its chunked framing is broken: a chunk's data is not followed by CRLF")
            if len(self.pending) < 2:
                return False
            self.pending, self.chunk_state = self.pending[2:], "size"
            return True
        if self.chunk_state == "size":
            line, found, rest = self.pending.partition(b"\r\n")
            if not found:
                if len(self.pending) > MAX_SIZE_LINE:
                    raise _Refused("its chunked framing is broken: a chunk-size line that never ends")
                return False
            size = line.split(b";", 1)[0].strip(b" \t")
            if not CHUNK_SIZE.fullmatch(size):
                raise _Refused(f"its chunked framing is broken: the chunk-size line {line[:40]!r}")
            self.pending, self.chunk_left = rest, int(size, 16)
            self.chunk_state = "data" if self.chunk_left else "trailers"
            return True
        if self.pending.startswith(b"\r\n"):
            self.pending = self.pending[2:]
            self._finish(Data(b"", end_stream=True))
            return True
        block, found, rest = self.pending.partition(b"\r\n\r\n")
        if not found:
            return False
        self.pending = rest
        self._finish(Trailers(tuple(_field(line) for line in block.split(b"\r\n"))))
        return True

    def _data(self, data: bytes, *, end: bool) -> None:
        self.response["body_bytes"] = int(self.response["body_bytes"]) + len(data)  # type: ignore[call-overload]
        if end:
            self._finish(Data(data, end_stream=True))
        elif data:
            self.out.append(Data(data))

    def _finish(self, last: Data | Trailers) -> None:
        self.out.append(last)
        self.response["last_chunk"] = True
        self.phase = "done"


def _field(line: bytes) -> tuple[bytes, bytes]:
    match = FIELD_LINE.fullmatch(line)
    if match is None:
        raise _Refused(f"its field line {line[:40]!r} is no field (RFC 9110 §5: token, colon, value)")
    return match.group(1).lower(), match.group(2)
