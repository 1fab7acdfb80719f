"""A hostile reviewer's attack on HTTP/2 serving: garbage frames, floods, absurd settings, resets at
every moment of a stream, peers that never read or never open their window, h2 over TLS.

Each test drives real sockets on 127.0.0.1 and asserts that the hostile connection ends (or is
answered as RFC 9113 says: GOAWAY with its error code, RST_STREAM), that it is journaled (its
connection record, a request record for every stream that got a scenario), and that the upstream
still serves a fresh HTTP/1.1 request and a fresh h2c request afterwards. Thirteen of them found a
bug, since mended (a refusal's body past the peer's window or frame size stopped the whole upstream;
no idle timeout once a stream had run; a frame cut in two by a peer's reset; a peer's GOAWAY stopped
us answering its streams; one stream too many ended the connection; an oversized frame buffered whole).
"""

from __future__ import annotations

import datetime
import functools
import ssl
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import hpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.server.h2_frames import PREFACE, frame
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import DEFAULT_NAMES, Material, generate
from conftest import CATALOGUE, T, get
from h2wire import Frame, Reader, exchange, request

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x4, 0x5
CODE = {"NO_ERROR": 0, "PROTOCOL_ERROR": 1, "FLOW_CONTROL_ERROR": 3, "FRAME_SIZE_ERROR": 6, "REFUSED_STREAM": 7, "CANCEL": 8,
        "COMPRESSION_ERROR": 9}
LIMIT = 3.0
"""Seconds any one wait of these tests may take: past them the test fails (a hang is a bug)."""


def settings_frame(**values: int) -> bytes:
    ids = {"initial_window_size": INITIAL_WINDOW_SIZE, "max_frame_size": MAX_FRAME_SIZE, "max_concurrent_streams": 0x3}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[name], value) for name, value in values.items()))


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def rst_stream(stream: int, code: str = "CANCEL") -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", CODE[code]))


class Headers:
    """HEADERS blocks for raw frames, from one HPACK encoder (its dynamic table kept as the server's decoder keeps it)."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def block(self, fields: Iterable[tuple[str, str]]) -> bytes:
        return self.encoder.encode(list(fields))

    def frame(self, stream: int, fields: Iterable[tuple[str, str]], *, end_stream: bool = True) -> bytes:
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, self.block(fields))


class Peer:
    """A raw HTTP/2 client connection: sends bytes as given, reads frames as they come."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.frames: list[Frame] = []
        self.closed = False
        self._reader = Reader()

    async def __aenter__(self) -> Peer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()

    async def send(self, data: bytes) -> bool:
        """Send `data`; False when the server has gone (which a hostile peer may well cause)."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def read_until(self, until: Callable[[list[Frame]], bool], limit: float = LIMIT) -> list[Frame]:
        """Frames read until `until` holds of them or the server closes; fails past `limit` seconds."""
        with trio.fail_after(limit):
            while not until(self.frames) and not self.closed:
                try:
                    data = await self.stream.receive_some(1 << 20)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    self.closed = True
                    break
                try:
                    more = self._reader.feed(data)
                except hpack.HPACKError:  # a field block we cannot decode: let the caller judge
                    more = []
                self.frames += more
        return self.frames

    async def until_closed(self, limit: float = LIMIT) -> list[Frame]:
        return await self.read_until(lambda frames: False, limit)


async def connect(upstream: Upstream, *, tls: ssl.SSLContext | None = None) -> Peer:
    tcp = await trio.open_tcp_stream(*upstream.addresses[0])
    if tls is None:
        return Peer(tcp)
    stream = trio.SSLStream(tcp, tls, server_hostname="localhost")
    await stream.do_handshake()
    return Peer(stream)


async def opened(upstream: Upstream, *extra: bytes, **settings: int) -> Peer:
    """A connection past its preface and our SETTINGS (with `settings`), then `extra` bytes sent."""
    peer = await connect(upstream)
    await peer.send(PREFACE + settings_frame(**settings) + b"".join(extra))
    return peer


def status(frames: list[Frame], stream: int) -> int | None:
    for f in frames:
        if f.type == "HEADERS" and f.stream == stream:
            return int(dict(f.fields)[b":status"])
    return None


def stream_done(stream: int) -> Callable[[list[Frame]], bool]:
    return lambda frames: any(f.stream == stream and (f.end_stream or f.type == "RST_STREAM") for f in frames)


def has_goaway(frames: list[Frame]) -> bool:
    return any(f.type == "GOAWAY" for f in frames)


async def records(upstream: Upstream, kind: str, count: int = 1, limit: float = LIMIT) -> list:
    """The journal's records of `kind` once there are at least `count`; fails past `limit` seconds."""
    with trio.fail_after(limit):
        while len(found := upstream.journal.records(type=kind)) < count:
            await trio.sleep(0.005)
    return found


