"""Serving HTTP/2 on real sockets: h2c on the port that serves HTTP/1.1, every HTTP/2 scenario's frames
as a raw client reads them, the journal's per-stream and connection records, drains, and the
command-line clients of the issue (curl --http2-prior-knowledge, nghttp)."""

from __future__ import annotations

import datetime
import os
import random
import shutil
import ssl
import subprocess

import h2.config
import h2.connection
import pytest
import trio

from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import generate

from chaos_upstream.model.durations import Timing

from conftest import CATALOGUE, T, get, settled
from h2wire import Reader, ended, exchange, on_stream, request

LIMIT = 3.0


async def frames_of(upstream, scenario: str, **options):
    return await exchange(upstream.addresses[0], [request(scenario, **options)], until=ended(1))


async def test_one_port_serves_http11_and_h2c(start_upstream):
    upstream = await start_upstream()
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        await stream.send_all(get())
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 OK\r\n")
    frames = on_stream(await frames_of(upstream, "healthy"))
    assert [(f.type, f.end_stream) for f in frames] == [("HEADERS", False), ("DATA", True)]
    assert frames[0].fields[0] == (b":status", b"200") and frames[1].payload == b"chaos-upstream: healthy\n"
    http11, http2 = await settled(upstream.journal, type="connection", count=2)
    assert (http11.protocol, http2.protocol) == (None, "h2c")
    assert [r.stream for r in upstream.journal.records(type="request")] == [None, 1]


@pytest.mark.parametrize(("scenario", "expected"), [
    ("h2-rst-before-headers", [("RST_STREAM", "INTERNAL_ERROR")]),
    ("h2-refused-stream", [("RST_STREAM", "REFUSED_STREAM")]),
    ("h2-rst-mid-body", [("HEADERS", None), ("DATA", None), ("RST_STREAM", "INTERNAL_ERROR")]),
    ("h2-rst-after-complete", [("HEADERS", None), ("DATA", "END_STREAM"), ("RST_STREAM", "NO_ERROR")]),
    ("h2-content-length-mismatch", [("HEADERS", None), ("DATA", "END_STREAM")]),
    ("h2-trailers", [("HEADERS", None), ("DATA", None), ("HEADERS", "END_STREAM")]),
    ("truncated-content-length", [("HEADERS", None), ("DATA", None), ("RST_STREAM", "INTERNAL_ERROR")]),
])
async def test_each_scenario_sends_the_frames_it_promises_on_its_stream(start_upstream, scenario, expected):
    upstream = await start_upstream()
    frames = await exchange(upstream.addresses[0], [request(scenario)], until=lambda fs: any(f.type == "RST_STREAM" for f in fs), limit=0.5)
    seen = [(f.type, f.code if f.type == "RST_STREAM" else "END_STREAM" if f.end_stream else None) for f in on_stream(frames)]
    assert seen == expected
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.stream, record.scenario) == (1, scenario)


async def test_field_names_a_scenario_breaks_go_out_as_written(start_upstream):
    upstream = await start_upstream()
    upper = on_stream(await frames_of(upstream, "h2-uppercase-header"))[0].fields
    connection = on_stream(await frames_of(upstream, "h2-connection-header"))[0].fields
    assert (b"X-Chaos-Upper", b"1") in upper and (b"connection", b"keep-alive") in connection


async def test_goaways_and_a_frame_on_stream_0(start_upstream):
    upstream = await start_upstream()
    graceful = await exchange(upstream.addresses[0], [request("h2-goaway-graceful", probe="p1")], limit=LIMIT)
    [goaway] = [f for f in graceful if f.type == "GOAWAY"]
    assert (goaway.code, goaway.last_stream, on_stream(graceful)) == ("NO_ERROR", 0, [])
    retry = on_stream(await exchange(upstream.addresses[0], [request("h2-goaway-graceful", probe="p1")], until=ended(1)))
    assert retry[0].fields[0] == (b":status", b"200")  # the probe's second attempt
    mid = await exchange(upstream.addresses[0], [request("h2-goaway-mid-stream")], limit=LIMIT)
    assert [(f.type, f.code if f.type == "GOAWAY" else f.stream) for f in mid if f.type in ("DATA", "GOAWAY")] == [("DATA", 1), ("GOAWAY", "INTERNAL_ERROR")]
    zero = await exchange(upstream.addresses[0], [request("h2-protocol-error")], until=lambda fs: any(f.type == "DATA" for f in fs))
    assert [(f.stream, f.payload) for f in zero if f.type == "DATA"] == [(0, b"chaos")]
    records = {r.scenario: r for r in await settled(upstream.journal, type="request", count=4)}
    assert records["h2-goaway-mid-stream"].ended == "closed"
    connections = await settled(upstream.journal, type="connection", count=3)
    assert [c.goaway for c in connections[:1] + connections[2:3]] == ["NO_ERROR last-stream 0", "INTERNAL_ERROR last-stream 1"]


