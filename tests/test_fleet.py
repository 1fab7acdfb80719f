"""Fleet members on real sockets: a graceful drain, a kill, a return on the same port, one journal clock."""

import pytest
import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.timeline import Change
from chaos_upstream.records import ChangeRecord
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet, Member, play
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings
from chaos_upstream.verifier.capture import capture

from conftest import CATALOGUE, T, get, refused, settled

HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nchaos-upstream: healthy\n"


async def start_member(nursery, index: int = 1) -> Member:
    member = Member(CATALOGUE, Settings(port=0, timing=Timing(T)), Journal(), index)
    await nursery.start(member.run)
    return member


async def arrived(member: Member) -> None:
    """Return once a request reached `member` and its plan runs (its record is journaled as running)."""
    with trio.fail_after(T):
        while not member.journal.records(type="request", running=True):
            await trio.sleep(0.001)


async def test_a_drain_closes_idle_keep_alive_connections_at_once_and_refuses_new_ones(nursery):
    member = await start_member(nursery)
    stream = await trio.open_tcp_stream(*member.address)
    await stream.send_all(get())
    assert await stream.receive_some(1000) == HEALTHY
    await member.stop("finish")
    with trio.fail_after(T):
        assert await stream.receive_some(1000) == b""  # FIN, not a reset and not a wait
    await stream.aclose()
    assert await refused(member.address)
    [connection] = await settled(member.journal, type="connection", count=1)
    assert (connection.ended, connection.member) == ("drained", 1)


@pytest.mark.parametrize("attempt", range(10))
@pytest.mark.parametrize("checkpoints", range(6))
async def test_a_request_whose_bytes_a_read_has_taken_is_served_by_a_drain_not_cut(start_upstream, checkpoints, attempt):
    """Whatever the scheduling step at which a drain comes after the next request was sent (trio's
    read yields once after taking bytes from the kernel), that request is answered, then FIN. Trio
    shuffles the order of runnable tasks: each step is tried a few times."""
    upstream = await start_upstream()
    stream = await trio.open_tcp_stream(*upstream.addresses[0])
    await stream.send_all(get())
    assert await stream.receive_some(1000) == HEALTHY
    await stream.send_all(get())
    for _ in range(checkpoints):
        await trio.lowlevel.checkpoint()
    upstream.drain()
    received = b""
    with trio.fail_after(T):
        while data := await stream.receive_some(1000):
            received += data
    await stream.aclose()
    assert received == HEALTHY


async def test_a_drain_lets_a_busy_connection_finish_its_response_then_closes_it(nursery):
    member = await start_member(nursery)
    async with trio.open_nursery() as inner:
        seen = None

        async def slow():
            nonlocal seen
            seen = await capture(*member.address, get(scenario="slow-response"), limit=2 * T)

        inner.start_soon(slow)
        await arrived(member)
        await member.stop("finish")
    assert seen.ending == "fin" and seen.data.endswith(b"chaos-upstream: slowpoke\n")


async def test_a_kill_resets_the_connections_in_flight(nursery):
    member = await start_member(nursery)
    seen = None

    async def hung():
        nonlocal seen
        seen = await capture(*member.address, get(scenario="never-respond"), limit=2 * T)

    async with trio.open_nursery() as inner:
        inner.start_soon(hung)
        await arrived(member)
        await member.stop("reset")
    assert (seen.data, seen.ending) == (b"", "rst")


async def test_a_member_comes_back_on_the_same_port_serving_what_it_was_told(nursery):
    member = await start_member(nursery)
    address = member.address
    await member.stop("finish")
    assert await refused(address)
    await member.start("starting-unavailable")
    assert member.address == address and member.listening
    seen = await capture(*address, get(), limit=T)
    assert seen.data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    member.serve("healthy")
    assert (await capture(*address, get(), limit=T)).data == HEALTHY


async def test_a_hot_restart_listens_anew_before_it_drains_and_refuses_no_connection(nursery):
    member = await start_member(nursery)
    async with await trio.open_tcp_stream(*member.address) as busy:
        await busy.send_all(get(scenario="slow-response"))
        await arrived(member)
        before = member.current
        async with trio.open_nursery() as inner:
            inner.start_soon(member.restart, "finish")
            for _ in range(20):  # a connection every scheduling step of the restart: none refused
                async with await trio.open_tcp_stream(*member.address) as stream:
                    await stream.send_all(get())
                    with trio.fail_after(T):
                        assert await stream.receive_some(1000) == HEALTHY
                await trio.lowlevel.checkpoint()
        assert member.current is not before and member.listening
        with trio.fail_after(2 * T):
            assert (await received_all(busy)).endswith(b"chaos-upstream: slowpoke\n")  # the one in flight finished
    connections = await settled(member.journal, type="connection", count=21)  # a record lands once its connection is closed
    assert [(r.requests, r.ended) for r in connections if r.conn == 1] == [(1, "drained")]


async def received_all(stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_a_fleets_journal_keeps_one_clock_across_members_and_restarts(nursery):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))] * 2, Journal())
    await nursery.start(fleet.run)
    await trio.sleep(T / 4)
    await fleet.members[0].stop("finish")
    await trio.sleep(T / 4)
    await fleet.members[0].start()
    for member in fleet.members:
        await capture(*member.address, get(), limit=T, done=lambda piece: True)
    [first, second] = await settled(fleet.journal, type="request", count=2)
    assert (first.member, second.member) == (0, 1)
    assert T / 2 <= first.t <= second.t < first.t + T


async def test_each_change_of_a_timeline_is_journaled_on_the_fleets_clock(nursery):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))] * 2, Journal())
    await nursery.start(fleet.run)
    changes = [Change(0.0, 1, "stop", "reset"), Change(T / 4, 1, "start", scenario="starting-unavailable"), Change(T / 2, 1, "serve")]
    await play(changes, fleet.members, trio.current_time())
    stop, start, serve = fleet.journal.records(type="change")
    assert stop == ChangeRecord(t=stop.t, member=1, do="stop", in_flight="reset")
    assert (start.do, start.scenario, serve.do, serve.scenario) == ("start", "starting-unavailable", "serve", None)
    assert T / 4 <= start.t - stop.t < T / 2 <= serve.t - stop.t < T


async def test_a_scheduled_play_that_falls_due_while_another_plays_is_skipped_with_a_line(nursery, autojump_clock):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))] * 2, Journal())
    await nursery.start(fleet.run)
    control = Local(fleet, "healthy", Timing(T))
    await control.play("restart-during-deploy")  # as through the admin API: plays for 5T
    lines: list[str] = []
    nursery.start_soon(control.play_every, "restart-during-deploy", 6 * T, lines.append)
    await trio.sleep(7.5 * T)
    assert lines == ["not playing restart-during-deploy now: a timeline is playing already",
                     "playing restart-during-deploy: 4 changes over 1 s"]
    stops = [(c.t, c.member) for c in fleet.journal.records(type="change") if c.do == "stop"]
    assert [member for _, member in stops] == [0, 1, 0, 1]  # the admin's play, then the second scheduled one
    assert stops[2][0] - stops[0][0] == pytest.approx(6 * T)
