"""The pytest plugin: its fixtures used directly by this suite, and its hooks seen from inner pytest runs."""

from __future__ import annotations

import dataclasses
import http.client
import threading

import pytest
import trio

from chaos_upstream.errors import UnknownScenario
from chaos_upstream.proxies import LAUNCHERS, REQUIRE_PROXIES_ENV
from chaos_upstream.testing import ChaosUpstream, UpstreamStopped, assert_verdict, open_chaos_upstream
from chaos_upstream.verifier.blocking import probe_blocking

pytest_plugins = ["pytester"]

CONNECTION_LEVEL = {"connection-refused", "accept-then-close", "accept-then-reset", "accept-then-hang"}


def get(address: tuple[str, int], path: str = "/") -> tuple[int, bytes]:
    client = http.client.HTTPConnection(*address, timeout=5)
    try:
        client.request("GET", path)
        response = client.getresponse()
        return response.status, response.read()
    finally:
        client.close()


def test_the_upstream_listens_on_free_ports_and_journals_every_request(chaos_upstream):
    assert chaos_upstream.url == f"http://127.0.0.1:{chaos_upstream.port}" and chaos_upstream.host == "127.0.0.1"
    assert get(chaos_upstream.address, "/hello") == (200, b"chaos-upstream: healthy\n")
    [request] = chaos_upstream.journal.records(type="request")
    assert (request.target, request.scenario, request.probe) == ("/hello", "healthy", None)
    ports = {port for _, port in chaos_upstream.routes.values()}
    assert set(chaos_upstream.routes) >= {f"/_chaos/{name}/" for name in CONNECTION_LEVEL}
    assert len(ports) == len(chaos_upstream.routes) and chaos_upstream.port not in ports
    assert chaos_upstream.proxy_timeout == 1.0  # the ini option's default


def test_the_active_scenario_answers_the_requests_that_name_none(chaos_upstream):
    chaos_upstream.active = "upstream-502"
    assert get(chaos_upstream.address)[0] == 502
    chaos_upstream.active = None
    assert (chaos_upstream.active, get(chaos_upstream.address)[0]) == ("healthy", 200)
    with pytest.raises(UnknownScenario, match="no scenario named 'nope'"):
        chaos_upstream.active = "nope"
    with pytest.raises(ValueError, match="through /_chaos/connection-refused/"):
        chaos_upstream.active = "connection-refused"


@pytest.mark.proxy
@pytest.mark.chaos_upstream(proxy_timeout=0.2)
def test_a_started_proxy_is_judged_by_its_own_profile_and_a_url_by_the_rfc(chaos_upstream, chaos_proxy):
    haproxy = chaos_proxy("haproxy", chaos_upstream)
    assert haproxy.proxy_timeout == 0.2
    refused = chaos_upstream.probe(haproxy, "connection-refused")  # through its own routed port
    assert (refused.profile, refused.verdict, refused.observed["status"]) == ("haproxy", "pass", 503)
    assert refused.judgement.profile_only  # the RFC expects a 502
    assert chaos_upstream.probe(haproxy.url, "healthy").profile == "rfc"
    assert chaos_upstream.results == [refused, chaos_upstream.results[1]]


@pytest.mark.proxy
@pytest.mark.chaos_upstream(proxy_timeout=0.5)
@pytest.mark.parametrize("name", ["envoy", "traefik", "caddy", "caddy-debian", "nghttpx"])
def test_each_new_proxy_comes_from_the_factory_with_its_routes_and_its_profile(chaos_upstream, chaos_proxy, name):
    proxy = chaos_proxy(name, chaos_upstream)
    assert chaos_upstream.probe(proxy, "healthy").verdict == "pass"
    hang = chaos_upstream.probe(proxy, "accept-then-hang")  # through its own routed port
    assert (hang.verdict, hang.observed["status"], hang.profile) == ("pass", 504, LAUNCHERS[name].profile), hang.explain()


