"""The timer source: waiters woken in deadline order from one task, cancellable at once, leaving nothing behind.

All under MockClock (autojump): every wait is bounded by trio.fail_after, since a waiter that is
never woken would otherwise let the clock jump forever.
"""

import gc

import pytest
import trio
import trio.testing

from chaos_upstream.server import timers
from chaos_upstream.serving import COLLECTOR_THRESHOLDS, settle_collector

from conftest import T, get

BOUND = 100.0
"""Seconds of mock time any test may take before it counts as hung."""


async def wake_at(deadline: float, woken: list, name: object) -> None:
    await timers.sleep_until(deadline)
    woken.append((name, trio.current_time()))


async def test_waiters_wake_at_their_deadlines_in_deadline_order(autojump_clock):
    woken: list = []
    start = trio.current_time()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for offset in (3.0, 1.0, 2.0, 0.5):  # pushed out of order: the earliest goes in last
                nursery.start_soon(wake_at, start + offset, woken, offset)
    assert [name for name, _ in woken] == [0.5, 1.0, 2.0, 3.0]
    assert all(at == pytest.approx(start + name) for name, at in woken)  # never early, not late on a mock clock
    assert len(timers.source()) == 0


async def test_many_waiters_at_one_deadline_all_wake_then(autojump_clock):
    woken: list = []
    deadline = trio.current_time() + 1.0
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for index in range(500):
                nursery.start_soon(wake_at, deadline, woken, index)
            await trio.testing.wait_all_tasks_blocked()
            assert len(timers.source()) == 500
    assert sorted(name for name, _ in woken) == list(range(500))
    assert {at for _, at in woken} == {deadline}


async def test_a_cancelled_waiter_raises_at_once_and_never_fires_later(autojump_clock):
    woken: list = []
    start = trio.current_time()
    cut = trio.CancelScope()

    async def cut_one() -> None:
        with cut:
            await wake_at(start + 2.0, woken, "cut")

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wake_at, start + 5.0, woken, "kept")
            nursery.start_soon(cut_one)
            await trio.sleep(1.0)
            assert len(timers.source()) == 2
            cut.cancel()  # a kill or the stall reaper cancelling a connection's scope
            await trio.testing.wait_all_tasks_blocked()  # the cut waiter's task has run and ended
            assert trio.current_time() == start + 1.0  # at once, not at its deadline
            assert cut.cancelled_caught
            assert len(timers.source()) == 1
    assert woken == [("kept", start + 5.0)]
    assert trio.current_time() == start + 5.0  # the cut one's 2.0 passed without firing anything


async def test_cancelled_entries_leave_the_heap_and_hold_no_task(autojump_clock):
    source = timers.source()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(timers.sleep_until, trio.current_time() + 3600.0)
            await trio.testing.wait_all_tasks_blocked()
            assert len(source._heap) == 100
            nursery.cancel_scope.cancel()
    assert len(source) == 0
    assert len(source._heap) <= 1  # rebuilt without them: not held for an hour
    assert all(entry[2] is None for entry in source._heap)


async def test_a_deadline_in_the_past_is_a_checkpoint(autojump_clock):
    now = trio.current_time()
    with trio.fail_after(BOUND):
        await timers.sleep_until(now - 10.0)
        await timers.sleep_until(now)
    assert trio.current_time() == now
    with trio.CancelScope() as scope:
        scope.cancel()
        await timers.sleep_until(now - 1.0)  # a checkpoint: cancellation is seen
        pytest.fail("a cancelled scope let the wait through")


async def test_an_earlier_waiter_arriving_later_moves_the_source_forward(autojump_clock):
    woken: list = []
    start = trio.current_time()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wake_at, start + 10.0, woken, "late")
            await trio.sleep(1.0)  # the source sleeps until +10 now
            nursery.start_soon(wake_at, start + 2.0, woken, "early")
    assert woken == [("early", start + 2.0), ("late", start + 10.0)]


