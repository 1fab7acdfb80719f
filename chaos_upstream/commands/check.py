"""`chaos-upstream check`: probe every scenario through a proxy, print the verdicts, write the reports."""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

import trio
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chaos_upstream import reports
from chaos_upstream.commands import EXIT_FAIL, EXIT_OK, tls_options
from chaos_upstream.commands.output import VERDICT_COLOURS, console, write
from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.harness import serve_and_check
from chaos_upstream.verifier.check import VERSION, Report, Skipped, choose_scenarios, unchecked
from chaos_upstream.verifier.probe import Result


def check(args: argparse.Namespace) -> int:
    """Exit status: EXIT_OK when every verdict is a pass, else EXIT_FAIL."""
    catalogue = Catalogue.load(args.scenarios)
    addresses, ports = split_upstreams(catalogue, args.upstream)
    tls = tls_options.contexts_of(args, catalogue)
    scenarios = choose_scenarios(catalogue, args.only, ports, members=len(addresses), tls=tls is not None, http2=args.h2)
    skipped = unchecked(catalogue, args.only, ports, members=len(addresses), tls=tls is not None, http2=args.h2)
    out = console()
    timing = Timing(args.proxy_timeout)
    with progress(out, len(scenarios)) as on_result:
        report = trio.run(
            functools.partial(
                serve_and_check, args.proxy, addresses, catalogue, scenarios, timing=timing, profile=args.profile,
                ports=ports, on_result=on_result, rotation_limit=args.rotation_wait, skipped=skipped, tls=tls, http2=args.h2,
            )
        )
    out.print(verdict_table(report))
    out.print(f"{len(report.results)} scenarios through {report.proxy} in {report.elapsed:.2f} s: {report.summary()}")
    for line in not_checked(report.skipped):
        out.print(line, highlight=False, markup=False, soft_wrap=True)  # one line each, even in a log
    write(args.report_json, lambda: reports.to_json(report))
    write(args.report_junit, lambda: reports.to_junit([report]))
    write(args.report_html, lambda: reports.to_html([report]))
    return EXIT_OK if report.passed else EXIT_FAIL


def split_upstreams(catalogue: Catalogue, upstreams: list[tuple[str, tuple[str, int]]]) -> tuple[list, dict]:
    """The catalogue's addresses, and each connection-level scenario's own."""
    addresses = [address for name, address in upstreams if not name]
    ports = {name: address for name, address in upstreams if name}
    if not addresses:
        raise ConfigError("--upstream: give at least one HOST:PORT without a NAME= for the request-level scenarios")
    for name in ports:
        if name not in catalogue or not catalogue.get(name).connection_level:
            levelled = ", ".join(s.name for s in catalogue if s.connection_level)
            raise ConfigError(f"--upstream {name}=...: {name!r} is not a connection-level scenario ({levelled})")
    return addresses, ports


@contextlib.contextmanager
def progress(out: Console, total: int) -> Iterator[Callable[[Result], None]]:
    """A progress bar on a terminal; a plain line per verdict otherwise (CI logs)."""
    if not out.is_terminal:
        yield lambda result: print(f"{result.verdict:<12} {result.scenario.name}: {result.reason}", flush=True)
        return
    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("probing", total=total)
        yield lambda result: bar.advance(task)


def verdict_table(report: Report) -> Table:
    """Failures first; the title names the proxy's version, the caption chaos-upstream's and the date."""
    title = f"{report.proxy} (proxy version {reports.proxy_version(report)}, {report.profile} profile)"
    table = Table("scenario", "expected", "observed", "verdict", "reason", title=title,
                  caption=f"chaos-upstream {VERSION}, {report.stamp}")
    for result in report.worst_first():
        colour = VERDICT_COLOURS[result.verdict]
        expected = result.scenario.expect.text(result.profile)
        table.add_row(result.scenario.name, expected, result.seen, f"[{colour}]{result.verdict}[/]", result.reason)
    return table


def not_checked(skipped: Sequence[Skipped]) -> list[str]:
    """One line per cause: the scenarios left out for it, and the option that would include them."""
    causes: dict[str, list[str]] = {}
    for one in skipped:
        causes.setdefault(one.hint, []).append(one.scenario)
    return [f"not checked: {', '.join(names)} ({hint})" for hint, names in causes.items()]
