"""The journal file's writer thread: lines whole and in order, in batches; close() loses nothing;
reopen() in order with the lines; a disk full, stalled or slower than the records costs counted
records, never the caller's time or memory past the queue's bound."""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_upstream.server import journal_file
from chaos_upstream.server.journal_file import JournalFile

from test_journal_disk import fill, tiny_disk  # noqa: F401 (a fixture)


@contextlib.contextmanager
def stalled(path: Path) -> Iterator[None]:
    """The disk seen from the writer thread hangs: another descriptor holds the file's flock."""
    with open(path, "ab") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)


@pytest.fixture
def batches(monkeypatch) -> list[int]:
    """How many lines each write call of the thread was given."""
    sizes: list[int] = []
    real = journal_file.write_whole

    def counted(fd: int, lines: list[bytes]) -> tuple[int, OSError | None]:
        sizes.append(len(lines))
        return real(fd, lines)

    monkeypatch.setattr(journal_file, "write_whole", counted)
    return sizes


def line(n: int, size: int = 100) -> bytes:
    text = b'{"n":%d,"pad":"' % n
    return text + b"x" * (size - len(text) - 3) + b'"}\n'


def numbers(path: Path) -> list[int]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [int(text.split(b",")[0].removeprefix(b'{"n":')) for text in data.splitlines()]


def test_close_writes_every_line_queued_in_order_whole_and_ends_the_thread(tmp_path):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path)
    for n in range(10_000):
        file.write(line(n, 50 + n % 400))
    file.close()
    assert numbers(path) == list(range(10_000)) and file.unwritten == 0
    assert not file._thread.is_alive()


def test_lines_queued_while_the_disk_is_busy_go_in_one_write_in_order(tmp_path, batches):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path)
    with stalled(path):
        for n in range(1000):
            file.write(line(n))  # returns at once: the thread waits for the lock, not the caller
        assert path.read_bytes() == b""
    file.flush()
    assert numbers(path) == list(range(1000))
    assert sum(batches) == 1000 and len(batches) <= 2  # the first line may have been taken alone
    file.close()


def test_flush_waits_for_the_lines_written_before_it(tmp_path):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path)
    for n in range(3):
        file.write(line(n))
        file.flush()
        assert numbers(path) == list(range(n + 1))
    file.close()


def test_reopen_comes_after_the_lines_before_it_and_before_those_after(tmp_path):
    path, moved = tmp_path / "journal.jsonl", tmp_path / "journal.jsonl.1"
    file = JournalFile(path)
    for n in range(500):
        file.write(line(n))
    path.rename(moved)  # logrotate, while the thread may still be writing the lines before: same inode
    file.reopen()
    for n in range(500, 1000):
        file.write(line(n))
    file.close()
    assert numbers(moved) == list(range(500)) and numbers(path) == list(range(500, 1000))


def test_past_the_queues_bound_records_are_counted_said_once_and_writing_resumes(tmp_path):
    path = tmp_path / "journal.jsonl"
    said: list[str] = []
    file = JournalFile(path, say=said.append, queue_bytes=1000)
    with stalled(path):
        for n in range(25):
            file.write(line(n))  # 100 bytes each: 10 fit in the queue, the 15 after are refused
        assert file.unwritten == 15  # counted by the caller: known at once
    file.flush()
    assert numbers(path) == list(range(10))
    assert said == [f"chaos-upstream: journal {path}: cannot keep up (over 1000 bytes queued for the disk); "
                    "counting the records not written until it can"]
    file.write(line(25))
    file.close()
    assert numbers(path) == [*range(10), 25] and file.unwritten == 15
    assert said[1:] == [f"chaos-upstream: journal {path}: writing again (15 records unwritten so far)"]


def test_a_line_is_refused_only_while_the_queue_is_full(tmp_path):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path, queue_bytes=1000)
    for n in range(5):
        with stalled(path):
            for k in range(10):
                file.write(line(10 * n + k))
        file.flush()  # written: the queue is empty again
    file.close()
    assert numbers(path) == list(range(50)) and file.unwritten == 0


