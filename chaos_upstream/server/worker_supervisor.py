"""`serve --workers N`: N processes sharing one port (SO_REUSEPORT), started, driven, signalled and
reaped by a supervisor, which talks to each in the line protocol of workers.py.

Invariants: a command is answered by every live worker before the supervisor's call returns; a
worker that exits ends the supervisor (all others are stopped), so the set of workers never silently shrinks.
Signals: each worker runs in a process group of its own, so a terminal's Ctrl-C reaches the
supervisor alone, and the supervisor forwards SIGTERM, SIGINT and SIGHUP to every worker: each
signal reaches each worker exactly once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from chaos_upstream.errors import ConfigError, WorkerCrashed
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.plan.timeline import Change
from chaos_upstream.server.control import JournalPage
from chaos_upstream.server.upstream import Stats
from chaos_upstream.server.workers import FAILED, LISTENING, Worker, _merged


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: it holds the port number while workers bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:  # a port in use: the caller says so; the socket must not leak
        sock.close()
        raise
    return sock


class Supervisor:
    """The supervisor's Control: every command goes to every worker."""

    def __init__(
        self, catalogue: Catalogue, default: str, address: tuple[str, int], commands: Sequence[Sequence[str]],
        settings: Sequence[Mapping[str, Any]], env: Mapping[str, str] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.default = default
        self.address = address
        self.commands = commands
        """Worker K's command line."""
        self.settings = settings
        """Worker K's settings, sent to it as its first line (the protocol of workers.py)."""
        self.env = env
        """The workers' environment (None: the supervisor's)."""
        self.active: str | None = None
        self.workers: list[Worker] = []
        self.ready = False
        self.stopping = False
        """True once stop() was called: a worker exiting after that is expected."""

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        return self.ready, [self.address]

    async def _all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._each([command] * len(self.workers))

    async def _each(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Worker K's answer to commands[K], for every worker at once."""
        replies: list[dict[str, Any]] = [{} for _ in self.workers]

        async def one(index: int, worker: Worker) -> None:
            replies[index] = await worker.ask(commands[index])

        async with trio.open_nursery() as nursery:
            for index, worker in enumerate(self.workers):
                nursery.start_soon(one, index, worker)
        return replies

    def members_listening(self) -> list[bool]:
        return []  # the workers share one address: no fleet of members

    async def set_active(self, name: str | None, member: int | None = None) -> None:
        if member is not None:
            raise ConfigError("member: the workers share one address, which is no fleet of members")
        await self._all({"op": "active", "scenario": name})
        self.active = name

    async def play(self, name: str) -> list[Change]:
        raise ConfigError("timelines play on the members of one process: serve several --port without --workers")

    async def stats(self) -> Stats:
        total = Stats()
        for reply in await self._all({"op": "stats"}):
            total = total + Stats.from_json(reply)
        return total

    async def journal(
        self, probe: str | None, type: str | None, running: bool, since: Sequence[int], limit: int
    ) -> JournalPage:
        """Strategy: every worker gives a page of `limit` after its own cursor; the pages are merged
        by time, which keeps each worker's records in their order, and the first `limit` are served.
        Each worker's cursor then moves past the records of it that were served, and no further,
        so nothing is lost or repeated."""
        if len(since) not in (1, len(self.workers)):
            raise ConfigError(f"since: one ordinal, or one per worker ({len(self.workers)}), not {len(since)}")
        after = list(since) * len(self.workers) if len(since) == 1 else list(since)
        wanted = {"op": "journal", "probe": probe, "type": type, "running": running, "limit": limit}
        pages = await self._each([dict(wanted, since=ordinal) for ordinal in after])
        return _merged(pages, after, limit)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start one worker per command line with its settings, report the address, return once they have all exited."""
        try:
            for command, settings in zip(self.commands, self.settings, strict=True):
                ours, theirs = socket.socketpair()
                with theirs:
                    try:
                        process = await trio.lowlevel.open_process(list(command), stdin=theirs.fileno(), env=self.env, process_group=0)
                    except BaseException:
                        ours.close()
                        raise
                self.workers.append(Worker(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours))))
                with contextlib.suppress(trio.BrokenResourceError):  # a worker gone already: _listened says so
                    await self.workers[-1].channel.send_all(json.dumps(settings).encode() + b"\n")
            for index, worker in enumerate(self.workers):
                await _listened(index, worker)
            self.ready = True
            task_status.started([self.address])
            async with trio.open_nursery() as watch:
                for worker in self.workers:
                    watch.start_soon(_then_cancel, worker.process.wait, watch.cancel_scope)
            crashed = self.crashed
        finally:
            announced, self.ready = self.ready, False
            with trio.CancelScope(shield=True):  # workers that never announced served nothing: end them quietly
                await self._reap(signal.SIGTERM if announced else signal.SIGKILL)
        if crashed:
            raise WorkerCrashed(f"a worker exited on its own (status {crashed[0]}): all workers stopped")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward a stop signal to every worker: at the first, each stops accepting and takes its own
        grace period; at a second, each cuts its in-flight work at once. run() then returns."""
        self.stopping = True
        self.signal(signum)

    def signal(self, signum: int) -> None:
        """Send `signum` to every worker still running (SIGHUP: each reopens its journal file)."""
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.send_signal(signum)

    async def _reap(self, signum: int) -> None:
        if not self.stopping:
            self.stop(signum)
        for worker in self.workers:
            await worker.process.wait()
            await worker.channel.aclose()

    @property
    def crashed(self) -> list[int]:
        """Exit statuses of workers that ended before stop() was called."""
        return [] if self.stopping else [w.process.returncode for w in self.workers if w.process.returncode is not None]


async def _listened(index: int, worker: Worker) -> None:
    """Return once worker `index` listens; ConfigError with its own one line if it cannot start."""
    line = await worker.lines.next()
    if line is not None and line.startswith(LISTENING):
        return
    if line is not None and line.startswith(FAILED):
        raise ConfigError(line[len(FAILED):].decode("utf-8", "replace"))
    if line is not None:
        raise ConfigError(f"--workers: worker {index} said {line[:200]!r} instead of listening")
    status = await worker.process.wait()
    raise ConfigError(f"--workers: worker {index} ended before it listened (status {status}); its own lines above say why")


async def _then_cancel(wait: Any, scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
