"""Which scenario a request gets: named on the wire, else the active one, else the mix, else default.

Pure: the server passes in the request head, its current active scenario and its seeded generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from chaos_upstream.errors import ConfigError

SCENARIO_HEADER = "x-chaos-scenario"
PROBE_HEADER = "x-chaos-probe"
PATH_PREFIX = "/_chaos/"


def route_prefix(name: str) -> str:
    """The path prefix that selects scenario `name` on the wire; also what a proxy routes to a
    connection-level scenario's own port."""
    return f"{PATH_PREFIX}{name}/"


@dataclass(frozen=True)
class Mix:
    """Scenarios with weights, for requests that name none (`--mix healthy=90,truncated-chunked=5`)."""

    weights: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str) -> Mix:
        weights = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, weight = item.partition("=")
            try:
                value = float(weight)
            except ValueError:
                value = -1.0
            if not sep or not name or value < 0:
                raise ConfigError(f"{item!r} is not NAME=WEIGHT with a weight of 0 or more")
            weights.append((name.strip(), value))
        if not weights or sum(w for _, w in weights) <= 0:
            raise ConfigError("give at least one NAME=WEIGHT with a positive weight")
        return cls(tuple(weights))

    def __str__(self) -> str:
        return ",".join(f"{name}={weight:g}" for name, weight in self.weights)

    def pick(self, rng: random.Random) -> str:
        names = [name for name, _ in self.weights]
        return rng.choices(names, weights=[w for _, w in self.weights])[0]


@dataclass(frozen=True)
class Choice:
    """The scenario chosen for a request, how it was chosen, and the path rules should match."""

    name: str
    source: str
    """"header", "path", "active", "mix" or "default"."""
    path: str


def choose(
    path: str,
    scenario_header: str | None,
    *,
    active: str | None,
    mix: Mix | None,
    default: str,
    rng: random.Random,
) -> Choice:
    """Pick the scenario for one request (`path`: its target's, see request_path); draws from `rng`
    only when the mix decides."""
    if scenario_header:
        return Choice(scenario_header.strip(), "header", path)
    if path.startswith(PATH_PREFIX):
        name, _, rest = path[len(PATH_PREFIX) :].partition("/")
        return Choice(name, "path", "/" + rest)
    if active is not None:
        return Choice(active, "active", path)
    if mix is not None:
        return Choice(mix.pick(rng), "mix", path)
    return Choice(default, "default", path)