async def test_a_stalled_window_never_lets_the_body_all_come_and_the_record_says_so(start_upstream):
    upstream = await start_upstream()
    body = b"." * 100_000
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, request("h2-window-stall", method="POST"))
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        sent = 0
        with trio.move_on_after(0.5):
            while True:
                client.send_data(1, body[sent : sent + (room := min(16384, client.local_flow_control_window(1)))])
                sent += room
                await stream.send_all(client.data_to_send())
                for event in client.receive_data(await stream.receive_some(65536)):
                    pass
        assert sent == 65535  # the initial window, never opened again
        client.reset_stream(1, 8)
        await stream.send_all(client.data_to_send())
        [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.body_bytes, record.actions, record.ended) == (65535, (), "peer-rst-stream CANCEL")


async def test_a_scenario_without_an_http2_equivalent_says_so_and_an_http2_one_refuses_http11(start_upstream):
    upstream = await start_upstream()
    frames = on_stream(await frames_of(upstream, "malformed-chunk-size"))
    assert frames[0].fields[0] == (b":status", b"501")
    assert b"has no HTTP/2 equivalent: its chunked framing is broken" in frames[1].payload
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        await stream.send_all(get(scenario="h2-rst-before-headers"))
        answer = await stream.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n") and b"is HTTP/2 only" in answer
    unknown = on_stream(await frames_of(upstream, "no-such-scenario"))
    assert unknown[0].fields[0] == (b":status", b"404")
    records = await settled(upstream.journal, type="request", count=3)
    assert [(r.status, r.scenario) for r in records] == [(501, "malformed-chunk-size"), (505, "h2-rst-before-headers"), (404, None)]


async def test_streams_of_one_connection_are_served_side_by_side(start_upstream):
    upstream = await start_upstream()
    frames = await exchange(upstream.addresses[0], [request("slow-response"), request("healthy"), request("h2-rst-before-headers")],
                            until=lambda fs: sum(f.end_stream or f.type == "RST_STREAM" for f in fs) == 3)
    finished = [f.stream for f in frames if f.end_stream or f.type == "RST_STREAM"]
    assert finished[-1] == 1 and sorted(finished) == [1, 3, 5]  # the slow one last, the others not held behind it
    records = await settled(upstream.journal, type="request", count=3)
    assert {(r.seq, r.stream) for r in records} == {(1, 1), (2, 3), (3, 5)} and len({r.conn for r in records}) == 1


async def test_a_drain_sends_two_goaways_lets_the_stream_finish_then_closes(start_upstream):
    upstream = await start_upstream()
    async with trio.open_nursery() as nursery:
        frames: list = []

        async def client():
            frames.extend(await exchange(upstream.addresses[0], [request("slow-response")], limit=LIMIT))

        nursery.start_soon(client)
        with trio.fail_after(LIMIT):  # the stream's plan runs: its record is journaled as running
            while not upstream.journal.records(type="request", running=True):
                await trio.sleep(0.005)
        upstream.drain()
    goaways = [f.last_stream for f in frames if f.type == "GOAWAY"]
    assert goaways == [0x7FFFFFFF, 1] and any(f.end_stream for f in on_stream(frames))
    [record] = await settled(upstream.journal, type="connection", count=1)
    assert (record.ended, record.goaway) == ("drained", "NO_ERROR last-stream 1")


async def test_h2_over_tls_by_alpn(start_upstream):
    material = generate(["localhost"], now=datetime.datetime.now(datetime.timezone.utc))
    upstream = await start_upstream(tls=Contexts(material))
    context = ssl.create_default_context(cadata=material.ca_pem.decode())
    context.set_alpn_protocols(["h2", "http/1.1"])
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, request("healthy"), end_stream=True)
    stream = trio.SSLStream(await trio.open_tcp_stream(*upstream.addresses[0]), context, server_hostname="localhost")
    events = []
    with trio.fail_after(LIMIT):
        await stream.send_all(client.data_to_send())
        while not any(type(event).__name__ == "StreamEnded" for event in events):
            events += client.receive_data(await stream.receive_some(65536))
        await stream.aclose()
    assert stream.selected_alpn_protocol() == "h2"
    [record] = await settled(upstream.journal, type="connection", count=1)
    assert (record.protocol, record.alpn) == ("h2", "h2")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=10)


async def test_curl_with_prior_knowledge_and_nghttp_see_what_is_promised(start_upstream):
    if shutil.which("nghttp") is None:
        missing = "nghttp (Debian's nghttp2-client) is not installed: make test installs it as root"
        if os.environ.get("CHAOS_UPSTREAM_REQUIRE_PROXIES"):
            pytest.fail(missing)
        pytest.skip(missing)
    upstream = await start_upstream()
    url = "http://%s:%d/" % upstream.addresses[0]
    curl = await trio.to_thread.run_sync(run, "curl", "-s", "--http2-prior-knowledge", "-w", " %{http_version}", url)
    assert curl.stdout == "chaos-upstream: healthy\n 2"
    refused = await trio.to_thread.run_sync(run, "nghttp", "-nv", "-H", "x-chaos-scenario: h2-refused-stream", url)
    assert "recv RST_STREAM frame" in refused.stdout and "error_code=REFUSED_STREAM(0x07)" in refused.stdout
    goaway = await trio.to_thread.run_sync(run, "nghttp", "-nv", "-H", "x-chaos-scenario: h2-goaway-graceful", url)
    assert "recv GOAWAY frame" in goaway.stdout and "error_code=NO_ERROR(0x00)" in goaway.stdout


