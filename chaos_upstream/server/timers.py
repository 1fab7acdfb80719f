"""One timer source per trio run: the plans' waits and the reads' timeouts, fired from one task in deadline order.

`sleep_until(deadline, then)` is trio.sleep_until for many concurrent waiters: each waiter is an
entry in one heap, and one system task (started by the first waiter of a run) sleeps until the
earliest deadline, then fires every entry that is due, earliest first, in one pass: it calls the
waiter's `then` (a plan's send: the bytes go out then, see Wire.send_at) and queues the waiter, and
wakes the queued waiters WAKE_BATCH at a time, one batch per step of its own. So a send due among a
thousand others goes out on time instead of after the work of every task woken before it: 1000
`slow-headers` requests whose timers come due within ~150 ms send their first bytes at most ~5 ms
late (p99; `benchmarks/timer_lateness.py`), against ~46 ms when each task sent its own bytes once
woken, and ~60 ms with trio.sleep_until each.

`cancel_at(scope, deadline)` is a cancel scope's deadline set, and `forget` clearing it, for a
read's timeout set and cleared on every request: a heap push and a mark, not trio's registration of
a deadline each way (~1 us against ~12 per request).

Strategy: the source is a system task of the run, started by its first waiter, so that whatever
waits (a plan on a socket, a plan on a memory stream under MockClock in the tests) needs no nursery
of its own to start it, and it ends with the run.

Invariants: a waiter returns, and its `then` is called, no earlier than its deadline (trio's clock,
MockClock included); a waiter cancelled while it waits (a drain, a kill, the stall reaper cutting
its connection) raises Cancelled at once, as trio.sleep_until does, and its entry never fires and
holds no task (if it fired already, its `then` has run); cancelled entries never outnumber the live
ones in the heap (so memory follows the waiters); a deadline already passed is a checkpoint, as in
trio; a scope given to cancel_at is cancelled no earlier than its deadline, and never once
forgotten; once the source has ended (its run is ending), waits fall back to trio.sleep_until and
scopes to their own deadlines.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

WAKE_BATCH = 8
"""Waiters woken per step of the source. All due entries fire at once (their callbacks: the sends
that must go out on time), but their tasks are woken a few a step, so that the source's next step,
which fires what came due meanwhile, waits for the work of 8 woken tasks (~1-2 ms), not of every one
woken together (1000 due within 150 ms: ~200 ms of work)."""

Entry = list[Any]
"""[deadline, sequence number, what is due then (a task to wake, a (task, callback) pair, or a cancel
scope to cancel), or None once fired or forgotten]: a list, so that forgetting clears it in place."""


class TimerSource:
    """A heap of waiters and the one task that wakes them; one per run (see `source()`)."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._cancelled = 0
        """Entries of the heap whose waiter was cancelled: skipped when due, dropped when they outnumber the live."""
        self._sequence = itertools.count()
        """Ties in deadline are woken in the order they began to wait."""
        self._sleep: trio.CancelScope | None = None
        """While the source task sleeps: its scope, whose deadline is the earliest entry's."""
        self._ready: dict[trio.lowlevel.Task, None] = {}
        """Waiters fired and not woken yet, in the order they fired (WAKE_BATCH of them a step)."""
        self.ended = False

    def __len__(self) -> int:
        """Waiters waiting now (cancelled entries not counted)."""
        return len(self._heap) - self._cancelled

    async def sleep_until(self, deadline: float, then: Callable[[], None] | None = None) -> None:
        """Return at `deadline`; `then()`, if given, is called as the source fires it, before any
        waiter it wakes runs (it must not raise): what must happen on time, among many due together."""
        if deadline <= trio.current_time() or self.ended:
            await trio.sleep_until(deadline)
            if then is not None:
                then()
            return
        task = trio.lowlevel.current_task()
        entry = self._push(deadline, task if then is None else (task, then))

        def abort(_: Any) -> trio.lowlevel.Abort:
            if entry[2] is None:  # fired: it waits its turn to be woken
                del self._ready[task]
            else:
                self._forget(entry)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def cancel_at(self, scope: trio.CancelScope, deadline: float) -> Entry:
        """Cancel `scope` at `deadline` (trio's clock) unless `forget` is given the entry first: what
        setting and clearing the scope's own deadline does, without trio's registration of each
        (a read's timeout, set and cleared for every request: ~12 us of trio's against ~1 here).
        Once the source has ended, the scope's own deadline, which `forget` clears."""
        if self.ended:
            scope.deadline = deadline
            return [deadline, next(self._sequence), scope]
        return self._push(deadline, scope)

    def forget(self, entry: Entry) -> None:
        """What `cancel_at` gave: it will not cancel its scope (if it has not already)."""
        scope = entry[2]
        if scope is None:  # fired, or forgotten already
            return
        if self.ended:
            entry[2] = None
            scope.deadline = math.inf
        else:
            self._forget(entry)

    def _push(self, deadline: float, due: object) -> Entry:
        entry: Entry = [deadline, next(self._sequence), due]
        heapq.heappush(self._heap, entry)
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline
        return entry

    async def run(self) -> None:
        """Wake the waiters as they come due, until cancelled (the run's end)."""
        try:
            while True:
                if self._ready:  # its next step comes after the tasks woken in this one
                    await trio.lowlevel.checkpoint()
                else:
                    with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as self._sleep:
                        await trio.sleep_forever()
                    self._sleep = None
                self._fire(trio.current_time())
                self._wake()
        finally:
            self.ended = True
            self._sleep = None

    def _fire(self, now: float) -> None:
        """Fire every due entry, earliest first, skipping cancelled ones: a scope is cancelled, a
        waiter's callback called, the waiter queued to be woken."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            due, entry[2] = entry[2], None
            if due is None:
                self._cancelled -= 1
            elif isinstance(due, trio.CancelScope):
                due.cancel()
            elif isinstance(due, tuple):
                task, then = due
                self._ready[task] = None  # first: `then` may cancel its own waiter
                then()
            else:
                self._ready[due] = None
        self._compact()

    def _wake(self) -> None:
        """Reschedule the first WAKE_BATCH waiters fired."""
        for task in list(itertools.islice(self._ready, WAKE_BATCH)):
            del self._ready[task]
            trio.lowlevel.reschedule(task)

    def _forget(self, entry: Entry) -> None:
        """A cancelled waiter's entry: it holds no task from now on, and never fires."""
        entry[2] = None
        self._cancelled += 1
        self._compact()

    def _compact(self) -> None:
        """Rebuild the heap without cancelled entries once they are the most (amortised: each
        rebuild removes at least as many entries as it keeps)."""
        if self._cancelled > len(self._heap) // 2:
            self._heap = [live for live in self._heap if live[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0


_SOURCE: trio.lowlevel.RunVar[TimerSource] = trio.lowlevel.RunVar("chaos_upstream_timer_source")


def source() -> TimerSource:
    """This run's timer source, its task started (as a system task) on first use."""
    try:
        return _SOURCE.get()
    except LookupError:
        timers = TimerSource()
        _SOURCE.set(timers)
        trio.lowlevel.spawn_system_task(timers.run, name="chaos_upstream timer source")
        return timers


async def sleep_until(deadline: float, then: Callable[[], None] | None = None) -> None:
    """trio.sleep_until, woken by this run's timer source (which calls `then` first, if given)."""
    await source().sleep_until(deadline, then)