async def still_serves(upstream: Upstream) -> None:
    """A fresh HTTP/1.1 request and a fresh h2c request both get the healthy 200."""
    with trio.fail_after(LIMIT):
        async with await trio.open_tcp_stream(*upstream.addresses[0]) as tcp:
            await tcp.send_all(get("/", "healthy"))
            reply = b""
            while b"chaos-upstream: healthy" not in reply:
                data = await tcp.receive_some(65536)
                assert data, reply
                reply += data
        assert reply.startswith(b"HTTP/1.1 200 "), reply
    frames = await exchange(upstream.addresses[0], [request("healthy")],
                            until=lambda fs: any(f.stream == 1 and f.end_stream for f in fs), limit=LIMIT)
    assert status(frames, 1) == 200, frames
    assert any(f.type == "DATA" and f.stream == 1 and f.end_stream for f in frames), frames


async def connection_record(upstream: Upstream, count: int = 1) -> object:
    """The first connection record (the hostile connection's, when it was the first)."""
    return (await records(upstream, "connection", count))[0]


# --- the answers the server makes at once (404, 501) against a peer's absurd settings ---------------


async def test_unknown_scenario_under_a_zero_window_does_not_take_the_server_down(start_upstream):
    """SETTINGS_INITIAL_WINDOW_SIZE 0 (legal) then a stream naming no scenario: its 404 body cannot be
    sent at once; it must wait for the window (or the stream be reset), never raise out of the session."""
    upstream = await start_upstream(idle_timeout=0.5)
    hpk = Headers()
    async with await opened(upstream, hpk.frame(1, request("no-such-scenario")), initial_window_size=0) as peer:
        await peer.read_until(lambda fs: status(fs, 1) is not None or has_goaway(fs))
        assert status(peer.frames, 1) == 404
        await peer.send(window_update(1, 65535))
        await peer.read_until(stream_done(1))
        assert b"no scenario named" in b"".join(f.payload for f in peer.frames if f.type == "DATA" and f.stream == 1)
    [record] = await records(upstream, "request")
    assert (record.stream, record.status, record.scenario) == (1, 404, None)
    await still_serves(upstream)


async def test_a_20_kb_scenario_name_does_not_take_the_server_down(start_upstream):
    """A 20 KB scenario name (the header list allows 64 KiB): the 404 body repeats it and is larger than
    a DATA frame may be (16 KiB by default): it must go out in frames, not raise FrameTooLargeError."""
    upstream = await start_upstream(idle_timeout=0.5)
    hpk = Headers()
    block = hpk.block(request("x" * 20_000))
    async with await opened(upstream, frame(HEADERS, END_STREAM, 1, block[:16000]), frame(CONTINUATION, END_HEADERS, 1, block[16000:])) as peer:
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs))
        assert status(peer.frames, 1) == 404, peer.frames
    [record] = await records(upstream, "request")
    assert record.status == 404
    await still_serves(upstream)


# --- the preface: cut short, followed by HTTP/1.1, half of it ------------------------------------------


async def test_a_preface_cut_short_then_silence_is_ended_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await connect(upstream) as peer:
        await peer.send(PREFACE[:10])
        await peer.until_closed()
        assert peer.closed and peer.frames == []
    assert (await connection_record(upstream)).ended == "idle-closed"
    await still_serves(upstream)


async def test_a_whole_preface_then_silence_is_ended_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await connect(upstream) as peer:
        await peer.send(PREFACE)
        await peer.until_closed()
        assert peer.closed and peer.frames[0].type == "SETTINGS"
    record = await connection_record(upstream)
    assert (record.ended, record.protocol) == ("idle-closed", "h2c")
    await still_serves(upstream)


async def test_the_preface_then_http1_bytes_get_goaway_at_once(start_upstream):
    """RFC 9113 §3.4: the preface's SETTINGS must come first; §4.2: a frame over SETTINGS_MAX_FRAME_SIZE
    is a FRAME_SIZE_ERROR. Either way a GOAWAY, at once, not the idle timeout's silent close."""
    upstream = await start_upstream(idle_timeout=0.6)
    async with await connect(upstream) as peer:
        await peer.send(PREFACE + get("/", "healthy"))
        await peer.until_closed()
        assert has_goaway(peer.frames), peer.frames
    record = await connection_record(upstream)
    assert record.ended.startswith("h2-protocol-error") and record.goaway is not None
    await still_serves(upstream)


async def test_a_frame_longer_than_max_frame_size_is_refused_before_its_payload(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream) as peer:
        await peer.send(struct.pack(">I", 0xFFFFFF)[1:] + bytes([PING, 0]) + b"\0\0\0\0" + bytes(256 * 1024))
        await peer.read_until(has_goaway, limit=0.5)
        assert [f.code for f in peer.frames if f.type == "GOAWAY"] == ["0x6"]  # FRAME_SIZE_ERROR
    await connection_record(upstream)
    await still_serves(upstream)


