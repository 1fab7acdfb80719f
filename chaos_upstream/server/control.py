"""What the admin API drives: the fleet of members in this process, or the workers of `serve --workers N`.

Both give the same calls, so the admin API is written once. Invariants: `set_active` is applied to
every process that serves requests before it returns; a timeline plays on the members of this
process only, one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.timeline import Change, schedule
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.upstream import Stats


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

    async def journal(self, probe: str | None, type: str | None, running: bool = False) -> list[dict[str, Any]]:
        """The journal's records, as `Journal.records` gives them."""

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
        return sum((member.stats for member in self.fleet.members), Stats())

    async def journal(self, probe: str | None, type: str | None, running: bool = False) -> list[dict[str, Any]]:
        return self.fleet.journal.records(probe=probe, type=type, running=running)

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
