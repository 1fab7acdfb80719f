"""`serve --workers N`: N processes sharing one port (SO_REUSEPORT), driven by a supervisor.

Protocol: on a socket that is the worker's stdin (CHANNEL; its stdout and stderr are the
supervisor's, so that `--journal /dev/stdout` writes where the supervisor's own stdout goes, not into
the protocol), the supervisor's first line is the worker's settings, one JSON object sent whole (its
command line names only its index, so no setting can be left off it); the worker's first line is its `listening on` line, or `chaos-upstream: PROBLEM` when it
cannot start (it then exits 2, and the supervisor ends with that one line); after that the supervisor
writes one JSON command per line and the worker answers each with exactly one JSON line, in order. Commands: `{"op": "active", "scenario": NAME or null}`,
`{"op": "stats"}`, `{"op": "journal", "probe": ID or null, "type": TYPE or null, "running": BOOL,
"since": ORDINAL, "limit": N}` (answered with a `Journal.page` of the worker's journal).
Invariants: a command is answered by every live worker before the supervisor's call returns; a
worker that exits ends the supervisor (all others are stopped), so the set of workers never silently shrinks.
Signals: each worker runs in a process group of its own, so a terminal's Ctrl-C reaches the
supervisor alone, and the supervisor forwards SIGTERM, SIGINT and SIGHUP to every worker: each
signal reaches each worker exactly once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from chaos_upstream.errors import ConfigError, WorkerCrashed
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.plan.timeline import Change
from chaos_upstream.server.control import PAGE_BYTES, JournalPage
from chaos_upstream.server.upstream import Stats, Upstream

LINE_LIMIT = 64 * 1024 * 1024
"""The longest line a worker may send: its biggest answer is a journal page, at most PAGE_BYTES
(8 MiB) of JSON texts and one record more (the requests still running included), which JSON escaping
as strings at most doubles; a broken worker still cannot make the supervisor buffer without end."""


CHANNEL = 0
"""A worker's end of its socket to the supervisor: its stdin (the protocol above)."""


def to_supervisor(line: str) -> None:
    """One line to the supervisor, from a worker before it obeys commands (its first line). The
    socket's buffer holds far more than such a line, so one blocking write sends it whole."""
    os.write(CHANNEL, line.encode() + b"\n")


def from_supervisor() -> dict[str, Any]:
    """The worker's settings: the supervisor's first line (the protocol above). Read a byte at a
    time, so that nothing after it is taken from the channel (the supervisor sends nothing more
    before the worker listens, and the line is short)."""
    line = bytearray()
    while (byte := os.read(CHANNEL, 1)) not in (b"", b"\n"):
        line += byte
    return json.loads(line)


class Lines:
    """Lines from a byte stream, without their newline. Cancel-safe: a line cut short by a
    cancellation is read on by the next call."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.overlong = False
        """The line being read went past LINE_LIMIT: its bytes are dropped as they come."""

    async def next(self) -> bytes | None:
        """The next line; None at end of stream; ValueError for a line over LINE_LIMIT, once it has
        been read through and dropped, so that the lines after it still come whole. Linear in the
        line's length: a bytearray grows in place, and only the new bytes are searched for the newline."""
        searched = 0
        while (end := self.buffer.find(b"\n", searched)) < 0:
            if len(self.buffer) > LINE_LIMIT:
                self.buffer.clear()
                self.overlong = True
            searched = len(self.buffer)
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buffer += data
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        if self.overlong or len(line) > LINE_LIMIT:
            self.overlong = False
            raise ValueError("a worker sent a line over the limit")
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
        return (upstream.stats + Stats.of_journal(upstream.journal)).to_json()
    if command["op"] == "journal":
        wanted = {key: command[key] for key in ("probe", "type", "since", "limit")}
        page = upstream.journal.page(**wanted, running=bool(command["running"]), budget=PAGE_BYTES)
        return vars(page)  # its fields as they are: JSON texts, ordinals, the cursor, counts, running records
    return {"error": f"unknown op {command['op']!r}"}


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


class Worker:
    """One worker process and its command pipe.

    Invariant: every answer goes to its own command, even after an ask was cancelled between its
    command and its answer (as the other workers' asks are when one fails): the answers still owed
    are read, and dropped, before the next one."""

    def __init__(self, process: trio.Process, channel: trio.SocketStream) -> None:
        self.process = process
        self.channel = channel
        """The supervisor's end of the socket that is the worker's stdin (CHANNEL)."""
        self.lines = Lines(channel)
        self.lock = trio.Lock()
        self.owed = 0
        """Commands sent whose answer has not been read yet."""

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        async with self.lock:
            await self.channel.send_all(json.dumps(command).encode() + b"\n")
            self.owed += 1
            while self.owed > 1:
                await self._answer()
            line = await self._answer()
        return json.loads(line)

    async def _answer(self) -> bytes:
        """The next answer's line, paid off the answers owed once read (an over-long one too)."""
        try:
            line = await self.lines.next()
        except ValueError:
            self.owed -= 1
            raise
        if line is None:
            raise trio.BrokenResourceError("worker exited")
        self.owed -= 1
        return line


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
        """Worker K's settings, sent to it as its first line (the protocol above)."""
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


def _merged(pages: list[dict[str, Any]], since: list[int], limit: int) -> JournalPage:
    """The first `limit` records of the workers' pages merged by time, and the cursor past them."""
    timed = [[(json.loads(text).get("t", 0.0), k, i) for i, text in enumerate(page["texts"])] for k, page in enumerate(pages)]
    served = list(itertools.islice(heapq.merge(*timed), limit))
    counts = [0] * len(pages)
    for _, worker, _ in served:
        counts[worker] += 1
    left = [counts[k] < len(page["texts"]) or page["more"] for k, page in enumerate(pages)]
    cursor = tuple(
        page["ordinals"][counts[k] - 1] if left[k] and counts[k] else page["next"] if not left[k] else since[k]
        for k, page in enumerate(pages)
    )
    more = any(left)
    running = [] if more else sorted((r for page in pages for r in page["running"]), key=lambda r: r.get("t", 0.0))
    texts = [pages[k]["texts"][i] for _, k, i in served] + [json.dumps(r, separators=(",", ":")) for r in running]
    return JournalPage(texts, cursor, more, sum(page["skipped"] for page in pages))


LISTENING, FAILED = b"chaos-upstream listening on ", b"chaos-upstream: "
"""How a worker's first line begins: it listens, or it cannot start (the protocol above)."""


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
