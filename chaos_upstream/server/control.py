"""What the admin API drives: the fleet of members in this process, or the workers of `serve --workers N`.

Both give the same calls, so the admin API is written once. Invariants: `set_active` is applied to
every process that serves requests before it returns; a timeline plays on the members of this
process only, one at a time.
"""

from __future__ import annotations

from typing import Any, Protocol

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

    async def play(self, name: str) -> list[Change]:
        scenario = self.catalogue.get(name)
        if not scenario.timeline:
            raise ConfigError(f"{name!r} has no timeline to play")
        if len(self.fleet.members) < scenario.min_members:
            raise ConfigError(f"{name!r} needs {scenario.min_members} members; serve has {len(self.fleet.members)}")
        changes = schedule(scenario, len(self.fleet.members), self.timing)
        self.fleet.play_soon(changes)
        return changes
