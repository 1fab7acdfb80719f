"""A probe's attempts: the records of the times it reached an upstream, read from whatever journal
serves them (the verifier reads; it never starts, drives or imports a server).

Invariant: the verifier asks a journal only what `Journal` below declares, so that the server's
journal, the admin API's (`admin_journal.AdminJournal`, which the blocking probe reads) and any
stand-in a test passes satisfy it without knowing of it. Waiting for the attempts to settle is
`settling`, without a clock; the async and the blocking probe only do its sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Protocol

import trio

from chaos_upstream.model.scenario import Scenario
from chaos_upstream.records import AcceptRecord, Attempt, Record, RequestRecord

SETTLE = 0.1
"""Seconds to wait, once the client has its answer, for the probe's attempts to show in the journal:
they reached the upstream before the proxy answered, so only the scheduling of this process lags."""

POLL = 0.005
"""Seconds between two looks at the journal while settling."""


class Journal(Protocol):
    """What the verifier reads of a journal: its records in the order written, only one probe's or
    one type's when asked, and with `running` copies of those still in progress after them."""

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        ...


def attempts(journal: Journal, scenario: Scenario | None, probe_id: str) -> list[Attempt]:
    """Every journal record (running ones included) of a time this probe may have reached the upstream:
    its request records, or for a connection-level scenario's port (`scenario` None: the members')
    every connection that port accepted."""
    if scenario is None or not scenario.connection_level:
        return [r for r in journal.records(probe=probe_id, type="request", running=True) if isinstance(r, RequestRecord)]
    return [r for r in journal.records(type="accept", running=True) if isinstance(r, AcceptRecord) and r.scenario == scenario.name]


Settling = Generator[float, None, list[Attempt]]
"""Yields the seconds to sleep before the next look; returns the attempts."""


def settling(look: Callable[[], list[Attempt]], earlier: int = 0, poll: float = POLL) -> Settling:
    """The probe's attempts as `look()` reads them, once more than `earlier` show or SETTLE has been
    slept (in sleeps of `poll` seconds, which the caller does), without the first `earlier`."""
    slept = 0.0
    while len(found := look()) <= earlier and slept < SETTLE:
        yield poll
        slept += poll
    return found[earlier:]


async def settled_attempts(journal: Journal, scenario: Scenario | None, probe_id: str, earlier: int = 0) -> list[Attempt]:
    """The probe's attempts, once at least one shows or SETTLE passes (at once for a refusing port,
    which no attempt can reach); `earlier` attempts, made before the probe, are left out.  With
    `scenario` None the probe went to the members, whatever it names."""
    if scenario is not None and scenario.trigger == "refuse":
        return []
    waits = settling(lambda: attempts(journal, scenario, probe_id), earlier)
    try:
        while True:
            await trio.sleep(next(waits))
    except StopIteration as settled:
        return settled.value  # type: ignore[no-any-return]
