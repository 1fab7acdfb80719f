"""`chaos-upstream matrix` as a user runs it, and `check` with connection-level ports of the user's own."""

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from chaos_upstream.cli import _parser
from chaos_upstream.commands.check import check
from chaos_upstream.errors import ConfigError
from chaos_upstream.matrix import FAILED, NOT_INSTALLED, RAN, Limits, run_matrix
from chaos_upstream.proxies import require
from chaos_upstream.proxies.haproxy import HaproxyLauncher
from chaos_upstream.proxies.nginx import NginxLauncher
from chaos_upstream.proxies.ports import free_port
from chaos_upstream.verifier.check import choose_scenarios

from conftest import CATALOGUE
from test_cli import run

T = "0.5"
ONLY = ["healthy", "invalid-status-code", "connection-refused", "accept-then-hang"]


@pytest.mark.proxy
def test_matrix_fills_every_cell_with_versions_and_links_each_to_its_evidence(tmp_path):
    require("nginx"), require("haproxy")
    files = {kind: tmp_path / f"matrix.{kind}" for kind in ("json", "html")}
    only = [arg for name in ONLY for arg in ("--only", name)]
    result = run("matrix", "--proxies", "nginx,haproxy", "--proxy-timeout", T, *only,
                 "--report-json", str(files["json"]), "--report-html", str(files["html"]))
    assert result.returncode == 1, result.stdout + result.stderr  # both proxies fail invalid-status-code
    document = json.loads(files["json"].read_text())
    runs = document["runs"]
    assert [r["proxy"] for r in runs] == ["nginx", "haproxy"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", r["version"]) and r["proxy_version"] == r["version"] for r in runs)
    assert document["chaos_upstream_version"] == metadata.version("chaos-upstream")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["date"])
    assert [r["profile"] for r in runs] == ["rfc", "haproxy"]
    verdicts = {(r["proxy"], x["scenario"]): x["verdict"] for r in runs for x in r["results"]}
    assert verdicts == {(proxy, name): "fail" if name == "invalid-status-code" else "pass"
                        for proxy in ("nginx", "haproxy") for name in ONLY}
    table = result.stdout
    assert result.stdout.splitlines()[-2:] == [f"{r['proxy']} {r['version']}: 3 pass, 1 fail, 0 inconclusive" for r in runs]
    rows = re.findall(r"^│ ([a-z-]+) +│", table, flags=re.MULTILINE)
    assert rows == ["invalid-status-code", "healthy", "connection-refused", "accept-then-hang"], table  # failures first
    assert re.search(r"connection-refused\s*│ 502\s*│ pass status 502\s*│ pass\* status 503", table), table
    assert "haproxy 2.6" in table and "haproxy profile" in table
    page = files["html"].read_text()
    assert "<a class=pass href=#haproxy-connection-refused>pass*</a>" in page
    assert "<tr id=haproxy-connection-refused>" in page and "illegal status line" in page


def test_unknown_proxies_are_refused_before_anything_starts():
    result = run("matrix", "--proxies", "nginx,nope")
    assert result.returncode == 2
    assert "--proxies: unknown proxy 'nope'; known: nginx, haproxy, " in result.stderr


@pytest.mark.proxy
async def test_a_missing_or_broken_proxy_is_a_column_saying_so_and_the_others_still_run(tmp_path):
    class Broken(NginxLauncher):
        def render(self, settings):
            return "this is not nginx's configuration language;\n"

    require("nginx")
    missing = dataclasses.replace(NginxLauncher(), name="missing", binary="chaos-upstream-no-such-proxy")
    broken = Broken(name="broken")
    scenarios = choose_scenarios(CATALOGUE, ["healthy", "accept-then-close"], ["accept-then-close"])
    runs = await run_matrix([missing, broken, NginxLauncher()], CATALOGUE, scenarios, proxy_timeout=0.5, workdir=tmp_path)
    assert [r.status for r in runs] == [NOT_INSTALLED, FAILED, RAN]
    assert runs[0].problem == "Debian package nginx-light is not installed" and runs[0].passed
    assert "unknown directive \"this\"" in runs[1].problem and not runs[1].passed
    assert [r.verdict for r in runs[2].report.results] == ["pass", "pass"]
    assert runs[2].to_json()["proxy"] == "nginx" and runs[0].to_json()["status"] == "not installed"