@pytest.mark.proxy
@pytest.mark.chaos_upstream(proxy_timeout=0.5)
def test_a_proxy_named_with_h2_speaks_http2_to_the_upstream(chaos_upstream, chaos_proxy):
    caddy = chaos_proxy("caddy+h2", chaos_upstream)
    assert_verdict(chaos_upstream.probe(caddy, "h2-rst-before-headers"))
    header = chaos_upstream.probe(caddy, "h2-connection-header")
    assert (header.verdict, header.observed["status"]) == ("fail", 200)  # Caddy drops the field and relays the response
    assert all(record.stream is not None for record in chaos_upstream.journal.records(type="request"))
    with pytest.raises(pytest.fail.Exception, match="nginx cannot speak HTTP/2 to an upstream"):
        chaos_proxy("nginx+h2", chaos_upstream)


@pytest.mark.proxy
@pytest.mark.chaos_upstream(members=2)
def test_a_proxy_balances_over_every_member_of_a_fleet(chaos_upstream, chaos_proxy):
    haproxy = chaos_proxy("haproxy", chaos_upstream)
    assert len(set(chaos_upstream.addresses)) == 2
    for _ in range(4):
        assert get(("127.0.0.1", haproxy.port))[0] == 200
    assert {r.member for r in chaos_upstream.journal.records(type="request")} == {0, 1}


@pytest.mark.proxy
@pytest.mark.chaos_upstream(members=2)
def test_between_probes_through_a_fleet_a_test_can_wait_for_every_member_to_be_in_rotation(chaos_upstream, chaos_proxy):
    nginx = chaos_proxy("nginx", chaos_upstream)
    assert chaos_upstream.in_rotation(nginx) < 0.5
    assert chaos_upstream.probe(nginx, "reset-before-response").verdict == "pass"  # nginx now holds both out for 10 s
    assert chaos_upstream.in_rotation(nginx, limit=0.3) is None


@pytest.mark.proxy
def test_a_proxy_goes_in_front_of_plain_addresses_too(chaos_upstream, chaos_proxy):
    nginx = chaos_proxy("nginx", [chaos_upstream.address])
    assert_verdict(chaos_upstream.probe(nginx, "healthy"))
    with pytest.raises(TypeError, match="give one members=N"):
        chaos_proxy("nginx", [chaos_upstream])


@pytest.mark.proxy
@pytest.mark.chaos_upstream(proxy_timeout=0.5)
def test_a_proxy_that_cannot_take_t_is_refused_before_it_starts(chaos_upstream, chaos_proxy):
    with pytest.raises(pytest.fail.Exception, match=r"steps of 1000 ms, so it would wait 1.0 s, not the T = 0.5 s"):
        chaos_proxy("lighttpd", chaos_upstream)


@pytest.mark.proxy
async def test_the_threaded_upstream_serves_a_trio_test_too(chaos_upstream, chaos_proxy):
    nginx = chaos_proxy("nginx", chaos_upstream)
    assert_verdict(chaos_upstream.probe(nginx, "truncated-chunked"))  # blocking, from inside a trio loop
    assert len(chaos_upstream.journal.records(type="request")) == 1


async def test_the_trio_native_upstream_runs_in_the_test_loop_and_lets_errors_out_unwrapped():
    async with open_chaos_upstream(proxy_timeout=0.3) as upstream:
        stream = await trio.open_tcp_stream(*upstream.address)
        async with stream:
            await stream.send_all(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Chaos-Scenario: upstream-502\r\n\r\n")
            assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 502 ")
        assert upstream.proxy_timeout == 0.3
    assert [r.scenario for r in upstream.journal.records(type="request")] == ["upstream-502"]
    with pytest.raises(ZeroDivisionError):
        async with open_chaos_upstream():
            1 / 0  # noqa: B018


def test_probes_are_checked_against_the_scenario_before_anything_is_sent(chaos_upstream):
    with pytest.raises(TypeError, match="probed by a stream of its own requests"):
        chaos_upstream.probe("http://127.0.0.1:1", "keepalive-close-race", method="POST")
    with pytest.raises(ValueError, match="'rolling-deploy' needs a fleet of 2 members; this upstream has 1"):
        chaos_upstream.probe("http://127.0.0.1:1", "rolling-deploy")
    assert chaos_upstream.results == []


def ours() -> set[threading.Thread]:
    """The process's threads but trio's idle workers (its thread cache keeps them ~10 s after their
    last job, then they end on their own, whatever test runs meanwhile)."""
    return {thread for thread in threading.enumerate() if not thread.name.startswith("Trio thread")}


def test_a_closed_upstream_keeps_its_journal_and_refuses_probes():
    threads = ours()
    with ChaosUpstream() as upstream:
        assert get(upstream.address)[0] == 200
    assert ours() == threads
    assert len(upstream.journal.records(type="request")) == 1
    with pytest.raises(UpstreamStopped, match="is not running"):
        upstream.probe("http://127.0.0.1:1", "healthy")
    with pytest.raises(ConnectionRefusedError):
        get(upstream.address)


def test_thirty_tests_each_get_a_fresh_upstream(pytester):
    pytester.makepyfile("""
        import http.client, pytest

        @pytest.mark.parametrize("n", range(30))
        def test_fresh(chaos_upstream, n):
            client = http.client.HTTPConnection(chaos_upstream.host, chaos_upstream.port)
            client.request("GET", "/")
            assert client.getresponse().status == 200
            client.close()
            assert len(chaos_upstream.journal.records(type="request")) == 1
    """)
    threads = set(threading.enumerate())  # earlier tests' idle worker threads may end meanwhile
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=30)
    assert set(threading.enumerate()) - threads == set()  # no upstream thread left behind


