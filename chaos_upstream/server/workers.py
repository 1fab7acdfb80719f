"""`serve --workers N`: N processes sharing one port (SO_REUSEPORT), driven by a supervisor.

Protocol: a worker's first line on stdout is its `listening on` line; after that the supervisor
writes one JSON command per line to the worker's stdin and the worker answers each with exactly one
JSON line on stdout, in order. Commands: `{"op": "active", "scenario": NAME or null}`,
`{"op": "stats"}`, `{"op": "journal", "probe": ID or null, "type": TYPE or null, "running": BOOL}`.
Invariants: a command is answered by every live worker before the supervisor's call returns; a
worker that exits ends the supervisor (all others are stopped), so the set of workers never silently shrinks.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

import trio

from chaos_upstream.errors import ChaosUpstreamError, ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.plan.timeline import Change
from chaos_upstream.server.upstream import Stats, Upstream

LINE_LIMIT = 256 * 1024 * 1024
"""The longest line a worker may send: a journal answer of 100k records (~50 MB) fits five times over,
and a broken worker still cannot make the supervisor buffer without end."""


class WorkerCrashed(ChaosUpstreamError):
    """A worker process ended without being asked to."""


class Lines:
    """Lines from a byte stream, without their newline."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> bytes | None:
        """The next line; None at end of stream."""
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buffer += data
            if len(self.buffer) > LINE_LIMIT:
                raise ValueError("a worker sent a line over the limit")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


async def obey(upstream: Upstream, commands: trio.abc.ReceiveStream, replies: trio.abc.SendStream) -> None:
    """Worker side: answer the supervisor's commands until it closes our stdin."""
    lines = Lines(commands)
    while (line := await lines.next()) is not None:
        reply = answer(upstream, json.loads(line))
        await replies.send_all(json.dumps(reply, separators=(",", ":")).encode() + b"\n")


def answer(upstream: Upstream, command: dict[str, Any]) -> dict[str, Any]:
    if command["op"] == "active":
        upstream.active = command["scenario"]
        return {"active": upstream.active}
    if command["op"] == "stats":
        return upstream.stats.to_json()
    if command["op"] == "journal":
        wanted = {key: command.get(key) for key in ("probe", "type")}
        return {"records": upstream.journal.records(**wanted, running=bool(command.get("running")))}
    return {"error": f"unknown op {command['op']!r}"}


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: it holds the port number while workers bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Worker:
    """One worker process and its command pipe."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines = Lines(process.stdout)  # type: ignore[arg-type]
        self.lock = trio.Lock()

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        async with self.lock:
            await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")  # type: ignore[union-attr]
            line = await self.lines.next()
        if line is None:
            raise trio.BrokenResourceError("worker exited")
        return json.loads(line)


class Supervisor:
    """The supervisor's Control: every command goes to every worker."""

    def __init__(self, catalogue: Catalogue, default: str, address: tuple[str, int], commands: Sequence[Sequence[str]]) -> None:
        self.catalogue = catalogue
        self.default = default
        self.address = address
        self.commands = commands
        self.active: str | None = None
        self.workers: list[Worker] = []
        self.ready = False
        self.stopping = False
        """True once stop() was called: a worker exiting after that is expected."""

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        return self.ready, [self.address]

    async def _all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = [{} for _ in self.workers]

        async def one(index: int, worker: Worker) -> None:
            replies[index] = await worker.ask(command)

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

    async def journal(self, probe: str | None, type: str | None, running: bool = False) -> list[dict[str, Any]]:
        replies = await self._all({"op": "journal", "probe": probe, "type": type, "running": running})
        return sorted((r for reply in replies for r in reply["records"]), key=lambda record: record["t"])

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start one worker per command line, report the address, return once they have all exited."""
        try:
            for command in self.commands:
                process = await trio.lowlevel.open_process(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self.workers.append(Worker(process))
            for worker in self.workers:
                if await worker.lines.next() is None:
                    raise ConfigError("a worker exited before it listened (see its message above)")
            self.ready = True
            task_status.started([self.address])
            async with trio.open_nursery() as watch:
                for worker in self.workers:
                    watch.start_soon(_then_cancel, worker.process.wait, watch.cancel_scope)
            crashed = self.crashed
        finally:
            self.ready = False
            with trio.CancelScope(shield=True):
                await self._reap()
        if crashed:
            raise WorkerCrashed(f"a worker exited on its own (status {crashed[0]}): all workers stopped")

    def stop(self) -> None:
        """SIGTERM every worker: each stops accepting and takes its own grace period; run() then returns."""
        self.stopping = True
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)

    async def _reap(self) -> None:
        self.stop()
        for worker in self.workers:
            await worker.process.wait()
            for pipe in (worker.process.stdin, worker.process.stdout):
                if pipe is not None:
                    await pipe.aclose()

    @property
    def crashed(self) -> list[int]:
        """Exit statuses of workers that ended before stop() was called."""
        return [] if self.stopping else [w.process.returncode for w in self.workers if w.process.returncode is not None]


async def _then_cancel(wait: Any, scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
