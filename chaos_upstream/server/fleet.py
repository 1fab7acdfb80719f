"""Fleets: several upstream addresses, each a member that a timeline can stop and start again.

A member is a succession of Upstreams on one address (one journal for all, every record tagged with
the member's index): stopping one ends its listener (drained or killed), starting again opens a
new Upstream on the same port.  Invariant: at most one incarnation of a member listens at a time;
a stopped one may still be finishing its in-flight responses while the next one listens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import trio

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.plan.timeline import Change
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream


class Member:
    """One address of a fleet. Start it with `await nursery.start(member.run)`; it runs until cancelled."""

    def __init__(self, catalogue: Catalogue, settings: Settings, journal: Journal, index: int) -> None:
        self.catalogue = catalogue
        self.settings = replace(settings, member=index)
        self.journal = journal
        self.index = index
        self.serving = settings.default
        """The scenario for requests that name none, carried over from one incarnation to the next."""
        self.current: Upstream | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def listening(self) -> bool:
        return self.current is not None and self.current.accepting

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.host, self.settings.port

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen (a port 0 becomes the port every later incarnation reuses), report the address."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.start()
            task_status.started([self.address])
            await trio.sleep_forever()

    async def start(self, scenario: str | None = None) -> None:
        """Listen again (if stopped), serving `scenario` from now on if given."""
        assert self._nursery is not None, "start() runs inside run()"
        self.serve(scenario or self.serving)
        if self.listening:
            return
        upstream = Upstream(self.catalogue, replace(self.settings, default=self.serving), self.journal)
        [address, *_] = await self._nursery.start(upstream.run)
        self.settings = replace(self.settings, host=address[0], port=address[1])
        self.current = upstream

    async def stop(self, in_flight: str) -> None:
        """Stop listening, and return once new connections are refused; drain the open connections
        ("finish") or reset them ("reset")."""
        if self.current is not None:
            self.current.kill() if in_flight == "reset" else self.current.drain()
            await self.current.closed.wait()

    def serve(self, scenario: str) -> None:
        self.serving = scenario
        if self.current is not None:
            self.current.active = scenario

    async def apply(self, change: Change) -> None:
        """Carry out one change of a timeline."""
        if change.do == "stop":
            await self.stop(change.in_flight)
        elif change.do == "start":
            await self.start(change.scenario or "healthy")
        else:
            self.serve(change.scenario or self.serving)
