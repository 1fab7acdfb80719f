"""`check`: serve the upstream(s), probe every chosen scenario through the proxy at once, judge them all.

Strategy: every probe carries its own scenario name and probe id and goes out on its own client
connection, so probes of different request-level scenarios cannot see each other's faults: they run
concurrently, and the whole catalogue takes about as long as its slowest scenario.  A connection-level
scenario has a port of its own, which the proxy routes its path prefix to, so its one probe is alone there.
Through a fleet of two or more, a proxy's passive health check carries one fault over to the next
(a member marked down after a reset is not tried for another probe), so there the probes run one at
a time, each once the proxy sends requests to every member again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from chaos_upstream.errors import ConfigError, unwrap
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.selection import route_prefix
from chaos_upstream.server.fleet import Fleet, Member
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.verifier.judge import PASS, PROFILES, RFC
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.stream import ROTATION_EVERY, ROTATION_LIMIT, in_rotation, not_in_rotation, probe_scenario


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


def checkable(scenario: Scenario, ports: Collection[str] = (), members: int = 1) -> bool:
    """Whether `check` can exercise the scenario: a request-level one always, a connection-level one
    when it has a port of its own (named in `ports`), a timeline when the fleet is large enough."""
    if scenario.timeline:
        return members >= scenario.min_members
    return not scenario.connection_level or scenario.name in ports


def choose_scenarios(
    catalogue: Catalogue, only: Sequence[str], ports: Collection[str] = (), members: int = 1
) -> list[Scenario]:
    """The scenarios to check: those named by --only (in that order), else every checkable one."""
    if not only:
        return [scenario for scenario in catalogue if checkable(scenario, ports, members)]
    unknown = [name for name in only if name not in catalogue]
    if unknown:
        raise ConfigError(f"--only: no scenario named {unknown[0]!r}")
    chosen = [catalogue.get(name) for name in only]
    for scenario in chosen:
        if scenario.connection_level and scenario.name not in ports:
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
    members: list[Member]
    """The fleet serving the catalogue, one member per address."""
    ports: dict[str, Address]

    @property
    def addresses(self) -> list[Address]:
        return [member.address for member in self.members]

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

        async def start(server: Upstream | Fleet) -> Address:
            try:
                [address, *_] = await nursery.start(server.run)
            except (OSError, BaseExceptionGroup) as exc:  # a Member's own nursery wraps its Upstream's error
                failure = unwrap(exc, OSError)
                if failure is None:
                    raise
                where = failure.filename or "its address"
                raise ConfigError(f"cannot serve an upstream on {where}: {failure.strerror or failure}") from None
            return address

        fleet = Fleet(catalogue, [_settings(address, timing) for address in addresses], journal)
        await start(fleet)
        own = {name: await start(Upstream(catalogue, _settings(address, timing, name), journal))
               for name, address in (ports or {}).items()}
        yield Served(journal, fleet.members, own)
        nursery.cancel_scope.cancel()


def _settings(address: Address, timing: Timing, default: str = "healthy") -> Settings:
    return Settings(host=address[0], port=address[1], timing=timing, default=default)


async def check(
    proxy_url: str,
    scenarios: Sequence[Scenario],
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Sequence[Member] = (),
    on_result: Callable[[Result], None] = lambda result: None,
    rotation_limit: float = ROTATION_LIMIT,
) -> Report:
    """Probe every scenario through the proxy: all at once (one after another through a fleet of two
    or more, each once the fleet is in rotation, waiting at most `rotation_limit` seconds), then the
    timelines one after another (each acts on the whole fleet, `members`); results come back in
    `scenarios` order."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: {profile!r} is not one of {', '.join(PROFILES)}")
    report = Report(proxy_url, profile, timing)
    results: dict[str, Result] = {}
    started = trio.current_time()

    async def one(scenario: Scenario, in_rotation_first: bool = False) -> None:
        waited = await in_rotation(proxy_url, scenario, journal, members, timing=timing, every=ROTATION_EVERY,
                                   limit=rotation_limit) if in_rotation_first else 0.0
        result = await probe_scenario(proxy_url, scenario, journal, timing=timing, profile=profile, members=members,
                                      rotation_limit=rotation_limit)
        if waited is None:
            result = replace(result, judgement=not_in_rotation(result.judgement, rotation_limit))
        results[scenario.name] = result
        on_result(result)

    single = [scenario for scenario in scenarios if not scenario.timeline]
    if len(members) > 1:
        for index, scenario in enumerate(single):
            await one(scenario, in_rotation_first=True)
            if index == 0:
                _check_every_member_reached(journal, members, rotation_limit)
    else:
        async with trio.open_nursery() as nursery:
            for scenario in single:
                nursery.start_soon(one, scenario)
    for scenario in scenarios:
        if scenario.timeline:
            await one(scenario)
    report.results = [results[scenario.name] for scenario in scenarios]
    report.elapsed = trio.current_time() - started
    return report


def _check_every_member_reached(journal: Journal, members: Sequence[Member], waited: float) -> None:
    """ConfigError when a member got no request at all through the proxy while the first probe waited
    for the fleet to be in rotation: the proxy does not forward to that address."""
    reached = {record.get("member") for record in journal.records(type="request")}
    missing = [member for member in members if member.index not in reached]
    if missing:
        where = ", ".join(f"{member.address[0]}:{member.address[1]}" for member in missing)
        raise ConfigError(f"--upstream {where}: no request came through the proxy in {waited:g} s; give "
                          "--upstream only the addresses your proxy forwards to")


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
    rotation_limit: float = ROTATION_LIMIT,
) -> Report:
    """Serve the catalogue at every address and each connection-level scenario at its port, check
    through the proxy, stop serving."""
    async with serving(catalogue, addresses, timing=timing, ports=ports) as served:
        return await check(proxy_url, scenarios, served.journal, timing=timing, profile=profile, members=served.members,
                           on_result=on_result, rotation_limit=rotation_limit)
