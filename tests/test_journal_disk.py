"""The journal file against a real disk: a full tmpfs costs records (counted, said once), never the
process or a whole line; the file is reopened on request and rotated by size, by several workers at once."""

import json
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chaos_upstream.cli import main
from chaos_upstream.server.journal import Journal

from test_cli import COMMAND, ROOT, fetch
from conftest import admin_call, request_record

CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB tmpfs mounted at tmp_path/disk, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("filling a real disk needs a tiny tmpfs, and mounting one needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


class Serving:
    """`chaos-upstream serve --port 0 --admin-port 0 ARGS...` as a child process, once it listens."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "serve", "--port", "0", "--admin-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        ports = {}
        for line in self.process.stdout:  # ends with the process, if it fails to start
            where, _, port = line.strip().rpartition(":")
            if " on http://" in where:
                ports["admin" if "admin API" in where else "data"] = int(port)
            if len(ports) == 2:
                break
        else:
            self.stop()
            raise AssertionError("serve did not start")
        self.port, self.admin_port = ports["data"], ports["admin"]

    def stop(self) -> tuple[int, str]:
        """SIGTERM it; its exit status and all it said on stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stderr


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking all of `disk` but `leave` pages of 4 KiB, to remove to free them."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave * 4096))
    return filler


def whole_lines(path: Path) -> list[dict]:
    """The file's records; fails on any line that is not a whole JSON object."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_full_disk_costs_records_not_lines_says_so_once_and_writing_resumes_when_freed(tiny_disk):
    said: list[str] = []
    journal = Journal(tiny_disk / "journal.jsonl", say=said.append)
    filler = fill(tiny_disk, leave=2)
    for written in range(1, 100):  # the lines cross into a page the disk cannot give: short writes, cut off again
        journal.write(request_record(written - 1, "/" + "x" * 1900))
        journal.flush()  # the writer thread has tried it: `unwritten` counts it
        if journal.unwritten == 4:
            break
    filler.unlink()
    for n in range(written, written + 5):
        journal.write(request_record(n, "/" + "x" * 1900))
    journal.close()
    lines = whole_lines(tiny_disk / "journal.jsonl")
    assert len(lines) + journal.unwritten == written + 5 and journal.unwritten == 4
    assert [r["conn"] for r in lines[-5:]] == list(range(written, written + 5))
    assert len(said) == 2
    where = f"chaos-upstream: journal {tiny_disk}/journal.jsonl:"
    assert said[0].startswith(f"{where} cannot write (No space left on device [ENOSPC])")
    assert said[1] == f"{where} writing again (4 records unwritten so far)"


def metric(admin_port: int, name: str) -> float:
    text = admin_call(admin_port, "GET", "/metrics")[1].decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))


def served(admin_port: int, connections: int, limit: float = 5.0) -> None:
    """Wait until `connections` were accepted and all are closed (their records written)."""
    deadline = time.monotonic() + limit
    while (metric(admin_port, "chaos_upstream_connections_total"),
           metric(admin_port, "chaos_upstream_connections_open")) != (connections, 0):
        assert time.monotonic() < deadline, "the connections did not all close"
        time.sleep(0.01)


def tried(admin_port: int, unwritten: int, limit: float = 5.0) -> None:
    """Wait until the journal's writer thread has counted `unwritten` records it could not write."""
    deadline = time.monotonic() + limit
    while metric(admin_port, "chaos_upstream_journal_unwritten_total") != unwritten:
        assert time.monotonic() < deadline, "the writer thread did not try every record"
        time.sleep(0.01)


def test_serve_keeps_serving_on_a_full_disk_counts_the_unwritten_records_and_resumes(tiny_disk):
    journal = tiny_disk / "journal.jsonl"
    server = Serving("--journal", str(journal))
    admin_port = server.admin_port
    try:
        filler = fill(tiny_disk)
        assert all(fetch(server.port, CLOSE).startswith(b"HTTP/1.1 200 OK") for _ in range(10))
        served(admin_port, 10)
        tried(admin_port, 20)  # by the writer thread, while the disk is full
        filler.unlink()
        assert all(fetch(server.port, CLOSE).startswith(b"HTTP/1.1 200 OK") for _ in range(5))
        served(admin_port, 15)
        assert metric(admin_port, "chaos_upstream_journal_unwritten_total") == 20  # a request and a connection record each
        assert server.process.poll() is None
    finally:
        code, stderr = server.stop()
    assert code == 0 and len(whole_lines(journal)) == 10
    said = [line for line in stderr.splitlines() if line.startswith(f"chaos-upstream: journal {journal}:")]
    assert [line.split(": ", 2)[2].split(" (")[0] for line in said] == ["cannot write", "writing again"]


def test_reopen_opens_the_path_again_after_logrotate_moved_the_file(tmp_path):
    path, moved = tmp_path / "journal.jsonl", tmp_path / "journal.jsonl.1"
    said: list[str] = []
    journal = Journal(path, say=said.append)
    journal.write(request_record(0))
    path.rename(moved)
    journal.write(request_record(1))  # until told, the moved file takes the records, as logrotate expects
    path.mkdir()  # the path cannot be opened now: the records are counted, not fatal
    journal.reopen()
    journal.write(request_record(2))
    journal.flush()  # tried while the path is a folder
    path.rmdir()
    journal.reopen()
    journal.write(request_record(3))
    journal.close()
    assert [r["conn"] for r in whole_lines(moved)] == [0, 1] and [r["conn"] for r in whole_lines(path)] == [3]
    assert journal.unwritten == 1 and len(said) == 2 and "Is a directory" in said[0]


def test_rotation_by_size_keeps_the_newest_lines_in_order_in_k_files(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, max_bytes=1000, keep_files=2)
    for n in range(30):
        journal.write(request_record(n))
    journal.close()
    files = [tmp_path / "journal.jsonl.2", tmp_path / "journal.jsonl.1", path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)
    conns = [r["conn"] for file in files for r in whole_lines(file)]
    assert conns == list(range(30 - len(conns), 30)) and all(0 < file.stat().st_size <= 1000 for file in files)


def test_two_workers_rotating_one_journal_lose_and_tear_no_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    server = Serving("--workers", "2", "--journal", str(path), "--journal-max-bytes", "2KiB", "--journal-keep", "100")
    admin_port = server.admin_port
    try:
        with ThreadPoolExecutor(8) as pool:  # the two workers write and rotate at the same time
            replies = list(pool.map(lambda _: fetch(server.port, CLOSE), range(80)))
        assert all(reply.startswith(b"HTTP/1.1 200 OK") for reply in replies)
        served(admin_port, 80)
        assert metric(admin_port, "chaos_upstream_journal_memory_bytes") > 160 * 400  # both workers' journals, added up
    finally:
        assert server.stop()[0] == 0
    files = sorted(tmp_path.iterdir())
    records = [record for file in files for record in whole_lines(file)]
    assert len(records) == 160 and len(files) > 20 and all(file.stat().st_size <= 2048 for file in files)
    assert {record["worker"] for record in records} == {0, 1}


def test_the_journal_flags_refuse_what_cannot_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serve", "--journal-memory", "64MB"])
    assert exit.value.code == 2 and "'64MB' is not a size above 0" in capsys.readouterr().err
    assert main(["serve", "--journal-max-bytes", "1MiB"]) == 2
    assert "--journal-max-bytes: give --journal FILE" in capsys.readouterr().err
    assert main(["serve", "--journal", str(tmp_path / "j"), "--journal-keep", "0"]) == 2
    assert "--journal-keep must be 1 or more" in capsys.readouterr().err
