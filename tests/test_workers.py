"""`serve --workers N`: one port shared by N processes, driven as one through the admin API."""

import json
import os
import signal
import socket
import time

from chaos_upstream.cli import _command, _parser
from chaos_upstream.commands.worker_settings import OWN, for_worker, received
from chaos_upstream.plan.selection import Mix
from chaos_upstream.server import workers

from conftest import admin_call
from test_cli import ROOT, Server, fetch


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
    deadline = time.monotonic() + 5  # the supervisor stopped it; the kernel reaps it a moment later
    while os.path.exists(f"/proc/{first}") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not os.path.exists(f"/proc/{first}")
    server.stop()


SAMPLES = {
    "--host": "127.0.0.2", "--port": "0", "--scenarios": str(ROOT / "scenarios"), "--default": "upstream-502",
    "--proxy-timeout": "0.25", "--seed": "7", "--mix": "healthy=1,upstream-502=3", "--journal": "/tmp/j.jsonl",
    "--journal-memory": "1MiB", "--journal-max-bytes": "512KiB", "--journal-keep": "3", "--admin-host": "::1",
    "--admin-port": "9999", "--admin-token": "s3cret", "--admin-allow-host": "a.example", "--workers": "3",
    "--grace": "0.5", "--play": "rolling-deploy", "--every": "90s", "--tls": None, "--tls-cert": "/etc/tls/cert.pem",
    "--tls-key": "/etc/tls/key.pem", "--tls-name": "upstream.internal", "--tls-ca": "/run/ca.pem", "--tls-client-ca": "/etc/tls/clients.pem",
    "--tls-material": "/tmp/chaos-upstream-tls-x",
}
"""A value other than its default for every flag of `serve` (a flag added later must be given one
here); None for a switch, given by itself."""


def test_every_serve_setting_reaches_each_worker_as_the_supervisor_has_it():
    """Sent whole as JSON (no flag rebuilt one by one): every attribute of the supervisor's parsed
    namespace arrives equal, but each worker's own (OWN); a new flag cannot be left out."""
    parser = _parser({}, "serve")
    serve = _command(parser, "serve")
    flags = {action.option_strings[-1]: action.dest for action in serve._actions
             if action.option_strings and action.dest not in ("help", "worker")}
    assert set(flags) == set(SAMPLES), "give every serve flag a sample value"
    argv = [word for flag, value in SAMPLES.items() for word in ((flag,) if value is None else (flag, value))]
    args = parser.parse_args(["serve", *argv])
    assert all(getattr(args, dest) not in (serve.get_default(dest), [serve.get_default(dest)]) for dest in flags.values())
    assert isinstance(args.mix, Mix)
    for index in (0, 2):
        worker = parser.parse_args(["serve", "--worker", str(index)])  # what the worker's command line gives
        sent = json.loads(json.dumps(for_worker(args, 4242, index)))  # as on the channel
        got = vars(received(serve, worker, sent))
        own = {"port": [4242], "worker": index, "workers": 1, "admin_port": None, "seed": 7 + index}
        assert set(own) == set(OWN)
        assert got == vars(args) | own


def test_a_worker_reads_its_settings_and_not_a_byte_more(monkeypatch):
    supervisor, worker = socket.socketpair()
    with supervisor, worker:
        monkeypatch.setattr(workers, "CHANNEL", worker.fileno())
        supervisor.sendall(b'{"seed": 3, "journal": null}\n{"op": "stats"}\n')
        assert workers.from_supervisor() == {"seed": 3, "journal": None}
        assert worker.recv(100) == b'{"op": "stats"}\n'
