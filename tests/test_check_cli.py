"""`chaos-upstream check` as a user runs it: real HAProxy, real reports, real exit codes."""

import json
import re
import socket
from importlib import metadata
from xml.etree import ElementTree

import pytest

from chaos_upstream.model.catalogue import Catalogue

from chaos_upstream.proxies import require
from test_cli import run

T = "0.5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path):
    """(proxy URL, upstream address) with HAProxy forwarding to an address nothing serves yet."""
    launcher = require("haproxy")
    upstream = ("127.0.0.1", free_port())
    with launcher.launch([upstream], float(T), tmp_path / "haproxy") as proxy:
        yield proxy.url, f"{upstream[0]}:{upstream[1]}"


@pytest.mark.proxy
def test_check_passes_and_exits_0(haproxy):
    url, upstream = haproxy
    result = run("check", "--proxy", url, "--upstream", upstream, "--proxy-timeout", T, "--only", "healthy", "--only", "truncated-chunked")
    assert result.returncode == 0, result.stdout
    assert "pass         truncated-chunked: the client saw a 200 whose chunked body ended after 1000 bytes" in result.stdout
    assert "2 scenarios through" in result.stdout and "2 pass" in result.stdout


@pytest.mark.proxy
def test_a_failing_verdict_exits_1_and_every_report_carries_its_reason(haproxy, tmp_path):
    url, upstream = haproxy
    files = {kind: tmp_path / f"report.{kind}" for kind in ("json", "junit", "html")}
    result = run(
        "check", "--proxy", url, "--upstream", upstream, "--proxy-timeout", T, "--only", "invalid-status-code", "--only", "upstream-502",
        "--report-json", str(files["json"]), "--report-junit", str(files["junit"]), "--report-html", str(files["html"]),
    )
    assert result.returncode == 1, result.stdout
    reason = "expected the client to see a 502; it saw an invalid HTTP/1.1 response (illegal status line: b'HTTP/1.1 1000 Nope')"
    report = json.loads(files["json"].read_text())
    assert report["proxy"] == url and report["profile"] == "rfc"
    failing, passing = report["results"]
    assert (failing["scenario"], failing["verdict"], failing["expected"], failing["reason"]) == ("invalid-status-code", "fail", "502", reason)
    assert failing["observed"]["kind"] == "malformed" and failing["observed"]["upstream_attempts"] == 1
    assert (passing["verdict"], passing["observed"]["status"]) == ("pass", 502)
    suite = ElementTree.parse(files["junit"]).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert suite.find("testcase[@name='invalid-status-code']/failure").get("message") == reason
    page = files["html"].read_text()
    assert "<td class=fail>fail</td>" in page and "illegal status line" in page and page.startswith("<!doctype html>")


def test_a_proxy_that_cannot_be_reached_is_inconclusive_not_a_pass(tmp_path):
    result = run("check", "--proxy", f"http://127.0.0.1:{free_port()}", "--upstream", f"127.0.0.1:{free_port()}", "--only", "healthy")
    assert result.returncode == 1
    assert "inconclusive healthy: could not connect to the proxy" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope"], "--only: no scenario named 'nope'"),
        (["--profile", "squid"], "invalid choice: 'squid'"),
        (["--upstream", "nowhere"], "'nowhere' is not HOST:PORT"),
        (["--only", "rolling-deploy"], "--only: 'rolling-deploy' needs a fleet of at least 2 upstreams, and --upstream "
                                       "gave 1: pass --upstream HOST:PORT 2 times, each an address the proxy forwards to"),
    ],
)
def test_bad_check_options_exit_2(args, message):
    result = run("check", "--proxy", "http://127.0.0.1:1", "--upstream", "127.0.0.1:2", *args)
    assert result.returncode == 2 and message in result.stderr


def test_a_fleet_member_the_proxy_never_forwards_to_exits_2_after_the_rotation_wait():
    member_a, member_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    result = run("check", "--proxy", f"http://{member_a}", "--upstream", member_a, "--upstream", member_b,
                 "--only", "healthy", "--rotation-wait", "0.3")
    assert result.returncode == 2
    assert f"--upstream {member_b}: no request came through the proxy in 0.3 s" in result.stderr


