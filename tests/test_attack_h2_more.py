"""A second hostile round on HTTP/2 serving (after test_attack_h2.py), on what came since: backpressure
against peers that never read, hot restarts under a stream of connects, HTTP/1.1 scenarios read as
HTTP/2, and the CLI's `--h2` against combinations it cannot honour.

Real sockets on 127.0.0.1; every wait bounded (trio.fail_after). Four bugs found here, since mended:
the writer's queue grew a frame per stream past its high-water mark against a peer that never reads;
a restart of a stopped member, and a restart meeting another, failed to listen; `matrix --h2` with no
proxy able to speak HTTP/2 ran nothing and exited 0.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from chaos_upstream.cli import main
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan import h2_actions
from chaos_upstream.plan.actions import Close, Hang, KeepAlive, Plan, Send, Wait
from chaos_upstream.plan.h2_translate import NoEquivalent, translate
from chaos_upstream.server.fleet import Member
from chaos_upstream.server.h2_writer import HIGH_WATER, FrameWriter
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from conftest import CATALOGUE, T, get
from h2wire import ended, exchange, on_stream, request
from test_attack_h2 import LIMIT, Headers, opened, records, still_serves, window_update

MAX_FRAME = (1 << 24) - 1
WIDE = 0x7FFFFFFF


def scenario_file(directory: Path, name: str, text: str) -> Catalogue:
    """A catalogue of the default scenarios' directory plus `name` (YAML `text`) in `directory`."""
    (directory / f"{name}.yaml").write_text(f"name: {name}\n" + text)
    return Catalogue.load([directory])


def big_data(directory: Path, length: int) -> Catalogue:
    return scenario_file(directory, "h2-mib", f"""
description: "a 200 with a {length}-byte body in DATA frames"
phase: http2
expect:
  outcomes: [200]
http2:
  - kind: h2-headers
    status: 200
  - kind: h2-data
    length: {length}
    end_stream: true
""")


@pytest.fixture
def writers(monkeypatch) -> list[FrameWriter]:
    """Every FrameWriter made during the test (each HTTP/2 session's one writer)."""
    made: list[FrameWriter] = []
    init = FrameWriter.__init__

    def spy(self: FrameWriter, *args: object) -> None:
        init(self, *args)
        made.append(self)

    monkeypatch.setattr(FrameWriter, "__init__", spy)
    return made


# --- 1. backpressure and stalls ---------------------------------------------------------------------------


async def test_many_streams_of_big_bodies_to_a_peer_that_never_reads_queue_at_most_one_frame_past_high_water(start_upstream, tmp_path, writers):
    """40 streams of 1 MiB each, the peer's windows wide open (2^31-1) and frames allowed 16 MiB, and
    it reads nothing: what the server queues must stay near HIGH_WATER, not a frame per stream."""
    upstream = await start_upstream(big_data(tmp_path, 1 << 20), idle_timeout=1.0)
    hpk = Headers()
    streams = [hpk.frame(2 * i + 1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "u"), ("x-chaos-scenario", "h2-mib")]) for i in range(40)]
    async with await opened(upstream, window_update(0, WIDE - 65535), *streams, initial_window_size=WIDE, max_frame_size=MAX_FRAME) as peer:
        with trio.fail_after(LIMIT):
            got = 0
            while got < (1 << 20) + 4096:  # the first frame and the heads queued with it, then it stops reading
                got += len(await peer.stream.receive_some(65536))
            while len(upstream.journal.records(type="request", running=True)) < 40:
                await trio.sleep(0.01)
            peak = 0
            for _ in range(30):
                peak = max(peak, sum(writer._queued for writer in writers))
                await trio.sleep(0.01)
        assert 0 < peak <= HIGH_WATER + (1 << 20), f"{peak} bytes queued"


async def stalled_peer(upstream: Upstream, streams: int):
    """A peer with its windows wide open that asks `streams` times for `h2-mib` and reads nothing."""
    hpk = Headers()
    return await opened(upstream, window_update(0, WIDE - 65535), *(hpk.frame(2 * i + 1, request("h2-mib")) for i in range(streams)),
                        initial_window_size=WIDE, max_frame_size=MAX_FRAME)


async def test_many_stalled_streams_are_cut_by_the_stall_reaper_each_journaled(start_upstream, tmp_path):
    upstream = await start_upstream(big_data(tmp_path, 4 << 20), idle_timeout=0.4)
    async with await stalled_peer(upstream, 20) as peer:
        with trio.fail_after(LIMIT):
            [connection] = await records(upstream, "connection")
            await peer.until_closed()
    assert connection.ended == "peer-stalled", connection
    found = await records(upstream, "request", 20)
    assert {r.ended for r in found} <= {"peer-stalled"} and sorted(r.stream for r in found) == list(range(1, 40, 2)), found
    await still_serves(upstream)


