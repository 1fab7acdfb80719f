"""The matrix's HTTP/2 section through the real proxies of the issue (Envoy, HAProxy, Caddy, Traefik,
nghttpx): every cell filled, at least one pass and one fail for each, the verdicts that tell the
proxies apart, reasons that name the frames; the scenarios of HTTP/1.1 read over HTTP/2; and
`check --h2` from the command line."""

from __future__ import annotations

import pytest

from chaos_upstream.matrix import run_matrix
from chaos_upstream.proxies import get_launcher, require
from chaos_upstream.proxies.h2_setup import h2_launchers
from chaos_upstream.proxies.ports import free_port

from conftest import CATALOGUE
from test_cli import run

PROXIES = ["envoy", "haproxy", "caddy", "traefik", "nghttpx"]
HTTP2 = [scenario for scenario in CATALOGUE if scenario.http2_only]


def test_only_proxies_that_can_speak_http2_to_an_upstream_are_run_and_the_others_are_named():
    launchers, cannot = h2_launchers([get_launcher(name) for name in ["nginx", "envoy", "varnish", "apache"]])
    assert ([launcher.key for launcher in launchers], cannot) == (["envoy+h2", "apache+h2"], ["nginx", "varnish"])


@pytest.mark.proxy
async def test_the_http2_matrix_through_five_real_proxies(tmp_path):
    launchers, _ = h2_launchers([require(name) for name in PROXIES])
    runs = await run_matrix(launchers, CATALOGUE, HTTP2, proxy_timeout=0.5, workdir=tmp_path)
    verdicts = {run.name: {scenario.name: run.result(scenario.name).verdict for scenario in HTTP2} for run in runs}
    assert set(verdicts) == {f"{name}+h2" for name in PROXIES}
    for key, cells in verdicts.items():
        assert "pass" in cells.values() and "fail" in cells.values(), (key, cells)
        assert cells["h2-rst-after-complete"] == cells["h2-goaway-during-deploy"] == "pass", (key, cells)
    assert verdicts["caddy+h2"]["h2-goaway-graceful"] == verdicts["traefik+h2"]["h2-goaway-graceful"] == "pass"
    assert verdicts["envoy+h2"]["h2-goaway-graceful"] == verdicts["haproxy+h2"]["h2-goaway-graceful"] == "fail"
    result = {run.name: run for run in runs}
    connection_header = result["caddy+h2"].result("h2-connection-header")
    assert connection_header.observation.status == 200 and connection_header.verdict == "fail"
    assert "on its HTTP/2 stream the upstream sent HEADERS 200, DATA 24 B + END_STREAM" in connection_header.reason
    refused = result["traefik+h2"].result("h2-refused-stream")
    assert refused.verdict == "pass" and len(refused.attempts) == 2
    assert "(attempt 1) RST_STREAM(REFUSED_STREAM), then (attempt 2) HEADERS 200" in refused.reason


@pytest.mark.proxy
def test_check_h2_runs_the_http11_catalogue_over_http2_and_says_what_has_no_equivalent(tmp_path):
    member = ("127.0.0.1", free_port())
    envoy = h2_launchers([require("envoy")])[0][0]
    with envoy.launch([member], 0.5, tmp_path / "envoy") as proxy:
        ran = run("check", "--h2", "--proxy", proxy.url, "--proxy-timeout", "0.5", "--upstream", f"{member[0]}:{member[1]}", "--profile", "envoy",
                  "--only", "healthy", "--only", "truncated-content-length", "--only", "h2-rst-before-headers")
        refused = run("check", "--h2", "--proxy", proxy.url, "--proxy-timeout", "0.5", "--upstream", f"{member[0]}:{member[1]}",
                      "--only", "malformed-chunk-size")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 scenarios through" in ran.stdout and "3 pass" in ran.stdout
    assert refused.returncode == 2 and "'malformed-chunk-size' has no HTTP/2 equivalent: its chunked framing is broken" in refused.stderr
