"""HTTP/2 to the upstream (`Launcher.h2`): what each launcher renders for it (h2c with prior
knowledge over plain TCP, h2 by ALPN over TLS), that the product itself accepts every such
configuration, that the products that cannot refuse it, and that the TLS variants without `h2`
are pinned to HTTP/1.1 (an upstream whose ALPN offers h2 would otherwise get it from Caddy and
Traefik).  Through the real proxies: an HTTP/1.1 GET reaches the upstream as an HTTP/2 stream
under `h2`, and as HTTP/1.1 over TLS without it.  Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from chaos_upstream.matrix import running
from chaos_upstream.proxies import LAUNCHERS, UpstreamTls, get_launcher, require
from chaos_upstream.proxies.h2_setup import h2_launchers
from chaos_upstream.tls.contexts import Contexts

from conftest import T, settled
from test_tls_proxies import HEALTHY, MATERIAL, SERVER_NAME, TLS_PROXIES, fetch, tls_files  # noqa: F401 (a fixture)

H2_PROXIES = [name for name, launcher in LAUNCHERS.items() if launcher.upstream_h2]

UPSTREAM = ("127.0.0.1", 8081)
ROUTE = ("/r/", ("127.0.0.1", 8082))

DIRECTIVES = {
    ("envoy", False): ["http2_protocol_options: {}"],
    ("envoy", True): ["http2_protocol_options: {}"],
    ("haproxy", False): ["server upstream0 127.0.0.1:8081 proto h2", "server route0 127.0.0.1:8082 proto h2"],
    ("haproxy", True): ["alpn h2\n"],
    ("caddy", False): ["versions h2c 2 "],
    ("caddy", True): ["versions 2 "],
    ("traefik", False): ['url: "h2c://127.0.0.1:8081"', 'url: "h2c://127.0.0.1:8082"'],
    ("traefik", True): ['url: "https://127.0.0.1:8081"', 'url: "https://127.0.0.1:8082"'],
    ("nghttpx", False): ["backend=127.0.0.1,8081;;proto=h2\n", "backend=127.0.0.1,8082;/r/;proto=h2\n"],
    ("nghttpx", True): ["backend=127.0.0.1,8081;;proto=h2;tls", "backend=127.0.0.1,8082;/r/;proto=h2;tls"],
    ("apache", False): ["BalancerMember h2c://127.0.0.1:8081", "ProxyPass /r/ h2c://127.0.0.1:8082/r/",
                        "LoadModule http2_module ", "LoadModule proxy_http2_module "],
    ("apache", True): ["BalancerMember h2://127.0.0.1:8081", "ProxyPass /r/ h2://127.0.0.1:8082/r/",
                       "LoadModule http2_module ", "LoadModule proxy_http2_module "],
}
"""By (product, over TLS): what its HTTP/2 configuration must contain (caddy-debian's is caddy's)."""

HTTP1_PIN = {"caddy": "versions 1.1 ", "caddy-debian": "versions 1.1 ", "traefik": "disableHTTP2: true"}
"""Over TLS without `h2`: what keeps these products on HTTP/1.1 when the upstream's ALPN offers h2."""


def tls_kinds(files: dict[str, Path]) -> dict[str, UpstreamTls | None]:
    return {"plain": None, "verified": UpstreamTls(**files, server_name=SERVER_NAME),
            "default": UpstreamTls(ca=files["ca"], verify=False)}


def config(name: str, tls: UpstreamTls | None, h2: bool, workdir: Path) -> str:
    launcher = dataclasses.replace(get_launcher(name), tls=tls, h2=h2)
    return launcher.config(8080, [UPSTREAM], 1.0, workdir, dict([ROUTE]))


def test_the_products_that_can_speak_http2_to_an_upstream():
    assert H2_PROXIES == ["haproxy", "apache", "envoy", "traefik", "caddy", "caddy-debian", "nghttpx"]


@pytest.mark.parametrize("name", H2_PROXIES)
@pytest.mark.parametrize("kind", ["plain", "verified", "default"])
def test_h2_renders_the_products_directive_for_every_upstream_and_route(name, kind, tmp_path, tls_files):
    tls = tls_kinds(tls_files)[kind]
    text, http1 = config(name, tls, True, tmp_path), config(name, tls, False, tmp_path)
    directives = DIRECTIVES[name.removesuffix("-debian"), tls is not None]
    assert [directive for directive in directives if directive not in text] == []
    # Traefik's h2 over TLS is its https:// default with HTTP/2 left on (no disableHTTP2, below).
    assert [directive for directive in directives if directive in http1] == [
        directive for directive in directives if directive.startswith('url: "https://')]
    assert " http_protocol_options" not in text and "proto=http/1.1" not in text and "BalancerMember http" not in text
    assert "disableHTTP2" not in text and "versions 1.1" not in text


def test_envoy_speaks_http2_in_every_cluster(tmp_path):
    text = config("envoy", None, True, tmp_path)
    assert text.count("http2_protocol_options: {}") == text.count("explicit_http_config:") == 2


@pytest.mark.parametrize("name", list(HTTP1_PIN))
def test_the_tls_variants_without_h2_are_pinned_to_http1(name, tmp_path, tls_files):
    kinds = tls_kinds(tls_files)
    assert HTTP1_PIN[name] in config(name, kinds["verified"], False, tmp_path)
    assert HTTP1_PIN[name] in config(name, kinds["default"], False, tmp_path)
    assert HTTP1_PIN[name] not in config(name, None, False, tmp_path)


