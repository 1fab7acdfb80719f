"""The command line as a user runs it: a real process, real signals, real exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos_upstream.cli import main
from chaos_upstream.proxies import require

from conftest import admin_call

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "chaos_upstream"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


class Server:
    """`chaos-upstream serve --port 0 ...` as a child process, with its settings line and its printed address."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=env,
        )
        self.settings = ""
        while (line := self.process.stdout.readline()) and "listening on" not in line:
            self.settings = line.strip()
        self.line = line.strip()
        self.port = int(self.line.rsplit(":", 1)[1])

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def fetch(port: int, request: bytes, limit: float = 2.0) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_serve_prints_its_real_port_serves_and_stops_on_sigterm_with_the_journal_flushed(tmp_path):
    journal = tmp_path / "journal.jsonl"
    server = Server("--journal", str(journal), "--default", "upstream-502")
    try:
        assert server.line == f"chaos-upstream listening on http://127.0.0.1:{server.port}"
        answer = fetch(server.port, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Chaos-Probe: p1\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["type"] for r in records] == ["request", "connection"]
    assert records[0]["probe"] == "p1" and records[0]["scenario"] == "upstream-502"


def test_sigterm_gives_in_flight_work_its_grace_then_journals_it_as_cancelled(tmp_path):
    import socket

    journal = tmp_path / "journal.jsonl"
    server = Server("--journal", str(journal), "--grace", "0.3", "--admin-port", "0")
    admin_port = int(server.process.stdout.readline().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Chaos-Scenario: never-respond\r\n\r\n")
        deadline = time.monotonic() + 5
        while admin_call(admin_port, "GET", "/journal?type=request&running=1")[1] == b"[]":  # until it is in flight
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.005)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
        assert 0.25 <= time.monotonic() - started <= 3
    assert server.process.stderr.read().splitlines() == [
        "chaos-upstream: SIGTERM: stopping: 1 connection open: idle ones close now, busy ones get up to 0.3 s (--grace) "
        "to finish; a second SIGTERM or SIGINT cuts them at once",
        "chaos-upstream: SIGTERM: stopped: the 0.3 s grace ran out: 1 request in flight cut (journaled as cancelled)",
    ]
    server.process.stdout.close(), server.process.stderr.close()
    request, connection = (json.loads(line) for line in journal.read_text().splitlines())
    assert (request["scenario"], request["ended"]) == ("never-respond", "cancelled")
    assert connection["ended"] == "cancelled"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--default", "nope"], "unknown scenario 'nope'"),
        (["serve", "--mix", "healthy=1,nope=2"], "unknown scenario 'nope'"),
        (["serve", "--mix", "healthy"], "is not NAME=WEIGHT"),
        (["serve", "--proxy-timeout", "-1"], "must be a positive number"),
        (["serve", "--scenarios", "/no/such/dir"], "/no/such/dir:1: (file): no such file or folder"),
    ],
)
def test_bad_configuration_exits_2_with_a_message_and_starts_nothing(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "listening" not in result.stdout


def test_validate_reports_file_line_field_and_exits_2(tmp_path):
    (tmp_path / "good.yaml").write_text((ROOT / "scenarios" / "healthy.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("name: bad\ndescription: x\nphase: body\nexpect: {outcomes: [200]}\nsteps:\n  - kind: nap\n")
    result = run("validate", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{tmp_path}/bad.yaml:6: steps.0: Input tag 'nap' found using 'kind' does not match any of the expected tags: "
        "'status', 'headers', 'body', 'chunked', 'raw', 'sleep', 'drip', 'close', 'reset', 'half-close', "
        "'hang', 'keep-alive'"
    ]


def test_validate_accepts_the_catalogue():
    result = run("validate", "scenarios")
    assert (result.returncode, result.stdout.strip()) == (0, f"{len(list((ROOT / 'scenarios').glob('*.yaml')))} scenario files valid")


def test_list_shows_each_scenario_with_phase_and_expectation(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if " truncated-chunked " in line)
    assert "body" in row and "aborted or 502" in row and "two 500-byte chunks" in row


def test_schema_is_json_schema_for_scenario_files(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "description", "phase", "expect"} <= set(schema["required"])
    assert set(schema["properties"]["trigger"]["enum"]) == {"request", "accept", "refuse"}


def test_python_dash_m_and_the_console_script_are_the_same_command():
    result = run("--help")
    assert result.returncode == 0 and "serve" in result.stdout and "validate" in result.stdout
    script = Path(sys.executable).parent / "chaos-upstream"
    if script.exists():
        assert subprocess.run([script, "--help"], capture_output=True, timeout=60).returncode == 0
    assert os.environ.get("CI") != "true" or script.exists()


def test_serve_with_several_ports_is_a_fleet_whose_members_are_driven_apart(tmp_path):
    journal = tmp_path / "journal.jsonl"
    process = subprocess.Popen([*COMMAND, "serve", "--port", "0", "--port", "0", "--admin-port", "0", "--journal", str(journal)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = [process.stdout.readline().strip() for _ in range(4)][1:]  # after the settings line
        ports = [int(line.rsplit(":", 1)[1]) for line in lines]
        assert [line.rsplit(" ", 1)[0] for line in lines] == ["chaos-upstream listening on"] * 2 + ["chaos-upstream admin API on"]
        put = (b'PUT /active HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n'
               b'Content-Length: 41\r\n\r\n{"scenario": "upstream-502", "member": 0}')
        assert fetch(ports[2], put).startswith(b"HTTP/1.1 200 ")
        request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        assert [fetch(port, request)[:12] for port in ports[:2]] == [b"HTTP/1.1 502", b"HTTP/1.1 200"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close(), process.stderr.close()
    requests = [json.loads(line) for line in journal.read_text().splitlines() if '"request"' in line]
    assert sorted((r["member"], r["scenario"]) for r in requests) == [(0, "upstream-502"), (1, "healthy")]


def test_a_fleet_of_ports_cannot_be_split_into_workers():
    result = run("serve", "--port", "0", "--port", "0", "--workers", "2")
    assert result.returncode == 2 and "--workers N shares one --port" in result.stderr


@pytest.mark.realtime
def test_serve_plays_a_deploy_on_its_fleet_again_and_again_and_journals_each_change(tmp_path):
    journal = tmp_path / "journal.jsonl"
    server = Server("--port", "0", "--play", "restart-during-deploy", "--every", "6T", "--proxy-timeout", "0.05",
                    "--journal", str(journal))
    try:
        lines = (line for line in iter(server.process.stdout.readline, "") if "playing" in line)
        plays = [next(lines) for _ in range(3)]  # the third begins once the second is over
    finally:
        assert server.stop() == 0
    assert plays == ["chaos-upstream playing restart-during-deploy: 4 changes over 0.25 s\n"] * 3
    changes = [json.loads(line) for line in journal.read_text().splitlines() if '"change"' in line]
    first_two = [(c["member"], c["do"]) for c in changes[:8]]
    assert first_two == [(0, "stop"), (1, "stop"), (0, "start"), (1, "start")] * 2
    starts = [c["t"] for c in changes if c["do"] == "stop" and c["member"] == 0]
    # every 6T, from start to start; a change's "t" is when it ran, which a loaded machine delays by
    # a few ms for one play and not the next (0.296 s was seen)
    assert 0.28 <= starts[1] - starts[0] < 0.45


@pytest.mark.parametrize(("options", "message"), [
    (["--every", "1s"], "--every: give --play NAME"),
    (["--play", "no-such"], "--play: no scenario named 'no-such'"),
    (["--play", "healthy"], "--play: 'healthy' has no timeline to play"),
    (["--play", "rolling-deploy"], "--play: 'rolling-deploy' needs 2 members; serve has 1"),
    (["--port", "0", "--play", "restart-during-deploy", "--every", "5T"], "restart-during-deploy's last change comes at 5 s"),
    (["--play", "restart-during-deploy", "--every=-1s"], "never negative"),
    (["--workers", "2", "--play", "restart-during-deploy"], "--play: timelines play on the members of one process"),
])
def test_a_play_that_cannot_be_played_stops_serve_before_it_starts(options, message):
    result = run("serve", "--port", "0", *options)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.proxy
def test_install_proxies_says_what_is_present_and_refuses_unknown_names():
    require("nginx"), require("haproxy")
    result = run("install-proxies", "nginx", "haproxy")
    assert (result.returncode, result.stdout) == (0, "proxies present: nginx, haproxy\n")
    result = run("install-proxies", "nope")
    assert result.returncode == 2 and result.stderr.startswith("unknown proxy 'nope'; known: nginx, haproxy,")
