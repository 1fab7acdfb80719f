"""The journal's file: whole JSON lines appended, surviving a full or failing disk, rotated by size or by signal.

Invariants: every line in the file is whole (a record is one line written on an O_APPEND
descriptor under an exclusive `flock` of the file: a short write is completed, or, when the rest
fails, cut off again before the lock is released); a record that cannot be written is counted in
`unwritten` and never retried, so the server never stops or waits for the disk; trouble is said
once when it begins and once when writing resumes.

Strategy: several processes (`serve --workers N`) append to one path. Each holds its own descriptor;
the flock of the file's inode serialises their writes, so a process cutting its fragment knows the
file ends with it. With `max_bytes`, the writer that finds the file full rotates it under that lock
(FILE -> FILE.1 -> ... -> FILE.K); the others find the path no longer names their inode and reopen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

KEEP_FILES = 5
"""Rotated files kept beside the journal: with `--journal-max-bytes 1GiB`, the last ~12 hours at 200
requests/s (~10 GiB a day), in files small enough to open in an editor."""

TRIES = 3
"""Attempts at a write that finds the file rotated or due for rotation: one to reopen, one to rotate,
one to write; another process would have to rotate twice in between to make us need more."""


class JournalFile:
    """Appends whole lines to `path` (created if missing; OSError now when it cannot be opened)."""

    def __init__(
        self, path: Path | str, *, max_bytes: int | None = None, keep: int = KEEP_FILES,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if max_bytes is not None and (max_bytes < 1 or keep < 1):
            raise ValueError("max_bytes and keep must be 1 or more")
        self.path = Path(path)
        self.max_bytes = max_bytes
        """Rotate before a line would take the file past this size (None: never)."""
        self.keep = keep
        self.say = say or (lambda line: None)
        """Hears one line when writing fails and one when it resumes."""
        self.unwritten = 0
        """Records that could not be written (the disk full or failing), since the file was opened."""
        self._trouble: OSError | None = None
        self._fd: int | None = _open(self.path)
        self._closed = False

    def write(self, line: bytes) -> None:
        """Append `line` (one record, ending in a newline) whole, or count it unwritten. After
        close(), nothing: a record that ends after the server stopped stays in memory only."""
        if self._closed:
            return
        try:
            self._append(line)
        except OSError as exc:
            self.unwritten += 1
            self._troubled(exc)
        else:
            if self._trouble is not None:
                self._trouble = None
                self.say(f"chaos-upstream: journal {self.path}: writing again ({self.unwritten} records unwritten so far)")

    def reopen(self) -> None:
        """Close the file and open the path again (logrotate's convention: the file was moved away
        and SIGHUP says so). When the path cannot be opened, the trouble is said as for a write and
        each record tries again."""
        if self._closed:
            return
        self._close()
        try:
            self._fd = _open(self.path)
        except OSError as exc:
            self._troubled(exc)

    def close(self) -> None:
        self._closed = True
        self._close()

    def _troubled(self, exc: OSError) -> None:
        if self._trouble is None:
            self._trouble = exc
            self.say(f"chaos-upstream: journal {self.path}: cannot write ({_reason(exc)}); "
                     "counting the records not written until it can")

    def _append(self, line: bytes) -> None:
        for attempt in range(TRIES):
            if self._fd is None:
                self._fd = _open(self.path)
            with _locked(self._fd):
                if attempt == TRIES - 1 or self._ready(self._fd, len(line)):
                    _write_whole(self._fd, line)
                    return
            self._close()

    def _ready(self, fd: int, size: int) -> bool:
        """Whether `fd` takes a line of `size` bytes now. If not, it is to be reopened: another
        process rotated the file, or it is full and we just rotated it (we hold its lock)."""
        if self.max_bytes is None:
            return True
        if not _names(self.path, fd):
            return False
        if not self._due(fd, size):
            return True
        self._shift()
        return False

    def _due(self, fd: int, size: int) -> bool:
        """Whether a line of `size` bytes would take a non-empty file past max_bytes."""
        now = os.fstat(fd).st_size
        return now > 0 and now + size > (self.max_bytes or 0)

    def _shift(self) -> None:
        """FILE.N-1 -> FILE.N, ..., FILE -> FILE.1, where FILE.N is the first missing one (or FILE.K,
        the oldest, replaced). Linear in the files there are, not in K: a `--journal-keep` of a
        billion costs nothing until the billion files exist (the loop runs in the event loop)."""
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


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks (some FUSE ones): unlocked is still safe for one process
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open on `fd` (not rotated or moved away meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _write_whole(fd: int, line: bytes) -> None:
    """Write all of `line`, or none of it: on an error part-way, cut what was written off again."""
    done = 0
    try:
        while done < len(line):
            written = os.write(fd, line[done:])
            if written == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
    except OSError:
        if done:
            _cut(fd, done)
        raise


def _cut(fd: int, fragment: int) -> None:
    """Truncate the last `fragment` bytes, ours, when the file still ends with them (we hold its lock)."""
    with contextlib.suppress(OSError):  # a disk that fails the truncate too: nothing more can be done
        end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND left the offset just after our bytes
        if os.fstat(fd).st_size == end:
            os.ftruncate(fd, end - fragment)


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc} [{name}]" if name else str(exc)