async def test_half_a_preface_then_http1_is_answered_as_http1_and_closed(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    with trio.fail_after(LIMIT):
        async with await trio.open_tcp_stream(*upstream.addresses[0]) as tcp:
            await tcp.send_all(PREFACE[:16] + get("/", "healthy"))
            reply = b""
            while data := await tcp.receive_some(65536):
                reply += data
    assert reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.1 505"), reply
    assert (await connection_record(upstream)).ended in ("bad-request", "closed")
    await still_serves(upstream)


# --- garbage frames after a valid preface -----------------------------------------------------------

FRAMES = st.builds(
    lambda kind, flags, stream, payload: frame(kind, flags, stream, payload),
    st.integers(0, 12), st.integers(0, 255), st.sampled_from([0, 1, 2, 3, 5, 0x7FFFFFFF]), st.binary(max_size=40),
)
"""Any frame header with a short payload of any bytes."""
PLAUSIBLE = st.sampled_from([
    Headers().frame(1, request("never-respond"), end_stream=False), Headers().frame(3, request("healthy")),
    Headers().frame(5, request("slow-headers")), frame(HEADERS, END_STREAM, 7, Headers().block(request("healthy"))),
    frame(CONTINUATION, END_HEADERS, 7, b""), frame(DATA, 0, 1, b"body"), frame(DATA, END_STREAM, 1, b"end"),
    rst_stream(1), rst_stream(3, "NO_ERROR"), window_update(0, 1), window_update(1, 0x7FFFFFFF), window_update(0, 0),
    settings_frame(initial_window_size=0), settings_frame(initial_window_size=0x7FFFFFFF), settings_frame(max_frame_size=(1 << 24) - 1),
    frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 16)), frame(PING, 0, 0, bytes(8)), frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)),
])
"""Frames a real client might send (requests, resets, window updates, settings): garbage in context."""


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(FRAMES, PLAUSIBLE), min_size=1, max_size=8), st.booleans())
async def test_random_frames_end_only_their_connection(frames, with_settings):
    """Any sequence of frames, then a PING: the server answers it (PING ACK), or ends the connection
    (GOAWAY or close) within the limit; the connection is journaled; the upstream serves on. (Each
    example runs in a trio run of its own: its upstream is started here, not by the fixture.)"""
    async with trio.open_nursery() as nursery:
        upstream = Upstream(CATALOGUE, Settings(port=0, timing=Timing(T), idle_timeout=0.5))
        await nursery.start(upstream.run)
        async with await connect(upstream) as peer:
            await peer.send(PREFACE + (settings_frame() if with_settings else b"") + b"".join(frames) + frame(PING, 0, 0, b"probe-me"))
            await peer.read_until(lambda fs: has_goaway(fs) or any(f.type == "PING" and f.flags & ACK and f.payload == b"probe-me" for f in fs))
        await connection_record(upstream)
        await still_serves(upstream)
        nursery.cancel_scope.cancel()


# --- connection errors: absurd settings, window updates, header blocks --------------------------------


def answers(frames: list[Frame]) -> set[tuple[str, str]]:
    """The RST_STREAM and GOAWAY frames among `frames`, by kind and code (`h2` queues a GOAWAY of its
    own before the session's: the same code twice)."""
    return {(f.type, f.code) for f in frames if f.type in ("RST_STREAM", "GOAWAY")}


def goaway_codes(frames: list[Frame]) -> list[str]:
    return [f.code for f in frames if f.type == "GOAWAY"]


CONNECTION_ERRORS = {
    "max-frame-size-0": (settings_frame(max_frame_size=0), "PROTOCOL_ERROR"),
    "max-frame-size-2^31": (settings_frame(max_frame_size=1 << 31), "PROTOCOL_ERROR"),
    "initial-window-2^31": (settings_frame(initial_window_size=1 << 31), "0x3"),
    "connection-window-overflow": (window_update(0, 0x7FFFFFFF), "0x3"),
    "window-update-0": (window_update(0, 0), "PROTOCOL_ERROR"),
    "settings-on-a-stream": (frame(SETTINGS, 0, 1, b""), "PROTOCOL_ERROR"),
    "ping-of-7-bytes": (frame(PING, 0, 0, bytes(7)), "0x6"),
    "data-on-stream-0": (frame(DATA, 0, 0, b"x"), "PROTOCOL_ERROR"),
    "headers-without-end-headers-then-ping": (frame(HEADERS, 0, 1, Headers().block(request("healthy"))) + frame(PING, 0, 0, bytes(8)), "PROTOCOL_ERROR"),
    "continuation-flood": (frame(HEADERS, 0, 1, b"") + frame(CONTINUATION, 0, 1, b"") * 200, "PROTOCOL_ERROR"),
    "naked-continuation": (frame(CONTINUATION, END_HEADERS, 1, b""), "PROTOCOL_ERROR"),
    "even-stream-id": (Headers().frame(2, request("healthy")), "PROTOCOL_ERROR"),
    "stream-id-going-down": (Headers().frame(5, request("healthy")) + Headers().frame(3, request("healthy")), "PROTOCOL_ERROR"),
}


