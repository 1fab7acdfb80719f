"""Reading requests on real sockets: in linear time, refusing what must be refused (smuggling, HTTP
versions past 1.x), selecting by absolute-form targets, and answering Expect: 100-continue."""

from __future__ import annotations

import fcntl
import resource
import socket

import pytest
import trio

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.server.transport import SocketTransport
from chaos_upstream.verifier.capture import capture

from conftest import T, get, settled
from test_server import HEALTHY

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

CHUNKS = 40_000
"""One-byte chunks in the slow body: 240 KB on the wire, which took the old reader ~30 s, and takes
h11 (linear, ~7 us an event) ~0.3 s; the bound below leaves room for a loaded machine."""

READ_BOUND = 1.5
"""Seconds the slow body may take to read: 20 times less than the old reader's."""


def after(size: int):
    """A capture's `done`: true once `size` bytes have come."""
    pieces: list[bytes] = []
    return lambda piece: pieces.append(piece) or sum(map(len, pieces)) >= size


async def test_a_body_of_one_byte_chunks_is_read_in_linear_time_and_stalls_no_one(start_upstream):
    upstream = await start_upstream()
    host, port = upstream.addresses[0]
    head = b"POST /slow HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    slow = head + b"1\r\nx\r\n" * CHUNKS + b"0\r\n\r\n"
    seen = {}

    async def send_slow() -> None:
        seen["slow"] = await capture(host, port, slow, limit=5.0, done=after(len(HEALTHY)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_slow)
        with trio.fail_after(5.0):  # wait until the server is a quarter into the slow body
            while sum(live.wire.bytes_in for live in upstream.live.values()) < len(slow) // 4:  # no public count mid-connection
                await trio.sleep(0.001)
        seen["healthy"] = await capture(host, port, get(), limit=1.0, done=after(len(HEALTHY)))
    assert seen["healthy"].data == HEALTHY and seen["healthy"].elapsed < 0.3
    assert seen["slow"].data == HEALTHY and seen["slow"].elapsed < READ_BOUND
    post = [record for record in await settled(upstream.journal, type="request", count=2) if record.method == "POST"]
    assert [record.body_bytes for record in post] == [CHUNKS]


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: upstream.test\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        b"Content-Length: 4\r\nTransfer-Encoding: Chunked\r\nContent-Length: 4\r\n",
    ],
)
async def test_content_length_with_transfer_encoding_gets_a_400_and_the_smuggled_request_is_never_served(start_upstream, framing):
    upstream = await start_upstream()
    post = b"POST / HTTP/1.1\r\nHost: upstream.test\r\n" + framing + b"\r\n0\r\n\r\n" + SMUGGLED
    seen = await capture(*upstream.addresses[0], post, limit=T)
    assert seen.data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and seen.data.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close\r\n" in seen.data and seen.ending in ("fin", "rst")
    [connection] = await settled(upstream.journal, type="connection", count=1)
    [refused] = upstream.journal.records(type="bad-request")
    assert (connection.ended, refused.status, upstream.journal.records(type="request")) == ("bad-request", 400, [])


BY_PATH = """
name: by-path
description: 204 under /api/, an empty 200 elsewhere
phase: head
expect: {outcomes: [200]}
rules:
  - when: {path: "/api/*"}
    steps: [{kind: status, code: 204}, {kind: headers, fields: []}, {kind: keep-alive}]
steps: [{kind: status, code: 200}, {kind: headers, fields: {Content-Length: "0"}}, {kind: keep-alive}]
"""
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
EMPTY_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("target", "header", "scenario", "chosen_by"),
    [
        ("http://upstream.test/_chaos/upstream-502/some/path?x=1", None, "upstream-502", "path"),
        ("HTTP://Upstream.Test:8080/_chaos/upstream-502/", None, "upstream-502", "path"),
        ("/_chaos/upstream-502/", None, "upstream-502", "path"),
        ("http://upstream.test/_chaos/upstream-502/", "close-before-response", "close-before-response", "header"),
        ("http://upstream.test", None, "healthy", "default"),
    ],
)
async def test_an_absolute_form_target_selects_by_its_path_as_the_origin_form_does(start_upstream, target, header, scenario, chosen_by):
    upstream = await start_upstream()
    await capture(*upstream.addresses[0], get(target, header), limit=T / 2)
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.scenario, record.chosen_by, record.target) == (scenario, chosen_by, target)


async def test_rules_match_the_path_of_an_absolute_form_target(tmp_path, start_upstream):
    (tmp_path / "by-path.yaml").write_text(BY_PATH)
    upstream = await start_upstream(Catalogue.load([tmp_path]))
    requests = get("http://upstream.test/_chaos/by-path/api/x?q=1") + get("http://upstream.test/api/y", "by-path")
    requests += get("http://upstream.test/_chaos/by-path/other") + get("/_chaos/by-path/api/z")
    seen = await capture(*upstream.addresses[0], requests, limit=T)
    assert seen.data == NO_CONTENT + NO_CONTENT + EMPTY_OK + NO_CONTENT