@pytest.mark.parametrize("name", [name for name in LAUNCHERS if name not in H2_PROXIES])
def test_a_product_without_upstream_h2_refuses_it(name, tmp_path):
    assert name in {"nginx", "trafficserver", "varnish", "squid", "lighttpd"}
    with pytest.raises(ValueError, match=f"{name} cannot speak HTTP/2 to an upstream"):
        config(name, None, True, tmp_path)


def test_the_key_and_slug_say_h2_after_tls(tls_files):
    verified, default = UpstreamTls(ca=tls_files["ca"]), UpstreamTls(ca=tls_files["ca"], verify=False)
    envoy, caddy, safe = get_launcher("envoy"), get_launcher("caddy"), get_launcher("haproxy:deploy-safe")
    assert [dataclasses.replace(envoy, h2=True).key, dataclasses.replace(caddy, tls=verified, h2=True).key,
            dataclasses.replace(safe, tls=default, h2=True).key] == [
        "envoy+h2", "caddy+tls+h2", "haproxy:deploy-safe+tls-default+h2"]
    assert dataclasses.replace(safe, tls=default, h2=True).slug == "haproxy-deploy-safe-tls-default-h2"
    assert (envoy.key, envoy.slug) == ("envoy", "envoy")


def test_h2_launchers_switch_the_able_ones_and_name_the_others(tls_files):
    tls = UpstreamTls(ca=tls_files["ca"])
    given = [dataclasses.replace(launcher, tls=tls)
             for launcher in LAUNCHERS.values() if launcher.upstream_tls != "none"]
    chosen, cannot = h2_launchers([get_launcher("nginx:deploy-safe"), *given])
    assert [launcher.key for launcher in chosen] == [f"{name}+tls+h2" for name in H2_PROXIES]
    assert cannot == ["nginx:deploy-safe", "nginx+tls", "trafficserver+tls"]
    assert all(launcher.tls == tls for launcher in chosen)


# Each configuration as the product itself checks it (the launcher's own check, as before a start).

CHECKED = [(name, variant, kind, True) for name in H2_PROXIES
           for variant in ["default", *dict(LAUNCHERS[name].variants)] for kind in ("plain", "verified", "default")]
CHECKED += [(name, "default", kind, False) for name in HTTP1_PIN for kind in ("verified", "default")]


@pytest.mark.proxy
@pytest.mark.parametrize("name, variant, kind, h2", CHECKED)
def test_the_product_accepts_the_configuration(name, variant, kind, h2, tmp_path, tls_files):
    spec = name if variant == "default" else f"{name}:{variant}"
    launcher = dataclasses.replace(require(spec), tls=tls_kinds(tls_files)[kind], h2=h2)
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    settings = launcher.settings(8080, [UPSTREAM], 1.0, workdir, dict([ROUTE]))
    files = {launcher.config_name: launcher.render(settings), **launcher.files(settings)}
    for path, text in files.items():
        (workdir / path).write_text(text)
    launcher.prepare(settings)
    ran = subprocess.run([launcher.binary_path(), *launcher.check_args(workdir / launcher.config_name, settings)],
                         capture_output=True, text=True, cwd=workdir, stdin=subprocess.DEVNULL, check=False,
                         env={**os.environ, **launcher.env(settings)})
    assert launcher.accepted(ran, settings), ran.stdout + ran.stderr


# Through the real proxies, in front of chaos-upstream serving HTTP/2.

async def one_request(launcher, start_upstream, workdir, tls: Contexts | None):
    """(status, response, the upstream's request records, the proxy's error log) of one GET / through
    the proxy in front of one upstream (over TLS with `tls`)."""
    upstream = await start_upstream(tls=tls)
    async with running(launcher, upstream.addresses, T, workdir) as proxy:
        status, response = await fetch(proxy.port, "/")
        log = proxy.error_log()
    return status, response, await settled(upstream.journal, type="request", count=1), log


@pytest.mark.proxy
@pytest.mark.parametrize("name", H2_PROXIES)
@pytest.mark.parametrize("over_tls", [False, True], ids=["h2c", "h2"])
async def test_a_request_reaches_the_upstream_as_an_http2_stream(name, over_tls, start_upstream, tmp_path, tls_files):
    tls = UpstreamTls(**tls_files, server_name=SERVER_NAME) if over_tls else None
    launcher = dataclasses.replace(require(name), tls=tls, h2=True)
    status, response, [record], log = await one_request(launcher, start_upstream, tmp_path / "proxy",
                                                        Contexts(MATERIAL) if over_tls else None)
    assert (status, response.endswith(HEALTHY)) == (200, True), log
    assert record.stream is not None


@pytest.mark.proxy
@pytest.mark.parametrize("name", TLS_PROXIES)
async def test_the_tls_variant_without_h2_stays_on_http1_when_alpn_offers_h2(name, start_upstream, tmp_path, tls_files):
    launcher = dataclasses.replace(require(name), tls=UpstreamTls(**tls_files, server_name=SERVER_NAME))
    status, response, [record], log = await one_request(launcher, start_upstream, tmp_path / "proxy",
                                                        Contexts(MATERIAL))
    assert (status, response.endswith(HEALTHY)) == (200, True), log
    assert record.stream is None
