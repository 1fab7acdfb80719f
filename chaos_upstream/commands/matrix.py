"""`chaos-upstream matrix`: start real proxies in front of chaos-upstream, check each one, print the
matrix of verdicts and write the reports."""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import trio
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chaos_upstream import reports
from chaos_upstream.commands import EXIT_FAIL, EXIT_OK
from chaos_upstream.commands.output import VERDICT_COLOURS, console, write
from chaos_upstream.errors import ConfigError
from chaos_upstream.matrix import FLEET, Run, cell, choose_launchers, run_matrix, worst_first
from chaos_upstream.proxies.h2_setup import h2_launchers
from chaos_upstream.proxies.tls_setup import tls_launchers, tls_material
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.proxies import Launcher
from chaos_upstream.verifier.check import VERSION, choose_scenarios
from chaos_upstream.verifier.probe import Result


def matrix(args: argparse.Namespace) -> int:
    """Exit status: EXIT_OK when every run completed with every verdict a pass, else EXIT_FAIL."""
    catalogue = Catalogue.load(args.scenarios)
    launchers = choose_launchers(args.proxies)
    ports = [s.name for s in catalogue if s.connection_level]
    scenarios = choose_scenarios(catalogue, args.only, ports, members=FLEET, tls=args.tls, http2=args.h2)
    if args.h2 and not args.only:  # the HTTP/2 section: the HTTP/2 catalogue (--only runs any other with an equivalent)
        scenarios = [scenario for scenario in scenarios if scenario.http2_only]
    elif args.tls and not args.only:  # the TLS section: the TLS catalogue (every other scenario works over TLS, as plain)
        scenarios = [scenario for scenario in scenarios if scenario.tls is not None]
    with tempfile.TemporaryDirectory(prefix="chaos-upstream-matrix-") as workdir:
        tls, not_run = None, []
        if args.tls:
            tls, upstream = tls_material(catalogue, Path(workdir) / "tls")
            launchers, cannot = tls_launchers(launchers, upstream)
            not_run += [f"{name}: not run[/] (it cannot speak TLS to an upstream)" for name in cannot]
        if args.h2:
            launchers, cannot = h2_launchers(launchers)
            not_run += [f"{name}: not run[/] (it cannot speak HTTP/2 to an upstream)" for name in cannot]
        if not launchers:
            flag, speaks = ("--h2", "HTTP/2") if args.h2 else ("--tls", "TLS")
            raise ConfigError(f"{flag}: none of the proxies chosen can speak {speaks} to an upstream (see docs/proxies.md)")
        out = console(width=max(160, 40 + 24 * len(launchers)))
        for line in not_run:
            out.print(f"[yellow]{line}", highlight=False)
        with progress(out, launchers, len(scenarios)) as on_result:
            runs = trio.run(
                functools.partial(
                    run_matrix, launchers, catalogue, scenarios, proxy_timeout=args.proxy_timeout, workdir=Path(workdir),
                    on_result=on_result, concurrency=args.concurrency, tls=tls,
                )
            )
    if args.show_config:
        for run in runs:
            if run.config:
                out.rule(f"{run.label}: generated configuration")
                out.print(run.config, markup=False, highlight=False)
    ran = [run for run in runs if run.report is not None]
    out.print(matrix_table(scenarios, ran, args.proxy_timeout))
    for run in ran:
        for result in run.report.worst_first():
            if result.verdict != "pass":
                out.print(f"[bold]{run.label}[/] {result.scenario.name}: {result.reason}", highlight=False)
    for run in runs:
        if run.report is None:
            out.print(f"[yellow]{run.name}: {run.status}[/] ({run.problem})", highlight=False)
        else:
            out.print(f"{run.label}: {run.report.summary()}", highlight=False)
    write(args.report_json, lambda: reports.matrix_json(runs))
    write(args.report_junit, lambda: reports.to_junit([run.report for run in ran]))
    write(args.report_html, lambda: reports.matrix_html(scenarios, runs))
    write(args.report_markdown, lambda: reports.matrix_markdown(scenarios, runs))
    return EXIT_OK if all(run.passed for run in runs) else EXIT_FAIL


@contextlib.contextmanager
def progress(out: Console, launchers: Sequence[Launcher], total: int) -> Iterator[Callable[[Launcher, Result], None]]:
    """A progress bar per proxy on a terminal; a line per proxy done otherwise (CI logs)."""
    if not out.is_terminal:
        done: dict[str, int] = {}

        def count(launcher: Launcher, result: Result) -> None:
            done[launcher.key] = done.get(launcher.key, 0) + 1
            if done[launcher.key] == total:
                print(f"{launcher.key}: {total} scenarios judged", flush=True)

        yield count
        return
    with Progress(console=out, transient=True) as bar:
        tasks = {launcher.key: bar.add_task(launcher.key, total=total) for launcher in launchers}
        yield lambda launcher, result: bar.advance(tasks[launcher.key])


def matrix_table(scenarios: Sequence[Scenario], runs: Sequence[Run], proxy_timeout: float) -> Table:
    """Scenarios down, proxies across; each cell the verdict and what the client saw."""
    headers = [f"{run.label}\n{run.launcher.profile} profile, T={run.report.timing.proxy_timeout:g}s" for run in runs]
    stamp = min((run.report.stamp for run in runs), default="")
    table = Table("scenario", "expected (RFC)", *headers, title=f"chaos-upstream {VERSION} matrix, {stamp} (T = {proxy_timeout:g} s asked)",
                  caption="pass* = a pass only under the proxy's own profile (its documented behaviour), not under the RFC one")
    for scenario in worst_first(scenarios, runs):
        results = [run.result(scenario.name) for run in runs]
        cells = [f"[{VERDICT_COLOURS[r.verdict]}]{cell(r)}[/] {r.seen}" if r else "-" for r in results]
        table.add_row(scenario.name, scenario.expect.text(), *cells)
    return table
