"""Plan execution timing under trio's MockClock: exact virtual times, no real sleeping, no sockets."""

import contextlib

import pytest
import trio
import trio.testing

from chaos_upstream.model.loading import parse
from chaos_upstream.plan.actions import Close, Hang, KeepAlive, Plan, Send, Wait
from chaos_upstream.records import ActionRecord
from chaos_upstream.server.wire import Execution, Wire, execute

from conftest import CATALOGUE
from test_planner import plan_for


class StreamOnly:
    """The Transport of a bare memory stream (given once the stream is: `stream`): readable whenever
    asked (its read then waits), a reset that is only a close, and no send but the stream's."""

    stream: trio.abc.HalfCloseableStream

    async def half_close(self) -> None:
        await self.stream.send_eof()

    async def close(self, close_notify: bool = True) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_eof()
        await self.stream.aclose()

    async def wait_readable(self) -> None:
        await trio.lowlevel.checkpoint()

    def arm_reset(self) -> None:
        pass

    def send_now(self, data: bytes) -> int:
        return 0


class TakesSome(StreamOnly):
    """A Transport whose send_now takes the first `some` bytes of a send, as a socket whose buffer
    is nearly full does: on a memory stream, they are held until the stream's send delivers the rest."""

    def __init__(self, some: int) -> None:
        self.some, self.taken = some, b""

    def send_now(self, data: bytes) -> int:
        self.taken += data[: self.some]
        return min(self.some, len(data))


async def run_and_watch(plan: Plan, client_sends: bytes = b"", client_closes_after: float | None = None, transport=None):
    """Execute `plan` on one end of a memory stream; return (virtual arrival times and bytes, execution)."""
    server, client = trio.testing.memory_stream_pair()
    transport = transport or StreamOnly()
    transport.stream = server
    wire = Wire(server, transport)
    arrivals = []
    origin = trio.current_time()

    async def watch():
        try:
            while data := await client.receive_some(65536):
                arrivals.append((round(trio.current_time() - origin, 9), data))
        except trio.ClosedResourceError:  # the client itself left (client_closes_after)
            pass

    async def leave():
        await trio.sleep(client_closes_after)
        await client.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        if client_closes_after is not None:
            nursery.start_soon(leave)
        execution = Execution()
        await execute(plan, wire, origin, lambda: trio.current_time() - origin, execution)
        if not isinstance(plan.terminal, Close):
            nursery.cancel_scope.cancel()
    return arrivals, execution


async def test_drip_body_sends_eleven_pieces_at_exact_offsets(autojump_clock):
    arrivals, execution = await run_and_watch(plan_for(CATALOGUE.get("drip-body"), timeout=1.0))
    assert [t for t, _ in arrivals] == pytest.approx([0.3 * n for n in range(11)])
    assert sum(len(data) for _, data in arrivals[1:]) == 640
    assert execution.ended == "keep-alive"
    assert [entry.do for entry in execution.log].count("wait") == 10


async def test_slow_headers_first_byte_comes_at_four_timeouts(autojump_clock):
    arrivals, execution = await run_and_watch(plan_for(CATALOGUE.get("slow-headers"), timeout=2.5))
    assert arrivals[0][0] == pytest.approx(10.0)
    assert arrivals[0][1].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_send_after_a_wait_goes_out_as_the_timer_fires_and_what_the_transport_left_follows(autojump_clock):
    plan = Plan("x", None, (Wait(1.5), Send(b"0123456789"), KeepAlive()))
    transport = TakesSome(4)
    arrivals, execution = await run_and_watch(plan, transport=transport)
    assert transport.taken == b"0123" and arrivals == [(1.5, b"456789")]  # the rest by the stream, at once
    assert [(entry.do, entry.t, entry.bytes) for entry in execution.log] == [
        ("wait", 1.5, None), ("send", 1.5, 10), ("keep-alive", 1.5, None)
    ]


async def test_stall_mid_body_closes_after_the_stall(autojump_clock):
    arrivals, execution = await run_and_watch(plan_for(CATALOGUE.get("stall-mid-body"), timeout=1.0))
    assert [t for t, _ in arrivals] == [0.0]
    assert execution.ended == "closed"
    assert execution.log[-1] == ActionRecord("close", 4.0)


async def test_hang_holds_until_the_peer_leaves(autojump_clock):
    _, execution = await run_and_watch(Plan("x", None, (Hang(),)), client_closes_after=42.0)
    assert execution.ended == "hung, peer-closed"
    assert execution.log == [ActionRecord("hang", 42.0)]


async def test_hang_with_a_limit_gives_up_at_the_limit(autojump_clock):
    _, execution = await run_and_watch(Plan("x", None, (Hang(limit=3.0),)), client_closes_after=10.0)
    assert execution.ended == "hung, limit"
    assert execution.log == [ActionRecord("hang", 3.0)]


async def test_a_peer_gone_mid_plan_ends_the_plan_quietly(autojump_clock):
    plan = Plan("x", None, (Send(b"a"), Wait(1.0), Send(b"b"), Wait(2.0), Send(b"c"), KeepAlive()))
    arrivals, execution = await run_and_watch(plan, client_closes_after=0.5)
    assert arrivals == [(0.0, b"a")]
    assert execution.ended == "peer-closed"
    assert [entry.do for entry in execution.log] == ["send", "wait"]


IDLE_CLOSE = """\
name: idle-close
description: a healthy answer, then the connection is closed after 0.5T idle
phase: connection
expect:
  outcomes: [200]
steps:
  - kind: status
    code: 200
  - kind: headers
    fields: {Content-Length: "0"}
  - kind: keep-alive
    idle_close: 0.5T
"""


async def test_keep_alive_reports_its_idle_close(autojump_clock):
    _, execution = await run_and_watch(plan_for(parse(IDLE_CLOSE, "idle-close.yaml"), timeout=2.0))
    assert (execution.ended, execution.idle_close) == ("keep-alive", 1.0)
