"""Classification: what a client saw, as one of the kinds of the interface, from a Capture alone.

Pure: h11 in the client role parses the bytes exactly as they arrived (piece by piece), so the
verdict a Capture gets never depends on how the network split it. Invariant: a response counts as
`status` only when its framing completed (Content-Length reached, last chunk seen, or a
close-delimited body ended by a FIN); a response that began and ended early is `aborted`.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from chaos_upstream.verifier.capture import Capture

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
    """How the connection ended: fin, rst, or timeout (still open at the limit)."""
    elapsed: float = 0.0
    first_byte: float | None = None
    trailing_bytes: int = 0
    """Bytes after a complete response."""
    detail: str = ""
    """The parser's complaint, for malformed responses and aborted heads."""

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
        ending = {"fin": "FIN", "rst": "RST", "timeout": "open"}[self.ending]
        return f"{text}, {ending} at {self.elapsed:.2f} s"


@dataclass
class _Parse:
    interim: list[int]
    head: h11.Response | None = None
    body_bytes: int = 0
    complete: bool = False
    error: str = ""
    trailing: int = 0
    cut: bool = False
    """The parser gave up only because the bytes stopped."""


def classify(seen: Capture, method: str = "GET") -> Observation:
    """Classify one capture of the response to a `method` request."""
    parse = _parse(seen, method)
    timing = {"ending": seen.ending, "elapsed": seen.elapsed, "first_byte": seen.first_byte}
    if not seen.data:
        return Observation({"fin": CLOSED, "rst": RESET, "timeout": TIMEOUT}[seen.ending], **timing)
    head = parse.head
    fields = {
        "status": head.status_code if head else None,
        "interim": tuple(parse.interim),
        "headers": tuple(head.headers) if head else (),
        "framing": _framing(head, method) if head else None,
        "body_bytes": parse.body_bytes,
        "detail": parse.error,
        **timing,
    }
    if parse.complete:
        return Observation(STATUS, trailing_bytes=parse.trailing, **fields)
    if parse.error and not parse.cut:
        return Observation(MALFORMED, **fields)
    return Observation(TIMEOUT if seen.ending == "timeout" else ABORTED, **fields)


def _parse(seen: Capture, method: str) -> _Parse:
    """Feed the pieces to an h11 client; record what it made of them and where it stopped."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "probe")]))
    client.send(h11.EndOfMessage())
    result = _Parse(interim=[])
    pieces = [piece for _, piece in seen.pieces] + ([b""] if seen.ending == "fin" else [])
    for piece in pieces:
        try:
            client.receive_data(piece)
            if _drain(client, result):
                result.trailing = len(client.trailing_data[0])
                return result
        except h11.RemoteProtocolError as exc:
            result.error = str(exc)
            result.cut = piece == b"" and (result.head is not None or _http_prefix(seen.data))
            return result
    return result


def _drain(client: h11.Connection, result: _Parse) -> bool:
    """Take every event available; True once the response is complete."""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return False
        if isinstance(event, h11.InformationalResponse):
            result.interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            result.head = event
        elif isinstance(event, h11.Data):
            result.body_bytes += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            result.complete = True
            return True


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
