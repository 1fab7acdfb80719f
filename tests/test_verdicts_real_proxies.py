"""Through real nginx and HAProxy, as the matrix runs them: every scenario gets the verdict these proxies earn.

Where a proxy is wrong, the test asserts the `fail` verdict and what its reason says: those are
findings about the proxy (docs/proxies.md, "Real proxies, as measured"), not tests to loosen.
"""

import pytest

from chaos_upstream.matrix import run_proxy
from chaos_upstream.proxies import require
from chaos_upstream.verifier.check import choose_scenarios

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
        "restart-during-deploy": "after members 0 and 1 were back: the proxy kept failing after the upstream returned",
    },
    "haproxy": {
        "invalid-status-code": "it saw an invalid HTTP/1.1 response (illegal status line: b'HTTP/1.1 1000 Nope')",
    },
}


PROFILE_PASSES = {"nginx": set(), "haproxy": {"connection-refused"}}
"""Passes only under the proxy's own profile: HAProxy answers 503 when no server could take the request."""


@pytest.mark.proxy
@pytest.mark.parametrize("name", sorted(FINDINGS))
async def test_every_scenario_gets_its_verdict(name, tmp_path):
    launcher = require(name)
    scenarios = choose_scenarios(CATALOGUE, [], [s.name for s in CATALOGUE if s.connection_level])  # all but rolling-deploy
    run = await run_proxy(launcher, CATALOGUE, scenarios, proxy_timeout=T, workdir=tmp_path)
    assert run.status == "ran" and len(run.report.results) >= 27, run.problem
    verdicts = {result.scenario.name: result for result in run.report.results}
    failures = FINDINGS[name]
    assert {n for n, r in verdicts.items() if r.verdict != "pass"} == set(failures), run.error_log
    for scenario, words in failures.items():
        assert words in verdicts[scenario].reason, verdicts[scenario].explain()
    assert {n for n, r in verdicts.items() if r.judgement.profile_only} == PROFILE_PASSES[name]
    for timed in ("stall-mid-body", "slow-headers"):  # the upstream ends its silence at 4T: long after T
        assert verdicts[timed].reason.endswith(f"before the upstream {'closed' if timed == 'stall-mid-body' else 'answered'} "
                                               f"(at {4 * T:.2f} s): the proxy's timeout fired"), verdicts[timed].explain()
    assert all(r.observed["upstream_attempts"] == (n != "connection-refused") for n, r in verdicts.items() if not r.scenario.timeline)
    assert all(result.judgement.kind != "masked-truncation" for result in run.report.results)
    slowest = max(result.elapsed for result in run.report.results)
    assert run.report.elapsed < 1.5 * slowest
