"""`make demo`: the catalogue through every installed real proxy, judged, in one table.

Starts one upstream, every installed proxy of LAUNCHERS in front of it (configs generated, timeouts
set to T), runs `check` through all of them at once (probe ids keep them apart), and prints the
verdicts: scenarios down, proxies across, then the reason for every failing verdict.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from chaos_upstream.cli import VERDICT_COLOURS
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import LAUNCHERS, RunningProxy
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.verifier.check import Report, check, choose_scenarios
from chaos_upstream.verifier.judge import PASS
from chaos_upstream.verifier.probe import Result

TIMEOUT = 0.5
"""T for the demo: above nginx's 300 ms lazy-timer granularity, short enough to finish in seconds."""

async def tour(catalogue: Catalogue, workdir: Path, console: Console) -> None:
    timing = Timing(TIMEOUT)
    upstream = Upstream(catalogue, Settings(port=0, timing=timing))
    scenarios = choose_scenarios(catalogue, [])
    reports: dict[str, Report] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.run)
        proxies = await start_proxies(upstream.addresses, workdir, console)
        try:
            async with trio.open_nursery() as checks:
                for proxy in proxies:
                    checks.start_soon(check_one, proxy, scenarios, upstream, timing, reports)
        finally:
            for proxy in proxies:
                await trio.to_thread.run_sync(proxy.stop)
        nursery.cancel_scope.cancel()
    print_matrix(scenarios, {_label(p): reports[_label(p)] for p in proxies}, console)


async def start_proxies(addresses: list, workdir: Path, console: Console) -> list[RunningProxy]:
    proxies = []
    for name, launcher in LAUNCHERS.items():
        if not launcher.installed():
            console.print(f"[yellow]{name} is not installed: skipped[/]")
            continue
        proxies.append(await trio.to_thread.run_sync(launcher.start, addresses, TIMEOUT, workdir / name))
    return proxies


async def check_one(proxy: RunningProxy, scenarios: list, upstream: Upstream, timing: Timing, reports: dict) -> None:
    reports[_label(proxy)] = await check(proxy.url, scenarios, upstream.journal, timing=timing)


def _label(proxy: RunningProxy) -> str:
    return f"{proxy.name} {proxy.version}"


def print_matrix(scenarios: list, reports: dict[str, Report], console: Console) -> None:
    table = Table("scenario", "expected", *reports, title=f"verdicts (RFC profile, T = {TIMEOUT} s)")
    for index, scenario in enumerate(scenarios):
        cells = [_cell(report.results[index]) for report in reports.values()]
        table.add_row(scenario.name, " or ".join(map(str, scenario.expect.outcomes)), *cells)
    console.print(table)
    for proxy, report in reports.items():
        for result in report.results:
            if result.verdict != PASS:
                console.print(f"[bold]{proxy}[/] {result.scenario.name}: {result.reason}")


def _cell(result: Result) -> str:
    return f"[{VERDICT_COLOURS[result.verdict]}]{result.verdict}[/] ({result.seen})"


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    with tempfile.TemporaryDirectory(prefix="chaos-upstream-demo-") as workdir:
        trio.run(tour, Catalogue.load(), Path(workdir), console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
