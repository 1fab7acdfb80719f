"""`serve` and signals, as a process manager sends them: a real process, real signals, real exit codes.

SIGTERM or SIGINT: stop accepting, close idle connections, give busy ones the grace period, exit 0;
a second one cuts in-flight work at once (exit 128 + N). SIGHUP reopens the journal file. With
--workers, the supervisor forwards each to every worker. Each step waits for the line that says it
happened, never for time to pass.
"""

import json
import queue
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from test_cli import Server

STALL = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Chaos-Scenario: stall-mid-body\r\n\r\n"
"""A response that stops after its head and 1000 bytes, for 4T: 40 s with the --proxy-timeout 10 used
here, far past the 5 s grace, and the client sees that it began, so the test knows it is in flight."""
HEALTHY = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


class Lines:
    """A child's stderr, line by line as it comes (a thread reads it: a pipe's buffer hides lines from select)."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float = 10.0) -> str:
        """The next line, within `timeout` (a hung child fails the test, not the suite)."""
        return self.queue.get(timeout=timeout)

    def until(self, text: str, count: int = 1) -> list[str]:
        """Lines read until `count` of them contain `text`."""
        lines: list[str] = []
        while sum(text in line for line in lines) < count:
            try:
                lines.append(self.next())
            except queue.Empty:
                raise AssertionError(f"{count} lines with {text!r} expected, got {lines}") from None
        return lines

    def rest(self) -> list[str]:
        """The remaining lines, once the child has exited."""
        self.thread.join(timeout=10)
        return [self.queue.get() for _ in range(self.queue.qsize())]


def written(path: Path, text: str) -> None:
    """Return once `text` is in the file (the server journals a request just after answering it)."""
    deadline = time.monotonic() + 5
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.01)


def in_flight(port: int) -> socket.socket:
    """A connection with a response in flight: its head has come, its body stalls."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(STALL)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    return sock


def wait_stopped(server: Server, stderr: Lines, started: float) -> tuple[int, float, list[str]]:
    """Exit status, seconds since `started`, and the rest of stderr."""
    code = server.process.wait(timeout=10)
    elapsed = time.monotonic() - started
    rest = stderr.rest()
    server.process.stdout.close(), server.process.stderr.close()
    return code, elapsed, rest


@pytest.fixture
def serve():
    """Start `serve` (a Server); one a failed test left running is killed (its workers then see
    their stdin close and stop)."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        started.append(Server(*args))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_second_sigterm_during_the_grace_cuts_in_flight_work_at_once_and_exits_143(tmp_path, serve):
    journal = tmp_path / "journal.jsonl"
    server = serve("--grace", "5", "--proxy-timeout", "10", "--journal", str(journal))
    stderr = Lines(server.process.stderr)
    with in_flight(server.port):
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert stderr.next() == (
            "chaos-upstream: SIGTERM: stopping: 1 connection open: idle ones close now, busy ones get up to 5 s (--grace) "
            "to finish; a second SIGTERM or SIGINT cuts them at once"
        )
        server.process.send_signal(signal.SIGTERM)
        code, elapsed, rest = wait_stopped(server, stderr, started)
    assert (code, rest) == (143, ["chaos-upstream: SIGTERM: stopped at once: 1 request in flight cut (journaled as cancelled)"])
    assert elapsed < 2  # not the 5 s grace
    assert [(r["type"], r.get("scenario"), r["ended"]) for r in records(journal)] == [
        ("request", "stall-mid-body", "cancelled"), ("connection", None, "cancelled")]


def test_sigint_closes_idle_keep_alive_connections_at_once_and_exits_0(serve):
    """A proxy's pool of idle connections is no in-flight work: it does not hold the stop for the grace."""
    server = serve("--grace", "5")
    stderr = Lines(server.process.stderr)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        idle.sendall(HEALTHY)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        assert idle.recv(1) == b""  # closed (FIN) by the stop, not at the end of the grace
        code, elapsed, rest = wait_stopped(server, stderr, started)
    assert (code, rest[-1]) == (0, "chaos-upstream: SIGINT: stopped: all in-flight work finished")
    assert rest[0].startswith("chaos-upstream: SIGINT: stopping: 1 connection open: idle ones close now")
    assert elapsed < 2 and "Traceback" not in "\n".join(rest)


def test_sighup_reopens_the_journal_moved_away_and_the_next_records_go_to_the_new_file(tmp_path, serve):
    journal = tmp_path / "journal.jsonl"
    server = serve("--journal", str(journal))
    stderr = Lines(server.process.stderr)
    close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Chaos-Probe: %s\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(close % b"before")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    written(journal, '"type":"connection"')
    journal.rename(tmp_path / "journal.jsonl.1")  # what logrotate does before it signals
    server.process.send_signal(signal.SIGHUP)
    assert stderr.next() == f"chaos-upstream: SIGHUP: reopened the journal {journal}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(close % b"after")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    server.process.send_signal(signal.SIGTERM)
    assert wait_stopped(server, stderr, time.monotonic())[0] == 0
    assert [r["probe"] for r in records(journal) if r["type"] == "request"] == ["after"]
    assert [r["probe"] for r in records(tmp_path / "journal.jsonl.1") if r["type"] == "request"] == ["before"]


def test_the_supervisor_forwards_sighup_and_both_stop_signals_to_every_worker(tmp_path, serve):
    journal = tmp_path / "journal.jsonl"
    server = serve("--workers", "2", "--grace", "5", "--proxy-timeout", "10", "--journal", str(journal))
    stderr = Lines(server.process.stderr)
    journal.rename(tmp_path / "journal.jsonl.1")
    server.process.send_signal(signal.SIGHUP)
    reopened = stderr.until("SIGHUP: reopened the journal", count=2)
    assert {line.split(":")[0] for line in reopened if "reopened" in line} == {"chaos-upstream worker 0", "chaos-upstream worker 1"}
    cut = [in_flight(server.port) for _ in range(4)]  # the kernel spreads them between the two workers
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    stderr.until("SIGTERM: stopping: ", count=2)  # each worker says it stops
    server.process.send_signal(signal.SIGTERM)
    code, elapsed, rest = wait_stopped(server, stderr, started)
    for sock in cut:
        sock.close()
    assert code == 143 and elapsed < 3  # not the 5 s grace
    assert rest[-1] == "chaos-upstream: SIGTERM: stopped at once: every worker cut its in-flight work (each says above what it cut)"
    requests = [r for r in records(journal) if r["type"] == "request"]
    assert [(r["scenario"], r["ended"]) for r in requests] == [("stall-mid-body", "cancelled")] * 4  # in the reopened file
