"""`serve` that cannot start: one line on stderr naming the flag and the cause, exit 2, nothing left running.

Each case meets a real obstacle (a port someone else listens on, a journal path that cannot be
opened). The real command runs in a child process where the process matters (its exit status, the
workers it must not leave behind); the variants of one path run in this process, through `main`,
which is the same code less a second of imports each.
"""

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_upstream.cli import main
from test_cli import run


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on (no SO_REUSEPORT: nobody may share it)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def mentioning(marker: str) -> list[int]:
    """Live processes whose command line mentions `marker`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
    return found


def assert_one_line_exit_2(result: subprocess.CompletedProcess, line: str) -> None:
    assert (result.returncode, result.stderr) == (2, f"chaos-upstream: {line}\n"), result.stderr
    assert "listening on" not in result.stdout


def serve(capsys: pytest.CaptureFixture, *options: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`main(["serve", ...])` in this process, as the CompletedProcess a child would give."""
    status = main(["serve", *options], environ={} if environ is None else environ)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["serve", *options], status, out, err)


def test_a_data_port_in_use_ends_the_process_with_one_line_naming_it(busy_port):
    assert_one_line_exit_2(run("serve", "--port", str(busy_port)), f"--port {busy_port}: address already in use")


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (["--port", "{busy}", "--workers", "2"], "--port {busy}: address already in use"),  # the supervisor's reservation
        (["--port", "0", "--port", "{busy}"], "--port {busy}: address already in use"),  # a fleet's second member
        (["--port", "0", "--admin-port", "{busy}"], "--admin-port {busy}: address already in use"),
        (["--port", "0", "--admin-port", "0", "--admin-host", "192.0.2.1", "--admin-token", "t"],
         "--admin-host 192.0.2.1: cannot assign requested address"),
    ],
    ids=["workers-port", "fleet-member", "admin-port", "admin-host"],
)
def test_every_listener_that_cannot_listen_is_one_line_naming_its_flag(capsys, busy_port, options, line):
    assert_one_line_exit_2(serve(capsys, *(option.format(busy=busy_port) for option in options)), line.format(busy=busy_port))


@pytest.mark.parametrize(
    ("journal", "cause"),
    [("missing/journal.jsonl", "no such file or directory"), (".", "is a directory")],
    ids=["missing-folder", "a-folder"],
)
def test_a_journal_that_cannot_be_opened_is_one_line_naming_the_flag(capsys, tmp_path, journal, cause):
    path = tmp_path / journal
    assert_one_line_exit_2(serve(capsys, "--port", "0", "--journal", str(path)), f"--journal {path}: {cause}")


def test_a_journal_in_a_read_only_folder_is_one_line_naming_the_flag(capsys, tmp_path):
    """Root writes through file modes, so the folder is a file system mounted read-only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = serve(capsys, "--port", "0", "--journal", str(folder / "journal.jsonl"))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert_one_line_exit_2(result, f"--journal {folder / 'journal.jsonl'}: read-only file system")


def test_a_worker_that_cannot_start_ends_the_supervisor_with_its_one_line_and_leaves_nothing_running(tmp_path):
    """Both workers fail alike (the journal is theirs to open); one line says it once, and the
    supervisor stops every worker before it exits."""
    journal = tmp_path / "missing" / "journal.jsonl"
    result = run("serve", "--port", "0", "--workers", "2", "--journal", str(journal))
    assert_one_line_exit_2(result, f"--journal {journal}: no such file or directory")
    assert mentioning(str(journal)) == []


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("CHAOS_UPSTREAM_PORT", "80,eighty", "CHAOS_UPSTREAM_PORT='80,eighty': 'eighty' is not a port number (0 to 65535)"),
        ("CHAOS_UPSTREAM_PROXY_TIMEOUT", "-1", "CHAOS_UPSTREAM_PROXY_TIMEOUT='-1': must be a positive number of seconds"),
        ("CHAOS_UPSTREAM_MIX", "healthy", "CHAOS_UPSTREAM_MIX='healthy': "),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_the_variable(capsys, name, value, line):
    result = serve(capsys, environ={name: value})
    assert result.returncode == 2 and result.stderr.startswith(f"chaos-upstream: {line}") and result.stderr.count("\n") == 1
