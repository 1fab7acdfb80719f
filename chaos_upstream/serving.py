"""The `serve` process around the server: start-up failures as one line, signals, and what it says.

Part of the command line (it prints): the first SIGTERM/SIGINT stops accepting and gives in-flight
work the grace period, a second cuts it at once, SIGHUP reopens the journal file; a supervisor
forwards each to its workers. Invariants: a port that cannot be listened on ends start-up with a
ConfigError naming its flag, before anything is announced; the exit status is 0 unless a second
signal forced the stop (then FORCED + its number); nothing here prints a traceback.
"""

from __future__ import annotations

import argparse
import errno
import functools
import gc
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from chaos_upstream import environment
from chaos_upstream.commands import EXIT_OK
from chaos_upstream.errors import ConfigError, unwrap
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.upstream import Stats, Upstream
from chaos_upstream.server.worker_supervisor import Supervisor
from chaos_upstream.server.workers import CHANNEL, obey, to_supervisor

FORCED = 128
"""`serve` stopped at once by a second signal N exits FORCED + N (143 for SIGTERM, 130 for SIGINT):
what a shell or a supervisor reports for a process that signal ended, because in-flight work was cut."""


def worker_environment(args: argparse.Namespace) -> dict[str, str]:
    """The supervisor's environment without serve's own variables: a worker's settings come whole
    from its supervisor (commands/worker_settings.py), and no variable may stand beside them."""
    own = {environment.PREFIX + dest.upper() for dest in vars(args)}
    return {name: value for name, value in os.environ.items() if name not in own}


SECRETS = ("token", "password", "secret")
"""Settings whose values are masked wherever they are shown (names containing these words)."""


def secret(dest: str) -> bool:
    return any(word in dest for word in SECRETS)


def effective(args: argparse.Namespace) -> str:
    """`serve`'s settings once defaults, variables and flags are merged, as the flags that would give
    them (unset ones left out), secrets as ***: one line to read in a log before `listening on`."""
    words = []
    for dest, value in vars(args).items():
        if dest in ("command", "func", "worker", "tls_material") or value is None or value is False or value == []:
            continue
        flag = "--" + dest.replace("_", "-")
        for one in value if isinstance(value, list) else [value]:
            words += [flag] if one is True else [flag, "***" if secret(dest) else shlex.quote(str(one))]
    return "chaos-upstream settings: " + " ".join(words)


COLLECTOR_THRESHOLDS = (5000, 20, 10)
"""gc.set_threshold while serving: a young collection per 5000 net container allocations (CPython:
700), a middle one per 20 of those (CPython: 10), a full one per 10 middle ones, as CPython."""


def settle_collector() -> None:
    """Before serving, once everything loaded at start-up (modules, the catalogue, the server) is
    built: collect it, freeze what survives out of the collector's sight for good, and space the
    collections out. Invariant: a full collection while serving scans only what serving allocated
    (the ~50 000 objects loaded at start-up cost a full collection ~11 ms here, frozen ~0), so its
    pause grows with the connections held, not with what was loaded; garbage cycles are still
    collected, the young after at most 5000 allocations, so memory stays bounded.

    Measured with 1000 delayed requests held (benchmarks/timer_lateness.py, the collector timed
    with gc.callbacks): CPython's thresholds ran ~185 young and 16 middle collections over a run,
    middle ones of 1-8 ms, 11-12 of them (10-13 ms in all) within the ~200 ms in which the timers
    fire; these run ~86 and 6, middle ones of ~1.5 ms, 0-1 within it; resident memory the same
    (~61 MB)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The first stops accepting and gives in-flight work the grace period; a second cuts it at once."""

REOPEN_SIGNAL = signal.SIGHUP
"""logrotate's convention: the journal file was moved away, open its path again."""

Server = Upstream | Fleet | Supervisor


