"""Reading one request off a connection: its head, then (once the server has chosen) its body.

h11 parses; this module decides what the upstream refuses and keeps the account of the body.
Invariants: reading costs time linear in the bytes received, whatever their framing (the kept body
is one bounded buffer, never re-measured); every peer failure surfaces as PeerGone or as an
h11.RemoteProtocolError whose status hint is the answer it deserves, never as anything else.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import h11

from chaos_upstream.errors import PeerGone
from chaos_upstream.plan.request import header, request_path
from chaos_upstream.plan.selection import PROBE_HEADER, SCENARIO_HEADER
from chaos_upstream.server.wire import Wire

MAX_HEAD = 64 * 1024
"""Request heads larger than this get a 431: the size of h11's default, and 8x nginx's default."""

RECORD_BODY = 64 * 1024
"""Bytes of a request body kept in the journal when a scenario records bodies."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim response a client that sent `Expect: 100-continue` waits for before its body."""

KNOWN_HEADS = 256
"""Distinct request heads remembered by their bytes (see KnownHeads)."""

KEY_LIMIT = 2048
"""Bytes of the longest request remembered: 256 of them hold at most 512 KiB."""

SUPPORTED_MAJOR = b"1"
"""The one HTTP major version served; a higher minor is served as 1.1 (RFC 9110 §2.5)."""


@dataclass(frozen=True, slots=True)
class Head:
    """A request's head as the server uses it, decoded once."""

    method: str
    target: str
    version: bytes
    fields: tuple[tuple[bytes, bytes], ...]
    """Names lower-cased, in order."""
    headers: tuple[tuple[str, str], ...]
    """The fields decoded (latin-1)."""
    path: str
    """The target's path, as rules match it (plan.request.request_path)."""
    scenario: str | None
    """The scenario the request names in its header, if it does."""
    probe: str | None
    """The probe id the request carries, if it does."""
    keeps_alive: bool
    """The client lets the connection be reused after this request (see `keep_alive`)."""


class KnownHeads:
    """Heads already parsed, by the exact bytes they came in, so that the same request is not parsed
    again: a load test, or a proxy relaying one, sends the same bytes over and over.

    Invariants: only bytes that h11 parsed, in one read, as exactly one whole request without a body
    (nothing after its head, no 100 Continue awaited) are remembered, so a hit stands for what h11
    would read from them (a fresh h11 parser's result is a function of the bytes alone); at most
    `size` entries of at most KEY_LIMIT bytes are kept, the oldest forgotten first."""

    __slots__ = ("size", "_heads")

    def __init__(self, size: int = KNOWN_HEADS) -> None:
        self.size = size
        self._heads: dict[bytes, Head] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, data: bytes) -> Head | None:
        return self._heads.get(data)

    def remember(self, data: bytes, head: Head) -> None:
        if len(data) > KEY_LIMIT or data in self._heads:
            return
        if len(self._heads) >= self.size:
            del self._heads[next(iter(self._heads))]
        self._heads[data] = head