async def test_a_stream_gets_its_scenario_by_path_and_by_the_active_one_as_a_request_does(start_upstream):
    upstream = await start_upstream()
    by_path = await exchange(upstream.addresses[0], [request(path="/_chaos/h2-rst-before-headers/x")], until=ended(1))
    assert [(f.type, f.code) for f in on_stream(by_path)] == [("RST_STREAM", "INTERNAL_ERROR")]
    upstream.active = "h2-refused-stream"
    active = await exchange(upstream.addresses[0], [request()], until=ended(1))
    assert [(f.type, f.code) for f in on_stream(active)] == [("RST_STREAM", "REFUSED_STREAM")]
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        await stream.send_all(get())
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 505 ")  # the active HTTP/2 scenario, asked over HTTP/1.1
    records = await settled(upstream.journal, type="request", count=3)
    assert [(r.chosen_by, r.target) for r in records] == [("path", "/_chaos/h2-rst-before-headers/x"), ("active", "/"), ("active", "/")]


async def test_sigterm_sends_http2_its_graceful_goaways_and_lets_the_stream_finish():
    from test_cli import Server

    server = Server("--proxy-timeout", "1")  # slow-response answers after 0.5 s
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, request("slow-response"), end_stream=True)
    frames, reader, codes = [], Reader(), []

    async def stop() -> None:
        codes.append(await trio.to_thread.run_sync(server.stop))

    with trio.fail_after(LIMIT):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream, trio.open_nursery() as nursery:
            await stream.send_all(client.data_to_send())
            while data := await stream.receive_some(65536):
                frames += (more := reader.feed(data))
                if any(f.type == "SETTINGS" and f.flags & 1 for f in more):  # its ACK: our request has been read
                    nursery.start_soon(stop)
    assert codes == [0]
    assert [f.last_stream for f in frames if f.type == "GOAWAY"] == [0x7FFFFFFF, 1]
    assert on_stream(frames)[-1].end_stream and on_stream(frames)[-1].payload == b"chaos-upstream: slowpoke\n"


async def test_every_scenario_of_http11_with_an_http2_form_sends_it_on_the_wire(start_upstream):
    """Each request-level HTTP/1.1 scenario over h2c: the status, the body and the ending its
    translated plan promises (END_STREAM, RST_STREAM, or a stream held open), side by side."""
    from chaos_upstream.plan.h2_actions import RstStream
    from chaos_upstream.plan.h2_planner import no_equivalent, plan_h2
    from chaos_upstream.plan.request import RequestInfo

    upstream = await start_upstream()
    names = [s.name for s in CATALOGUE if s.trigger == "request" and not s.timeline and not s.http2 and s.tls in (None, "valid")
             and not s.rules and no_equivalent(s) is None]
    seen: dict[str, list] = {}

    async def one(name: str) -> None:
        seen[name] = on_stream(await exchange(upstream.addresses[0], [request(name)], until=ended(1), limit=1.2))

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    assert len(names) >= 20
    for name in names:
        plan = plan_h2(CATALOGUE.get(name), RequestInfo("GET", "/"), random.Random(0), Timing(T), CATALOGUE.get)
        frames, response = seen[name], plan.response
        finals = [f for f in frames if f.type == "HEADERS" and f.fields and int(f.fields[0][1]) >= 200]
        assert (int(finals[0].fields[0][1]) if finals else None) == response.status, name
        assert sum(len(f.payload) for f in frames if f.type == "DATA") == response.body_bytes, name
        ending = "reset" if any(f.type == "RST_STREAM" for f in frames) else "end" if any(f.end_stream for f in frames) else "held"
        expected = "reset" if isinstance(plan.actions[-1], RstStream) else "end" if response.last_chunk else "held"
        assert ending == expected, name


@pytest.mark.parametrize("checkpoints", range(8))
async def test_a_drain_that_meets_an_http2_session_as_it_ends_is_nothing_to_it(start_upstream, checkpoints):
    """SIGTERM while a peer's close is ending its session (found by benchmarks/held_memory.py: the
    drain tried to start its GOAWAYs in the session's nursery, closed a moment before)."""
    upstream = await start_upstream()
    await exchange(upstream.addresses[0], [request("healthy")], until=ended(1))  # served; the client has closed
    for _ in range(checkpoints):
        await trio.lowlevel.checkpoint()
    upstream.drain()
    [record] = await settled(upstream.journal, type="connection", count=1)
    assert record.protocol == "h2c" and record.ended in ("peer-closed", "drained")
