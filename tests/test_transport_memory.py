"""The connection handler on memory streams under MockClock: keep-alive, idle close, drain and kill
at exact virtual times, no sockets and no real sleeping. (Their wire behaviour on real sockets:
test_server.py, test_fleet.py.)"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
import trio

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.server.connection import Connection
from chaos_upstream.server.stalls import STALL_CHECKS, cut_stalled
from chaos_upstream.server.transport import Transport
from chaos_upstream.server.upstream import Settings, Upstream

from conftest import CATALOGUE, T, get
from test_server import HEALTHY
from test_wire_timing import IDLE_CLOSE

IDLE = 5.0
"""The idle timeout of the upstreams here (virtual seconds)."""


class MemoryConnection(trio.abc.HalfCloseableStream):
    """The server's end of one connection in memory and its Transport; the test plays the client
    with `send`, `leave` and `until`. A close after `arm_reset` is recorded as a reset, not a FIN."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        """Bytes the client sent that the server has not read."""
        self.left = False
        """The client closed its side."""
        self.outbox = bytearray()
        """Every byte the server sent."""
        self.reading = True
        """The client reads what the server sends; else a send waits until the stream is closed."""
        self.fin = self.closed = self.armed = self.reset = False
        self._changed = trio.lowlevel.ParkingLot()

    # The client's side.

    def send(self, data: bytes) -> None:
        self.inbox += data
        self._changed.unpark_all()

    def leave(self) -> None:
        self.left = True
        self._changed.unpark_all()

    async def until(self, condition: Callable[[], object]) -> None:
        """Wait (parked, so that the MockClock may jump) until `condition()` holds."""
        while not condition():
            await self._changed.park()

    # trio.abc.HalfCloseableStream: the server's side.

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        await self.until(lambda: self.reading or self.closed)
        if self.closed or self.fin:
            raise trio.ClosedResourceError
        self.outbox += data
        self._changed.unpark_all()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        self.fin = True
        self._changed.unpark_all()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.until(lambda: self.inbox or self.left or self.closed)
        if self.closed:
            raise trio.ClosedResourceError
        size = max_bytes or len(self.inbox)
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data

    async def aclose(self) -> None:
        """No checkpoint: the server journals the connection before the client wakes."""
        if not self.closed:
            self.closed, self.reset = True, self.armed
            self.fin = self.fin or not self.armed
            self._changed.unpark_all()

    # Transport.

    async def half_close(self) -> None:
        await self.send_eof()

    async def close(self, close_notify: bool = True) -> None:
        await self.send_eof()
        await self.aclose()

    def peer(self) -> str:
        return "memory:1"

    def pending(self) -> bool:
        return bool(self.inbox) or self.left

    async def wait_readable(self) -> None:
        await self.until(lambda: self.inbox or self.left)

    def arm_reset(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        self.armed = True

    def send_now(self, data: bytes) -> int:
        if not self.reading or self.closed or self.fin:
            return 0
        self.outbox += data
        self._changed.unpark_all()
        return len(data)


def test_a_memory_connection_is_a_transport():
    transport: Transport = MemoryConnection()  # mypy checks the Protocol; this, that the test runs it
    assert not transport.pending()


def upstream(catalogue: Catalogue = CATALOGUE) -> Upstream:
    return Upstream(catalogue, Settings(port=0, timing=Timing(T), idle_timeout=IDLE))


def connect(nursery: trio.Nursery, server: Upstream) -> MemoryConnection:
    connection = MemoryConnection()
    nursery.start_soon(Connection(server, connection, connection).serve)
    return connection


async def served(connection: MemoryConnection, request: bytes, response: bytes) -> None:
    """Send `request` and wait until `response` has come on top of what came before."""
    expected = bytes(connection.outbox) + response
    connection.send(request)
    await connection.until(lambda: len(connection.outbox) >= len(expected))
    assert connection.outbox == expected


async def test_keep_alive_serves_requests_one_after_the_other_on_one_stream(nursery, autojump_clock):
    server = upstream()
    connection = connect(nursery, server)
    await served(connection, get(probe="a"), HEALTHY)
    await trio.sleep(1.0)
    await served(connection, get(probe="b"), HEALTHY)
    connection.leave()
    await connection.until(lambda: connection.closed)
    [record] = server.journal.records(type="connection")
    assert (record.ended, record.requests, record.peer, connection.reset) == ("peer-closed", 2, "memory:1", False)
    first, second = server.journal.records(type="request")
    assert [(r.conn, r.seq, r.probe) for r in (first, second)] == [(1, 1, "a"), (1, 2, "b")]
    assert second.t - first.t == pytest.approx(1.0)


async def test_an_idle_connection_is_closed_at_the_idle_timeout_after_its_last_response(nursery, autojump_clock):
    server = upstream()
    connection = connect(nursery, server)
    await trio.sleep(2.0)  # the timeout runs from the last response, not from the accept
    await served(connection, get(), HEALTHY)
    await connection.until(lambda: connection.closed)
    [record] = server.journal.records(type="connection")
    assert (record.ended, connection.fin, connection.reset) == ("idle-closed", True, False)
    assert record.t_end == pytest.approx(2.0 + IDLE)


async def test_a_scenarios_idle_close_ends_the_connection_after_its_delay(tmp_path, nursery, autojump_clock):
    (tmp_path / "idle-close.yaml").write_text(IDLE_CLOSE)
    server = upstream(Catalogue.load([tmp_path]))
    connection = connect(nursery, server)
    connection.send(get(scenario="idle-close"))
    await connection.until(lambda: connection.closed)
    assert connection.outbox.startswith(b"HTTP/1.1 200 OK\r\n") and connection.fin
    [record] = server.journal.records(type="connection")
    assert (record.ended, record.t_end) == ("idle-closed", pytest.approx(0.5 * T))


async def test_a_drain_closes_an_idle_connection_at_once_and_lets_a_busy_one_finish(nursery, autojump_clock):
    server = upstream()
    idle, busy = connect(nursery, server), connect(nursery, server)
    await served(idle, get(), HEALTHY)
    busy.send(get(scenario="slow-response"))
    with trio.fail_after(1.0):  # the slow response has begun: its request is journaled as running
        while not server.journal.records(type="request", running=True):
            await trio.lowlevel.checkpoint()  # no time passes while the test polls
    drained_at = server.now()
    server.drain()
    await idle.until(lambda: idle.closed)
    assert server.now() == drained_at and idle.outbox == HEALTHY and (idle.fin, idle.reset) == (True, False)
    await busy.until(lambda: busy.closed)
    assert busy.outbox.endswith(b"chaos-upstream: slowpoke\n") and (busy.fin, busy.reset) == (True, False)
    endings = [(r.ended, r.t_end) for r in server.journal.records(type="connection")]  # in the order they ended
    assert endings == [("drained", pytest.approx(drained_at)), ("drained", pytest.approx(drained_at + 0.5 * T))]


async def test_a_drain_serves_a_request_that_has_arrived_but_is_unread(nursery, autojump_clock):
    server = upstream()
    connection = connect(nursery, server)
    await served(connection, get(), HEALTHY)
    connection.send(get(probe="late"))
    server.drain()
    await connection.until(lambda: connection.closed)
    assert connection.outbox == HEALTHY * 2 and connection.fin
    assert [r.probe for r in server.journal.records(type="request")] == [None, "late"]


async def test_a_kill_resets_a_connection_mid_response(nursery, autojump_clock):
    server = upstream()
    connection = connect(nursery, server)
    connection.send(get(scenario="never-respond"))
    await trio.sleep(3.0)
    server.kill()
    await connection.until(lambda: connection.closed)
    assert (connection.outbox, connection.reset, connection.fin) == (b"", True, False)
    [record] = server.journal.records(type="connection")
    assert (record.ended, record.t_end) == ("killed", pytest.approx(3.0))


async def test_a_send_to_a_peer_that_reads_nothing_is_reset_at_the_first_look_past_the_idle_timeout(nursery, autojump_clock):
    server = upstream()
    nursery.start_soon(cut_stalled, server.live, IDLE)
    connection = connect(nursery, server)
    connection.reading = False
    connection.send(get())
    await connection.until(lambda: connection.closed)
    with trio.fail_after(1):  # the server journals the connection once its handler has returned
        while not server.journal.records(type="connection"):
            await trio.sleep(0.001)
    assert (connection.outbox, connection.reset) == (b"", True)
    [request] = server.journal.records(type="request")
    [record] = server.journal.records(type="connection")
    assert (request.ended, record.t_end) == ("peer-stalled", pytest.approx(IDLE * (1 + 1 / STALL_CHECKS)))
