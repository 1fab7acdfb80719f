"""What the admin API drives: the fleet of members in this process, or the workers of `serve --workers N`.

Both give the same calls, so the admin API is written once. Invariants: `set_active` is applied to
every process that serves requests before it returns; a timeline plays on the members of this
process only, one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.timeline import Change, schedule
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Page
from chaos_upstream.server.upstream import Stats


PAGE_BYTES = 8 * 1024 * 1024
"""JSON text of one process's journal page at most (and one record more): a full page of typical
records (~420 bytes) is ~4 MB, but records that keep request bodies (up to 64 KiB each) would make a
10,000-record page over half a GB; the page stops early instead, and says so with its cursor."""


@dataclass(frozen=True)
class JournalPage:
    """A page of the journal of every process that serves requests, as the admin API sends it.

    Invariant: asking again with `since=next` until `more` is false yields every record still in
    memory exactly once, whatever was written in between."""

    texts: list[str]
    """The records' JSON texts, those still running last (marked `"running": true`)."""
    next: tuple[int, ...]
    """The cursor: one ordinal per process that journals (one, or one per worker)."""
    more: bool
    """Whether records after the cursor were left out for the limit."""
    skipped: int
    """Records after `since` that left memory before they were read."""

    @classmethod
    def of(cls, page: Page) -> JournalPage:
        """The admin's page of one journal's page."""
        running = [json.dumps(record, separators=(",", ":")) for record in page.running]
        return cls(page.texts + running, (page.next,), page.more, page.skipped)


class Control(Protocol):
    """The calls the admin API makes."""

    catalogue: Catalogue
    default: str
    active: str | None

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        """Whether every listener accepts, and the addresses."""

    def members_listening(self) -> list[bool]:
        """Whether each fleet member listens now (a timeline may hold some down); [] without a fleet."""

    async def set_active(self, name: str | None, member: int | None = None) -> None:
        """Serve `name` (None: the default) to requests that name no scenario, on one member or all."""

    async def stats(self) -> Stats: ...

    async def journal(
        self, probe: str | None, type: str | None, running: bool, since: Sequence[int], limit: int
    ) -> JournalPage:
        """A page of the journal's records, as `Journal.page` gives them. `since` is a cursor from
        `JournalPage.next`, or one ordinal for every process (0: from the start); ConfigError when
        it has neither length."""

    async def play(self, name: str) -> list[Change]:
        """Start playing the timeline of scenario `name` on the members; its changes.  ConfigError
        when it cannot be played here."""


class Local:
    """Control of the Fleet serving in this process (one member per `serve --port`)."""

    def __init__(self, fleet: Fleet, default: str, timing: Timing) -> None:
        self.fleet = fleet
        self.catalogue = fleet.catalogue
        self.default = default
        self.timing = timing
        self.active: str | None = None

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        members = self.fleet.members
        return all(member.listening for member in members), [member.address for member in members]

    def members_listening(self) -> list[bool]:
        return [member.listening for member in self.fleet.members]

    async def set_active(self, name: str | None, member: int | None = None) -> None:
        if member is None:
            self.active = name
        elif not 0 <= member < len(self.fleet.members):
            raise ConfigError(f"member: no member {member} in a fleet of {len(self.fleet.members)}")
        for one in self.fleet.members if member is None else [self.fleet.members[member]]:
            one.serve(name)

    async def stats(self) -> Stats:
        return sum((member.stats for member in self.fleet.members), Stats.of_journal(self.fleet.journal))

    async def journal(
        self, probe: str | None, type: str | None, running: bool, since: Sequence[int], limit: int
    ) -> JournalPage:
        if len(since) != 1:
            raise ConfigError(f"since: one ordinal in this process, not {len(since)}")
        page = self.fleet.journal.page(probe=probe, type=type, running=running, since=since[0], limit=limit, budget=PAGE_BYTES)
        return JournalPage.of(page)

    def changes(self, name: str) -> list[Change]:
        """The changes of scenario `name`'s timeline on this fleet; ConfigError (UnknownScenario for
        an unknown name) when it cannot be played here."""
        scenario = self.catalogue.get(name)
        if not scenario.timeline:
            raise ConfigError(f"{name!r} has no timeline to play")
        if len(self.fleet.members) < scenario.min_members:
            raise ConfigError(f"{name!r} needs {scenario.min_members} members; serve has {len(self.fleet.members)}")
        return schedule(scenario, len(self.fleet.members), self.timing)

    async def play(self, name: str) -> list[Change]:
        changes = self.changes(name)
        self.fleet.play_soon(changes)
        return changes

    async def play_every(self, name: str, every: float | None, say: Callable[[str], None]) -> None:
        """`serve --play NAME [--every S]`: play now, then every `every` seconds from start to start
        until cancelled; a play that falls due while another is playing (one started through the admin
        API) is skipped. `say` hears one line per play."""
        while True:
            start = trio.current_time()
            try:
                changes = await self.play(name)
            except ConfigError as exc:
                say(f"not playing {name} now: {exc}")
            else:
                say(f"playing {name}: {len(changes)} changes over {changes[-1].at:g} s")
            if every is None:
                return
            await trio.sleep_until(start + every)