def post_head(scenario: str, *, version: bytes = b"1.1", length: int = 5) -> bytes:
    return (
        b"POST /upload HTTP/" + version + b"\r\nHost: upstream.test\r\nX-Chaos-Scenario: " + scenario.encode()
        + b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % length
    )


async def receive_exactly(stream: trio.SocketStream, size: int, limit: float = T) -> bytes:
    """`size` bytes from `stream`, or fewer if the peer closes or `limit` passes first."""
    data = b""
    with trio.move_on_after(limit):
        while len(data) < size and (piece := await stream.receive_some(size - len(data))):
            data += piece
    return data


INTERIM = (
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nchaos-upstream: interim\n"
)


@pytest.mark.parametrize(("scenario", "response"), [("healthy", HEALTHY), ("interim-then-final", INTERIM)])
async def test_a_client_that_waits_for_100_continue_gets_it_then_the_response(start_upstream, scenario, response):
    upstream = await start_upstream()
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        await stream.send_all(post_head(scenario))
        assert await receive_exactly(stream, len(CONTINUE) + 1) == CONTINUE  # one more byte would be one too many
        await stream.send_all(b"hello")
        assert await receive_exactly(stream, len(response)) == response
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.continue_, record.body_bytes, record.ended) == ("sent", 5, "keep-alive")


async def test_no_100_continue_when_the_body_came_with_the_head_or_there_is_none_or_in_http10(start_upstream):
    upstream = await start_upstream()
    host, port = upstream.addresses[0]
    whole = await capture(host, port, post_head("healthy") + b"hello", limit=T / 2)
    empty = await capture(host, port, post_head("healthy", length=0), limit=T / 2)
    async with await trio.open_tcp_stream(host, port) as stream:
        await stream.send_all(post_head("healthy", version=b"1.0"))
        assert await receive_exactly(stream, 1, limit=T / 2) == b""
        await stream.send_all(b"hello")
        http10 = await receive_exactly(stream, len(HEALTHY) + 1)
    assert (whole.data, empty.data, http10) == (HEALTHY, HEALTHY, HEALTHY)
    records = await settled(upstream.journal, type="request", count=3)
    assert [(record.continue_ is not None, record.body_bytes) for record in records] == [(False, 5), (False, 0), (False, 5)]


WITHHOLD = """
name: expectation-failed
description: answers 417 to a client that waits for 100 Continue, without reading its body
phase: head
on_expect: withhold
expect: {outcomes: [417]}
steps: [{kind: status, code: 417}, {kind: headers, fields: {Content-Length: "0"}}, {kind: keep-alive}]
"""


async def test_a_scenario_that_withholds_100_continue_answers_first_and_closes(tmp_path, start_upstream):
    (tmp_path / "withhold.yaml").write_text(WITHHOLD)
    upstream = await start_upstream(Catalogue.load([tmp_path]))
    seen = await capture(*upstream.addresses[0], post_head("expectation-failed"), limit=T)
    assert (seen.data, seen.ending) == (b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n", "fin")
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.continue_, record.body_bytes, record.ended) == ("withheld", 0, "closed")


@pytest.mark.parametrize(
    "request_line", [b"GET / HTTP/2.0", b"GET / HTTP/3.0", b"GET / HTTP/0.9", b"PRI * HTTP/2.0"]
)
async def test_an_http_major_version_other_than_1_gets_a_505_and_a_close(start_upstream, request_line):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], request_line + b"\r\nHost: upstream.test\r\n\r\n", limit=T)
    assert seen.data.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"Connection: close\r\n" in seen.data and seen.ending in ("fin", "rst")
    [record] = await settled(upstream.journal, type="bad-request", count=1)
    assert record.status == 505 and upstream.journal.records(type="request") == []


async def test_a_higher_http_1_minor_version_is_served_as_http11(start_upstream):
    upstream = await start_upstream()
    request = b"GET / HTTP/1.2\r\nHost: upstream.test\r\n\r\n"
    seen = await capture(*upstream.addresses[0], request * 2, limit=T)
    assert (seen.data, seen.ending) == (HEALTHY * 2, "timeout")


def high_fd(sock: socket.socket, floor: int) -> socket.socket:
    """A duplicate of `sock` whose file descriptor is `floor` or above."""
    return socket.socket(fileno=fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor))


@pytest.fixture
def fds_past_select():
    """Room for file descriptors past select()'s 1023 (the soft limit raised within the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard limit on open files ({hard}) leaves no room past fd 1023")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    yield 1500
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_pending_sees_waiting_bytes_on_a_socket_past_fd_1023(fds_past_select):
    pairs = [socket.socketpair() for _ in range(2)]
    highs = [high_fd(server, fds_past_select) for _, server in pairs]
    try:
        pairs[0][0].send(b"GET")
        waiting, quiet = (trio.SocketStream(trio.socket.from_stdlib_socket(sock)) for sock in highs)
        assert min(sock.fileno() for sock in highs) >= fds_past_select
        assert (SocketTransport(waiting).pending(), SocketTransport(quiet).pending()) == (True, False)
    finally:
        for sock in [*highs, *(end for pair in pairs for end in pair)]:
            sock.close()