class RequestReader:
    """One request, read from `wire` by a fresh h11 parser fed first what the previous one left.

    Strategy: one h11 Connection per request, so pipelined requests need nothing but the leftover
    bytes; our responses never pass through h11, so its state machine never needs to see them. A
    first read that `known` recognises needs no parser at all.
    Call `read_head`, then (optionally `awaits_continue`, then) `read_body`.
    """

    __slots__ = ("_wire", "_leftover", "_known", "_parser", "_received", "head", "body_bytes", "body", "complete")

    def __init__(self, wire: Wire, leftover: bytes = b"", known: KnownHeads | None = None) -> None:
        self._wire = wire
        self._leftover = leftover
        self._known = known
        self._parser: h11.Connection | None = None
        """Made for the first bytes that `known` does not recognise."""
        self._received = 0
        """Bytes handed to the parser: the head is no longer than this."""
        self.head: Head | None = None
        """The request head; None until read, and for good if the peer closed before a byte of it."""
        self.body_bytes = 0
        """Body bytes received so far."""
        self.body = bytearray()
        """The first RECORD_BODY bytes of the body."""
        self.complete = False
        """The whole body has been read."""

    @property
    def leftover(self) -> bytes:
        """Bytes received past this request: the start of the next, pipelined one."""
        return b"" if self._parser is None else self._parser.trailing_data[0]

    async def read_head(self) -> Head | None:
        """The head, checked; None if the peer closed cleanly before sending a byte of it."""
        first = self._leftover or await self._wire.receive()
        if not first:
            return None
        if self._known is not None and (known := self._known.get(first)) is not None:
            self.head, self.complete = known, True
            return known
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._parser.receive_data(first)
        self._received = len(first)
        event = await self._next_event()
        if event is None:
            return None
        self.head = _checked(event, self._received)  # type: ignore[arg-type]  # a server's first event is a Request
        if self._known is not None and self._received == len(first):
            waiting = self.awaits_continue()
            if self.complete and not self.body_bytes and not waiting and not self.leftover:
                self._known.remember(first, self.head)
        return self.head

    def awaits_continue(self) -> bool:
        """Whether the client waits for a 100 Continue before it sends the body: it asked for one
        (in HTTP/1.1) and no byte of the body has come. Takes in the body bytes already received."""
        if self._parser is None:  # a known head: no body, nothing awaited
            return False
        while not self.complete and (event := self._parser.next_event()) is not h11.NEED_DATA:
            self._take(event)
        return self._parser.they_are_waiting_for_100_continue

    async def read_body(self) -> None:
        """Read the rest of the body."""
        while not self.complete:
            self._take(await self._next_event())

    async def _next_event(self) -> h11.Event | None:
        """The parser's next event, receiving as it needs; None if the peer closed before a request."""
        parser = self._parser
        assert parser is not None  # read_head made it before any body is read
        while (event := parser.next_event()) is h11.NEED_DATA:
            data = await self._wire.receive()
            if not data:
                if parser.their_state is h11.IDLE and not self.leftover:
                    return None
                raise PeerGone("closed")
            self._received += len(data)
            parser.receive_data(data)
        return event

    def _take(self, event: h11.Event | None) -> None:
        """Account for a body event (Data or EndOfMessage, the only ones after the head)."""
        if isinstance(event, h11.Data):
            self.body_bytes += len(event.data)
            self.body += event.data[: RECORD_BODY - len(self.body)]
        else:
            self.complete = True


def _checked(request: h11.Request, received: int) -> Head:
    """The head, unless the upstream refuses it: over MAX_HEAD (431: h11 only limits heads that
    arrive in several reads), of an HTTP major version other than 1 (505), or with both
    Content-Length and Transfer-Encoding (400: the shape of request smuggling, which a server may
    reject and must then close, RFC 9112 §6.1).

    Strategy: the size counted is at most 5/4 of the head's bytes on the wire (a field line of n
    >= 4 bytes counts n + 1 at most), so a head that came in `received` <= 4/5 MAX_HEAD bytes is
    never measured: the usual request costs nothing here. The fields are read once (h11's Headers
    iterates through the Sequence ABC, a Python call per field)."""
    fields = tuple(request.headers)
    size = 0 if received <= MAX_HEAD * 4 // 5 else _counted_size(request, fields)
    if size > MAX_HEAD:
        raise h11.RemoteProtocolError(f"request head of {size} bytes is over {MAX_HEAD}", error_status_hint=431)
    version = request.http_version
    if not version.startswith(SUPPORTED_MAJOR + b"."):
        raise h11.RemoteProtocolError(f"HTTP/{version.decode('latin-1')} is not supported: only HTTP/1.x", error_status_hint=505)
    names = {name for name, _ in fields}
    if {b"content-length", b"transfer-encoding"} <= names:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding: refused as smuggling", error_status_hint=400)
    target = request.target.decode("latin-1")
    headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in fields)
    return Head(
        method=sys.intern(request.method.decode("latin-1")), target=target, version=version, fields=fields, headers=headers,
        path=request_path(target), scenario=header(headers, SCENARIO_HEADER), probe=header(headers, PROBE_HEADER),
        keeps_alive=keep_alive(version, fields),
    )


def _counted_size(head: h11.Request, fields: tuple[tuple[bytes, bytes], ...]) -> int:
    """The head's size as counted against MAX_HEAD: its request line and its `fields`, each with the
    separators of its shortest form."""
    return len(head.method) + len(head.target) + 12 + sum(len(k) + len(v) + 4 for k, v in fields)


def keep_alive(version: bytes, fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """HTTP/1.0 keeps the connection only when asked to keep it; HTTP/1.1 (and a higher 1.x, served
    as 1.1) unless told to close."""
    tokens = {token.strip().lower() for name, value in fields if name == b"connection" for token in value.split(b",")}
    if version == b"1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens
