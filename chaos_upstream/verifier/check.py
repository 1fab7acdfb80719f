"""`check`: probe every chosen scenario through the proxy at once, judge them all (the upstreams are
served by whoever calls it: `chaos_upstream.harness.serve_and_check` serves them for the command).

Strategy: every probe carries its own scenario name and probe id and goes out on its own client
connection, so probes of different request-level scenarios cannot see each other's faults: they run
concurrently, and the whole catalogue takes about as long as its slowest scenario.  A connection-level
scenario has a port of its own, which the proxy routes its path prefix to, so its one probe is alone there.
Through a fleet of two or more, a proxy's passive health check carries one fault over to the next
(a member marked down after a reset is not tried for another probe), so there the probes run one at
a time, each once the proxy sends requests to every member again.

A single probe that failed only because its answer came late (`Verdict.late_only`: a 504 or an
abort after `max_elapsed`) may owe that to a busy machine, which delays and never hastens: once its
batch is done, it is probed once more, alone, and that second verdict stands, the first kept with it
(`Result.first`). Any other fail (a wrong status, a replay, a masked truncation, an early answer) is
a finding and is never probed again; nor is a stream.

Invariant: a check never judges a catalogue it could not reach. When the proxy answers the probe of
REACH without forwarding it to the single upstream, the check stops at once with a ConfigError
naming the address, instead of 27 inconclusive verdicts (a fleet's first probe finds the same as it
waits for rotation). Check sends no request of its own beyond the probes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.model.steps import Headers
from chaos_upstream.plan.h2_planner import no_equivalent
from chaos_upstream.plan.selection import route_prefix
from chaos_upstream.verifier.attempts import Journal
from chaos_upstream.verifier.classify import STATUS, Observation
from chaos_upstream.model.scenario import PROFILES, RFC
from chaos_upstream.verifier.judge import FAIL, INCONCLUSIVE, PASS
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.series import (
    ROTATION_EVERY, ROTATION_LIMIT, Address, Fleet, in_rotation, not_in_rotation, probe_scenario,
)


VERSION = metadata.version("chaos-upstream")
"""chaos-upstream's own version, from the installed package's metadata: every report carries it."""

REACH = "healthy"
"""The scenario whose probe tells that the proxy forwards to the single upstream at all: any proxy
passes it on. No request of check's own does: an opening GET changed what came after it (a
connection in the proxy's pool, Squid's coarse clock set going, HAProxy's view of a fleet)."""

WORST_FIRST = {FAIL: 0, INCONCLUSIVE: 1, PASS: 2}
"""The order of verdicts in every report: what needs a look comes first."""


@dataclass(frozen=True)
class Skipped:
    """A catalogue scenario that `check` left out, and the option that would include it."""

    scenario: str
    reason: str
    """What it needs, naming the option: "needs an upstream port of its own: pass --upstream ..."."""
    hint: str
    """The same, with NAME for the scenario: one line lists every scenario left out for one cause."""

    def to_json(self) -> dict[str, str]:
        return {"scenario": self.scenario, "reason": self.reason}


@dataclass
class Report:
    """The verdicts of one check run through one proxy; `results` in the order the scenarios were
    given, `worst_first()` in the order reports show them."""

    proxy: str
    profile: str
    timing: Timing
    results: list[Result] = field(default_factory=list)
    elapsed: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    proxy_version: str | None = None
    """What the proxy says it is (a launcher's version, or the `Server` header it sends); None when unknown."""
    date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    """When the check began, in UTC."""

    @property
    def passed(self) -> bool:
        return all(result.verdict == PASS for result in self.results)

    @property
    def stamp(self) -> str:
        """The date in ISO 8601, UTC, to the second: "2025-05-01T09:30:00Z"."""
        return self.date.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    def worst_first(self) -> list[Result]:
        """The results, failures first, then inconclusive, then passes; in scenario order within each."""
        return sorted(self.results, key=lambda result: WORST_FIRST[result.verdict])

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
        return counts

    def summary(self) -> str:
        """Every verdict counted, zeros included: "23 pass, 9 fail, 0 inconclusive"."""
        counts = self.counts()
        return ", ".join(f"{counts.get(verdict, 0)} {verdict}" for verdict in (PASS, FAIL, INCONCLUSIVE))

    def to_json(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "profile": self.profile,
            "proxy_version": self.proxy_version,
            "chaos_upstream_version": VERSION,
            "date": self.stamp,
            "proxy_timeout_s": self.timing.proxy_timeout,
            "elapsed_s": round(self.elapsed, 3),
            "results": [result.to_json() for result in self.worst_first()],
            "skipped": [skipped.to_json() for skipped in self.skipped],
        }



