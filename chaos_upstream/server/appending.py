"""Appending whole lines to a file that several processes share: the primitives of the journal's file.

Invariants: a write under `locked` either leaves every line whole in the file or cuts its own
fragment off again (`write_whole`), so a reader never sees half a line; `names` tells whether a path
still names the file a descriptor holds (rotated or moved away meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
from collections.abc import Iterator
from pathlib import Path


def open_appending(path: Path) -> int:
    """A descriptor that appends to `path` (created if missing), closed on exec."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold the exclusive flock of `fd`'s file, which every process appending to it takes."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks (some FUSE ones): unlocked is still safe for one process
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def names(path: Path, held: os.stat_result) -> bool:
    """Whether `path` still names the file `held` is the stat of (not rotated or moved away meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def write_whole(fd: int, lines: list[bytes]) -> tuple[int, OSError | None]:
    """Write `lines` (in one call, unless the kernel takes less): how many were written whole, and
    the error that stopped the rest, if any, their fragment cut off again."""
    chunk = memoryview(b"".join(lines))
    done = 0
    try:
        while done < len(chunk):
            written = os.write(fd, chunk[done:])
            if written == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
    except OSError as exc:
        ends = list(itertools.takewhile(lambda end: end <= done, itertools.accumulate(map(len, lines))))
        whole = ends[-1] if ends else 0
        if done > whole:
            _cut(fd, done - whole)
        return len(ends), exc
    return len(lines), None


def _cut(fd: int, fragment: int) -> None:
    """Truncate the last `fragment` bytes, ours, when the file still ends with them (we hold its lock)."""
    with contextlib.suppress(OSError):  # a disk that fails the truncate too: nothing more can be done
        end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND left the offset just after our bytes
        if os.fstat(fd).st_size == end:
            os.ftruncate(fd, end - fragment)


def reason(exc: OSError) -> str:
    """An OSError in words, with its errno's name: "No space left on device [ENOSPC]"."""
    name = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc} [{name}]" if name else str(exc)
