"""The journal's file: whole JSON lines appended by a writer thread, surviving a full, failing or slow
disk, rotated by size or by signal.

Invariants: every line in the file is whole (written on an O_APPEND descriptor under an exclusive
`flock` of the file: a short write is completed, or, when the rest fails, cut back to the end of its
last whole line before the lock is released); lines reach the file in the order written, and a
reopen() falls between the lines written before and after it. `write` never waits and makes no system
call for the file: it queues the line (waking the thread if it waits). close() returns once every
line written before it is in the file or counted, and the thread has ended, so a SIGTERM that reaches
serve's `journal.close()` loses nothing. A record that cannot be written (the disk full or failing,
or QUEUE_BYTES already queued for a disk slower than the records) is counted in `unwritten` and never
retried, so the server never stops or waits for the disk; trouble is said once when it begins and once
when writing resumes, by the writer thread. `unwritten` lags by what is still queued: it is exact
after flush() or close().

Strategy: `write` puts the line on a `queue.SimpleQueue` (C code; it wakes the thread only when the
thread waits on it empty). The thread takes everything queued at once and writes runs of lines in
one `os.write` under one lock: one write per wake-up, not per record. It needs the GIL only between
system calls, which a serving loop gives up at each of its own (epoll, send). Several processes
(`serve --workers N`) append to one path, each on its own descriptor; the flock of the file's inode
serialises their writes, so a process cutting its fragment knows the file ends with it. With
`max_bytes`, the writer that finds the file full rotates it under that lock (FILE -> FILE.1 -> ... ->
FILE.K); the others find the path no longer names their inode and reopen (TRIES). The methods but the
thread's are called from one thread (the event loop's).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from chaos_upstream.server.appending import locked, names, open_appending, reason, write_whole

KEEP_FILES = 5
"""Rotated files kept beside the journal: with `--journal-max-bytes 1GiB`, the last ~12 hours at 200
requests/s (~10 GiB a day), in files small enough to open in an editor."""

TRIES = 3
"""Attempts at a write that find the same file as the attempt before, rotated or due for rotation
(a filesystem on which the path never names the file opened on it), the last of which writes
regardless. An attempt that finds another file than the last is owed to another process's progress
(it rotated, or filled the file we just opened: one batch of its lines can span several files while
we wait for the lock), so those have no bound: with one, two workers rotating a 2 KiB file wrote past
it in one run out of three."""

QUEUE_BYTES = 8 * 1024 * 1024
"""Bytes of lines waiting for the writer thread at most (an eighth of the journal's memory bound):
~18,000 request records: a disk stalled for 2 s under 10,000 records/s, or for 45 s at 200
requests/s (two records each). Past it a record is counted unwritten instead of queued: a disk that never
catches up must not take the process's memory with it."""

_REOPEN = object()
_STOP = object()
"""What the thread is asked besides lines and flush()'s events, in order with them: reopen the
path; close the file and end."""


class JournalFile:
    """Appends whole lines to `path` (created if missing; OSError now when it cannot be opened)."""

    def __init__(
        self, path: Path | str, *, max_bytes: int | None = None, keep: int = KEEP_FILES,
        say: Callable[[str], None] | None = None, queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        if max_bytes is not None and (max_bytes < 1 or keep < 1):
            raise ValueError("max_bytes and keep must be 1 or more")
        self.path = Path(path)
        self.max_bytes = max_bytes
        """Rotate before a line would take the file past this size (None: never)."""
        self.keep = keep
        self.say = say or (lambda line: None)
        """Hears one line when writing fails and one when it resumes (from the writer thread)."""
        self.queue_bytes = queue_bytes
        """Bytes of lines queued for the thread at most; a line past them is counted unwritten."""
        self._fd: int | None = open_appending(self.path)
        self._closed = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        """Lines, flush()'s events (set once the lines before them are written), _REOPEN, _STOP."""
        self._queued = self._refused = 0
        """Bytes of lines ever queued; lines refused for the bound (changed by the caller's thread only)."""
        self._done = self._failed = 0
        """Bytes of lines ever taken and written or counted; lines the disk did not take (changed by
        the writer only)."""
        self._refusals_seen = 0
        self._refusing = False
        """Lines were refused since the thread last looked: writing has not resumed yet."""
        self._trouble: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"journal {self.path}", daemon=True)
        self._thread.start()

    @property
    def unwritten(self) -> int:
        """Records that could not be written (the disk full, failing or too slow) since the file was
        opened; lags by the records still queued, exact after flush() or close()."""
        return self._failed + self._refused

    def write(self, line: bytes) -> None:
        """Queue `line` (one record, ending in a newline) to be appended whole, or count it unwritten
        when the queue is full. After close(), nothing: a record that ends after the server stopped
        stays in memory only."""
        if self._closed:
            return
        if self._queued - self._done + len(line) > self.queue_bytes:
            self._refused += 1
            return
        self._queued += len(line)
        self._queue.put(line)

    def reopen(self) -> None:
        """Close the file and open the path again, after the lines written before (logrotate's
        convention: the file was moved away and SIGHUP says so). When the path cannot be opened, the
        trouble is said as for a write and each record tries again."""
        if not self._closed:
            self._queue.put(_REOPEN)

    def flush(self) -> None:
        """Wait until every line written before is in the file or counted unwritten."""
        if not self._closed:
            written = threading.Event()
            self._queue.put(written)
            written.wait()

    def close(self) -> None:
        """Write everything queued, then close the file and end the thread; blocks until it has."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        """The writer thread: take everything queued, write its lines in order, obey the rest."""
        while True:
            lines: list[bytes] = []
            for item in self._take():
                if isinstance(item, bytes):
                    lines.append(item)
                    continue
                self._write(lines)
                lines = []
                if item is _STOP:
                    self._close()
                    return
                if isinstance(item, threading.Event):
                    item.set()
                else:
                    self._reopen()
            self._write(lines)

    def _take(self) -> list[object]:
        """Everything queued, waiting for the first; says so when lines were refused meanwhile."""
        items = [self._queue.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._queue.get_nowait())
        refusals, self._refusals_seen = self._refused - self._refusals_seen, self._refused
        if refusals:
            self._troubled(f"cannot keep up (over {self.queue_bytes} bytes queued for the disk)")
        self._refusing = bool(refusals)
        return items

    def _write(self, lines: list[bytes]) -> None:
        """Append `lines` whole and in order, as many at a time as the rotation allows; a line the
        disk refuses is counted and the next ones tried again."""
        start = 0
        while start < len(lines):
            try:
                written, error = self._append(lines, start)
            except OSError as exc:  # opening, locking or rotating failed: the first line is lost
                written, error = 0, exc
            start += written
            if error is not None:
                start += 1
                self._failed += 1
                self._troubled(f"cannot write ({reason(error)})")
            elif self._trouble is not None and not self._refusing:
                self._trouble = None
                self._tell(f"writing again ({self.unwritten} records unwritten so far)")
        self._done += sum(map(len, lines))

    def _reopen(self) -> None:
        self._close()
        try:
            self._fd = open_appending(self.path)
        except OSError as exc:
            self._troubled(f"cannot write ({reason(exc)})")

    def _troubled(self, cause: str) -> None:
        if self._trouble is None:
            self._trouble = cause
            self._tell(f"{cause}; counting the records not written until it can")

    def _tell(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a stderr gone (a closed pipe) must not stop the writer
            self.say(f"chaos-upstream: journal {self.path}: {text}")

    def _append(self, lines: list[bytes], start: int) -> tuple[int, OSError | None]:
        """Write the longest run of lines from `start` that the file takes now (one at least) under
        one lock: how many were written whole, and the error that stopped the rest, if any."""
        found, again = None, 0
        while True:
            fd = self._opened()
            with locked(fd):
                held = os.fstat(fd)
                again = again + 1 if (held.st_dev, held.st_ino) == found else 0
                count = 1 if again == TRIES - 1 else self._fitting(held, lines, start)
                if count:
                    return write_whole(fd, lines[start:start + count])
            found = (held.st_dev, held.st_ino)
            self._close()

    def _opened(self) -> int:
        if self._fd is None:
            self._fd = open_appending(self.path)
        return self._fd

    def _fitting(self, held: os.stat_result, lines: list[bytes], start: int) -> int:
        """How many lines from `start` the open file (`held`: its stat) takes now. 0: it is to be
        reopened, as another process rotated it, or it is full and we just rotated it (we hold its lock)."""
        if self.max_bytes is None:
            return len(lines) - start
        if not names(self.path, held):
            return 0
        size = held.st_size
        ends = itertools.accumulate(len(line) for line in itertools.islice(lines, start, None))
        count = sum(1 for _ in itertools.takewhile(lambda end: size + end <= (self.max_bytes or 0), ends))
        if count == 0 and size == 0:
            return 1  # a line over max_bytes gets an empty file of its own
        if count == 0:
            self._shift()
        return count

    def _shift(self) -> None:
        """FILE.N-1 -> FILE.N, ..., FILE -> FILE.1, where FILE.N is the first missing one (or FILE.K,
        the oldest, replaced). Linear in the files there are, not in K: a `--journal-keep` of a
        billion costs nothing until the billion files exist (the loop runs on the writer thread, and the
        lines queued behind it wait for it)."""
        end = 1
        while end < self.keep and self._rotated(end).exists():
            end += 1
        for index in range(end - 1, 0, -1):
            os.replace(self._rotated(index), self._rotated(index + 1))
        os.replace(self.path, self._rotated(1))

    def _rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # Linux frees the descriptor even when close reports EIO
                os.close(fd)