@pytest.mark.parametrize("name", CONNECTION_ERRORS)
async def test_a_connection_error_gets_goaway_with_its_code_and_ends_only_its_connection(start_upstream, name):
    sent, code = CONNECTION_ERRORS[name]
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, sent) as peer:
        await peer.until_closed()
        assert peer.closed and goaway_codes(peer.frames)[-1:] == [code], peer.frames
    record = await connection_record(upstream)
    assert record.ended.startswith("h2-protocol-error") and record.goaway.startswith(code if code[0] != "0" else ""), record
    await still_serves(upstream)


async def overflowed_stream_window(start_upstream) -> Upstream:
    """An upstream that held stream 1 (never-respond) while the peer overflowed its window (2^31-1,
    then a WINDOW_UPDATE of 1), then served stream 3 on the same connection."""
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    async with await opened(upstream, hpk.frame(1, request("never-respond")), initial_window_size=0x7FFFFFFF) as peer:
        await peer.send(window_update(1, 1))
        await peer.read_until(stream_done(1))
        [reset] = [f for f in peer.frames if f.stream == 1]
        assert (reset.type, reset.code) == ("RST_STREAM", "0x3")
        await peer.send(hpk.frame(3, request("healthy")))
        await peer.read_until(stream_done(3))
        assert status(peer.frames, 3) == 200 and not has_goaway(peer.frames)
    return upstream


async def test_a_stream_window_overflow_resets_that_stream_only(start_upstream):
    """RFC 9113 §6.9.1: a stream's window past 2^31-1 is a stream error: RST_STREAM(FLOW_CONTROL_ERROR)
    on it; the connection and its other streams live on."""
    upstream = await overflowed_stream_window(start_upstream)
    first = (await records(upstream, "request"))[0]
    assert (first.stream, first.scenario) == (1, "never-respond") and first.ended.endswith("rst-stream FLOW_CONTROL_ERROR")
    await still_serves(upstream)


async def test_a_reset_the_server_sent_is_not_journaled_as_the_peers(start_upstream):
    upstream = await overflowed_stream_window(start_upstream)
    first = (await records(upstream, "request"))[0]
    assert first.ended.split(", ")[-1] == "rst-stream FLOW_CONTROL_ERROR"  # after "hung, " once its plan ran


async def test_headers_without_end_headers_then_silence_is_ended_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await opened(upstream, frame(HEADERS, 0, 1, Headers().block(request("healthy")))) as peer:
        await peer.until_closed()
        assert peer.closed and status(peer.frames, 1) is None
    assert (await connection_record(upstream)).ended == "idle-closed"
    await still_serves(upstream)


async def test_a_peer_closing_mid_frame_is_a_peer_close(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, Headers().frame(1, request("healthy"))[:12]) as peer:
        await peer.read_until(lambda fs: any(f.type == "SETTINGS" for f in fs))
    record = await connection_record(upstream)
    assert record.ended == "peer-closed" and record.protocol == "h2c"
    await still_serves(upstream)


async def test_streams_in_flight_are_answered_after_the_peers_goaway(start_upstream):
    """A client's GOAWAY(NO_ERROR, last-stream 0) (a proxy closing a pooled connection gracefully)
    stops new pushes, not the answers to its own streams (RFC 9113 §6.8)."""
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, Headers().frame(1, request("healthy")), frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))) as peer:
        await peer.read_until(stream_done(1), limit=0.5)
        assert status(peer.frames, 1) == 200
    record = await connection_record(upstream)
    assert record.peer_goaway == "NO_ERROR last-stream 0"
    await still_serves(upstream)


async def test_a_peers_goaway_is_journaled(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, frame(GOAWAY, 0, 0, struct.pack(">II", 0, 2))) as peer:
        await peer.read_until(lambda fs: any(f.type == "SETTINGS" for f in fs))
    record = await connection_record(upstream)
    assert (record.peer_goaway, record.ended) == ("INTERNAL_ERROR last-stream 0", "peer-closed")
    await still_serves(upstream)


