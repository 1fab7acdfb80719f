"""The server on real sockets: keep-alive, pipelining, selection, bad requests, and the journal."""

import random

import pytest

from chaos_upstream.plan.selection import Mix
from chaos_upstream.records import to_json
from chaos_upstream.verifier.capture import capture

from conftest import T, get, settled

HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nchaos-upstream: healthy\n"


async def test_keep_alive_serves_pipelined_requests_in_order(start_upstream):
    upstream = await start_upstream()
    request = get(probe="a") + get(scenario="upstream-502", probe="b") + get(probe="c")
    seen = await capture(*upstream.addresses[0], request, limit=T)
    assert seen.ending == "timeout"
    assert seen.data.count(b"HTTP/1.1 200 OK") == 2 and seen.data.count(b"HTTP/1.1 502 Bad Gateway") == 1
    records = await settled(upstream.journal, type="request", count=3)
    assert [(r.probe, r.conn, r.seq) for r in records] == [("a", 1, 1), ("b", 1, 2), ("c", 1, 3)]


async def test_a_fault_ends_the_connection_and_later_pipelined_requests_go_unanswered(start_upstream):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], get(scenario="truncated-chunked") + get(), limit=T)
    assert seen.ending in ("fin", "rst") and b"HTTP/1.1 200 OK" in seen.data
    assert len(upstream.journal.records(type="request")) == 1


@pytest.mark.parametrize(
    ("path", "header", "scenario", "chosen_by"),
    [
        ("/", None, "healthy", "default"),
        ("/_chaos/upstream-502/some/path?x=1", None, "upstream-502", "path"),
        ("/_chaos/upstream-502/", "close-before-response", "close-before-response", "header"),
    ],
)
async def test_scenario_selection_header_then_path_then_default(start_upstream, path, header, scenario, chosen_by):
    upstream = await start_upstream()
    await capture(*upstream.addresses[0], get(path, header), limit=T / 2)
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.scenario, record.chosen_by, record.target) == (scenario, chosen_by, path)


async def test_the_active_scenario_overrides_the_default(start_upstream):
    upstream = await start_upstream(default="upstream-502")
    upstream.active = "close-before-response"
    seen = await capture(*upstream.addresses[0], get(), limit=T)
    assert (seen.data, seen.ending) == (b"", "fin")


async def test_the_mix_is_seeded_and_the_same_seed_gives_the_same_sequence(start_upstream):
    mix = Mix.parse("healthy=1,upstream-502=1,close-before-response=1")
    sequences = []
    for _ in range(2):
        upstream = await start_upstream(mix=mix, seed=42)
        for _ in range(12):
            await capture(*upstream.addresses[0], get(), limit=T / 4)
        records = await settled(upstream.journal, type="request", count=12)
        sequences.append([r.scenario for r in records])
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {"healthy", "upstream-502", "close-before-response"}
    rng = random.Random(42)
    assert sequences[0][0] == mix.pick(rng)


async def test_an_unknown_scenario_gets_a_404_that_says_so(start_upstream):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], get(scenario="no-such-thing"), limit=T)
    assert seen.data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert seen.data.endswith(b"chaos-upstream: no scenario named 'no-such-thing'\n")
    assert seen.ending == "fin"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    ],
)
async def test_garbage_requests_get_a_4xx_and_a_close_and_the_server_goes_on(start_upstream, request_bytes, status):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], request_bytes, limit=T)
    assert seen.data.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close\r\n" in seen.data and seen.ending in ("fin", "rst")
    [record] = await settled(upstream.journal, type="bad-request", count=1)
    assert record.status == int(status)
    after = await capture(*upstream.addresses[0], get(), limit=T / 2)
    assert after.data == HEALTHY


async def test_a_peer_that_leaves_mid_request_is_journaled_not_answered(start_upstream):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], b"GET / HTTP/1.1\r\nHost: x\r\n", limit=T / 4)
    assert seen.data == b""
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.ended == "peer-closed" and connection.requests == 0
    assert connection.bytes_in == 25


