"""`make demo`: the catalogue on the wire, straight from chaos-upstream and through real proxies.

Starts an upstream, every installed proxy of LAUNCHERS in front of it (configs generated, timeouts
set to T), sends one request per scenario to each, all at once, and prints what the client saw.
Verdicts come with the verifier; this shows the raw facts they are judged from.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import LAUNCHERS, RunningProxy
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import Observation, classify

TIMEOUT = 0.5
"""T for the demo: long enough that timing faults read clearly, short enough to finish in seconds."""

LIMIT = 5 * TIMEOUT
"""Each request's own limit: past the slowest scenario (drip-body, 3T) with room for the proxy."""


async def observe(host: str, port: int, scenario: str) -> Observation:
    request = f"GET /demo HTTP/1.1\r\nHost: demo\r\nX-Chaos-Scenario: {scenario}\r\nX-Chaos-Probe: demo-{scenario}\r\n\r\n"
    return classify(await capture(host, port, request.encode(), limit=LIMIT))


async def tour(catalogue: Catalogue, workdir: Path, console: Console) -> None:
    upstream = Upstream(catalogue, Settings(port=0, timing=Timing(TIMEOUT)))
    async with trio.open_nursery() as nursery:
        [address] = (await nursery.start(upstream.run))[:1]
        targets: dict[str, tuple[str, int]] = {"direct": address}
        proxies: list[RunningProxy] = []
        for name, launcher in LAUNCHERS.items():
            if not launcher.installed():
                console.print(f"[yellow]{name} is not installed: skipped[/]")
                continue
            proxy = await trio.to_thread.run_sync(launcher.start, [address], TIMEOUT, workdir / name)
            proxies.append(proxy)
            targets[f"{name} {proxy.version}"] = ("127.0.0.1", proxy.port)
        try:
            results = await observe_all(catalogue, targets)
        finally:
            for proxy in proxies:
                await trio.to_thread.run_sync(proxy.stop)
        nursery.cancel_scope.cancel()
    print_table(catalogue, targets, results, console)


async def observe_all(catalogue: Catalogue, targets: dict[str, tuple[str, int]]) -> dict[tuple[str, str], Observation]:
    results: dict[tuple[str, str], Observation] = {}

    async def one(target: str, scenario: str) -> None:
        results[target, scenario] = await observe(*targets[target], scenario)

    async with trio.open_nursery() as nursery:
        for target in targets:
            for scenario in catalogue.names():
                nursery.start_soon(one, target, scenario)
    return results


def print_table(catalogue: Catalogue, targets: dict, results: dict, console: Console) -> None:
    table = Table("scenario", "expected", *targets, title=f"what the client saw (T = {TIMEOUT} s)")
    for scenario in catalogue:
        expected = " or ".join(map(str, scenario.expect.outcomes))
        table.add_row(scenario.name, expected, *(results[target, scenario.name].summary() for target in targets))
    console.print(table)


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 200)
    with tempfile.TemporaryDirectory(prefix="chaos-upstream-demo-") as workdir:
        trio.run(tour, Catalogue.load(), Path(workdir), console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
