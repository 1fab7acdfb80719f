"""The ways into `serve` and `health` besides its ports: flags, CHAOS_UPSTREAM_* variables, signals,
the journal's path. Each case is a reviewer's attack that once got a traceback, a lie or a wrong
exit status.
"""

import json
import signal
import time

import pytest

from chaos_upstream import health
from chaos_upstream.cli import _parser, main
from chaos_upstream.server.journal_file import JournalFile

from conftest import admin_call
from test_cli import Server, fetch


@pytest.mark.parametrize("flag", ["--port", "--admin-port"])
@pytest.mark.parametrize("value", ["65536", "70000", "-1"])
def test_a_port_number_past_tcps_range_is_refused_not_served_modulo_65536(capsys, flag, value):
    """The system would bind 70000 as 4464 (and the supervisor's bind raised OverflowError)."""
    with pytest.raises(SystemExit) as stopped:
        _parser({}, "serve").parse_args(["serve", flag, value])
    assert stopped.value.code == 2
    assert f"argument {flag}: '{value}' is not a port number (0 to 65535)" in capsys.readouterr().err


def test_a_port_number_from_a_variable_past_tcps_range_is_one_line_naming_the_variable(capsys):
    assert main(["serve"], environ={"CHAOS_UPSTREAM_PORT": "8080,70000"}) == 2
    assert capsys.readouterr().err == (
        "chaos-upstream: CHAOS_UPSTREAM_PORT='8080,70000': '70000' is not a port number (0 to 65535)\n"
    )


def test_health_refuses_a_port_it_cannot_ask(capsys):
    assert health.main([], environ={"CHAOS_UPSTREAM_ADMIN_PORT": "70000"}) == 2
    assert "'70000' is not a port number (1 to 65535)" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_a_grace_no_deadline_takes_is_refused_at_start_not_at_the_first_sigterm(capsys, value):
    """`--grace nan` started, and the first SIGTERM ended in a ValueError traceback (exit 1)."""
    with pytest.raises(SystemExit) as stopped:
        _parser({}, "serve").parse_args(["serve", "--grace", value])
    assert stopped.value.code == 2
    assert "argument --grace: must be 0 or a positive number of seconds" in capsys.readouterr().err


def test_a_grace_of_none_at_all_is_allowed():
    assert _parser({}, "serve").parse_args(["serve", "--grace", "0"]).grace == 0.0


def test_workers_journaling_to_dev_stdout_write_it_to_the_supervisors_stdout_not_into_their_protocol():
    """A container's usual `CHAOS_UPSTREAM_JOURNAL=/dev/stdout`: with --workers, a worker's stdout was
    its answer pipe, so journal lines went to the supervisor as answers and broke /metrics (KeyError)."""
    server = Server("--workers", "2", "--admin-port", "0", "--journal", "/dev/stdout")
    try:
        admin_port = int(server.process.stdout.readline().strip().rsplit(":", 1)[1])
        close = b"GET /attack HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        assert all(fetch(server.port, close).startswith(b"HTTP/1.1 200 OK") for _ in range(4))
        status, metrics = admin_call(admin_port, "GET", "/metrics")
        assert status == 200, metrics
        assert b'chaos_upstream_requests_total{scenario="healthy"} 4.0' in metrics
    finally:
        server.process.send_signal(signal.SIGTERM)
        output, _ = server.process.communicate(timeout=10)
    assert server.process.returncode == 0
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [r["target"] for r in records if r["type"] == "request"] == ["/attack"] * 4


def test_health_asks_an_admin_api_on_the_ipv6_wildcard_on_ipv6_loopback(capsys):
    """serve's `--admin-host ::` listens on IPv6 only: health asked 127.0.0.1 and called it down."""
    server = Server("--admin-host", "::", "--admin-port", "0", "--admin-token", "t")
    try:
        admin_port = server.process.stdout.readline().strip().rsplit(":", 1)[1]
        environ = {"CHAOS_UPSTREAM_ADMIN_HOST": "::", "CHAOS_UPSTREAM_ADMIN_PORT": admin_port, "CHAOS_UPSTREAM_ADMIN_TOKEN": "t"}
        assert health.main([], environ=environ) == 0, capsys.readouterr().err
        assert capsys.readouterr().out == f"chaos-upstream health: http://[::1]:{admin_port}/healthz: 200\n"
    finally:
        assert server.stop() == 0


def test_health_refuses_an_infinite_timeout_in_one_line_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as stopped:
        health.main(["--admin-port", "9090", "--timeout", "inf"], environ={})
    assert stopped.value.code == 2
    assert "argument --timeout: must be a positive number of seconds" in capsys.readouterr().err


def test_a_huge_journal_keep_costs_a_rotation_nothing_until_its_files_exist(tmp_path):
    """`--journal-keep 100000000` froze the whole server at each rotation: a rename tried for every
    index up to K, in the event loop (the admin API's /healthz timed out)."""
    journal = tmp_path / "journal.jsonl"
    file = JournalFile(journal, max_bytes=10, keep=10**6)
    started = time.monotonic()
    for n in range(4):
        file.write(b'{"n":%d}\n' % n)
    file.close()  # the writer thread has rotated thrice
    elapsed = time.monotonic() - started
    assert elapsed < 0.2
    assert [(journal.with_name(f"journal.jsonl.{k}") if k else journal).read_bytes() for k in range(4)] == [
        b'{"n":3}\n', b'{"n":2}\n', b'{"n":1}\n', b'{"n":0}\n'
    ]


def test_rotation_replaces_the_oldest_at_keep_and_fills_a_gap_left_by_a_deleted_file(tmp_path):
    journal = tmp_path / "j"
    file = JournalFile(journal, max_bytes=4, keep=3)
    for n in range(5):
        file.write(b"%d..\n" % n)
    file.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j", "j.1", "j.2", "j.3"]
    assert [(tmp_path / name).read_bytes() for name in ("j", "j.1", "j.2", "j.3")] == [b"4..\n", b"3..\n", b"2..\n", b"1..\n"]
    (tmp_path / "j.2").unlink()  # someone cleaning up by hand
    file.write(b"5..\n")
    file.close()
    assert [(tmp_path / name).read_bytes() for name in ("j", "j.1", "j.2", "j.3")] == [b"5..\n", b"4..\n", b"3..\n", b"1..\n"]
