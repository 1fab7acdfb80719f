"""`check` through real nginx and HAProxy: every request-level scenario gets the verdict these proxies earn.

Where a proxy is wrong, the test asserts the `fail` verdict and what its reason says: those are
findings about the proxy (README, "Real proxies, as measured"), not tests to loosen.
"""

import pytest
import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import require
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.verifier.check import check, choose_scenarios

from conftest import CATALOGUE

T = 0.5
"""nginx does not push a read timer forward by less than 300 ms (NGX_TIMER_LAZY_DELAY), so below
that its read timeout acts as a total one and drip-body fails for a reason of our choosing."""

FINDINGS = {
    "nginx": {
        "bad-status-line": "it saw an invalid HTTP/1.1 response (illegal status line: b'HTTP/1.1 abc OK')",
        "non-http-response": "it saw an invalid HTTP/1.1 response (not an HTTP status line: b'\\x15\\x03",
        "invalid-status-code": "it saw an invalid HTTP/1.1 response (illegal status line: b'HTTP/1.1 1000 Nope')",
        "conflicting-content-length": "it saw a 200 whose content-length body ended after 24 bytes of the 48 declared, by a close",
        "http09-response": "it saw an invalid HTTP/1.1 response (not an HTTP status line: b'<html><body>chaos-upstre')",
        "malformed-chunk-size": "it saw the connection closed (FIN) with no response byte",
        "interim-then-final": "it saw an interim 100 response, then no final response before a close",
    },
    "haproxy": {
        "invalid-status-code": "it saw an invalid HTTP/1.1 response (illegal status line: b'HTTP/1.1 1000 Nope')",
    },
}


@pytest.mark.proxy
@pytest.mark.parametrize("name", sorted(FINDINGS))
async def test_every_request_level_scenario_gets_its_verdict(name, nursery, tmp_path):
    launcher = require(name)
    journal = Journal()
    upstream = Upstream(CATALOGUE, Settings(port=0, timing=Timing(T)), journal)
    await nursery.start(upstream.run)
    proxy = await trio.to_thread.run_sync(launcher.start, upstream.addresses, T, tmp_path)
    try:
        report = await check(proxy.url, choose_scenarios(CATALOGUE, []), journal, timing=Timing(T))
    finally:
        await trio.to_thread.run_sync(proxy.stop)
    verdicts = {result.scenario.name: result for result in report.results}
    failures = FINDINGS[name]
    assert {n for n, r in verdicts.items() if r.verdict != "pass"} == set(failures), proxy.error_log()
    for scenario, words in failures.items():
        assert words in verdicts[scenario].reason, verdicts[scenario].explain()
    assert all(result.observed["upstream_attempts"] == 1 for result in report.results)
    assert all(result.judgement.kind != "masked-truncation" for result in report.results)
    slowest = max(result.observation.elapsed for result in report.results)
    assert report.elapsed < 1.5 * slowest
