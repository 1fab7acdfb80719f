"""Locust through real nginx, as a user runs it: the example locustfile in a locust process of its
own (locust patches the standard library for gevent, which must not happen in this one)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from conftest import T

LOCUSTFILE = Path(__file__).resolve().parents[1] / "examples" / "locustfile.py"
MIX = "healthy=3,truncated-chunked=1,reset-before-response=1,never-respond=1,bad-status-line=1"


async def locust(*options: str, locustfile: Path = LOCUSTFILE) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary", *options]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as table:
        return {row["Name"]: row for row in csv.DictReader(table)}


@pytest.mark.proxy
async def test_expected_faults_count_as_successes_and_wrong_answers_as_failures(nginx_with_admin, tmp_path):
    proxy_url, admin_url, journal = nginx_with_admin
    done = await locust("--users", "4", "--spawn-rate", "4", "--run-time", "2s", "--host", proxy_url,
                        "--chaos-admin", admin_url, "--chaos-proxy-timeout", str(T), "--chaos-mix", MIX,
                        "--csv", str(tmp_path / "run"))
    log = done.stderr.decode()
    assert done.returncode == 1, log  # locust's exit code when a request failed
    stats = rows(tmp_path / "run_stats.csv")
    for name in ("healthy", "truncated-chunked", "reset-before-response", "never-respond"):
        assert int(stats[name]["Request Count"]) > 0 and stats[name]["Failure Count"] == "0", (name, log)
    broken = stats["bad-status-line"]
    assert int(broken["Request Count"]) > 0 and broken["Failure Count"] == broken["Request Count"], log
    [failure] = rows(tmp_path / "run_failures.csv").values()
    assert failure["Name"] == "bad-status-line" and "fail: expected a 502, saw malformed" in failure["Error"]
    assert "first probe with fail: expected a 502, saw malformed:\nbad-status-line: FAIL (rfc profile" in log
    assert "  upstream:     1 attempt(s)" in log  # joined with the journal through the admin API
    probes = {record.probe for record in journal.records(type="request")}
    assert len(probes) >= int(stats["Aggregated"]["Request Count"])


@pytest.mark.parametrize(("options", "message"), [
    (["--chaos-mix", "healthy=1,no-such=1"], "ThroughTheProxy: mix: no scenario named 'no-such'"),
    (["--chaos-mix", "rolling-deploy=1"], "mix: 'rolling-deploy' is a timeline"),
    (["--chaos-mix", "healthy"], "'healthy' is not NAME=WEIGHT"),
    (["--chaos-proxy-timeout", "0"], "proxy timeout: 0.0 is not a positive number of seconds"),
    (["--chaos-scenarios", "no/such/folder"], "no/such/folder"),
    (["--chaos-admin", "http://127.0.0.1:9"], "admin: cannot read the upstream's journal at http://127.0.0.1:9 (["),
])
async def test_a_wrong_setting_stops_locust_before_any_request_with_exit_2(options, message):
    done = await locust("--users", "1", "--run-time", "1s", *options)
    assert done.returncode == 2 and message in done.stderr.decode(), done.stderr.decode()


async def test_a_user_without_a_proxy_to_probe_stops_locust_with_exit_2(tmp_path):
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text("from chaos_upstream.loadtest import ChaosUser\n\nclass Nowhere(ChaosUser):\n    pass\n")
    done = await locust("--users", "1", "--run-time", "1s", locustfile=locustfile)
    assert done.returncode == 2 and "chaos-upstream: Nowhere: no host: set `host` or --host" in done.stderr.decode()


@pytest.mark.proxy
async def test_a_seed_gives_each_user_the_same_draws_on_every_run(nginx_with_admin):
    proxy_url, admin_url, journal = nginx_with_admin

    async def draws(seed: str) -> list[str]:
        before = len(journal.records(type="request"))
        done = await locust("--users", "1", "--run-time", "1s", "--host", proxy_url, "--chaos-admin", admin_url,
                            "--chaos-mix", "healthy=1,upstream-502=1,reset-before-response=1", "--chaos-seed", seed)
        assert done.returncode == 0, done.stderr.decode()
        probes = {record.probe: record.scenario for record in journal.records(type="request")[before:]}
        return list(probes.values())[:20]  # one per probe: nginx retries a reset on a kept-alive connection

    first, again, other = await draws("7"), await draws("7"), await draws("8")
    assert len(first) == 20 and len(set(first)) == 3
    assert first == again and first != other
