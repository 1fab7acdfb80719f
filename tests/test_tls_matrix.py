"""The matrix's TLS section through the real proxies (nginx, HAProxy, Envoy, Caddy, Traefik): every
cell filled, at least one pass and one fail for each, and the findings that matter most: nginx and
Envoy at their defaults let an expired, a mis-named and an untrusted certificate through, and the
verdict says so; nginx and Caddy, verifying, refuse every certificate fault. And `check --tls` from the command line, through nginx."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from chaos_upstream.matrix import run_matrix
from chaos_upstream.proxies.tls_setup import tls_launchers, tls_material
from chaos_upstream.proxies import get_launcher, require
from chaos_upstream.proxies.ports import free_port
from chaos_upstream.proxies.settings import UpstreamTls
from chaos_upstream.tls.material import generate

from conftest import CATALOGUE
from test_cli import run

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


@pytest.mark.proxy
def test_check_tls_through_nginx_with_the_users_own_certificate_and_a_fault_on_its_own_port(tmp_path):
    """`check --tls` as a user runs it: nginx verifies the upstream against the user's CA; the
    upstream serves the user's certificate, and `tls-handshake-alert` on a port of its own."""
    material = generate(["localhost"], now=datetime.datetime.now(datetime.timezone.utc))
    files = {"ca.pem": material.ca_pem, "cert.pem": material.server.chain_pem, "key.pem": material.server.key_pem}
    for name, pem in files.items():
        (tmp_path / name).write_bytes(pem)
    member, alert = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    nginx = dataclasses.replace(require("nginx"), tls=UpstreamTls(ca=tmp_path / "ca.pem"))
    with nginx.launch([member], 0.5, tmp_path / "nginx", routes={"/_chaos/tls-handshake-alert/": alert}) as proxy:
        ran = run("check", "--tls", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
                  "--proxy", proxy.url, "--proxy-timeout", "0.5", "--upstream", f"{member[0]}:{member[1]}",
                  "--upstream", f"tls-handshake-alert={alert[0]}:{alert[1]}", "--only", "tls-healthy",
                  "--only", "tls-close-notify-mid-body", "--only", "tls-handshake-alert", "--only", "truncated-chunked")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 scenarios through" in ran.stdout and "4 pass" in ran.stdout