async def test_request_bodies_are_read_and_recorded_when_the_scenario_asks(tmp_path, start_upstream):
    from chaos_upstream.model.catalogue import Catalogue

    (tmp_path / "echo.yaml").write_text(
        "name: recorder\ndescription: r\nphase: head\nexpect: {outcomes: [204]}\nrequest_body: record\n"
        "steps: [{kind: status, code: 204}, {kind: headers, fields: []}, {kind: keep-alive}]\n"
    )
    upstream = await start_upstream(Catalogue.load([tmp_path]))
    body = b"name=chaos&x=1"
    post = (
        b"POST /form HTTP/1.1\r\nHost: x\r\nX-Chaos-Scenario: recorder\r\nContent-Length: 14\r\n\r\n" + body + get()
    )
    seen = await capture(*upstream.addresses[0], post, limit=T)
    assert seen.data == b"HTTP/1.1 204 No Content\r\n\r\n" + HEALTHY
    post_record, get_record = await settled(upstream.journal, type="request", count=2)
    assert (post_record.body_bytes, post_record.body) == (14, "name=chaos&x=1")
    assert get_record.body is None


async def test_http10_requests_are_closed_after_the_response(start_upstream):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], b"GET / HTTP/1.0\r\n\r\n", limit=T)
    assert (seen.data, seen.ending) == (HEALTHY, "fin")


async def test_the_journal_records_what_went_on_the_wire(start_upstream):
    upstream = await start_upstream()
    await capture(*upstream.addresses[0], get(scenario="stall-mid-body", probe="p-1"), limit=3 * T)
    [request] = await settled(upstream.journal, type="request", count=1)
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert request.probe == "p-1" and request.scenario == "stall-mid-body"
    assert [a.do for a in request.actions] == ["send", "wait", "close"]
    assert request.actions[0].bytes == 83 + 1000
    assert request.actions[2].t - request.t == pytest.approx(4 * T, abs=0.05)
    assert to_json(request)["response"] == {
        "status": 200,
        "content_length": 100000,
        "chunked": False,
        "last_chunk": False,
        "head_complete": True,
        "body_bytes": 1000,
    }
    assert (request.ended, connection.ended) == ("closed", "closed")
    assert connection.bytes_out == 1083 and connection.requests == 1
    assert upstream.journal.records(probe="p-1") == [request]


ACCEPT_RESET = """
name: accept-then-reset-now
description: resets every connection as soon as it is accepted
phase: connection
trigger: accept
expect: {outcomes: [502]}
steps: [{kind: reset}]
"""


async def test_an_accept_triggered_default_acts_before_reading_a_byte(tmp_path, start_upstream):
    from chaos_upstream.model.catalogue import Catalogue

    (tmp_path / "accept.yaml").write_text(ACCEPT_RESET)
    upstream = await start_upstream(Catalogue.load([tmp_path]), default="accept-then-reset-now")
    seen = await capture(*upstream.addresses[0], b"", limit=T)
    assert (seen.data, seen.ending) == (b"", "rst")
    [accept] = await settled(upstream.journal, type="accept", count=1)
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert (accept.scenario, accept.ended, connection.ended) == ("accept-then-reset-now", "reset", "accept-fault")
    assert connection.bytes_in == 0 and connection.requests == 0


@pytest.mark.parametrize(
    ("scenario", "ending"), [("accept-then-close", "fin"), ("accept-then-reset", "rst"), ("accept-then-hang", "timeout")]
)
async def test_the_builtin_accept_faults_act_on_a_connection_that_sent_a_request(start_upstream, scenario, ending):
    upstream = await start_upstream(default=scenario)
    seen = await capture(*upstream.addresses[0], get(), limit=T)
    assert (seen.data, seen.ending) == (b"", ending)


async def test_connection_refused_binds_the_port_and_listens_on_nothing(start_upstream):
    import trio

    upstream = await start_upstream(default="connection-refused")
    [(host, port)] = upstream.addresses
    assert port != 0
    with trio.socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        await sock.connect((host, port))
    upstream.stop()
    assert upstream.journal.records() == []


@pytest.mark.realtime
async def test_an_idle_close_ends_a_kept_alive_connection_after_its_delay(tmp_path, start_upstream):
    from chaos_upstream.model.catalogue import Catalogue

    from test_wire_timing import IDLE_CLOSE

    (tmp_path / "idle-close.yaml").write_text(IDLE_CLOSE)
    upstream = await start_upstream(Catalogue.load([tmp_path]))
    seen = await capture(*upstream.addresses[0], get(scenario="idle-close"), limit=2 * T)
    assert seen.ending == "fin" and seen.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert 0.5 * T <= seen.elapsed <= T