async def test_an_invalid_hpack_block_gets_goaway_compression_error(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff")) as peer:
        await peer.until_closed()
        assert goaway_codes(peer.frames)[-1:] == ["0x9"], peer.frames
    await connection_record(upstream)
    await still_serves(upstream)


# --- idle connections and stalled streams: bounded by the idle timeout ---------------------------------


async def test_a_connection_idle_after_its_streams_ended_is_closed_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await opened(upstream, Headers().frame(1, request("healthy"))) as peer:
        await peer.read_until(stream_done(1))
        assert status(peer.frames, 1) == 200
        await peer.until_closed(limit=0.8)
        assert peer.closed
    assert (await connection_record(upstream)).ended == "idle-closed"
    await still_serves(upstream)


async def test_a_request_body_that_never_comes_is_ended_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await opened(upstream, Headers().frame(1, request("healthy", method="POST"), end_stream=False)) as peer:
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs), limit=0.8)
    [record] = await records(upstream, "request")
    assert record.stream == 1 and record.status is None
    await still_serves(upstream)


async def test_a_peer_that_never_opens_its_window_is_cut_by_the_idle_timeout(start_upstream):
    upstream = await start_upstream(idle_timeout=0.3)
    async with await opened(upstream, Headers().frame(1, request("healthy")), initial_window_size=0) as peer:
        await peer.read_until(lambda fs: status(fs, 1) is not None)
        assert status(peer.frames, 1) == 200
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs), limit=0.8)
    [record] = await records(upstream, "request")
    assert record.stream == 1 and record.ended != "end-stream"
    await still_serves(upstream)


# --- floods and resets ------------------------------------------------------------------------------


async def test_rapid_reset_is_kept_up_with_journaled_and_bounded(start_upstream, monkeypatch):
    """CVE-2023-44487: 2000 HEADERS+RST_STREAM pairs, each with its own probe id, in few writes: the
    server keeps up (a stream after them is answered within the limit), journals each stream as reset
    by the peer, keeps no stream after it, and counts probe attempts within its cap."""
    monkeypatch.setattr("chaos_upstream.server.upstream.ATTEMPTS_KEPT", 100)
    upstream = await start_upstream(idle_timeout=1.0)
    hpk, count = Headers(), 2000
    async with await opened(upstream) as peer:
        pairs = [hpk.frame(2 * i + 1, request("never-respond", probe=f"rapid-{i}")) + rst_stream(2 * i + 1) for i in range(count)]
        for start in range(0, count, 250):
            assert await peer.send(b"".join(pairs[start : start + 250]))
        last = 2 * count + 1
        await peer.send(hpk.frame(last, request("healthy")))
        await peer.read_until(stream_done(last))
        assert status(peer.frames, last) == 200 and not has_goaway(peer.frames)
        await no_stream_kept(upstream)
    found = await records(upstream, "request", count + 1)
    reset = [r for r in found if r.scenario == "never-respond"]
    assert len(reset) == count and all(r.ended.endswith("peer-rst-stream CANCEL") for r in reset)  # some "hung, ..."
    assert len(upstream._attempts) == 100
    await still_serves(upstream)