def test_a_disk_that_refuses_every_write_costs_every_record_counted_after_close_said_once():
    said: list[str] = []
    file = JournalFile("/dev/full", say=said.append)
    for n in range(100):
        file.write(line(n))
    file.close()
    assert file.unwritten == 100
    assert said == ["chaos-upstream: journal /dev/full: cannot write (No space left on device [ENOSPC]); "
                    "counting the records not written until it can"]


def test_a_batch_the_full_disk_cuts_short_keeps_its_whole_lines_and_counts_the_rest(tiny_disk):
    path = tiny_disk / "journal.jsonl"
    said: list[str] = []
    file = JournalFile(path, say=said.append)
    filler = fill(tiny_disk, leave=2)  # 8 KiB left: 40 lines of 200 bytes, and part of the 41st
    with stalled(path):
        for n in range(100):
            file.write(line(n, 200))
    file.flush()
    assert numbers(path) == list(range(40)) and file.unwritten == 60
    filler.unlink()
    file.write(line(100, 200))
    file.close()
    assert numbers(path) == [*range(40), 100] and file.unwritten == 60
    assert [text.split(": ", 2)[2].split(" (")[0] for text in said] == ["cannot write", "writing again"]


def test_a_batch_is_split_where_the_size_rotates_the_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path, max_bytes=1000, keep=10)
    with stalled(path):
        for n in range(35):
            file.write(line(n))
    file.close()
    files = [path.with_name(f"journal.jsonl.{k}") for k in (3, 2, 1)] + [path]
    assert sorted(tmp_path.iterdir()) == sorted(files)
    assert [numbers(f) for f in files] == [list(range(k, min(k + 10, 35))) for k in range(0, 35, 10)]


def test_a_write_after_close_is_dropped_and_nothing_after_it_waits(tmp_path):
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path)
    file.write(line(0))
    file.close()
    file.write(line(1))
    file.reopen()
    file.flush()
    file.close()
    assert numbers(path) == [0] and file.unwritten == 0


def test_a_say_that_fails_does_not_stop_the_writer():
    def broken(_: str) -> None:
        raise BrokenPipeError(os.strerror(32))

    file = JournalFile("/dev/full", say=broken)
    file.write(line(0))
    file.flush()
    file.write(line(1))
    file.close()
    assert file.unwritten == 2


def test_two_files_on_one_path_rotate_it_without_losing_tearing_or_overfilling_a_file(tmp_path):
    """One batch can span several files while the other writer waits for the lock: the waiting one
    reopens as often as it finds the file rotated again, never writing past max_bytes to catch up."""
    path = tmp_path / "journal.jsonl"
    files = [JournalFile(path, max_bytes=1000, keep=1000) for _ in range(2)]
    with stalled(path):
        for n in range(300):
            files[n % 2].write(line(n))
    for file in files:
        file.close()
    oldest_first = sorted(tmp_path.iterdir(), key=lambda file: -int(file.suffix[1:]) if file.suffix[1:].isdigit() else 0)
    assert all(0 < file.stat().st_size <= 1000 for file in oldest_first)
    lines = [n for file in oldest_first for n in numbers(file)]
    assert sorted(lines) == list(range(300))
    assert [n for n in lines if n % 2 == 0] == list(range(0, 300, 2)) and [n for n in lines if n % 2] == list(range(1, 300, 2))


def test_a_path_that_never_names_the_file_opened_on_it_still_gets_every_line(tmp_path, monkeypatch):
    """Some filesystems report another inode for the path than for the open file: after TRIES looks
    at the same file, the line is written regardless, as in a file never rotated."""
    monkeypatch.setattr(journal_file, "names", lambda path, held: False)
    path = tmp_path / "journal.jsonl"
    file = JournalFile(path, max_bytes=150)
    for n in range(3):
        file.write(line(n))
    file.close()
    assert numbers(path) == [0, 1, 2] and file.unwritten == 0