def test_check_says_what_it_left_out_and_how_to_include_it_and_reports_failures_first(tmp_path):
    """The upstream, pointed at as its own proxy: every request-level verdict comes quickly, some fail."""
    address = f"127.0.0.1:{free_port()}"
    report = tmp_path / "report.json"
    result = run("check", "--proxy", f"http://{address}", "--upstream", address, "--proxy-timeout", "0.1",
                 "--report-json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    tls = ", ".join(sorted(name for name in Catalogue.load().names() if name.startswith("tls-")))
    http2 = ", ".join(sorted(name for name in Catalogue.load().names() if name.startswith("h2-")))
    assert result.stdout.splitlines()[-4:] == [
        "not checked: accept-then-close, accept-then-hang, accept-then-reset, connection-refused (each needs an upstream "
        "port of its own: pass --upstream NAME=HOST:PORT and have the proxy route /_chaos/NAME/ to it)",
        f"not checked: {http2} (each needs HTTP/2: pass --h2, and have the proxy speak HTTP/2 to the upstream (h2c, or h2 with --tls))",
        "not checked: rolling-deploy (each needs a fleet of at least 2 upstreams, and --upstream gave 1: pass --upstream "
        "HOST:PORT 2 times, each an address the proxy forwards to)",
        f"not checked: {tls} (each needs TLS: pass --tls, and have the proxy speak TLS to the upstream)",
    ]
    document = json.loads(report.read_text())
    skipped = {entry["scenario"]: entry["reason"] for entry in document["skipped"]}
    assert skipped["rolling-deploy"] == ("needs a fleet of at least 2 upstreams, and --upstream gave 1: pass --upstream "
                                         "HOST:PORT 2 times, each an address the proxy forwards to")
    assert list(skipped) == ["accept-then-close", "accept-then-hang", "accept-then-reset", "connection-refused",
                             *http2.split(", "), "rolling-deploy", *tls.split(", ")]
    verdicts = [r["verdict"] for r in document["results"]]
    assert "fail" in verdicts and verdicts == sorted(verdicts, key=["fail", "inconclusive", "pass"].index)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["date"])
    assert (document["chaos_upstream_version"], document["proxy_version"]) == (metadata.version("chaos-upstream"), None)


@pytest.mark.proxy
def test_an_upstream_the_proxy_never_forwards_to_exits_2_after_its_first_probe(tmp_path):
    elsewhere, ours = ("127.0.0.1", free_port()), f"127.0.0.1:{free_port()}"
    with require("nginx").launch([elsewhere], float(T), tmp_path) as proxy:
        result = run("check", "--proxy", proxy.url, "--upstream", ours, "--proxy-timeout", T)
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.fullmatch(f"--upstream {ours}: no probe reached {ours} through the proxy at {proxy.url} \\(it answered "
                        "502, \\d+ B body, \\w+ at [.\\d]+ s\\); give --upstream the address your proxy forwards to\n",
                        result.stderr), result.stderr
    assert result.stdout == ""


CONNECTION_LEVEL = ["accept-then-close", "accept-then-hang", "accept-then-reset", "connection-refused"]
CAVEAT = "had not sent requests to every member"


SPREAD = ["healthy", "reset-before-response", "never-respond", "rolling-deploy"]
"""Request-level scenarios and a timeline to check with the connection-level ones."""


def _fleet_and_ports(workdir, report):
    """(first run, second run) of check through nginx:deploy-safe in front of two members, with the
    four connection-level scenarios on ports of their own."""
    members = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    ports = {name: ("127.0.0.1", free_port()) for name in CONNECTION_LEVEL}
    fleet = [("127.0.0.1", int(member.rsplit(":", 1)[1])) for member in members]
    routes = {f"/_chaos/{name}/": address for name, address in ports.items()}
    upstreams = [arg for member in members for arg in ("--upstream", member)]
    upstreams += [arg for name, (host, port) in ports.items() for arg in ("--upstream", f"{name}={host}:{port}")]
    with require("nginx:deploy-safe").launch(fleet, float(T), workdir, routes=routes) as proxy:
        first = run("check", "--proxy", proxy.url, "--proxy-timeout", T, *upstreams, "--only", "accept-then-close",
                    "--only", "healthy", "--rotation-wait", "3")
        chosen = [arg for name in [*SPREAD, *CONNECTION_LEVEL] for arg in ("--only", name)]
        whole = run("check", "--proxy", proxy.url, "--proxy-timeout", T, *upstreams, *chosen, "--report-json", str(report))
    return first, whole


@pytest.mark.proxy
def test_a_fleet_and_ports_of_their_own_are_checked_in_one_run(tmp_path):
    """Through a fleet, the probes that wait for the proxy to send requests to every member go to
    `/`: they used to go to the next scenario's path, which the proxy routes to a connection-level
    scenario's own port, never to a member (exit 2 when it came first; else 12 s and a false caveat
    before each). nginx's deploy-safe variant holds no member out after a fault, so the run is short.
    The second run takes every connection-level scenario, each after a request-level one and before
    a timeline, each of which waits for the rotation."""
    report = tmp_path / "report.json"
    for attempt in range(3):  # six ports picked, then bound by check: another socket may take one meanwhile
        first, whole = _fleet_and_ports(tmp_path / f"nginx{attempt}", report)
        if "Address already in use" not in first.stderr + whole.stderr:
            break
    assert first.returncode == 0 and CAVEAT not in first.stdout, first.stdout + first.stderr
    assert whole.returncode in (0, 1), whole.stdout + whole.stderr
    document = json.loads(report.read_text())
    results = {result["scenario"]: result for result in document["results"]}
    assert document["skipped"] == [] and sorted(results) == sorted([*SPREAD, *CONNECTION_LEVEL])
    assert [name for name, result in results.items() if CAVEAT in result["reason"]] == []
    assert [name for name, result in results.items() if result["verdict"] == "inconclusive"] == []
    assert {name: results[name]["verdict"] for name in CONNECTION_LEVEL} == dict.fromkeys(CONNECTION_LEVEL, "pass")