async def test_a_drain_meeting_a_peer_that_never_reads_ends_within_the_grace_and_journals_it(start_upstream, tmp_path):
    """The stall reaper runs beside the accept loop, which drain() stops: the grace alone bounds
    the connection then; it must end by it, journaled, its streams too."""
    upstream = await start_upstream(big_data(tmp_path, 4 << 20), idle_timeout=10.0, grace=0.5)
    async with await stalled_peer(upstream, 3):
        with trio.fail_after(LIMIT):
            while len(upstream.journal.records(type="request", running=True)) < 3:
                await trio.sleep(0.01)
        began = trio.current_time()
        upstream.drain()
        [connection] = await records(upstream, "connection", limit=2.0)
        took = trio.current_time() - began
    assert took < 0.5 + 0.5, took
    assert connection.ended is not None and connection.protocol == "h2c", connection
    assert len(await records(upstream, "request", 3)) == 3


# --- 2. hot restarts --------------------------------------------------------------------------------------


async def h2_healthy(address: tuple[str, int], probe: str) -> int | None:
    """The status of one h2c request for `healthy` on a new connection (None: refused, reset or unanswered)."""
    try:
        frames = await exchange(address, [request("healthy", probe=probe)], until=ended(1), limit=LIMIT)
    except OSError:
        return None
    heads = [f for f in on_stream(frames, 1) if f.type == "HEADERS"]
    return int(dict(heads[0].fields)[b":status"]) if heads else None


async def http1_healthy(address: tuple[str, int], probe: str) -> bytes:
    try:
        async with await trio.open_tcp_stream(*address) as tcp:
            await tcp.send_all(get("/", "healthy", probe=probe))
            reply = b""
            while b"chaos-upstream: healthy" not in reply and (data := await tcp.receive_some(65536)):
                reply += data
            return reply[:12]
    except OSError as exc:
        return repr(exc).encode()


async def test_connections_during_back_to_back_restarts_are_all_answered(nursery):
    in_flight = "finish"
    """120 connections (h2c and HTTP/1.1, 12 at a time) while the member restarts 10 times back to
    back: none refused or reset, each answered 200, each request journaled once on some incarnation."""
    journal = Journal()
    member = Member(CATALOGUE, Settings(port=0, timing=Timing(T), idle_timeout=1.0), journal, 0)
    [address] = await nursery.start(member.run)
    answers: dict[str, object] = {}
    limiter = trio.Semaphore(12)

    async def one(i: int) -> None:
        async with limiter:
            probe = f"p{i}"
            answers[probe] = await (h2_healthy if i % 2 else http1_healthy)(address, probe)

    with trio.fail_after(10):
        async with trio.open_nursery() as clients:
            for i in range(120):
                clients.start_soon(one, i)
            for _ in range(10):
                await member.restart(in_flight)
                await trio.sleep(0.01)
    bad = {probe: got for probe, got in answers.items() if got not in (200, b"HTTP/1.1 200")}
    assert not bad, bad
    found = [r for r in await records_of(journal, 120) if r.probe]
    extra = Counter(r.probe for r in found) - Counter(list(answers))
    missing = Counter(list(answers)) - Counter(r.probe for r in found)
    assert not extra and not missing, (extra, missing, [r for r in found if r.probe in extra])
    assert {r.ended for r in found} <= {"keep-alive", "end-stream"}, {(r.stream, r.ended) for r in found}


async def records_of(journal: Journal, count: int) -> list:
    with trio.fail_after(LIMIT):
        while len(found := journal.records(type="request")) < count:
            await trio.sleep(0.01)
    return found


async def test_a_restart_of_a_stopped_member_starts_it(nursery):
    member = Member(CATALOGUE, Settings(port=0, timing=Timing(T), idle_timeout=1.0), Journal(), 0)
    [address] = await nursery.start(member.run)
    with trio.fail_after(LIMIT):
        await member.stop("finish")
        assert member.current is not None and not member.listening
        await member.restart("finish")
    assert member.listening
    assert await h2_healthy(address, "after") == 200


async def test_a_restart_during_another_restart_leaves_one_incarnation_accepting(nursery):
    member = Member(CATALOGUE, Settings(port=0, timing=Timing(T), idle_timeout=1.0), Journal(), 0)
    [address] = await nursery.start(member.run)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as both:
            both.start_soon(member.restart, "finish")
            both.start_soon(member.restart, "reset")
    assert member.listening
    assert await h2_healthy(address, "after") == 200
    assert await http1_healthy(address, "after-1") == b"HTTP/1.1 200"


# --- 3. HTTP/1.1 plans read as HTTP/2 ---------------------------------------------------------------------

H = h2_actions


def frames_of(*actions: object, method: str = "GET") -> tuple | str:
    planned = translate(Plan("odd", None, tuple(actions)), method)
    return planned.reason if isinstance(planned, NoEquivalent) else planned.actions


