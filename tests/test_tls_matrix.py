"""The matrix's TLS section through the real proxies (nginx, HAProxy, Envoy, Caddy, Traefik): every
cell filled, at least one pass and one fail for each, and the findings that matter most: nginx and
Envoy at their defaults let an expired, a mis-named and an untrusted certificate through, and the
verdict says so; every proxy passes on a body cut by a close_notify; none mistakes a verified
certificate fault for a healthy upstream."""

from __future__ import annotations

import pytest

from chaos_upstream.matrix import run_matrix
from chaos_upstream.proxies.tls_setup import tls_launchers, tls_material
from chaos_upstream.proxies import get_launcher, require

from conftest import CATALOGUE

PROXIES = ["nginx", "haproxy", "envoy", "caddy", "traefik"]
TLS_SCENARIOS = [scenario for scenario in CATALOGUE if scenario.tls is not None]
CERTIFICATE_FAULTS = ["tls-expired-certificate", "tls-wrong-name", "tls-untrusted-certificate"]


def test_only_proxies_that_can_speak_tls_to_an_upstream_are_run_and_the_others_are_named(tmp_path):
    _, upstream = tls_material(CATALOGUE, tmp_path)
    launchers, cannot = tls_launchers([get_launcher(name) for name in ["nginx", "varnish", "caddy", "lighttpd"]], upstream)
    assert [launcher.key for launcher in launchers] == ["nginx+tls", "nginx+tls-default", "caddy+tls"]
    assert cannot == ["varnish", "lighttpd"]
    assert all(launcher.tls.client_cert.is_file() and launcher.tls.ca.is_absolute() for launcher in launchers)


@pytest.mark.proxy
async def test_the_tls_matrix_through_five_real_proxies(tmp_path):
    contexts, upstream = tls_material(CATALOGUE, tmp_path / "tls")
    launchers, _ = tls_launchers([require(name) for name in PROXIES], upstream)
    runs = await run_matrix(launchers, CATALOGUE, TLS_SCENARIOS, proxy_timeout=0.5, workdir=tmp_path, tls=contexts)
    verdicts = {run.name: {scenario.name: run.result(scenario.name).verdict for scenario in TLS_SCENARIOS} for run in runs}
    assert set(verdicts) == {"nginx+tls", "nginx+tls-default", "haproxy+tls", "envoy+tls", "envoy+tls-default", "caddy+tls", "traefik+tls"}
    for key, cells in verdicts.items():
        assert "pass" in cells.values() and "fail" in cells.values(), (key, cells)
        assert cells["tls-healthy"] == cells["tls-client-certificate-required"] == "pass", key
    for key in ("nginx+tls-default", "envoy+tls-default"):
        run = next(run for run in runs if run.name == key)
        for name in CERTIFICATE_FAULTS:
            result = run.result(name)
            assert result.verdict == "fail" and result.observation.status == 200, (key, name)
            assert "accepted" in result.reason and "verification is off" in result.reason
    for key in ("nginx+tls", "caddy+tls"):
        assert all(verdicts[key][name] == "pass" for name in CERTIFICATE_FAULTS), key