async def test_no_stream_is_kept_after_a_storm_of_resets(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    async with await opened(upstream) as peer:
        await peer.send(b"".join(hpk.frame(2 * i + 1, request("slow-headers")) + rst_stream(2 * i + 1) for i in range(300)))
        await peer.send(hpk.frame(601, request("healthy")))
        await peer.read_until(stream_done(601))
        await no_stream_kept(upstream)
    await still_serves(upstream)


async def no_stream_kept(upstream: Upstream) -> None:
    """Wait until every HTTP/2 session of the upstream keeps no stream (its streams' tasks have ended)."""
    with trio.fail_after(LIMIT):
        while any(live.on_drain.__self__.streams for live in upstream.live.values() if live.on_drain is not None):
            await trio.sleep(0.005)


@pytest.mark.parametrize("flood", ["ping", "priority", "settings", "window-update"])
async def test_a_flood_of_control_frames_is_answered_and_the_connection_still_serves(start_upstream, flood):
    upstream = await start_upstream(idle_timeout=1.0)
    one = {
        "ping": frame(PING, 0, 0, b"flooding"), "priority": frame(PRIORITY, 0, 9, struct.pack(">IB", 0, 200)),
        "settings": settings_frame(initial_window_size=65535), "window-update": window_update(0, 1),
    }[flood]
    hpk = Headers()
    async with await opened(upstream) as peer:
        for _ in range(5):
            assert await peer.send(one * 2000)
        await peer.send(hpk.frame(1, request("healthy")))
        await peer.read_until(stream_done(1))
        assert status(peer.frames, 1) == 200 and not has_goaway(peer.frames)
        if flood in ("ping", "settings"):
            acks = [f for f in peer.frames if f.type == flood.upper() and f.flags & ACK]
            assert len(acks) == 10_000 + (flood == "settings"), len(acks)  # and the preface's SETTINGS
    await still_serves(upstream)


async def test_a_stream_past_max_concurrent_streams_is_refused_alone(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    async with await opened(upstream, *(hpk.frame(2 * i + 1, request("never-respond")) for i in range(101))) as peer:
        await peer.read_until(lambda fs: stream_done(201)(fs) or has_goaway(fs))
        assert [(f.type, f.code) for f in peer.frames if f.stream == 201] in ([("RST_STREAM", "REFUSED_STREAM")], [("RST_STREAM", "PROTOCOL_ERROR")])
        held = upstream.journal.records(type="request", running=True)
        assert sorted(r.stream for r in held) == list(range(1, 200, 2))
        await peer.send(rst_stream(1) + hpk.frame(203, request("healthy")))
        await peer.read_until(stream_done(203))
        assert status(peer.frames, 203) == 200
    await still_serves(upstream)


async def test_a_reset_while_the_plan_waits_ends_that_stream_only(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    async with await opened(upstream, hpk.frame(1, request("slow-headers"))) as peer:
        await peer.send(rst_stream(1) + hpk.frame(3, request("healthy")))
        await peer.read_until(stream_done(3))
        assert status(peer.frames, 3) == 200 and status(peer.frames, 1) is None
    found = await records(upstream, "request", 2)
    assert {(r.stream, r.ended) for r in found} == {(1, "peer-rst-stream CANCEL"), (3, "end-stream")}
    await still_serves(upstream)


async def test_a_reset_while_the_plan_waits_for_the_window_ends_that_stream_only(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    async with await opened(upstream, hpk.frame(1, request("healthy")), initial_window_size=0) as peer:
        await peer.read_until(lambda fs: status(fs, 1) is not None)
        await peer.send(rst_stream(1) + settings_frame(initial_window_size=65535) + hpk.frame(3, request("healthy")))
        await peer.read_until(stream_done(3))
        assert status(peer.frames, 3) == 200
        assert not any(f.type == "DATA" and f.stream == 1 for f in peer.frames)
    found = await records(upstream, "request", 2)
    assert {(r.stream, r.ended) for r in found} == {(1, "peer-rst-stream CANCEL"), (3, "end-stream")}
    await still_serves(upstream)


BIG_BODY = 16 * 1024 * 1024
"""Bytes of the response body of the `h2-big-body` scenario: far more than a socket's buffers take,
and one more than the largest DATA frame (so the first frame does not end the stream)."""


def big_body_catalogue(directory: Path) -> Catalogue:
    (directory / "h2-big-body.yaml").write_text(f"""
name: h2-big-body
description: "a 200 with an {BIG_BODY}-byte body, in DATA frames as large as the peer allows"
phase: http2
expect:
  outcomes: [200]
http2:
  - kind: h2-headers
    status: 200
    fields:
      content-length: "{BIG_BODY}"
  - kind: h2-data
    length: {BIG_BODY}
    end_stream: true
""")
    return Catalogue.load([directory])


async def blocked_send(upstream: Upstream, since: float = 0.1) -> None:
    """Wait until a connection's send has waited `since` seconds for a peer that reads nothing."""
    with trio.fail_after(LIMIT):
        while not any(live.wire.sending_since is not None and trio.current_time() - live.wire.sending_since > since
                      for live in upstream.live.values()):
            await trio.sleep(0.005)


async def test_a_reset_while_a_data_frame_is_half_sent_keeps_the_framing(start_upstream, tmp_path):
    """The peer allows 16 MiB frames and a 2^31-1 window, asks for an 8 MiB body and reads nothing:
    the server's one DATA frame waits half sent. The peer resets the stream and asks for another: what
    follows must still be whole frames (a frame once begun goes out whole, RFC 9113 §4)."""
    upstream = await start_upstream(big_body_catalogue(tmp_path), idle_timeout=2.0)
    hpk = Headers()
    async with await opened(upstream, window_update(0, 0x7FFFFFFF - 65535), hpk.frame(1, request("h2-big-body")),
                            initial_window_size=0x7FFFFFFF, max_frame_size=(1 << 24) - 1) as peer:
        await blocked_send(upstream)
        await peer.send(rst_stream(1) + hpk.frame(3, request("healthy")))
        await peer.read_until(stream_done(3), limit=1.0)
        assert status(peer.frames, 3) == 200
    await still_serves(upstream)


async def stalled_mid_frame(start_upstream, tmp_path: Path) -> Upstream:
    """An upstream whose one connection was cut by the stall reaper (0.3 s) while its DATA frame,
    16 MiB long, waited half sent for a peer that reads nothing."""
    upstream = await start_upstream(big_body_catalogue(tmp_path), idle_timeout=0.3)
    async with await opened(upstream, window_update(0, 0x7FFFFFFF - 65535), Headers().frame(1, request("h2-big-body")),
                            initial_window_size=0x7FFFFFFF, max_frame_size=(1 << 24) - 1):
        await blocked_send(upstream, 0.0)
        await connection_record(upstream)
    return upstream


async def test_a_peer_that_stops_reading_mid_frame_is_cut_by_the_stall_reaper(start_upstream, tmp_path):
    upstream = await stalled_mid_frame(start_upstream, tmp_path)
    [request_record] = await records(upstream, "request")
    assert (request_record.stream, request_record.ended) == (1, "peer-stalled")
    await still_serves(upstream)


async def test_the_connection_cut_by_the_stall_reaper_is_journaled_as_stalled(start_upstream, tmp_path):
    upstream = await stalled_mid_frame(start_upstream, tmp_path)
    assert (await connection_record(upstream)).ended == "peer-stalled"


# --- request bodies past the windows ------------------------------------------------------------------


async def test_a_body_past_a_stalled_window_opens_only_the_connections_window(start_upstream):
    """`request_window: stall` (h2-window-stall): the peer sends its stream's whole window (65535 bytes)
    and more (a flow-control violation); the server never opens the stream's window, keeps the
    connection's open, answers the overflow with a FLOW_CONTROL_ERROR, and a second stream is served."""
    upstream = await start_upstream(idle_timeout=1.0)
    hpk = Headers()
    chunk = bytes(16384)
    body = [frame(DATA, 0, 1, chunk)] * 3 + [frame(DATA, 0, 1, chunk[:16383])]
    async with await opened(upstream, hpk.frame(1, request("h2-window-stall", method="POST"), end_stream=False), *body) as peer:
        await peer.read_until(lambda fs: sum(struct.unpack(">I", f.payload)[0] for f in fs if f.type == "WINDOW_UPDATE") >= 65535)
        assert not any(f.type == "WINDOW_UPDATE" and f.stream == 1 for f in peer.frames)
        await peer.send(hpk.frame(3, request("healthy")))
        await peer.read_until(stream_done(3))
        assert status(peer.frames, 3) == 200 and status(peer.frames, 1) is None
        await peer.send(frame(DATA, 0, 1, b"past the window"))
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs))
        assert answers(peer.frames) in ({("RST_STREAM", "0x3")}, {("GOAWAY", "0x3")})
    found = await records(upstream, "request", 2)
    [stalled] = [r for r in found if r.stream == 1]
    assert stalled.scenario == "h2-window-stall" and stalled.body_bytes >= 65535
    await still_serves(upstream)


# --- request heads a proxy should never send ------------------------------------------------------------

MALFORMED = {
    "uppercase-name": [*request("healthy"), ("X-Upper", "1")],
    "connection-header": [*request("healthy"), ("connection", "keep-alive")],
    "te-gzip": [*request("healthy"), ("te", "gzip")],
    "no-path": [(n, v) for n, v in request("healthy") if n != ":path"],
    "no-method": [(n, v) for n, v in request("healthy") if n != ":method"],
    "empty-path": [(":path", "") if n == ":path" else (n, v) for n, v in request("healthy")],
    "two-paths": [*request("healthy")[:1], (":path", "/a"), *request("healthy")[1:]],
    "pseudo-after-regular": [*request("healthy"), (":extra", "x")],
    "unknown-pseudo": [(":bogus", "x"), *request("healthy")],
}


@pytest.mark.parametrize("name", MALFORMED)
async def test_a_malformed_request_head_is_refused_and_the_connection_survives_or_ends_cleanly(start_upstream, name):
    """RFC 9113 §8.1.1: a malformed request is a stream error (PROTOCOL_ERROR); `h2` makes some a
    connection error: either is an answer, and nothing is served for it."""
    upstream = await start_upstream(idle_timeout=1.0)
    block = Headers().block(MALFORMED[name])
    async with await opened(upstream, frame(HEADERS, END_HEADERS | END_STREAM, 1, block)) as peer:
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs))
        assert answers(peer.frames) in ({("RST_STREAM", "PROTOCOL_ERROR")}, {("GOAWAY", "PROTOCOL_ERROR")}), peer.frames
        assert status(peer.frames, 1) is None
    assert upstream.journal.records(type="request") == []
    await still_serves(upstream)


