"""Hostile use of the data port, the admin API and the supervisor's pipes to its workers, found by an
attack on the running server: each test is a way in that once broke it."""

from __future__ import annotations

import contextlib
import json
import socket
from functools import partial
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from chaos_upstream.server import workers
from chaos_upstream.server.journal import FIELD_LIMIT, Journal
from chaos_upstream.server.workers import Lines, Worker

from conftest import get, request_record, settled
from test_admin_hostile import served  # noqa: F401  (a fixture)


def test_running_records_in_a_page_are_capped_and_kept_within_its_limit_and_budget():
    journal = Journal()
    journal.write(request_record(0, "/done", probe="p"))
    for n in range(50):  # requests held open (never-respond) with the longest target a head allows
        journal.begin(n, partial(request_record, n, "/" + "a" * 60_000, probe="p", ended=None, running=True))
    page = journal.page(running=True, limit=10, budget=3 * FIELD_LIMIT)
    assert len(page.texts) == 1 and 1 <= len(page.running) <= 4  # ~2.1 KB each, capped: the budget stops them
    assert all(len(record["target"]) < FIELD_LIMIT + 40 and record["running"] for record in page.running)
    assert len(journal.page(running=True, limit=3).running) == 2
    assert len(journal.records(probe="p", running=True)) == 51  # unbounded when asked so, in process


async def test_a_line_over_the_limit_is_read_through_so_the_next_line_comes_whole(monkeypatch):
    monkeypatch.setattr(workers, "LINE_LIMIT", 100)
    send, receive = trio.testing.memory_stream_one_way_pair()
    lines = Lines(receive)
    await send.send_all(b'{"long": "' + b"x" * 500 + b'"}\n{"next": 1}\n')
    with pytest.raises(ValueError, match="over the limit"):
        await lines.next()
    assert await lines.next() == b'{"next": 1}'


class _Worker:
    """A worker process's end of its channel: answers each command line with its ordinal, once `go` is set."""

    def __init__(self) -> None:
        self.channel, self.end = trio.testing.memory_stream_pair()
        self.go = trio.Event()

    async def obey(self) -> None:
        lines, count = Lines(self.end), 0
        while await lines.next() is not None:
            await self.go.wait()
            count += 1
            await self.end.send_all(json.dumps({"answer": count}).encode() + b"\n")


async def test_an_ask_cancelled_before_its_answer_leaves_every_later_answer_to_its_own_command(nursery):
    """The supervisor cancels every worker's ask when one fails: the answers those asks leave
    unread must not be taken for the answers to the next commands."""
    fake = _Worker()
    nursery.start_soon(fake.obey)
    worker = Worker(SimpleNamespace(), fake.channel)  # type: ignore[arg-type]
    with trio.move_on_after(0.05):
        await worker.ask({"op": "stats"})
    fake.go.set()
    assert await worker.ask({"op": "stats"}) == {"answer": 2}
    assert await worker.ask({"op": "stats"}) == {"answer": 3}


async def test_a_client_that_never_reads_is_cut_after_the_idle_timeout_like_one_that_never_writes(start_upstream):
    """Pipelined requests whose responses are never read fill both socket buffers: the upstream's
    send then waits. It waits no longer than the idle timeout, so such a client cannot hold a
    connection (and its descriptor) for ever."""
    upstream = await start_upstream(idle_timeout=0.3)
    with trio.socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(upstream.addresses[0])
        flood = get() * 20_000  # ~0.7 MB of requests, ~4 MB of responses: more than the buffers hold
        with trio.move_on_after(3.0), contextlib.suppress(OSError):  # the upstream may reset it mid-flood
            while flood:
                flood = flood[await sock.send(flood[:65536]) :]
        [connection] = await settled(upstream.journal, type="connection", count=1, limit=2.0)
    assert connection.ended == "peer-stalled"
    assert upstream.journal.records(type="request")[-1].ended == "peer-stalled"


async def admin_exchange(address, head: bytes, body: bytes = b"") -> bytes:
    """What the admin API at `address` sends back to `head`, then (after its first reply bytes) `body`."""
    with trio.socket.socket() as sock:
        await sock.connect(address)
        await sock.send(head)
        data = b""
        with trio.move_on_after(1.0):
            while not data.endswith(b"\r\n\r\n") or data.startswith(b"HTTP/1.1 100 ") and body:
                if data.startswith(b"HTTP/1.1 100 ") and data.endswith(b"\r\n\r\n"):
                    await sock.send(body)
                    body, data = b"", b""
                if not (piece := await sock.recv(65536)):
                    break
                data += piece
        return data


def put_active(target: str, host: str, extra: str = "") -> bytes:
    body = '{"scenario": "upstream-502"}'
    return (f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        ("http://evil.example/active", "127.0.0.1", 403),  # the target's authority stands for Host
        ("http://127.0.0.1@evil.example/active", "127.0.0.1", 403),
        ("//evil.example/active", "127.0.0.1", 404),  # origin-form: a path, not a name
        ("/active", "[::1]evil.example", 403),  # not a Host value: refused, not read as [::1]
        ("/active", "127.0.0.1:evil.example", 403),
        ("/active", "localhost:80:evil.example", 403),
        ("http://localhost/active", "127.0.0.1", 200),
        ("/active", "LOCALHOST:8080", 200),
    ],
)
async def test_the_admin_api_takes_its_host_from_an_absolute_target_and_only_well_formed_host_values(
    served, target, host, status
):
    fleet, start = served
    address = await start()
    reply = await admin_exchange(address, put_active(target, host))
    assert reply.startswith(f"HTTP/1.1 {status} ".encode())
    assert fleet.members[0].active == ("upstream-502" if status == 200 else None)


async def test_the_admin_api_answers_expect_100_continue_before_the_body(served):
    _, start = served
    address = await start()
    head, _, body = put_active("/active", "127.0.0.1", "Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    assert (await admin_exchange(address, head + b"\r\n\r\n", body)).startswith(b"HTTP/1.1 200 ")
