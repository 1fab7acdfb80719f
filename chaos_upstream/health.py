"""`chaos-upstream health [--ready]`: ask a running `serve`'s admin API whether it is up, for container probes.

Apart from cli.py so that it imports almost nothing: Docker's HEALTHCHECK and Kubernetes' exec
probes start it every few seconds, and the whole command line costs ten times its CPU to import.
It reads serve's own CHAOS_UPSTREAM_ADMIN_HOST, _ADMIN_PORT and _ADMIN_TOKEN, so a probe in the
container needs no arguments. Exit codes: 0 the API answered 200; 1 any other answer or none; 2 bad usage.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from chaos_upstream import environment
from chaos_upstream.errors import ConfigError

TIMEOUT = 2.0
"""Seconds to wait for the answer: /healthz answers in microseconds, and a probe must end before
Kubernetes' default probe timeout (1 s) is raised to anything usual (Docker's is 30 s)."""

SHARED = {"CHAOS_UPSTREAM_ADMIN_HOST", "CHAOS_UPSTREAM_ADMIN_PORT", "CHAOS_UPSTREAM_ADMIN_TOKEN"}
"""serve's variables that health reads too (its own flags --ready and --timeout have none)."""

WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
"""Addresses that bind every interface, and the loopback address health asks instead: one of the same
family, since serve's IPv6 listeners take IPv6 only (trio sets IPV6_V6ONLY), so `::` is not asked on 127.0.0.1."""

EXIT_OK, EXIT_DOWN, EXIT_USAGE = 0, 1, 2

WHAT = "ask a running serve's admin API whether it is up (for container probes)"
EXITS = ("exit codes: 0 the admin API answered 200; 1 any other answer, or none within --timeout; 2 bad usage "
         "(no --admin-port). --admin-host, --admin-port and --admin-token also come from serve's CHAOS_UPSTREAM_* variables.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ready", action="store_true", help="ask /readyz (its ports accept) instead of /healthz (it runs)")
    parser.add_argument("--admin-host", default="127.0.0.1", help="serve's --admin-host (a wildcard address is asked on loopback)")
    parser.add_argument("--admin-port", type=port(), default=None, metavar="PORT", help="serve's --admin-port")
    parser.add_argument("--admin-token", default=None, metavar="TOKEN", help="serve's --admin-token, sent as a bearer token")
    parser.add_argument("--timeout", type=_seconds, default=TIMEOUT, metavar="SECONDS", help="how long to wait for the answer")


LAST_PORT = 65535
"""TCP's highest port number: the system would take a bigger one modulo 65536, a port nobody asked for."""


def port(lowest: int = 1) -> Callable[[str], int]:
    """An argparse type: a TCP port number from `lowest` (0 for a listener: any free port) to LAST_PORT."""

    def convert(text: str) -> int:
        number = int(text) if text.strip().isdigit() else -1
        if not lowest <= number <= LAST_PORT:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({lowest} to {LAST_PORT})")
        return number

    return convert


def _seconds(text: str) -> float:
    """A finite positive number of seconds: a socket takes no infinite timeout (OverflowError)."""
    if not 0 < float(text) < math.inf:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return float(text)


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """The command on its own (what the `chaos-upstream` entry point runs for `health`)."""
    parser = argparse.ArgumentParser(
        prog="chaos-upstream health", description=WHAT, epilog=EXITS, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_arguments(parser)
    try:
        environment.apply(parser, os.environ if environ is None else environ, only=SHARED)
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"chaos-upstream: {problem}", file=sys.stderr)
        return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """GET /healthz (or /readyz) from serve's admin API on this machine: 0 on a 200, 1 otherwise."""
    if args.admin_port is None:
        raise ConfigError("health: give --admin-port (or CHAOS_UPSTREAM_ADMIN_PORT): serve's admin API is where it asks")
    host = WILDCARDS.get(args.admin_host, args.admin_host)
    path = "/readyz" if args.ready else "/healthz"
    url = f"http://{f'[{host}]' if ':' in host else host}:{args.admin_port}{path}"
    headers = {"Authorization": f"Bearer {args.admin_token}"} if args.admin_token else {}
    connection = http.client.HTTPConnection(host, args.admin_port, timeout=args.timeout)
    try:
        connection.request("GET", path, headers=headers)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"chaos-upstream health: {url}: {_reason(exc)}", file=sys.stderr)
        return EXIT_DOWN
    finally:
        connection.close()
    print(f"chaos-upstream health: {url}: {status}", file=sys.stdout if status == 200 else sys.stderr)
    return EXIT_OK if status == 200 else EXIT_DOWN


def _reason(exc: Exception) -> str:
    text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
