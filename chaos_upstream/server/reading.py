"""Reading one request off a connection: its head, then (once the server has chosen) its body.

h11 parses; this module decides what the upstream refuses and keeps the account of the body.
Invariants: reading costs time linear in the bytes received, whatever their framing (the kept body
is one bounded buffer, never re-measured); every peer failure surfaces as PeerGone or as an
h11.RemoteProtocolError whose status hint is the answer it deserves, never as anything else.
"""

from __future__ import annotations

import h11

from chaos_upstream.errors import PeerGone
from chaos_upstream.server.wire import Wire

MAX_HEAD = 64 * 1024
"""Request heads larger than this get a 431: the size of h11's default, and 8x nginx's default."""

RECORD_BODY = 64 * 1024
"""Bytes of a request body kept in the journal when a scenario records bodies."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim response a client that sent `Expect: 100-continue` waits for before its body."""

SUPPORTED_MAJOR = b"1"
"""The one HTTP major version served; a higher minor is served as 1.1 (RFC 9110 §2.5)."""


class RequestReader:
    """One request, read from `wire` by a fresh h11 parser fed first what the previous one left.

    Strategy: one h11 Connection per request, so pipelined requests need nothing but the leftover
    bytes; our responses never pass through h11, so its state machine never needs to see them.
    Call `read_head`, then (optionally `awaits_continue`, then) `read_body`.
    """

    def __init__(self, wire: Wire, leftover: bytes = b"") -> None:
        self._wire = wire
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._received = len(leftover)
        """Bytes handed to the parser: the head is no longer than this."""
        if leftover:  # receive_data(b"") would mean the peer closed
            self._parser.receive_data(leftover)
        self.head: h11.Request | None = None
        """The request head; None until read, and for good if the peer closed before a byte of it."""
        self.fields: list[tuple[bytes, bytes]] = []
        """The head's fields, names lower-cased: read once (h11's Headers iterates through the
        Sequence ABC, a Python call per field)."""
        self.body_bytes = 0
        """Body bytes received so far."""
        self.body = bytearray()
        """The first RECORD_BODY bytes of the body."""
        self.complete = False
        """The whole body has been read."""

    @property
    def leftover(self) -> bytes:
        """Bytes received past this request: the start of the next, pipelined one."""
        return self._parser.trailing_data[0]

    async def read_head(self) -> h11.Request | None:
        """The head, checked; None if the peer closed cleanly before sending a byte of it."""
        event = await self._next_event()
        if event is not None:
            self.fields = list(event.headers)  # type: ignore[union-attr]  # a server's first event is a Request
            self.head = _checked(event, self.fields, self._received)  # type: ignore[arg-type]
        return self.head

    def awaits_continue(self) -> bool:
        """Whether the client waits for a 100 Continue before it sends the body: it asked for one
        (in HTTP/1.1) and no byte of the body has come. Takes in the body bytes already received."""
        while not self.complete and (event := self._parser.next_event()) is not h11.NEED_DATA:
            self._take(event)
        return self._parser.they_are_waiting_for_100_continue

    async def read_body(self) -> None:
        """Read the rest of the body."""
        while not self.complete:
            self._take(await self._next_event())

    async def _next_event(self) -> h11.Event | None:
        """The parser's next event, receiving as it needs; None if the peer closed before a request."""
        while (event := self._parser.next_event()) is h11.NEED_DATA:
            data = await self._wire.receive()
            if not data:
                if self._parser.their_state is h11.IDLE and not self.leftover:
                    return None
                raise PeerGone("closed")
            self._received += len(data)
            self._parser.receive_data(data)
        return event

    def _take(self, event: h11.Event | None) -> None:
        """Account for a body event (Data or EndOfMessage, the only ones after the head)."""
        if isinstance(event, h11.Data):
            self.body_bytes += len(event.data)
            self.body += event.data[: RECORD_BODY - len(self.body)]
        else:
            self.complete = True


def _checked(head: h11.Request, fields: list[tuple[bytes, bytes]], received: int) -> h11.Request:
    """The head, unless the upstream refuses it: over MAX_HEAD (431: h11 only limits heads that
    arrive in several reads), of an HTTP major version other than 1 (505), or with both
    Content-Length and Transfer-Encoding (400: the shape of request smuggling, which a server may
    reject and must then close, RFC 9112 §6.1).

    Strategy: the size counted is at most 5/4 of the head's bytes on the wire (a field line of n
    >= 4 bytes counts n + 1 at most), so a head that came in `received` <= 4/5 MAX_HEAD bytes is
    never measured: the usual request costs nothing here."""
    size = 0 if received <= MAX_HEAD * 4 // 5 else _counted_size(head, fields)
    if size > MAX_HEAD:
        raise h11.RemoteProtocolError(f"request head of {size} bytes is over {MAX_HEAD}", error_status_hint=431)
    if not head.http_version.startswith(SUPPORTED_MAJOR + b"."):
        version = head.http_version.decode("latin-1")
        raise h11.RemoteProtocolError(f"HTTP/{version} is not supported: only HTTP/1.x", error_status_hint=505)
    names = {name for name, _ in fields}
    if {b"content-length", b"transfer-encoding"} <= names:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding: refused as smuggling", error_status_hint=400)
    return head


def _counted_size(head: h11.Request, fields: list[tuple[bytes, bytes]]) -> int:
    """The head's size as counted against MAX_HEAD: its request line and its `fields`, each with the
    separators of its shortest form."""
    return len(head.method) + len(head.target) + 12 + sum(len(k) + len(v) + 4 for k, v in fields)


def keep_alive(version: bytes, fields: list[tuple[bytes, bytes]]) -> bool:
    """HTTP/1.0 keeps the connection only when asked to keep it; HTTP/1.1 (and a higher 1.x, served
    as 1.1) unless told to close."""
    tokens = {token.strip().lower() for name, value in fields if name == b"connection" for token in value.split(b",")}
    if version == b"1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens
