"""The line protocol between a `serve --workers N` supervisor (worker_supervisor.py) and its workers:
the worker's side (its settings, its first line, obeying commands) and the supervisor's handle on one
worker (asking it, merging the workers' journal pages).

Protocol: on a socket that is the worker's stdin (CHANNEL; its stdout and stderr are the
supervisor's, so that `--journal /dev/stdout` writes where the supervisor's own stdout goes, not into
the protocol), the supervisor's first line is the worker's settings, one JSON object sent whole (its
command line names only its index, so no setting can be left off it); the worker's first line is its `listening on` line, or `chaos-upstream: PROBLEM` when it
cannot start (it then exits 2, and the supervisor ends with that one line); after that the supervisor
writes one JSON command per line and the worker answers each with exactly one JSON line, in order. Commands: `{"op": "active", "scenario": NAME or null}`,
`{"op": "stats"}`, `{"op": "journal", "probe": ID or null, "type": TYPE or null, "running": BOOL,
"since": ORDINAL, "limit": N}` (answered with a `Journal.page` of the worker's journal).
Invariants: every answer goes to its own command (Worker); no line, however long, makes a reader
(Lines) hold much more than LINE_LIMIT.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
from typing import Any

import trio

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