async def serve_until_signal(
    server: Server, admin: Admin | None, args: argparse.Namespace, worker: bool,
    player: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve (and the admin API) until a signal stops it; the exit status (see STOP_SIGNALS, FORCED).

    The admin API listens first and the data ports next, and neither is announced before both
    listen, so a port in use ends start-up with a ConfigError naming its flag and nothing announced.
    A worker also obeys its supervisor's commands on its channel (stdin), and stops when the supervisor goes away.
    """
    stopping = _Stopping(server, args, "chaos-upstream" if args.worker is None else f"chaos-upstream worker {args.worker}")
    with trio.open_signal_receiver(*STOP_SIGNALS, REOPEN_SIGNAL) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_quit(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            admin_at = []
            if admin is not None:
                run_admin = functools.partial(admin.run, args.admin_host, args.admin_port)
                admin_at = await _listen(nursery, run_admin, ("--admin-host", "--admin-port"), args.admin_host, args.admin_port)
            for host, port in await _listen(nursery, serve_then_quit, ("--host", "--port"), args.host, args.port[0]):
                line = f"chaos-upstream listening on {'https' if args.tls else 'http'}://{url_host(host)}:{port}"
                if worker:
                    to_supervisor(line)
                else:
                    print(line, flush=True)
            for host, port in admin_at:
                print(f"chaos-upstream admin API on http://{url_host(host)}:{port}", flush=True)
            if worker:
                nursery.start_soon(_obey_then_stop, server)
            if player is not None:
                nursery.start_soon(player)
            nursery.start_soon(_obey_signals, signals, stopping, nursery.cancel_scope)
    stopping.report()
    return stopping.status


async def _listen(nursery: trio.Nursery, run: Callable[..., Awaitable[None]], flags: tuple[str, str], host: str, port: int) -> Any:
    """`nursery.start(run)`, its failure to listen (an OSError, maybe inside nurseries' groups) made
    a one-line ConfigError naming the flag."""
    try:
        return await nursery.start(run)
    except (OSError, BaseExceptionGroup) as exc:
        failure = unwrap(exc, OSError)
        if failure is None:
            raise
        raise cannot_listen(failure, flags, host, port) from None


def cannot_listen(failure: OSError, flags: tuple[str, str], host: str, port: int) -> ConfigError:
    """`--port 8080: address already in use`: the port's flag for a port in use or privileged, else the host's."""
    where = str(failure.filename or f"{host}:{port}")  # a fleet member's error names its own address
    host, _, port_text = where.rpartition(":")
    if failure.errno in (errno.EADDRINUSE, errno.EACCES):
        return ConfigError(f"{flags[1]} {port_text}: {cause(failure)}")
    return ConfigError(f"{flags[0]} {host}: {cause(failure)}")


def cause(failure: OSError) -> str:
    """`address already in use`: the system's words, as a clause."""
    text = failure.strerror or str(failure)
    return text[:1].lower() + text[1:]


async def _obey_signals(signals: Any, stopping: _Stopping, scope: trio.CancelScope) -> None:
    async for signum in signals:
        if signum == REOPEN_SIGNAL:
            stopping.reopen()
        elif stopping.signal is None:
            stopping.first(signum)
        else:
            stopping.second(signum, scope)


class _Stopping:
    """How `serve` stops on signals, and what it says about it on stderr.

    First SIGTERM/SIGINT: stop accepting, close idle keep-alive connections, let busy ones finish
    within --grace (a supervisor forwards it to its workers, which do this each). A second one cuts
    all in-flight work at once (forwarded too); the journal records what was cut as "cancelled".
    Invariant: the exit status is 0 unless a second signal forced the stop (then FORCED + its number).
    """

    def __init__(self, server: Server, args: argparse.Namespace, who: str) -> None:
        self.server = server
        self.grace = args.grace
        self.journal = args.journal
        self.who = who
        self.signal: int | None = None
        """The signal that began the stop."""
        self.forced: int | None = None
        """The second signal, which cut in-flight work."""
        self._cut = 0

    @property
    def status(self) -> int:
        return EXIT_OK if self.forced is None else FORCED + self.forced

    def first(self, signum: int) -> None:
        self.signal = signum
        again = "a second SIGTERM or SIGINT"
        if isinstance(self.server, Supervisor):
            self._say(f"stopping {len(self.server.workers)} workers, each giving in-flight work up to {self.grace:g} s "
                      f"(--grace); {again} stops them at once")
            self.server.stop(signum)
            return
        self._cut = _cut(self.server)
        open_ = sum(stats.open for stats in _stats(self.server))
        self._say(f"stopping: {_count(open_, 'connection')} open: idle ones close now, busy ones get up to "
                  f"{self.grace:g} s (--grace) to finish; {again} cuts them at once")
        _drain(self.server)

    def second(self, signum: int, scope: trio.CancelScope) -> None:
        if self.forced is not None:
            return
        self.forced = signum
        if isinstance(self.server, Supervisor):
            self.server.stop(signum)
        else:
            scope.cancel()

    def reopen(self) -> None:
        if isinstance(self.server, Supervisor):
            self.server.signal(REOPEN_SIGNAL)
            self._say("reopening the journal in every worker", REOPEN_SIGNAL)
        elif self.journal is None:
            self._say("no --journal file to reopen", REOPEN_SIGNAL)
        else:
            self.server.journal.reopen()
            self._say(f"reopened the journal {self.journal}", REOPEN_SIGNAL)

    def report(self) -> None:
        """Once stopped: what was cut, if anything."""
        if self.signal is None:
            return
        if isinstance(self.server, Supervisor):
            text = "stopped at once: every worker cut its in-flight work" if self.forced else "stopped: every worker has stopped"
            self._say(f"{text} (each says above what it cut)", self.forced or self.signal)
            return
        cut = _cut(self.server) - self._cut
        if self.forced is not None:
            self._say(f"stopped at once: {_count(cut, 'request')} in flight cut (journaled as cancelled)", self.forced)
        elif cut == 0:
            self._say("stopped: all in-flight work finished")
        else:
            self._say(f"stopped: the {self.grace:g} s grace ran out: {_count(cut, 'request')} in flight cut (journaled as cancelled)")

    def _say(self, text: str, signum: int | None = None) -> None:
        name = signal.Signals(signum or self.signal).name  # type: ignore[arg-type]
        whole_line(f"{self.who}: {name}: {text}")


def whole_line(line: str) -> None:
    """`line` on stderr in one write: workers share the supervisor's stderr, and print() writes the
    newline apart (unbuffered, as in containers with PYTHONUNBUFFERED), so their lines would interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _stats(server: Upstream | Fleet) -> list[Stats]:
    return [server.stats] if isinstance(server, Upstream) else [member.stats for member in server.members]


def _cut(server: Upstream | Fleet) -> int:
    """Requests that ended cut short ("cancelled") since start."""
    return sum(n for stats in _stats(server) for (_, ended), n in stats.endings.items() if ended == "cancelled")


def _drain(server: Upstream | Fleet) -> None:
    """Stop for good, closing idle keep-alive connections now: a proxy's idle pool is no in-flight work."""
    server.stop()
    upstreams = [server] if isinstance(server, Upstream) else [m.current for m in server.members if m.current]
    for upstream in upstreams:
        upstream.drain()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def _obey_then_stop(upstream: Upstream) -> None:
    async with trio.lowlevel.FdStream(os.dup(CHANNEL)) as channel:  # a socket: both ways
        await obey(upstream, channel, channel)
    upstream.stop()


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
