"""A timeline resolved for one fleet: the changes to each member, in order, and when members are down.

Pure: a function of the scenario's events, the fleet size and the timing settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.durations import Span, Timing
from chaos_upstream.model.scenario import Scenario

TAIL = Span(3.0, relative=True)
"""How long a timeline's probe stream goes on after its last event, unless the scenario says."""


@dataclass(frozen=True)
class Change:
    """One member's change at one time (seconds from the start of the timeline)."""

    at: float
    member: int
    do: str
    in_flight: str = "finish"
    scenario: str | None = None


@dataclass(frozen=True)
class Window:
    """A span of time in which one member did not listen; `end` is None if it never came back."""

    member: int
    start: float
    end: float | None

    def overlaps(self, begin: float, end: float, after: float = 0.0) -> bool:
        """Whether [begin, end] (a probe in flight) meets the window stretched by `after` past its end."""
        return self.start <= end and (self.end is None or begin <= self.end + after)


def schedule(scenario: Scenario, members: int, timing: Timing) -> list[Change]:
    """Every change of the timeline for a fleet of `members`, by time; at one instant, starts come
    before stops (a rolling deploy stops the next member as the previous one listens again)."""
    changes = []
    for index, event in enumerate(scenario.timeline):
        if isinstance(event.members, int) and event.members >= members:
            raise ConfigError(f"{scenario.name}: timeline.{index}.members: no member {event.members} in a fleet of {members}")
        targets = [event.members] if isinstance(event.members, int) else range(members)
        step = event.every.seconds(timing) if event.every is not None else 0.0
        for member in targets:
            changes.append(Change(event.at.seconds(timing) + member * step, member, event.do, event.in_flight, event.scenario))
    return sorted(changes, key=lambda change: (change.at, change.do == "stop"))


def windows(changes: Sequence[Change]) -> list[Window]:
    """The spans in which each member was down, from each stop to its next start, in order of start."""
    down: dict[int, float] = {}
    found = []
    for change in changes:
        if change.do == "stop" and change.member not in down:
            down[change.member] = change.at
        elif change.do == "start" and change.member in down:
            found.append(Window(change.member, down.pop(change.member), change.at))
    found += [Window(member, start, None) for member, start in down.items()]
    return sorted(found, key=lambda window: window.start)


def stream_length(scenario: Scenario, changes: Sequence[Change], timing: Timing) -> float:
    """How long the probe stream lasts: the scenario's `probes.duration`, else 3T past the last change."""
    if scenario.probes.duration is not None:
        return scenario.probes.duration.seconds(timing)
    return max((change.at for change in changes), default=0.0) + TAIL.seconds(timing)
