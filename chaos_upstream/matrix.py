"""The matrix: every chosen real proxy, started with a generated configuration, checked, side by side.

Each proxy gets upstreams of its own (the catalogue on one free port, each connection-level scenario
on another, routed by its path prefix), its own journal, its own timeout (the asked one rounded up
to what the proxy can be told) and its own profile; the proxies are started and checked at once,
within `Limits` (by default as many proxies' request-level scenarios, and as many timelines, at a
time as this process has CPUs), so that no probe is judged late because the machine was busy with
the others; a probe that still comes late is probed once more, alone (see `verifier.check`).

Invariants: a proxy that is not installed is a column saying so, never an error; a proxy that does
not start is a column carrying the proxy's own words, and the others still run; every proxy started
is stopped before `run_matrix` returns.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from chaos_upstream.errors import ConfigError, unwrap
from chaos_upstream.harness.serving import serving
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.proxies import LAUNCHERS, Launcher, ProxyError, RunningProxy, get_launcher
from chaos_upstream.proxies.ports import LOOPBACK
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.verifier.check import WORST_FIRST, Report, check
from chaos_upstream.verifier.judge import PASS
from chaos_upstream.verifier.probe import Result

RAN, NOT_INSTALLED, FAILED = "ran", "not installed", "failed to start"

FLEET = 2
"""Upstreams behind each proxy for the timelines: a rolling deploy needs two."""


def cpus() -> int:
    """The CPUs this process may run on (its affinity, which taskset or a container's cpuset narrows),
    else every CPU the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """What a matrix runs at once, shared by every proxy of it: `concurrency` proxies' request-level
    scenarios (some 30 probes at once each, and their upstream) and `concurrency` timelines (40
    probes a second each). The probes and the upstreams of every proxy share this one process: with
    twelve proxies at once on a 2-core machine, answers due at 0.5T came after T (slow-response
    judged a 504) and aborts due at T after 1.6T, and with three of each kind seven proxies still
    earned timing verdicts that differed from run to run: by default, one of each kind per CPU."""

    timelines: trio.CapacityLimiter
    singles: trio.CapacityLimiter

    @classmethod
    def fitting(cls, concurrency: int | None = None) -> Limits:
        """`concurrency` of each kind at once (default: `cpus()`); fewer than 1 is a ConfigError."""
        concurrency = cpus() if concurrency is None else concurrency
        if concurrency < 1:
            raise ConfigError(f"--concurrency: {concurrency} is not a number of proxies to check at once (1 or more)")
        return cls(trio.CapacityLimiter(concurrency), trio.CapacityLimiter(concurrency))


@dataclass
class Run:
    """One proxy's column: its report when it ran, else why not."""

    launcher: Launcher
    status: str
    version: str | None = None
    report: Report | None = None
    config: str = ""
    """The configuration the proxy was started with (empty when it did not start)."""
    problem: str = ""
    """Why the proxy did not run, in the proxy's own words where it has any."""
    error_log: str = ""

    @property
    def name(self) -> str:
        """The proxy's name, with its variant if not the default: "nginx", "nginx:deploy-safe"."""
        return self.launcher.key

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name

    @property
    def passed(self) -> bool:
        return self.status != FAILED and (self.report is None or self.report.passed)

    def result(self, scenario: str) -> Result | None:
        if self.report is None:
            return None
        return next((r for r in self.report.results if r.scenario.name == scenario), None)

    def to_json(self) -> dict[str, Any]:
        """The interface's run object: proxy (the launcher's name, with `:VARIANT` for a variant) and
        version, then the check report or why there is none."""
        head = {"proxy": self.name, "variant": self.launcher.variant, "version": self.version, "status": self.status}
        if self.report is None:
            return {**head, "problem": self.problem}
        return {**head, **self.report.to_json(), "proxy_url": self.report.proxy, "proxy": self.name}


def choose_launchers(names: Sequence[str]) -> list[Launcher]:
    """The launchers named (all known ones when none), in the order given; unknown names are a ConfigError."""
    try:
        return [get_launcher(name) for name in names] if names else list(LAUNCHERS.values())
    except KeyError as exc:
        raise ConfigError(f"--proxies: {exc}") from None


async def run_proxy(
    launcher: Launcher,
    catalogue: Catalogue,
    scenarios: Sequence[Scenario],
    *,
    proxy_timeout: float,
    workdir: Path,
    on_result: Callable[[Launcher, Result], None] = lambda launcher, result: None,
    limits: Limits | None = None,
    tls: Contexts | None = None,
) -> Run:
    """Check every scenario through the proxy, in parallel parts, each with a proxy instance of its
    own: the request- and connection-level scenarios in front of a single upstream (so passive
    health checks cannot send a probe elsewhere), each connection-level scenario on a port of its
    own; each timeline in front of a fleet of FLEET of its own, so that what one timeline does to
    the proxy's view of its upstreams (members marked down) cannot leak into another."""
    if not launcher.installed():
        return Run(launcher, NOT_INSTALLED, problem=f"{launcher.source} is not installed")
    timing = Timing(launcher.effective_timeout(proxy_timeout))
    plain = [s for s in scenarios if not s.timeline]
    parts = [("single", 1, plain)] if plain else []
    parts += [(s.name, FLEET, [s]) for s in scenarios if s.timeline]
    if not parts:
        raise ConfigError("no scenario to check")
    done: dict[str, tuple[Report, RunningProxy]] = {}
    limits = limits or Limits.fitting()

    async def part(name: str, members: int, chosen: list[Scenario]) -> None:
        async with limits.timelines if chosen[0].timeline else limits.singles:
            done[name] = await check_through(launcher, catalogue, chosen, timing, workdir / name, members,
                                             lambda result: on_result(launcher, result), tls)

    try:
        async with trio.open_nursery() as nursery:
            for name, members, chosen in parts:
                nursery.start_soon(part, name, members, chosen)
    except (ProxyError, BaseExceptionGroup) as exc:
        failed = unwrap(exc, ProxyError)
        if failed is None:
            raise
        return Run(launcher, FAILED, problem=str(failed))
    results = {result.scenario.name: result for report, _ in done.values() for result in report.results}
    first = done[parts[0][0]][1]  # the single-upstream instance when there is one
    report = Report(first.url, launcher.profile, timing, [results[s.name] for s in scenarios],
                    max(report.elapsed for report, _ in done.values()), proxy_version=first.version,
                    date=min(report.date for report, _ in done.values()))
    return Run(launcher, RAN, first.version, report, first.config_text, error_log=first.error_log())


@contextlib.asynccontextmanager
async def running(
    launcher: Launcher, addresses: Sequence[tuple[str, int]], proxy_timeout: float, workdir: Path,
    routes: Mapping[str, tuple[str, int]] | None = None,
) -> AsyncIterator[RunningProxy]:
    """The proxy started (in a thread) for the block, and stopped after it, whatever happens.

    Both are shielded from cancellation: a start cancelled half-way would leave a proxy running
    with no one to stop it (a thread cannot be interrupted, and its result would be lost)."""
    with trio.CancelScope(shield=True):
        proxy = await trio.to_thread.run_sync(launcher.start, addresses, proxy_timeout, workdir, routes)
    try:
        yield proxy
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(proxy.stop)


async def check_through(
    launcher: Launcher, catalogue: Catalogue, scenarios: Sequence[Scenario], timing: Timing, workdir: Path,
    members: int = 1, on_result: Callable[[Result], None] = lambda result: None, tls: Contexts | None = None,
) -> tuple[Report, RunningProxy]:
    """(report, proxy): the proxy started in front of a fleet of `members` serving the catalogue
    (and a port for each connection-level scenario; over TLS with `tls`), `check` run through it
    under the proxy's profile, the proxy stopped (its `error_log()` stays readable). Over TLS the
    probes name the proxy `localhost`: the proxies that send the client's Host as SNI then send the
    name the upstream's certificate is for."""
    ports = {scenario.name: (LOOPBACK, 0) for scenario in scenarios if scenario.connection_level}
    async with (
        serving(catalogue, [(LOOPBACK, 0)] * members, timing=timing, ports=ports, tls=tls) as served,
        running(launcher, served.addresses, timing.proxy_timeout, workdir, served.routes) as proxy,
    ):
        url = proxy.url if tls is None else proxy.url.replace(f"//{LOOPBACK}:", "//localhost:")
        report = await check(url, scenarios, served.journal, timing=timing, profile=launcher.profile,
                             members=served.members, on_result=on_result, http2=launcher.h2)
    return report, proxy


async def run_matrix(
    launchers: Sequence[Launcher],
    catalogue: Catalogue,
    scenarios: Sequence[Scenario],
    *,
    proxy_timeout: float,
    workdir: Path,
    on_result: Callable[[Launcher, Result], None] = lambda launcher, result: None,
    concurrency: int | None = None,
    tls: Contexts | None = None,
) -> list[Run]:
    """Every proxy at once, within `Limits.fitting(concurrency)` (the upstreams over TLS with `tls`);
    the runs come back in the order of `launchers`."""
    runs: dict[str, Run] = {}
    limits = Limits.fitting(concurrency)

    async def one(launcher: Launcher) -> None:
        runs[launcher.key] = await run_proxy(
            launcher, catalogue, scenarios, proxy_timeout=proxy_timeout, workdir=workdir / launcher.slug,
            on_result=on_result, limits=limits, tls=tls,
        )

    async with trio.open_nursery() as nursery:
        for launcher in launchers:
            nursery.start_soon(one, launcher)
    return [runs[launcher.key] for launcher in launchers]


def worst_first(scenarios: Sequence[Scenario], runs: Sequence[Run]) -> list[Scenario]:
    """The matrix's rows: a scenario some proxy failed first, then one some proxy was inconclusive
    on, then the rest; in `scenarios` order within each."""
    def rank(scenario: Scenario) -> int:
        results = [run.result(scenario.name) for run in runs]
        return min((WORST_FIRST[result.verdict] for result in results if result is not None), default=WORST_FIRST[PASS])

    return sorted(scenarios, key=rank)


def cell(result: Result | None) -> str:
    """A verdict in a cell: "pass", "pass*" (only under the proxy's own profile), "fail", ..."""
    if result is None:
        return "-"
    return result.verdict + ("*" if result.verdict == PASS and result.judgement.profile_only else "")
