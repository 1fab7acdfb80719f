"""Classification: what a client saw, as one of the kinds of the interface, from a Capture alone.

Pure: h11 in the client role parses the bytes exactly as they arrived (piece by piece), so the
verdict a Capture gets never depends on how the network split it. Invariant: a response counts as
`status` only when its framing completed (Content-Length reached, last chunk seen, or a
close-delimited body ended by a FIN); a response that began and ended early is `aborted`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import h11

from chaos_upstream.plan.sent import read_head
from chaos_upstream.verifier.exchange import Capture

STATUS, ABORTED, MALFORMED, CLOSED, RESET, TIMEOUT = "status", "aborted", "malformed", "closed", "reset", "timeout"


@dataclass(frozen=True)
class Observation:
    """What the client saw, classified."""

    kind: str
    """status, aborted, malformed, closed, reset or timeout (masked-truncation needs the journal)."""
    status: int | None = None
    """The final status code, when a final head arrived."""
    interim: tuple[int, ...] = ()
    """1xx codes received before the final head."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """The final head's fields (names lower-cased by h11)."""
    framing: str | None = None
    """content-length, chunked or close-delimited: how the body was delimited."""
    body_bytes: int = 0
    """Body bytes received (chunk framing not counted)."""
    ending: str = "fin"
    """How the connection ended: fin, rst, timeout (still open at the limit), or open (still open when
    the response was complete, and no longer watched)."""
    elapsed: float = 0.0
    first_byte: float | None = None
    trailing_bytes: int = 0
    """Bytes after a complete response."""
    detail: str = ""
    """The parser's complaint, for malformed responses and aborted heads."""
    fields: tuple[tuple[bytes, bytes], ...] = ()
    """The final head's field lines as they arrived (names in their own case), read without h11's
    checks, so that a field h11 refuses (a name with a space) still shows: what a relayed response is
    judged on. Empty when no final head arrived whole."""
    body_digest: str = ""
    """SHA-256 (hex) of the body bytes received, chunk framing not counted."""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    def summary(self) -> str:
        """One line a person reads: what came back, how much, how it ended, when."""
        if self.status is None:
            text = self.kind
        elif self.kind == STATUS:
            text = f"{self.status}, {self.body_bytes} B body"
        else:
            text = f"{self.kind}: {self.status}, {self.body_bytes} B of {self.framing} body"
        if self.kind == MALFORMED and self.detail:
            text += f" ({self.detail[:40]})"
        ending = {"fin": "FIN", "rst": "RST", "timeout": "open", "open": "open"}.get(self.ending, self.ending)
        return f"{text}, {ending} at {self.elapsed:.2f} s"


MAX_HEAD = 4 * 1024 * 1024
"""The largest response head the client takes: far beyond any proxy's buffer, so that a proxy that
forwards an oversized head is seen doing so (a 200 with a huge head), not as our own parser's limit."""


class ResponseParser:
    """h11 in the client role, fed a response piece by piece; says when there is no more to learn.

    `feed` returns True once the response is complete or cannot be parsed: what arrives after that
    changes nothing in the classification (trailing bytes aside).
    """

    def __init__(self, method: str = "GET") -> None:
        self.client = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.client.send(h11.Request(method=method, target="/", headers=[("Host", "probe")]))
        self.client.send(h11.EndOfMessage())
        self.interim: list[int] = []
        self.head: h11.Response | None = None
        self.body_bytes = 0
        self.body_hash = hashlib.sha256()
        self.complete = False
        self.error = ""
        self.at_eof = False
        """The parser's complaint came only when the bytes stopped (a FIN mid-message)."""
        self.start = b""
        """The first bytes: a response that does not begin like a status line is done for at once."""

    def feed(self, piece: bytes) -> bool:
        """Take the next piece (b"" for the peer's FIN); True once complete or unparseable."""
        self.start = (self.start + piece)[:5]
        if not _http_prefix(self.start):
            return True
        try:
            self.client.receive_data(piece)
            return self._drain()
        except h11.RemoteProtocolError as exc:
            self.error, self.at_eof = str(exc), piece == b""
            return True

    @property
    def trailing(self) -> int:
        return len(self.client.trailing_data[0]) if self.complete else 0

    def _drain(self) -> bool:
        while True:
            event = self.client.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.InformationalResponse):
                self.interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                self.head = event
            elif isinstance(event, h11.Data):
                self.body_bytes += len(event.data)
                self.body_hash.update(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return True


def classify(seen: Capture, method: str = "GET") -> Observation:
    """Classify one capture of the response to a `method` request."""
    timing = {"ending": seen.ending, "elapsed": seen.elapsed, "first_byte": seen.first_byte}
    if not seen.data:
        return Observation({"fin": CLOSED, "rst": RESET}.get(seen.ending, TIMEOUT), **timing)
    parser = ResponseParser(method)
    pieces = [piece for _, piece in seen.pieces] + ([b""] if seen.ending == "fin" else [])
    any(parser.feed(piece) for piece in pieces)
    head, lenient = parser.head, read_head(seen.data) if _http_prefix(seen.data) else None
    fields = {
        "status": head.status_code if head else None,
        "interim": tuple(parser.interim),
        "headers": tuple(head.headers) if head else (),
        "framing": _framing(head, method) if head else None,
        "body_bytes": parser.body_bytes,
        "detail": _BYTEARRAY.sub(r"\1", parser.error),
        "fields": lenient.fields if lenient is not None else (),
        "body_digest": parser.body_hash.hexdigest(),
        **timing,
    }
    if parser.complete:
        return Observation(STATUS, trailing_bytes=parser.trailing, **fields)
    if not _http_prefix(seen.data):
        return Observation(MALFORMED, **{**fields, "detail": f"not an HTTP status line: {seen.data[:24]!r}"})
    if parser.error and not parser.at_eof:
        return Observation(MALFORMED, **fields)
    return Observation(TIMEOUT if seen.ending == "timeout" else ABORTED, **fields)


_BYTEARRAY = re.compile(r"bytearray\((b'.*?'|b\".*?\")\)")
"""h11 quotes the offending bytes as bytearray(b'...'); a reason reads better with just b'...'."""


def _http_prefix(data: bytes) -> bool:
    """True when `data` could be the start of a status line (so a FIN there cut a head short)."""
    return data[:5] == b"HTTP/"[: len(data[:5])]


def _framing(head: h11.Response, method: str) -> str:
    fields = dict(head.headers)
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        return "chunked"
    if b"content-length" in fields or method == "HEAD" or head.status_code in (204, 304):
        return "content-length"
    return "close-delimited"
