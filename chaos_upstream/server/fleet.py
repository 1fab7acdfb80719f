"""Fleets: several upstream addresses, each a member that a timeline can stop and start again.

A member is a succession of Upstreams on one address (one journal for all, every record tagged with
the member's index, one Stats across incarnations): stopping one ends its listener (drained or
killed), starting again opens a new Upstream on the same port, and a restart hands the listening
socket itself to the next incarnation.  Invariants: at most one incarnation of a member accepts at a
time (a stopped one may still be finishing its in-flight responses while the next one listens); a
stop returns once new connections are refused; a restart refuses none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.plan.timeline import Change
from chaos_upstream.records import ChangeRecord
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Stats, Upstream


class Member:
    """One address of a fleet. Start it with `await nursery.start(member.run)`; it runs until close()."""

    def __init__(self, catalogue: Catalogue, settings: Settings, journal: Journal, index: int) -> None:
        self.catalogue = catalogue
        self.settings = replace(settings, member=index)
        self.journal = journal
        self.index = index
        self.stats = Stats()
        self.active: str | None = None
        """The scenario for requests that name none, when set; carried from one incarnation to the next."""
        self.current: Upstream | None = None
        self._nursery: trio.Nursery | None = None
        self._closed = trio.Event()
        self._changing = trio.Lock()
        """Held by a start, a stop or a restart: one at a time, so a restart never meets another half done."""

    @property
    def listening(self) -> bool:
        return self.current is not None and self.current.accepting

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.host, self.settings.port

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen (a port 0 becomes the port every later incarnation reuses), report the address,
        serve until close(), then let the last incarnation finish its in-flight work."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.settings.origin is None:
                self.settings = replace(self.settings, origin=trio.current_time())
            await self.start()
            task_status.started([self.address])
            await self._closed.wait()

    async def start(self, scenario: str | None = None) -> None:
        """Listen again (if stopped), serving `scenario` from now on if given."""
        async with self._changing:
            await self._start(scenario)

    async def _start(self, scenario: str | None = None, listeners: list[trio.SocketListener] | None = None) -> None:
        """`start`, on `listeners` when handed them; the caller holds `_changing`."""
        assert self._nursery is not None, "start() runs inside run()"
        if scenario is not None:
            self.serve(scenario)
        if self.listening or self._closed.is_set():
            return
        upstream = Upstream(self.catalogue, self.settings, self.journal, stats=self.stats, listeners=listeners)
        upstream.active = self.active
        [address, *_] = await self._nursery.start(upstream.run)
        self.settings = replace(self.settings, host=address[0], port=address[1])
        self.current = upstream

    async def stop(self, in_flight: str) -> None:
        """Stop listening, and return once new connections are refused; drain the open connections
        ("finish") or reset them ("reset")."""
        async with self._changing:
            if self.current is not None:
                self.current.kill() if in_flight == "reset" else self.current.drain()
                await self.current.closed.wait()

    async def restart(self, in_flight: str) -> None:
        """A hot restart: the listening socket goes to a new incarnation, then the one before lets
        its connections go as `stop` does."""
        async with self._changing:
            if not self.listening:  # stopped (or never started): nothing to hand over
                await self._start()
                return
            before, self.current = self.current, None
            listeners = await before.hand_over()  # type: ignore[union-attr]  # listening: there is one
            await self._start(listeners=listeners)
            before.kill() if in_flight == "reset" else before.drain()  # type: ignore[union-attr]

    def serve(self, scenario: str | None) -> None:
        """Answer requests that name no scenario with `scenario` (None: the default) from now on."""
        self.active = scenario
        if self.current is not None:
            self.current.active = scenario

    def close(self) -> None:
        """For good (SIGTERM): stop accepting, give in-flight work its grace period, end run()."""
        self._closed.set()
        if self.current is not None:
            self.current.stop()

    async def apply(self, change: Change) -> None:
        """Carry out one change of a timeline, and journal it (a "change" record, once done)."""
        started = trio.current_time() - (self.settings.origin or 0.0)
        if change.do == "stop":
            await self.stop(change.in_flight)
        elif change.do == "restart":
            await self.restart(change.in_flight)
        elif change.do == "start":
            await self.start(change.scenario or "healthy")
        else:
            self.serve(change.scenario)
        stop = change.do in ("stop", "restart")
        self.journal.write(ChangeRecord(
            t=round(started, 6), member=self.index, do=change.do,
            in_flight=change.in_flight if stop else None, scenario=None if stop else change.scenario,
        ))


class Fleet:
    """Members serving one catalogue into one journal, one per address of `settings`.
    Start it with `await nursery.start(fleet.run)`; it runs until stop()."""

    def __init__(self, catalogue: Catalogue, settings: Sequence[Settings], journal: Journal) -> None:
        self.catalogue = catalogue
        self.journal = journal
        self.members = [Member(catalogue, one, journal, index) for index, one in enumerate(settings)]
        self.playing = False
        """True while a timeline started by play_soon() plays."""
        self._nursery: trio.Nursery | None = None
        self._play_scope = trio.CancelScope()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [member.address for member in self.members]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            origin = trio.current_time()
            for member in self.members:
                member.settings = replace(member.settings, origin=origin)
                await nursery.start(member.run)
            task_status.started(self.addresses)

    def stop(self) -> None:
        """For good (SIGTERM): end a playing timeline, close every member (each takes its grace)."""
        self._play_scope.cancel()
        for member in self.members:
            member.close()

    def play_soon(self, changes: Sequence[Change]) -> None:
        """Play a timeline from now on, in the background; one at a time (ConfigError otherwise)."""
        if self._nursery is None or self.playing:
            raise ConfigError("a timeline is playing already" if self.playing else "the fleet is not running")
        self.playing = True
        self._play_scope = scope = trio.CancelScope()

        async def playing() -> None:
            try:
                with scope:
                    await play(changes, self.members, trio.current_time())
            finally:
                self.playing = False

        self._nursery.start_soon(playing)


async def play(changes: Sequence[Change], members: Sequence[Member], start: float) -> None:
    """Carry out each change at its time (trio's clock, from `start`), in order."""
    for change in changes:
        await trio.sleep_until(start + change.at)
        await members[change.member].apply(change)