def test_each_run_has_its_own_source_and_it_ends_with_the_run():
    seen = []

    async def one_run() -> None:
        source = timers.source()
        seen.append(source)
        with trio.fail_after(BOUND):
            await timers.sleep_until(trio.current_time() + 0.5)

    for _ in range(2):
        trio.run(one_run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen[0] is not seen[1]
    assert all(source.ended for source in seen)  # its task cancelled when the run ended


async def test_after_the_source_ended_waits_still_wake(autojump_clock):
    source = timers.source()
    source.ended = True  # as in the last moments of a run, once its system tasks are cancelled
    start = trio.current_time()
    with trio.fail_after(BOUND):
        await source.sleep_until(start + 1.0)
    assert trio.current_time() == start + 1.0
    assert len(source._heap) == 0  # trio's own sleep, not an entry nobody would fire


async def test_a_scope_is_cancelled_at_its_deadline_unless_forgotten_first(autojump_clock):
    source, start = timers.source(), trio.current_time()
    with trio.fail_after(BOUND):
        with trio.CancelScope() as due:
            source.cancel_at(due, start + 2.0)
            await trio.sleep_forever()
        assert due.cancelled_caught and trio.current_time() == pytest.approx(start + 2.0)
        with trio.CancelScope() as forgotten:
            source.forget(source.cancel_at(forgotten, start + 3.0))
            await trio.sleep_until(start + 5.0)
    assert not forgotten.cancel_called and len(source) == 0


async def test_timeouts_set_and_forgotten_for_every_read_leave_no_heap_behind(autojump_clock):
    source, scope = timers.source(), trio.CancelScope()
    for n in range(10_000):  # a keep-alive connection's reads, each done before its timeout
        entry = source.cancel_at(scope, trio.current_time() + 60.0)
        if n % 100 == 0:
            await trio.sleep(0.01)
        source.forget(entry)
        source.forget(entry)  # twice, or after it fired: nothing more
    assert len(source) == 0 and len(source._heap) <= 2 and not scope.cancel_called


async def test_every_due_callback_runs_as_its_entry_fires_and_the_waiters_wake_a_few_a_step(autojump_clock):
    source, deadline, called, woken = timers.source(), trio.current_time() + 1.0, [], []

    async def wait(n: int) -> None:
        await source.sleep_until(deadline, lambda: called.append((n, trio.current_time())))
        woken.append((n, len(called)))

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for n in range(10 * timers.WAKE_BATCH):
                nursery.start_soon(wait, n)
    assert sorted(n for n, _ in called) == list(range(10 * timers.WAKE_BATCH)) and {at for _, at in called} == {deadline}
    assert all(seen == len(called) for _, seen in woken)  # every callback ran before the first waiter woke
    batch = timers.WAKE_BATCH  # woken in the order they fired, a batch a step (trio runs a step's tasks in any order)
    steps = [(sorted(n for n, _ in woken[k : k + batch]), sorted(n for n, _ in called[k : k + batch])) for k in range(0, len(called), batch)]
    assert all(woke == fired for woke, fired in steps) and not source._ready


async def test_a_waiter_cancelled_after_its_entry_fired_raises_and_leaves_nothing(autojump_clock):
    source, deadline, called, waiting = timers.source(), trio.current_time() + 1.0, [], []

    def cancel_all() -> None:  # fired last: every waiter fired, none woken yet
        waiting.append(len(source._ready))
        nursery.cancel_scope.cancel()

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for n in range(3 * timers.WAKE_BATCH):
                nursery.start_soon(source.sleep_until, deadline, lambda n=n: called.append(n))
            while len(source) < 3 * timers.WAKE_BATCH:  # each registers in its first step: a few steps, no time
                await trio.lowlevel.checkpoint()
            nursery.start_soon(source.sleep_until, deadline, cancel_all)
    assert len(called) == 3 * timers.WAKE_BATCH and waiting == [3 * timers.WAKE_BATCH + 1]  # itself too
    assert not source._ready and len(source) == 0 and source._cancelled == 0


async def test_after_the_source_ended_a_scope_keeps_its_own_deadline(autojump_clock):
    source = timers.source()
    source.ended = True
    with trio.CancelScope() as scope:
        entry = source.cancel_at(scope, trio.current_time() + 1.0)
        assert scope.deadline == trio.current_time() + 1.0 and len(source._heap) == 0
        source.forget(entry)
    assert scope.deadline == float("inf") and not scope.cancel_called


def test_settling_the_collector_spaces_collections_out():
    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        assert COLLECTOR_THRESHOLDS[0] > 700  # fewer young collections than CPython's default
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_a_plans_wait_ends_at_its_deadline_and_a_kill_cuts_it_at_once(nursery, autojump_clock):
    from test_transport_memory import connect, upstream

    server = upstream()
    start = trio.current_time()
    on_time, cut = connect(nursery, server), connect(nursery, server)
    on_time.send(get(scenario="slow-headers"))  # 4T of silence, then the response
    with trio.fail_after(BOUND):
        await trio.sleep(T / 2)
        cut.send(get(scenario="slow-headers"))  # due T/2 after the first
        await on_time.until(lambda: on_time.outbox)
        assert trio.current_time() == pytest.approx(start + 4 * T)  # woken by the source, on time
        server.kill()  # `cut`'s connection is its only one left, still waiting
        await cut.until(lambda: cut.closed)
    assert trio.current_time() == pytest.approx(start + 4 * T)  # at once: the wait did not run out first
    assert (cut.outbox, cut.reset) == (b"", True)
    assert len(timers.source()) == 0
    [request] = [record for record in server.journal.records(type="request") if record.actions[1:]]
    wait, send = request.actions[:2]
    assert (wait.do, send.do) == ("wait", "send")
    assert send.t - request.t == pytest.approx(4 * T)
