"""`check`: serve the upstream(s), probe every chosen scenario through the proxy at once, judge them all.

Strategy: every probe carries its own scenario name and probe id and goes out on its own client
connection, so probes of different request-level scenarios cannot see each other's faults: they run
concurrently, and the whole catalogue takes about as long as its slowest scenario.  A connection-level
scenario has a port of its own, which the proxy routes its path prefix to, so its one probe is alone there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.selection import route_prefix
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


Address = tuple[str, int]


def checkable(scenario: Scenario, ports: Collection[str] = ()) -> bool:
    """Whether a probe can exercise the scenario on its own: request-level ones always, a
    connection-level one when it has a port of its own (named in `ports`)."""
    return scenario.phase != "deploy" and (not scenario.connection_level or scenario.name in ports)


def choose_scenarios(catalogue: Catalogue, only: Sequence[str], ports: Collection[str] = ()) -> list[Scenario]:
    """The scenarios to check: those named by --only (in that order), else every checkable one."""
    if not only:
        return [scenario for scenario in catalogue if checkable(scenario, ports)]
    unknown = [name for name in only if name not in catalogue]
    if unknown:
        raise ConfigError(f"--only: no scenario named {unknown[0]!r}")
    chosen = [catalogue.get(name) for name in only]
    for scenario in chosen:
        if scenario.phase == "deploy":
            raise ConfigError(f"--only: {scenario.name!r} is a deploy timeline, which `check` does not run yet")
        if not checkable(scenario, ports):
            raise ConfigError(
                f"--only: {scenario.name!r} needs an upstream port of its own: pass --upstream "
                f"{scenario.name}=HOST:PORT and have the proxy route {route_prefix(scenario.name)} to it"
            )
    return chosen


@dataclass(frozen=True)
class Served:
    """Upstreams being served, sharing one journal: the catalogue at `addresses`, and each
    connection-level scenario at its own address in `ports`."""

    journal: Journal
    addresses: list[Address]
    ports: dict[str, Address]

    @property
    def routes(self) -> dict[str, Address]:
        """What a proxy must route: each connection-level scenario's path prefix to its port."""
        return {route_prefix(name): address for name, address in self.ports.items()}


@asynccontextmanager
async def serving(
    catalogue: Catalogue, addresses: Sequence[Address], *, timing: Timing, ports: Mapping[str, Address] | None = None
) -> AsyncIterator[Served]:
    """Serve until the block ends; port 0 in an address picks a free port (`Served` has the real ones)."""
    journal = Journal()
    async with trio.open_nursery() as nursery:

        async def start(address: Address, default: str = "healthy") -> list[Address]:
            settings = Settings(host=address[0], port=address[1], timing=timing, default=default)
            try:
                return await nursery.start(Upstream(catalogue, settings, journal).run)
            except OSError as exc:
                raise ConfigError(f"--upstream: cannot serve on {address[0]}:{address[1]}: {exc.strerror or exc}") from None

        bound = [bound for address in addresses for bound in await start(address)]
        own = {name: (await start(address, name))[0] for name, address in (ports or {}).items()}
        yield Served(journal, bound, own)
        nursery.cancel_scope.cancel()


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
    addresses: Sequence[Address],
    catalogue: Catalogue,
    scenarios: Sequence[Scenario],
    *,
    timing: Timing,
    profile: str = RFC,
    ports: Mapping[str, Address] | None = None,
    on_result: Callable[[Result], None] = lambda result: None,
) -> Report:
    """Serve the catalogue at every address and each connection-level scenario at its port, check
    through the proxy, stop serving."""
    async with serving(catalogue, addresses, timing=timing, ports=ports) as served:
        return await check(proxy_url, scenarios, served.journal, timing=timing, profile=profile, on_result=on_result)
