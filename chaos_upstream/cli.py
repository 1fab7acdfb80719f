"""The `chaos-upstream` command: the only module that parses argv and prints.

Exit codes: 0 success, 1 a check found a failing verdict, 2 bad usage or configuration (with a
message saying what and where; nothing is started half-configured).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.loading import load_file, scenario_files
from chaos_upstream.model.schema import scenario_schema
from chaos_upstream.plan.selection import Mix
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.admin import LOOPBACK_HOSTS, Admin
from chaos_upstream.server.upstream import GRACE, Settings, Upstream

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chaos-upstream", description="An HTTP/1.1 upstream that misbehaves on purpose.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the scenarios on a port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    _add_scenarios(serve)
    serve.add_argument("--default", default="healthy", metavar="NAME", help="scenario for requests that name none")
    _add_timeout(serve)
    serve.add_argument("--seed", type=int, default=None, help="seed of every random draw (mix, distributions)")
    serve.add_argument("--mix", type=_mix, default=None, metavar="NAME=WEIGHT,...")
    serve.add_argument("--journal", type=Path, default=None, metavar="FILE", help="JSON lines, one per connection and request")
    serve.add_argument("--admin-host", default="127.0.0.1", help="address of the admin API (loopback unless a token is set)")
    serve.add_argument("--admin-port", type=int, default=None, metavar="PORT", help="serve the admin API on this port")
    serve.add_argument("--admin-token", default=None, metavar="TOKEN", help="required as 'Authorization: Bearer TOKEN'")
    serve.add_argument(
        "--grace", type=float, default=GRACE, metavar="SECONDS", help="how long in-flight work may finish after SIGTERM"
    )
    serve.set_defaults(func=_serve)

    validate = commands.add_parser("validate", help="check scenario files")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(func=_validate)

    listing = commands.add_parser("list", help="list the scenarios")
    _add_scenarios(listing)
    listing.set_defaults(func=_list)

    schema = commands.add_parser("schema", help="print the JSON Schema of a scenario file")
    schema.set_defaults(func=_schema)
    return parser


def _add_scenarios(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios", action="append", type=Path, default=[], metavar="PATH", help="scenario file or folder (repeatable)"
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proxy-timeout", type=_positive, default=1.0, metavar="SECONDS", help="the proxy's read timeout: T in scenarios"
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


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
    settings = Settings(
        host=args.host,
        port=args.port,
        timing=Timing(args.proxy_timeout),
        default=args.default,
        mix=args.mix,
        seed=args.seed,
        grace=args.grace,
    )
    if args.admin_port is not None and args.admin_host not in LOOPBACK_HOSTS and not args.admin_token:
        raise ConfigError(f"--admin-host {args.admin_host} is reachable from outside: give --admin-token too")
    journal = Journal(args.journal)
    upstream = Upstream(catalogue, settings, journal)
    admin = Admin(upstream, args.admin_token) if args.admin_port is not None else None
    try:
        trio.run(_serve_until_signal, upstream, admin, args.admin_host, args.admin_port)
    finally:
        journal.close()
    return EXIT_OK


async def _serve_until_signal(upstream: Upstream, admin: Admin | None, admin_host: str, admin_port: int) -> None:
    """Serve (and the admin API); on SIGTERM or SIGINT stop accepting, let in-flight work finish, return."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            for host, port in await nursery.start(upstream.run):
                print(f"chaos-upstream listening on http://{_url_host(host)}:{port}", flush=True)
            async with trio.open_nursery() as extras:
                if admin is not None:
                    for host, port in await extras.start(admin.run, admin_host, admin_port):
                        print(f"chaos-upstream admin API on http://{_url_host(host)}:{port}", flush=True)
                async for _ in signals:
                    break
                extras.cancel_scope.cancel()
            upstream.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
        expected = " or ".join(str(outcome) for outcome in scenario.expect.outcomes)
        table.add_row(scenario.name, scenario.phase, expected, scenario.description)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_schema(), indent=2))
    return EXIT_OK
