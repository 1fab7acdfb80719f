"""pytest-trio: the chaos upstream runs in the test's own trio loop, and probes are awaited.

`trio_mode = true` (pytest.ini) makes every `async def` test a trio test.  Probes of different
scenarios can run at once: five body faults take as long as the slowest of them.
"""

import trio

from chaos_upstream.testing import assert_verdict, open_chaos_upstream

BODY_FAULTS = ["truncated-chunked", "truncated-content-length", "malformed-chunk-size", "reset-mid-body", "stall-mid-body"]


async def test_haproxy_never_passes_a_broken_body_off_as_complete(chaos_upstream_async, chaos_proxy):
    haproxy = chaos_proxy("haproxy", chaos_upstream_async)
    results = {}

    async def probe(fault):
        results[fault] = await chaos_upstream_async.probe(haproxy, fault)

    async with trio.open_nursery() as nursery:
        for fault in BODY_FAULTS:
            nursery.start_soon(probe, fault)
    for result in results.values():
        assert_verdict(result)  # aborted, or a 502/504 before any byte: never a complete-looking body
    assert max(result.observed["elapsed_s"] for result in results.values()) < 1


async def test_haproxy_hides_a_rolling_deploy_of_two_upstreams(chaos_proxy):
    # A fleet of two, each restarted in turn (drained, down for 2T); a stream of probes runs all along.
    async with open_chaos_upstream(members=2, proxy_timeout=0.25) as fleet:
        haproxy = chaos_proxy("haproxy", fleet)
        result = await fleet.probe(haproxy, "rolling-deploy")
        assert_verdict(result)
        assert result.observed["errors"] == 0 and result.observed["requests"] > 50
