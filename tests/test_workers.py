"""`serve --workers N`: one port shared by N processes, driven as one through the admin API."""

import http.client
import json
import os
import signal
import time

from test_cli import Server, fetch


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def admin_call(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of one admin call (http.client undoes the chunked framing of journal pages)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_workers_share_the_port_and_obey_the_admin_api_together(tmp_path):
    journal = tmp_path / "journal.jsonl"
    server = Server("--workers", "2", "--admin-port", "0", "--journal", str(journal))
    try:
        admin_port = int(server.process.stdout.readline().strip().rsplit(":", 1)[1])
        assert len(children(server.process.pid)) == 2
        close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        assert all(fetch(server.port, close).startswith(b"HTTP/1.1 200 OK") for _ in range(24))
        assert admin_call(admin_port, "PUT", "/active", b'{"scenario": "upstream-502"}')[0] == 200
        assert all(fetch(server.port, close).startswith(b"HTTP/1.1 502 ") for _ in range(24))
        status, metrics = admin_call(admin_port, "GET", "/metrics")
        assert b'chaos_upstream_requests_total{scenario="upstream-502"} 24.0' in metrics
        assert b'chaos_upstream_requests_total{scenario="healthy"} 24.0' in metrics
        status, records = admin_call(admin_port, "GET", "/journal?type=request")
        assert {record["worker"] for record in json.loads(records)} == {0, 1}
    finally:
        assert server.stop() == 0
    lines = journal.read_text().splitlines()
    assert sum(json.loads(line)["type"] == "request" for line in lines) == 48


def test_a_worker_that_dies_stops_every_worker_with_exit_1():
    server = Server("--workers", "2")
    first, second = children(server.process.pid)
    os.kill(second, signal.SIGKILL)
    code = server.process.wait(timeout=10)
    assert code == 1
    assert "a worker exited on its own" in server.process.stderr.read()
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{first}")
    server.stop()