def test_a_matrix_runs_as_much_at_once_as_this_process_has_cpus_unless_told(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3})  # taskset -c 3, on a machine of many
    assert (Limits.fitting().singles.total_tokens, Limits.fitting().timelines.total_tokens) == (1, 1)
    assert (Limits.fitting(5).singles.total_tokens, Limits.fitting(5).timelines.total_tokens) == (5, 5)


async def test_a_concurrency_below_one_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"--concurrency: 0 is not a number of proxies to check at once \(1 or more\)"):
        await run_matrix([NginxLauncher()], CATALOGUE, [CATALOGUE.get("healthy")], proxy_timeout=0.5, workdir=tmp_path,
                         concurrency=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.proxy
async def test_a_concurrency_of_one_checks_one_proxy_at_a_time(tmp_path):
    require("nginx"), require("haproxy")
    seen: list[str] = []
    scenarios = [CATALOGUE.get("slow-response"), CATALOGUE.get("healthy")]  # the slow one first: overlapping runs would interleave
    runs = await run_matrix([NginxLauncher(), HaproxyLauncher()], CATALOGUE, scenarios, proxy_timeout=0.5, workdir=tmp_path,
                            on_result=lambda launcher, result: seen.append(launcher.name), concurrency=1)
    assert [run.report.summary() for run in runs] == ["2 pass, 0 fail, 0 inconclusive"] * 2
    assert seen in (["nginx", "nginx", "haproxy", "haproxy"], ["haproxy", "haproxy", "nginx", "nginx"]), seen


@pytest.mark.proxy
def test_check_serves_connection_level_scenarios_at_the_ports_the_users_proxy_routes(tmp_path):
    upstream, refused, hang = (("127.0.0.1", free_port()) for _ in range(3))
    routes = {"/_chaos/connection-refused/": refused, "/_chaos/accept-then-hang/": hang}
    with require("nginx").launch([upstream], float(T), tmp_path, routes) as proxy:
        result = run("check", "--proxy", proxy.url, "--proxy-timeout", T, "--upstream", "%s:%d" % upstream,
                     "--upstream", "connection-refused=%s:%d" % refused, "--upstream", "accept-then-hang=%s:%d" % hang,
                     "--only", "connection-refused", "--only", "accept-then-hang", "--only", "healthy",
                     "--report-json", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 scenarios through" in result.stdout and "3 pass" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert re.fullmatch(r"nginx/\d+\.\d+\.\d+", report["proxy_version"]) and report["proxy_version"] in result.stdout
    assert report["skipped"] == [] and "not checked" not in result.stdout  # --only chose: nothing left out unasked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "accept-then-close"],
         "--only: 'accept-then-close' needs an upstream port of its own: pass --upstream accept-then-close=HOST:PORT "
         "and have the proxy route /_chaos/accept-then-close/ to it"),
        (["--upstream", "healthy=127.0.0.1:3"], "--upstream healthy=...: 'healthy' is not a connection-level scenario"),
    ],
)
def test_connection_level_scenarios_need_a_port_named_for_them(args, message):
    result = run("check", "--proxy", "http://127.0.0.1:1", "--upstream", "127.0.0.1:2", *args)
    assert result.returncode == 2 and message in result.stderr


def test_an_upstream_address_in_use_is_a_usage_error_not_a_traceback():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "%s:%d" % taken.getsockname()
        result = run("check", "--proxy", "http://127.0.0.1:1", "--upstream", address)
    assert (result.returncode, result.stderr) == (2, f"cannot serve an upstream on {address}: Address already in use\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_ends_with_the_command_that_checks_your_own_proxy():
    root = Path(__file__).resolve().parent.parent
    dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "demo"], capture_output=True, text=True, cwd=root, timeout=30)
    lines = dry.stdout.splitlines()
    after = lines[next(i for i, line in enumerate(lines) if "chaos_upstream matrix" in line):]
    [said] = [shlex.split(line)[1] for line in after if "chaos-upstream check" in line]
    program, *argv = shlex.split(said)
    assert (root / program).is_file() and Path(program).name == "chaos-upstream", said
    args = _parser().parse_args(argv)
    assert (args.func, args.proxy, args.upstream) == (check, "http://127.0.0.1:8080", [("", ("127.0.0.1", 9000))])
