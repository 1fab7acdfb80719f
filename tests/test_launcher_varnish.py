"""Varnish through the verifier, and what its generated VCL promises."""

from __future__ import annotations

import pytest

from chaos_upstream.proxies import get_launcher

from conftest import check_through

pytestmark = pytest.mark.proxy


async def test_a_failed_fetch_is_a_503_and_an_error_log_line(tmp_path) -> None:
    report, proxy = await check_through("varnish", tmp_path, only=["close-before-response"])
    [result] = report.results
    assert result.verdict == "pass", result.explain()
    assert result.reason.endswith("as expected under the varnish profile (the RFCs expect a 502)")
    assert "said backend fetch failed: GET / from upstream0" in proxy.error_log()


async def test_conflicting_content_lengths_are_passed_on_to_the_client(tmp_path) -> None:
    report, _ = await check_through("varnish", tmp_path, only=["conflicting-content-length"])
    [result] = report.results
    assert result.verdict == "fail", result.explain()
    assert "(conflicting Content-Length headers)" in result.reason


def test_vcl_sets_every_upstream_timeout_in_ms_and_never_caches(tmp_path) -> None:
    text = get_launcher("varnish").config(8080, [("127.0.0.1", 8081)], 0.25, tmp_path,
                                          routes={"/_chaos/a.b/": ("127.0.0.1", 8083)})
    for timeout in ("connect_timeout", "first_byte_timeout", "between_bytes_timeout"):
        assert text.count(f".{timeout} = 250ms;") == 2  # the round-robin member and the route
    assert 'if (req.url ~ {"^/_chaos/a\\.b/"}) {' in text  # anchored, dots escaped
    assert "return (pass);" in text