def test_a_crash_of_the_upstream_fails_the_test_it_happened_in(pytester):
    pytester.makepyfile("""
        import http.client
        from chaos_upstream.server import connection

        def boom(*args, **kwargs):
            raise KeyError("a bug in the upstream")

        def test_crashing(chaos_upstream, monkeypatch):
            monkeypatch.setattr(connection, "choose", boom)
            client = http.client.HTTPConnection(chaos_upstream.host, chaos_upstream.port)
            client.request("GET", "/")
            try:
                client.getresponse()
            except http.client.RemoteDisconnected:
                pass
            client.close()

        def test_next(chaos_upstream):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)  # in the test's call, not as an error at teardown
    result.stdout.fnmatch_lines([
        "*KeyError: 'a bug in the upstream'",
        "*The above exception was the direct cause of the following exception:*",
        "E   *UpstreamCrashed: the chaos upstream at http://127.0.0.1:* crashed: KeyError('a bug in the upstream')",
        "FAILED *::test_crashing*",
    ])


def test_scenario_files_come_from_the_ini_and_markers_and_the_timeout_from_the_closest_marker(pytester):
    scenario = "name: {name}\ndescription: ours\nphase: head\nexpect: {{outcomes: [200]}}\nsteps: [{{kind: status, code: 200}}]\n"
    pytester.makeini("[pytest]\nchaos_upstream_scenarios = shared\nchaos_upstream_proxy_timeout = 0.7\n")
    pytester.mkdir("shared").joinpath("ours-a.yaml").write_text(scenario.format(name="ours-a"))
    pytester.mkdir("tests").joinpath("ours-b.yaml").write_text(scenario.format(name="ours-b"))
    pytester.path.joinpath("tests", "bad.yaml").write_text(scenario.format(name="bad").replace("200]", "2000]"))
    pytester.path.joinpath("tests", "test_options.py").write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.chaos_upstream(proxy_timeout=0.4)\n"
        "def test_ini(chaos_upstream):\n"
        "    assert 'ours-a' in chaos_upstream.catalogue and 'ours-b' not in chaos_upstream.catalogue\n"
        "    assert chaos_upstream.proxy_timeout == 0.4\n"
        "@pytest.mark.chaos_scenarios('ours-b.yaml')\n"
        "@pytest.mark.chaos_upstream(proxy_timeout=0.3, members=2)\n"
        "def test_marked(chaos_upstream):\n"
        "    assert {'ours-a', 'ours-b'} <= set(chaos_upstream.catalogue.names())\n"
        "    assert (chaos_upstream.proxy_timeout, len(chaos_upstream.addresses)) == (0.3, 2)\n"
        "@pytest.mark.chaos_scenarios('bad.yaml')\n"
        "def test_bad_file(chaos_upstream):\n"
        "    pass\n"
        "@pytest.mark.chaos_upstream(timeout=1)\n"
        "def test_bad_marker(chaos_upstream):\n"
        "    pass\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines_random([
        "chaos-upstream scenario files:",
        "*/tests/bad.yaml:4: expect.outcomes.0: Input should be less than or equal to 599",
        "@pytest.mark.chaos_upstream takes only proxy_timeout, members and tls=..., not timeout",
    ])


def test_a_bad_ini_timeout_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nchaos_upstream_proxy_timeout = soon\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: chaos_upstream_proxy_timeout: 'soon' is not a positive number of seconds"])


@pytest.mark.proxy
def test_a_failure_report_explains_the_probes_the_requests_and_the_proxy(pytester):
    pytester.makepyfile("""
        import http.client
        from chaos_upstream.testing import assert_verdict

        def test_plain_assert(chaos_upstream, chaos_proxy):
            nginx = chaos_proxy("nginx", chaos_upstream)
            client = http.client.HTTPConnection(chaos_upstream.host, chaos_upstream.port)
            client.request("GET", "/not-a-probe")
            client.getresponse().read()
            client.close()
            assert chaos_upstream.probe(nginx, "bad-status-line").verdict == "pass"

        def test_assert_verdict(chaos_upstream, chaos_proxy):
            assert_verdict(chaos_upstream.probe(chaos_proxy("nginx", chaos_upstream), "bad-status-line"))
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    # pytest does not truncate the short summary when $CI is set, so only the reports are read.
    reports = result.stdout.str().split("short test summary info")[0]
    plain, helper = reports.split("_ test_assert_verdict _")
    assert "AssertionError: assert 'fail' == 'pass'" in plain
    for report in plain, helper:
        assert report.count("bad-status-line: FAIL (rfc profile, probe bad-status-line-") == 1
        assert "client saw:   malformed (illegal status line: b'HTTP/1.1 abc OK')" in report
        assert "upstream:     1 attempt(s)" in report
        assert "nginx 1.22" in report and "upstream sent no valid HTTP/1.0 header" in report
    assert "E       AssertionError: verdict 'fail', expected 'pass':" in helper
    result.stdout.fnmatch_lines([
        "*- chaos-upstream probes (http://127.0.0.1:*) -*",
        "*- chaos-upstream requests other than probes (http://127.0.0.1:*) -*",
        "*s conn 1: GET /not-a-probe -> healthy (default): send 89 B, keep-alive; keep-alive",
        "*- nginx 1.22.* error log (http://127.0.0.1:*) -*",
    ])


def test_a_missing_proxy_skips_the_test_or_fails_it_when_proxies_are_required(pytester, monkeypatch):
    missing = dataclasses.replace(LAUNCHERS["nginx"], name="missing", binary="chaos-upstream-no-such-proxy")
    monkeypatch.setitem(LAUNCHERS, "missing", missing)
    pytester.makepyfile("def test_it(chaos_upstream, chaos_proxy):\n    chaos_proxy('missing', chaos_upstream)\n")
    monkeypatch.delenv(REQUIRE_PROXIES_ENV, raising=False)
    skipped = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*missing: no `chaos-upstream-no-such-proxy` executable*set CHAOS_UPSTREAM_REQUIRE_PROXIES=1*"])
    monkeypatch.setenv(REQUIRE_PROXIES_ENV, "1")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)


@pytest.mark.proxy
@pytest.mark.chaos_upstream(proxy_timeout=0.5, tls=True)
def test_a_tls_upstream_hands_the_proxy_its_ca_and_the_proxy_verifies_it(chaos_upstream, chaos_proxy):
    assert chaos_upstream.url.startswith("https://") and chaos_upstream.tls_ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    nginx = chaos_proxy("nginx", chaos_upstream)
    assert "proxy_ssl_verify on" in nginx.config_text
    assert chaos_upstream.probe(nginx, "tls-healthy").verdict == "pass"
    wrong = chaos_upstream.probe(nginx, "tls-wrong-name")  # through its own routed port
    assert (wrong.verdict, wrong.observed["status"]) == ("pass", 502), wrong.explain()
    assert {record.scenario for record in chaos_upstream.journal.records(type="accept")} == {"tls-wrong-name"}  # its handshake, journaled
    drawn = probe_blocking(nginx.url, chaos_upstream.scenario("tls-untrusted-certificate"), timing=chaos_upstream.timing)
    assert (drawn.verdict, drawn.observed["status"]) == ("pass", 502)  # what a locust user drawing it from its mix gets