@pytest.mark.parametrize("target, scenario", [
    ("http://upstream.test/_chaos/healthy/x", "healthy"), ("/_chaos/../../etc/passwd", ".."), ("*", "healthy"),
    ("/_chaos/%00%ff/", "%00%ff"),
])
async def test_odd_paths_choose_as_over_http1(start_upstream, target, scenario):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, Headers().frame(1, [(":path", target) if n == ":path" else (n, v) for n, v in request()])) as peer:
        await peer.read_until(stream_done(1))
        assert status(peer.frames, 1) == (200 if scenario == "healthy" else 404)
    [record] = await records(upstream, "request")
    assert (record.stream, record.target) == (1, target) and (record.scenario or "unknown") in (scenario, "unknown")
    await still_serves(upstream)


@pytest.mark.parametrize("name", ["\x00\x01\x7f", "..", " " * 50, "héllo", "healthy\r\nX-Injected: 1"])
async def test_a_garbage_scenario_name_gets_404(start_upstream, name):
    upstream = await start_upstream(idle_timeout=1.0)
    async with await opened(upstream, Headers().frame(1, request(name))) as peer:
        await peer.read_until(lambda fs: stream_done(1)(fs) or has_goaway(fs))
        got = status(peer.frames, 1)
        assert got == 404 or has_goaway(peer.frames) or any(f.type == "RST_STREAM" for f in peer.frames), peer.frames
    if got == 404:
        [record] = await records(upstream, "request")
        assert (record.status, record.scenario) == (404, None)
    await still_serves(upstream)