def test_chunked_with_extensions_and_trailers_split_across_sends_and_waits():
    got = frames_of(Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhel"), Wait(0.1),
                    Send(b"lo\r"), Send(b"\n0;last\r\nX-Tr"), Wait(0.2), Send(b"ailer: 1\r\n\r\n"), KeepAlive())
    assert got == (H.Headers(200, ()), H.Data(b"hel"), Wait(0.1), H.Data(b"lo"), Wait(0.2), H.Trailers(((b"x-trailer", b"1"),)))


def test_an_interim_then_a_head_requests_200_ends_with_its_headers():
    got = frames_of(Send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), KeepAlive(), method="HEAD")
    assert got == (H.Headers(100, ()), H.Headers(200, ((b"content-length", b"5"),)), H.Data(b"", end_stream=True))


def test_content_length_0_ends_the_stream_at_once_and_bytes_after_it_are_refused():
    assert frames_of(Send(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"), Close())[-1] == H.Data(b"", end_stream=True)
    assert "after its response's end" in frames_of(Send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nx"), Close())


def test_a_head_dripped_byte_by_byte_is_one_headers_frame_after_the_last_wait():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    dripped = [action for i, byte in enumerate(head) for action in (Send(bytes([byte])), Wait(i / 100))]
    got = frames_of(*dripped, Send(b"ok"), KeepAlive(idle_close=0.5))
    last = len(head) - 1
    assert got == (*(Wait(i / 100) for i in range(last)), H.Headers(200, ((b"content-length", b"2"),)), Wait(last / 100),
                   H.Data(b"ok", end_stream=True))


def test_an_unfinished_body_held_by_keep_alive_with_an_idle_close_holds_its_stream_that_long():
    got = frames_of(Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), KeepAlive(idle_close=0.5))
    assert got == (H.Headers(200, ((b"content-length", b"10"),)), H.Data(b"abc"), Hang(0.5))


ODD = """
description: "a head written in pieces by raw steps, chunked with extensions, trailers split by sleeps"
phase: body
expect:
  outcomes: [200]
steps:
  - kind: raw
    data: "HTTP/1.1 200 OK\\r\\nTransfer-"
  - kind: sleep
    duration: 0.05
  - kind: raw
    data: "Encoding: chunked\\r\\nX-A: b\\r\\n\\r"
  - kind: raw
    data: "\\n3;ext=1\\r\\nabc\\r\\n0\\r\\nX-Trail"
  - kind: sleep
    duration: 0.05
  - kind: raw
    data: "er: yes\\r\\n\\r\\n"
  - kind: keep-alive
    idle_close: 0.1
"""


async def test_an_odd_http1_scenario_is_served_over_h2c_as_the_translation_promises(start_upstream, tmp_path):
    upstream = await start_upstream(scenario_file(tmp_path, "odd-raw", ODD), idle_timeout=1.0)
    frames = await exchange(upstream.addresses[0], [request("odd-raw")], until=ended(1), limit=LIMIT)
    mine = [(f.type, f.fields or f.payload, f.end_stream) for f in on_stream(frames, 1)]
    assert mine == [("HEADERS", ((b":status", b"200"), (b"x-a", b"b")), False), ("DATA", b"abc", False),
                    ("HEADERS", ((b"x-trailer", b"yes"),), True)], mine
    [record] = await records(upstream, "request")
    assert record.ended == "end-stream"
    await still_serves(upstream)


async def test_an_http1_only_scenario_over_h2c_is_a_501_with_the_reason(start_upstream):
    upstream = await start_upstream(idle_timeout=1.0)
    frames = await exchange(upstream.addresses[0], [request("malformed-chunk-size")], until=ended(1), limit=LIMIT)
    heads = [f for f in on_stream(frames, 1) if f.type == "HEADERS"]
    assert dict(heads[0].fields)[b":status"] == b"501"
    assert b"chunked framing is broken" in b"".join(f.payload for f in on_stream(frames, 1) if f.type == "DATA")
    await still_serves(upstream)


# --- 4. the CLI's --h2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("only, says", [
    ("keepalive-close-race", "'keepalive-close-race' has no HTTP/2 equivalent: its fault is HTTP/1.1's own"),
    ("malformed-chunk-size", "'malformed-chunk-size' has no HTTP/2 equivalent: its chunked framing is broken"),
    ("tls-healthy", "'tls-healthy' needs TLS: pass --tls"),
])
@pytest.mark.parametrize("command", [["check", "--proxy", "http://127.0.0.1:9", "--upstream", "127.0.0.1:9"], ["matrix", "--proxies", "nginx"]])
def test_h2_with_a_scenario_it_cannot_run_is_one_line_and_exit_2(capsys, command, only, says):
    assert main([*command, "--h2", "--only", "healthy", "--only", only]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


@pytest.mark.parametrize("extra", [[], ["--tls", "--only", "healthy"]])
def test_matrix_h2_where_no_chosen_proxy_can_is_an_error_not_an_empty_pass(capsys, extra):
    assert main(["matrix", "--h2", "--proxies", "nginx", *extra]) == 2
    assert "HTTP/2" in capsys.readouterr().err
