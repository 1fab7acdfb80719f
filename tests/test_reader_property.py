"""The request reader, property-based: valid requests split anyhow come back exactly; any bytes at
all end in requests, a clean close, or a peer error, never in anything else and never in a wait.

The reader runs on a scripted stream that hands over the next piece each time the reader asks for
bytes, so every split of the input is exercised exactly as generated. The stream never makes the
reader wait, so a read must finish in one step of its coroutine: one that would wait fails at once.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from unittest import mock

import itertools

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_upstream.errors import PeerGone
from chaos_upstream.server import reading
from chaos_upstream.server.reading import KnownHeads, RequestReader
from chaos_upstream.server.wire import Wire

KEPT = 48
"""RECORD_BODY during these tests: small, so that generated bodies cross it and the cut is checked."""

PROPERTY = settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
"""Six hundred examples for each property (the first reads each three times: split anyhow, then
whole, twice): thousands of reads per run, in a few seconds."""

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = "".join(map(chr, range(0x21, 0x7F)))
OBS_TEXT = "".join(map(chr, range(0x80, 0x100)))
FRAMING = {"host", "content-length", "transfer-encoding", "expect", "connection", "upgrade", "te"}
"""Header names the generator sets itself, or that change how h11 frames or hands over a message."""

# Strategies are built once here: building one inside a draw costs more than the draw. Cut points
# and edits come from one binary draw each, which keeps an example to a few dozen draws.
TOKEN = st.text(TCHAR, min_size=1, max_size=12)
SHAPES = st.sampled_from(
    [(version, framing, expect) for version, framing, expect in itertools.product([b"1.1", b"1.0"], ["none", "length", "chunked"], [False, True])
     if (version, framing) != (b"1.0", "chunked")]
)
"""(HTTP version, body framing, whether the client sends Expect: 100-continue)."""
METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"M-SEARCH", b"x"])
TARGETS = st.sampled_from(["/", "*", "http://upstream.test/x?y"]) | st.text(VCHAR, max_size=30).map("/".__add__)
NAMES = TOKEN.filter(lambda name: name.lower() not in FRAMING).map(str.encode)
VALUES = st.text(VCHAR + OBS_TEXT + " \t", max_size=20).map(lambda value: value.strip(" \t").encode("latin-1"))
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=3)
BODIES = st.binary(min_size=1, max_size=120)
SIZE_LINES = st.sampled_from([b"%x\r\n", b"%X\r\n", b"%04x\r\n", b"%x;ext\r\n", b"%x;a=b\r\n", b'%x;q="x y"\r\n'])
TRAILERS = st.sampled_from([b"", b"X-Trailer: t\r\n"])
MARKS = st.binary(max_size=12)
INSERTS = [b"\r\n", b"\n", b":", b" ", b"\x00", b"0\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"]


@dataclass(frozen=True)
class Sent:
    """A generated request: its bytes and what the reader must make of them."""

    data: bytes
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    body_starts: int
    """Bytes of `data` the parser must have before it can say anything past the head (a body byte,
    or the end of the message): until then, a client that sent Expect still waits for its 100."""
    expect: bool


def cut(data: bytes, marks: bytes) -> list[bytes]:
    """`data` in pieces, cut where the bytes of `marks` point (each a fraction of its length)."""
    cuts = sorted({mark * (len(data) + 1) // 256 for mark in marks})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if data[a:b]]


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    (version, framing, expect), method, target = draw(SHAPES), draw(METHODS), draw(TARGETS).encode()
    headers = [(b"Host", b"upstream.test"), *draw(HEADERS)]
    if expect:
        headers.append((b"Expect", b"100-continue"))
    body = draw(BODIES) if framing != "none" else b""
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
    if framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    head = b"%s %s HTTP/%s\r\n" % (method, target, version)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    framed, first_line = draw(chunked(body)) if framing == "chunked" else (body, 0)
    starts = len(head) + first_line + 1 if body else len(head) + len(framed)
    return Sent(head + framed, method, target, version, headers, body, starts, expect)


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> tuple[bytes, int]:
    """(the body in chunked framing, cut at drawn places, with a drawn size line shape and trailers;
    the length of its first size line)."""
    size_line, pieces = draw(SIZE_LINES), cut(body, draw(MARKS))
    framed = b"".join(size_line % len(piece) + piece + b"\r\n" for piece in pieces)
    return framed + b"0\r\n" + draw(TRAILERS) + b"\r\n", len(size_line % len(pieces[0]))


def split(data: bytes, draw: st.DrawFn) -> list[bytes]:
    """`data` cut into pieces at drawn places, or (one time in ten) one byte at a time."""
    if draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))]
    return cut(data, draw(MARKS))


class Feed:
    """A stream that gives the next piece each time it is asked, then b"" (the peer's FIN); asking
    again after that is a failure (a reader that would wait forever)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces[::-1]
        self.wire = Wire(self, None)  # type: ignore[arg-type]  # the reader only receives: no transport
        self.ended = False

    async def receive_some(self, max_bytes: int) -> bytes:
        assert not self.ended, "the reader asked for bytes after the peer had closed"
        self.ended = not self.pieces
        return self.pieces.pop() if self.pieces else b""


R = TypeVar("R")


def at_once(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run `coroutine`, which must finish without ever waiting (the Feed never blocks)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the reader waited on a stream that never blocks")


async def read_exactly(feed: Feed, sent: list[Sent], known: KnownHeads) -> int:
    """Read every request of `sent` off `feed`, checking each against what was sent, then the clean
    close after them; how many were read."""
    stream, end, leftover = b"".join(request.data for request in sent), 0, b""
    for request in sent:
        start, end = end, end + len(request.data)
        reader = RequestReader(feed.wire, leftover, known)
        head = await reader.read_head()
        assert head is not None
        assert (head.method, head.target, head.version) == (request.method.decode(), request.target.decode(), request.version)
        assert list(head.fields) == [(name.lower(), value) for name, value in request.headers]
        assert list(head.headers) == [(name.lower().decode(), value.decode("latin-1")) for name, value in request.headers]
        waits = request.expect and request.version == b"1.1" and feed.wire.bytes_in - start < request.body_starts
        assert reader.awaits_continue() == waits
        await reader.read_body()
        assert (reader.complete, reader.body_bytes, bytes(reader.body)) == (True, len(request.body), request.body[:KEPT])
        assert reader.leftover == stream[end : feed.wire.bytes_in]
        leftover = reader.leftover
    assert await RequestReader(feed.wire, leftover).read_head() is None
    assert feed.ended and feed.wire.bytes_in == len(stream)
    return len(sent)


@PROPERTY
@given(st.lists(requests(), min_size=1, max_size=2), st.data())
def test_valid_requests_split_anyhow_are_read_exactly(sent: list[Sent], data: st.DataObject) -> None:
    """Split anyhow, then each request in one piece, twice: the second time, heads that came whole
    are known (KnownHeads) and must read exactly as parsed."""
    known = KnownHeads()
    whole = [request.data for request in sent]
    for pieces in (split(b"".join(whole), data.draw), whole, whole):
        with mock.patch.object(reading, "RECORD_BODY", KEPT):
            assert at_once(read_exactly(Feed(pieces), sent, known)) == len(sent)


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a valid request (or two) with bytes changed, cut out or put in."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = bytearray(b"".join(request.data for request in draw(st.lists(requests(), min_size=1, max_size=2))))
    edits = draw(st.binary(min_size=3, max_size=12))
    for mark, kind, value in zip(edits[0::3], edits[1::3], edits[2::3]):
        at = mark * len(data) // 256
        if kind % 3 == 0:
            data[at : at + 1] = bytes([value])
        elif kind % 3 == 1:
            del data[at : at + value % 20 + 1]
        else:
            data[at:at] = INSERTS[value % len(INSERTS)]
    return bytes(data)


async def read_until_closed(feed: Feed, data: bytes) -> int:
    """Read requests off `feed` until the peer closes; how many were read whole."""
    leftover, known = b"", KnownHeads()
    for count in range(len(data) + 1):  # each request takes at least one byte: the loop ends
        reader = RequestReader(feed.wire, leftover, known)
        if await reader.read_head() is None:
            return count
        reader.awaits_continue()
        await reader.read_body()
        assert reader.complete and len(reader.body) == min(reader.body_bytes, KEPT)
        leftover = reader.leftover
    raise AssertionError("more requests than bytes")


@PROPERTY
@given(hostile(), st.data())
def test_any_bytes_end_in_requests_a_close_or_a_peer_error(data: bytes, draw: st.DataObject) -> None:
    feed = Feed(split(data, draw.draw))
    with mock.patch.object(reading, "RECORD_BODY", KEPT):
        try:
            at_once(read_until_closed(feed, data))
        except (h11.RemoteProtocolError, PeerGone):
            pass
    assert feed.wire.bytes_in <= len(data)
