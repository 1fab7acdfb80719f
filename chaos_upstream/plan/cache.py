"""Plans made once: a scenario whose plan cannot depend on the request is planned once per kind of request.

Invariant: `PlanCache.plan` returns exactly what `planner.plan` would for the same arguments (and
`PlanCache.plan_h2` what `h2_planner.plan_h2` would), and draws from the generator exactly as it would. It may answer from the cache only for a scenario
that is *fixed*: no rules (which read the request) and no duration drawn from a distribution
(the only thing the planner draws from its generator for). A fixed scenario's plan then depends on
nothing but the scenario, the timing and the request's *kind*: none (a connection just accepted),
HEAD or another method (HEAD gets no body bytes), and whether it lets the connection be kept.

Strategy: the healthy path is one fixed scenario asked again and again; planning it afresh (steps,
byte builder, the response's account) was the largest part of serving it. Pure, like the planner:
the cache is a dict held by whoever serves, never shared between processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from chaos_upstream.model.durations import LogNormal, Timing, Uniform
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan import planner
from chaos_upstream.plan.actions import Plan
from chaos_upstream.plan.h2_planner import plan_h2
from chaos_upstream.plan.h2_translate import NoEquivalent
from chaos_upstream.plan.request import RequestInfo

DRAWN = (Uniform, LogNormal)
"""The duration forms drawn from the generator: a step carrying one is planned anew each time."""


def fixed(scenario: Scenario) -> bool:
    """Whether `scenario`'s plan depends on nothing but the request's kind (see the module's invariant)."""
    return not scenario.rules and not any(
        isinstance(value, DRAWN) for step in (*scenario.steps, *scenario.http2) for value in step.__dict__.values()
    )


def request_kind(request: RequestInfo | None) -> tuple[bool, bool, bool]:
    """What a fixed scenario's plan may depend on in a request: (none at all, HEAD, keeps the connection)."""
    if request is None:
        return (True, False, False)
    return (False, request.method == "HEAD", request.keep_alive)


class PlanCache:
    """`planner.plan` and `h2_planner.plan_h2`, remembered for fixed scenarios by (scenario, timing,
    request kind, protocol).

    Scenarios are told apart by identity (the entry keeps the scenario alive, so its id is never
    reused while cached): a catalogue loaded again plans its scenarios afresh.
    """

    def __init__(self) -> None:
        self._fixed: dict[int, tuple[Scenario, bool]] = {}
        self._plans: dict[tuple[int, Timing, tuple[bool, bool, bool], bool], tuple[Scenario, Plan | NoEquivalent]] = {}

    def plan(
        self, scenario: Scenario, request: RequestInfo | None, rng: random.Random, timing: Timing, lookup: planner.Lookup
    ) -> Plan:
        """The plan `planner.plan` gives for these arguments."""
        return self._cached(planner.plan, False, scenario, request, rng, timing, lookup)  # type: ignore[return-value]

    def plan_h2(
        self, scenario: Scenario, request: RequestInfo, rng: random.Random, timing: Timing, lookup: planner.Lookup
    ) -> Plan | NoEquivalent:
        """The plan (or the refusal) `h2_planner.plan_h2` gives for these arguments."""
        return self._cached(plan_h2, True, scenario, request, rng, timing, lookup)

    def _cached(
        self, make: Callable[..., Plan | NoEquivalent], http2: bool, scenario: Scenario, request: RequestInfo | None,
        rng: random.Random, timing: Timing, lookup: planner.Lookup,
    ) -> Plan | NoEquivalent:
        if not self._is_fixed(scenario):
            return make(scenario, request, rng, timing, lookup)
        key = (id(scenario), timing, request_kind(request), http2)
        held = self._plans.get(key)
        if held is None or held[0] is not scenario:
            held = self._plans[key] = (scenario, make(scenario, request, rng, timing, lookup))
        return held[1]

    def _is_fixed(self, scenario: Scenario) -> bool:
        held = self._fixed.get(id(scenario))
        if held is None or held[0] is not scenario:
            held = self._fixed[id(scenario)] = (scenario, fixed(scenario))
        return held[1]