def left_out(
    scenario: Scenario, ports: Collection[str] = (), members: int = 1, tls: bool = False, http2: bool = False
) -> Skipped | None:
    """Why `check` cannot exercise the scenario, or None when it can: a request-level one always
    can (through a proxy speaking HTTP/2 to the upstream, `http2`, when it has an HTTP/2
    equivalent), a connection-level one when it has a port of its own (named in `ports`), a
    timeline when the fleet has `min_members`, a TLS one (`tls`) when the upstream serves TLS, an
    HTTP/2 one when the proxy speaks HTTP/2 to it."""
    if scenario.tls is not None and not tls:
        need = "needs TLS: pass --tls, and have the proxy speak TLS to the upstream"
        return Skipped(scenario.name, need, "each " + need)
    if scenario.http2_only and not http2:
        need = "needs HTTP/2: pass --h2, and have the proxy speak HTTP/2 to the upstream (h2c, or h2 with --tls)"
        return Skipped(scenario.name, need, "each " + need)
    if http2 and (missing := no_equivalent(scenario)) is not None:
        return Skipped(scenario.name, f"has no HTTP/2 equivalent: {missing}", "each has no HTTP/2 equivalent (see docs/http2.md)")
    if scenario.timeline:
        if members >= scenario.min_members:
            return None
        need = (f"needs a fleet of at least {scenario.min_members} upstreams, and --upstream gave {members}: pass "
                f"--upstream HOST:PORT {scenario.min_members} times, each an address the proxy forwards to")
        return Skipped(scenario.name, need, f"each {need}")
    if not scenario.connection_level or scenario.name in ports:
        return None
    need = "needs an upstream port of its own: pass --upstream {0}=HOST:PORT and have the proxy route {1} to it"
    return Skipped(scenario.name, need.format(scenario.name, route_prefix(scenario.name)),
                   "each " + need.format("NAME", route_prefix("NAME")))


def choose_scenarios(
    catalogue: Catalogue, only: Sequence[str], ports: Collection[str] = (), members: int = 1, tls: bool = False,
    http2: bool = False,
) -> list[Scenario]:
    """The scenarios to check: those named by --only (in that order; one that cannot be checked is
    a ConfigError naming the option that would allow it), else every one that can be."""
    if not only:
        return [scenario for scenario in catalogue if left_out(scenario, ports, members, tls, http2) is None]
    unknown = [name for name in only if name not in catalogue]
    if unknown:
        raise ConfigError(f"--only: no scenario named {unknown[0]!r}")
    chosen = [catalogue.get(name) for name in only]
    for scenario in chosen:
        skipped = left_out(scenario, ports, members, tls, http2)
        if skipped is not None:
            raise ConfigError(f"--only: {scenario.name!r} {skipped.reason}")
    return chosen


def unchecked(
    catalogue: Catalogue, only: Sequence[str], ports: Collection[str] = (), members: int = 1, tls: bool = False,
    http2: bool = False,
) -> list[Skipped]:
    """The catalogue's scenarios that `choose_scenarios` leaves out without being asked to (none
    under --only, where the user chose), each with the option that would include it."""
    if only:
        return []
    return [skipped for scenario in catalogue if (skipped := left_out(scenario, ports, members, tls, http2)) is not None]


