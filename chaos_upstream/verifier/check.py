"""`check`: serve the upstream(s), probe every chosen scenario through the proxy at once, judge them all.

Strategy: every probe carries its own scenario name and probe id and goes out on its own client
connection, so probes of different request-level scenarios cannot see each other's faults: they run
concurrently, and the whole catalogue takes about as long as its slowest scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.verifier.judge import PASS, PROFILES, RFC
from chaos_upstream.verifier.probe import Result, probe


@dataclass
class Report:
    """The verdicts of one check run through one proxy."""

    proxy: str
    profile: str
    timing: Timing
    results: list[Result] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def passed(self) -> bool:
        return all(result.verdict == PASS for result in self.results)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "profile": self.profile,
            "proxy_timeout_s": self.timing.proxy_timeout,
            "elapsed_s": round(self.elapsed, 3),
            "results": [result.to_json() for result in self.results],
        }


def checkable(scenario: Scenario) -> bool:
    """Request-level scenarios: those a probe through one upstream address can exercise on its own."""
    return scenario.trigger == "request" and scenario.phase != "deploy"


def choose_scenarios(catalogue: Catalogue, only: Sequence[str]) -> list[Scenario]:
    """The scenarios to check: those named by --only (in that order), else every checkable one."""
    if not only:
        return [scenario for scenario in catalogue if checkable(scenario)]
    unknown = [name for name in only if name not in catalogue]
    if unknown:
        raise ConfigError(f"--only: no scenario named {unknown[0]!r}")
    chosen = [catalogue.get(name) for name in only]
    for scenario in chosen:
        if not checkable(scenario):
            raise ConfigError(f"--only: {scenario.name!r} needs an upstream port of its own; `check` probes request-level scenarios")
    return chosen


async def check(
    proxy_url: str,
    scenarios: Sequence[Scenario],
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    on_result: Callable[[Result], None] = lambda result: None,
) -> Report:
    """Probe every scenario through the proxy, concurrently; results come back in `scenarios` order."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: {profile!r} is not one of {', '.join(PROFILES)}")
    report = Report(proxy_url, profile, timing)
    results: dict[str, Result] = {}
    started = trio.current_time()

    async def one(scenario: Scenario) -> None:
        results[scenario.name] = await probe(proxy_url, scenario, journal, timing=timing, profile=profile)
        on_result(results[scenario.name])

    async with trio.open_nursery() as nursery:
        for scenario in scenarios:
            nursery.start_soon(one, scenario)
    report.results = [results[scenario.name] for scenario in scenarios]
    report.elapsed = trio.current_time() - started
    return report


async def serve_and_check(
    proxy_url: str,
    addresses: Sequence[tuple[str, int]],
    catalogue: Catalogue,
    scenarios: Sequence[Scenario],
    *,
    timing: Timing,
    profile: str = RFC,
    on_result: Callable[[Result], None] = lambda result: None,
) -> Report:
    """Serve the catalogue at every address (one journal for all), check through the proxy, stop serving."""
    journal = Journal()
    async with trio.open_nursery() as nursery:
        for host, port in addresses:
            upstream = Upstream(catalogue, Settings(host=host, port=port, timing=timing), journal)
            await nursery.start(upstream.run)
        report = await check(proxy_url, scenarios, journal, timing=timing, profile=profile, on_result=on_result)
        nursery.cancel_scope.cancel()
    return report