# --- h2 over TLS (ALPN h2) ----------------------------------------------------------------------------


def h2_over_tls() -> ssl.SSLContext:
    """A client context that trusts the throwaway CA and offers only h2, as a proxy speaking HTTP/2 does."""
    context = ssl.create_default_context(cadata=tls_material().ca_pem.decode())
    context.set_alpn_protocols(["h2"])
    return context


@functools.cache
def tls_material() -> Material:
    """A throwaway CA and the upstream's certificate, made once for the file."""
    return generate(list(DEFAULT_NAMES), now=datetime.datetime.now(datetime.timezone.utc))


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", frame(DATA, 0, 0, b"x"), frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff"), b"\x00" * 9,
])
async def test_garbage_inside_an_h2_tls_session_ends_only_that_session(start_upstream, garbage):
    """ALPN h2 says HTTP/2 from the first byte: no preface (garbage in its place) or a bad frame
    after it gets GOAWAY(PROTOCOL_ERROR) or a close, journaled as h2 over TLS; TLS h2 is still served."""
    upstream = await start_upstream(tls=Contexts(tls_material()), idle_timeout=1.0)
    with_preface = garbage[:3] != b"GET"
    async with await connect(upstream, tls=h2_over_tls()) as peer:
        assert peer.stream.selected_alpn_protocol() == "h2"
        await peer.send((PREFACE + settings_frame() if with_preface else b"") + garbage)
        await peer.until_closed()
        assert peer.closed
        assert answers(peer.frames) <= {("GOAWAY", "PROTOCOL_ERROR"), ("GOAWAY", "0x9"), ("GOAWAY", "0x6")}
    record = await connection_record(upstream)
    assert (record.protocol, record.alpn) == ("h2", "h2") and record.ended != "cancelled"
    async with await connect(upstream, tls=h2_over_tls()) as peer:
        await peer.send(PREFACE + settings_frame() + Headers().frame(1, request("healthy")))
        await peer.read_until(stream_done(1))
        assert status(peer.frames, 1) == 200


# --- drain against hostile peers ---------------------------------------------------------------------


async def test_a_drain_finishes_a_stream_then_closes_even_if_the_peer_never_acks_the_ping(start_upstream):
    """Upstream.drain(): GOAWAY(NO_ERROR, 2^31-1), a PING the peer never answers, then after
    DRAIN_PING the GOAWAY with the last stream opened; the stream in flight is still answered."""
    upstream = await start_upstream(idle_timeout=2.0)
    async with await opened(upstream, Headers().frame(1, request("slow-headers"))) as peer:
        await peer.read_until(lambda fs: any(f.type == "SETTINGS" and f.flags & ACK for f in fs))
        upstream.drain()
        await peer.until_closed()
        assert peer.closed and status(peer.frames, 1) == 200
        goaways = [(f.last_stream, f.code) for f in peer.frames if f.type == "GOAWAY"]
        assert goaways == [(0x7FFFFFFF, "NO_ERROR"), (1, "NO_ERROR")], goaways
    record = await connection_record(upstream)
    assert (record.ended, record.goaway) == ("drained", "NO_ERROR last-stream 1")


async def test_a_kill_resets_an_h2_connection_at_once_and_journals_its_held_streams(start_upstream, tmp_path):
    """Upstream.kill() while one stream is held and another's DATA frame waits half sent for a peer
    that reads nothing: the connection is reset at once (not after the stall reaper), every stream
    journaled."""
    upstream = await start_upstream(big_body_catalogue(tmp_path), idle_timeout=5.0)
    hpk = Headers()
    async with await opened(upstream, window_update(0, 0x7FFFFFFF - 65535), hpk.frame(1, request("never-respond")),
                            hpk.frame(3, request("h2-big-body")), initial_window_size=0x7FFFFFFF, max_frame_size=(1 << 24) - 1):
        await blocked_send(upstream)
        upstream.kill()
        with trio.fail_after(1.0):
            record = await connection_record(upstream)
    assert record.ended == "killed"
    found = await records(upstream, "request", 2)
    assert sorted(r.stream for r in found) == [1, 3]
