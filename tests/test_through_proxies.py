"""End to end through real nginx and HAProxy (Debian's), started from configs we generate on 127.0.0.1."""

import pytest

from chaos_upstream.matrix import running
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import require
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import classify
from chaos_upstream.verifier.probe import probe as library_probe

from conftest import CATALOGUE, T, get, settled

PROXIES = ["nginx", "haproxy"]


@pytest.fixture(params=PROXIES)
async def proxied(request, start_upstream, tmp_path):
    """(upstream, proxy) with the proxy's read timeout set to T, stopped at teardown."""
    upstream = await start_upstream()
    async with running(require(request.param), upstream.addresses, T, tmp_path) as proxy:
        yield upstream, proxy


async def probe(proxy, scenario: str, probe_id: str):
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    seen = await capture(host, int(port), get(scenario=scenario, probe=probe_id), limit=5 * T)
    return classify(seen)


@pytest.mark.proxy
async def test_truncated_chunked_reaches_the_client_aborted(proxied):
    upstream, proxy = proxied
    seen = await probe(proxy, "truncated-chunked", "tc-1")
    assert (seen.kind, seen.status, seen.framing) == ("aborted", 200, "chunked"), proxy.error_log()
    assert seen.body_bytes <= 1000
    [record] = await settled(upstream.journal, type="request", count=1)
    assert (record.probe, record.response.body_bytes) == ("tc-1", 1000)


@pytest.mark.proxy
async def test_slow_headers_becomes_a_504_near_the_proxy_timeout(proxied):
    upstream, proxy = proxied
    seen = await probe(proxy, "slow-headers", "sh-1")
    assert (seen.kind, seen.status) == ("status", 504), proxy.error_log()
    assert 0.8 * T <= seen.first_byte <= 1.6 * T
    [record] = await settled(upstream.journal, type="request", count=1, limit=4 * T)
    assert record.probe == "sh-1" and record.scenario == "slow-headers"


@pytest.mark.proxy
async def test_the_library_probe_explains_itself(proxied):
    upstream, proxy = proxied
    result = await library_probe(proxy.url, CATALOGUE.get("truncated-chunked"), upstream.journal, timing=Timing(T))
    assert result.verdict == "pass" and result.observed["upstream_attempts"] == 1
    lines = result.explain().splitlines()
    assert lines[0].startswith("truncated-chunked: PASS (rfc profile, probe truncated-chunked-")
    assert lines[1] == "  on the wire:  two 500-byte chunks, then close without the last chunk"
    assert lines[2] == "  expected:     an aborted body or a 502"
    assert lines[3].startswith("  client saw:   aborted: 200, 1000 B of chunked body, FIN at ")
    assert "  upstream:     1 attempt(s)" in lines
    assert lines[-1].endswith("send 1101 B, close; closed")
