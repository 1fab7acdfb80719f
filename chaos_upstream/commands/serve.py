"""`chaos-upstream serve`: check the settings, then serve in this process (an upstream, or a fleet of
one member per --port), or supervise --workers N processes sharing one port. Signals and what the
process says are serving.py's.

Invariant: every setting is checked before anything listens (ConfigError naming its flag).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from chaos_upstream.commands import EXIT_FAIL, tls_options
from chaos_upstream.commands.worker_settings import for_worker
from chaos_upstream.errors import ChaosUpstreamError, ConfigError, UnknownScenario, WorkerCrashed
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.admin_guard import LOOPBACK_HOSTS
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.server.worker_supervisor import Supervisor, reserve_port
from chaos_upstream.tls.material import save
from chaos_upstream.serving import (
    cannot_listen, cause, effective, serve_until_signal, settle_collector, whole_line, worker_environment,
)


def serve(args: argparse.Namespace) -> int:
    """The exit status (see serving.py); ConfigError for a setting that cannot be served."""
    catalogue = Catalogue.load(args.scenarios)
    names = [args.default] + [name for name, _ in args.mix.weights] if args.mix else [args.default]
    unknown = [name for name in names if name not in catalogue]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r}: `chaos-upstream list` shows the loaded ones")
    tls_only = [name for name in names if catalogue.get(name).tls is not None]
    if tls_only and not args.tls:
        raise ConfigError(f"{tls_only[0]!r} is served over TLS only: give --tls")
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
    return _serve_here(args, catalogue)


def _serve_here(args: argparse.Namespace, catalogue: Catalogue) -> int:
    """An upstream (a worker), or a fleet of one member per --port, in this process."""
    timing, tls = Timing(args.proxy_timeout), tls_options.contexts_of(args, catalogue)
    settings = [
        Settings(host=args.host, port=port, timing=timing, default=args.default, mix=args.mix, seed=args.seed,
                 grace=args.grace, reuse_port=args.worker is not None, worker=args.worker, tls=tls)
        for port in args.port
    ]
    try:
        journal = Journal(args.journal, memory=args.journal_memory, max_bytes=args.journal_max_bytes,
                          keep_files=args.journal_keep, say=whole_line)
    except OSError as exc:  # a missing or read-only folder, a folder given as the file
        raise ConfigError(f"--journal {args.journal}: {cause(exc)}") from None
    try:
        if args.worker is not None:
            upstream = Upstream(catalogue, settings[0], journal)
            settle_collector()
            return trio.run(serve_until_signal, upstream, None, args, True)
        fleet = Fleet(catalogue, settings, journal)
        control = Local(fleet, args.default, timing)
        admin = Admin(control, args.admin_token, allow_hosts=args.admin_allow_host) if args.admin_port is not None else None
        player = _player(control, args, timing)
        print(effective(args), flush=True)
        settle_collector()
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
    """`--workers N`: hold the port, start N workers on it with their settings, drive them, stop them on a signal."""
    try:
        reserved = reserve_port(args.host, args.port[0])
    except OSError as exc:
        raise cannot_listen(exc, ("--host", "--port"), args.host, args.port[0]) from None
    with reserved, tempfile.TemporaryDirectory(prefix="chaos-upstream-tls-") as folder:
        material = tls_options.material_of(args, catalogue)
        if material is not None:  # made once: every worker presents certificates of one CA
            save(material, Path(folder))
            args.tls_material = Path(folder)
        port = reserved.getsockname()[1]
        commands = [[sys.executable, "-m", "chaos_upstream", "serve", "--worker", str(index)] for index in range(args.workers)]
        settings = [for_worker(args, port, index) for index in range(args.workers)]
        fleet = Supervisor(catalogue, args.default, (args.host, port), commands, settings, env=worker_environment(args))
        admin = Admin(fleet, args.admin_token, allow_hosts=args.admin_allow_host) if args.admin_port is not None else None
        failure: ChaosUpstreamError | None = None
        print(effective(args), flush=True)
        settle_collector()
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