async def check(
    proxy_url: str,
    scenarios: Sequence[Scenario],
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Fleet | None = None,
    on_result: Callable[[Result], None] = lambda result: None,
    rotation_limit: float = ROTATION_LIMIT,
    skipped: Sequence[Skipped] = (),
    http2: bool = False,
) -> Report:
    """Probe every scenario through the proxy: all at once (one after another through a fleet of two
    or more, each once the fleet is in rotation, waiting at most `rotation_limit` seconds), then the
    timelines one after another (each acts on the whole fleet, `members`); results come back in
    `scenarios` order. Through a single upstream, `healthy`'s probe tells whether the proxy forwards
    there at all (ConfigError at once otherwise, the verdicts before it held back; a fleet's first
    probe finds that out as it waits for rotation). The proxy's version is the `Server` header of
    its answers. A single probe that failed only by coming late is probed once more, alone, once
    the others are done (see the module's header). `skipped` goes into the report as is. With
    `http2` (the proxy speaks HTTP/2 to the upstream) every scenario is probed alone, as HTTP/2
    scenarios always are: the proxy shares one connection between probes, and may end it for one
    stream's fault (Envoy does, for a response it takes as malformed)."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: {profile!r} is not one of {', '.join(PROFILES)}")
    report = Report(proxy_url, profile, timing, skipped=list(skipped))
    results: dict[str, Result] = {}
    started = trio.current_time()
    size, addresses = (len(members), members.addresses) if members else (0, [])
    held: list[Result] | None = [] if size == 1 and any(s.name == REACH for s in scenarios) else None

    def show(result: Result) -> None:
        """on_result, once REACH's probe shows the proxy forwards to the single upstream."""
        nonlocal held
        if held is not None and result.scenario.name != REACH:
            held.append(result)
            return
        if held is not None:
            if not result.attempts and result.capture is not None:
                raise _never_reached(proxy_url, addresses, result)
            for earlier in held:
                on_result(earlier)
            held = None
        on_result(result)

    late: list[Result] = []

    async def one(scenario: Scenario, in_rotation_first: bool = False, first: Result | None = None) -> None:
        """Probe `scenario` and show its result, or, when it failed late the first time, keep it in
        `late` for a second probe (`first`) after the batch."""
        waited = await in_rotation(proxy_url, scenario, journal, members or (), timing=timing, every=ROTATION_EVERY,
                                   limit=rotation_limit) if in_rotation_first else 0.0
        result = await probe_scenario(proxy_url, scenario, journal, timing=timing, profile=profile, members=members,
                                      rotation_limit=rotation_limit)
        if waited is None:
            result = replace(result, judgement=not_in_rotation(result.judgement, rotation_limit))
        if first is None and result.judgement.late_only:
            late.append(result)
            return
        results[scenario.name] = replace(result, first=first)
        show(results[scenario.name])

    single = [scenario for scenario in scenarios if not (http2 or scenario.probed_alone)]
    if size > 1:
        for index, scenario in enumerate(single):
            await one(scenario, in_rotation_first=True)
            if index == 0:
                _check_every_member_reached(journal, addresses, rotation_limit)
    else:
        async with trio.open_nursery() as nursery:
            for scenario in single:
                nursery.start_soon(one, scenario)
    for first in late:  # one at a time, the batch done: the machine is quieter
        await one(first.scenario, in_rotation_first=size > 1, first=first)
    for scenario in scenarios:
        if http2 or scenario.probed_alone:
            await one(scenario, in_rotation_first=size > 1 and not scenario.timeline)
    report.results = [results[scenario.name] for scenario in scenarios]
    report.elapsed = trio.current_time() - started
    answers = (_server(result.observation, result.scenario) for result in report.results)
    report.proxy_version = report.proxy_version or next((server for server in answers if server), None)
    return report


def _never_reached(proxy_url: str, addresses: Sequence[Address], result: Result) -> ConfigError:
    where = ", ".join(f"{host}:{port}" for host, port in addresses)
    return ConfigError(f"--upstream {where}: no probe reached {where} through the proxy at {proxy_url} (it answered "
                       f"{result.observation.summary()}); give --upstream the address your proxy forwards to")


def _server(observation: Observation, scenario: Scenario) -> str | None:
    """The `Server` header of a complete answer, unless `scenario`, which the upstream answered, declares one."""
    value = observation.header(b"server") if observation.kind == STATUS else None
    steps = [*scenario.steps, *(step for rule in scenario.rules for step in rule.steps or ())]
    own = any(isinstance(step, Headers) and any(name.lower() == "server" for name, _ in step.fields) for step in steps)
    return None if value is None or own else value.decode("latin-1")


def _check_every_member_reached(journal: Journal, addresses: Sequence[Address], waited: float) -> None:
    """ConfigError when a member got no request at all through the proxy while the first probe waited
    for the fleet to be in rotation: the proxy does not forward to that address."""
    reached = {record.member for record in journal.records(type="request")}
    missing = [address for index, address in enumerate(addresses) if index not in reached]
    if missing:
        where = ", ".join(f"{host}:{port}" for host, port in missing)
        raise ConfigError(f"--upstream {where}: no request came through the proxy in {waited:g} s; give "
                          "--upstream only the addresses your proxy forwards to")

