"""TLS to the upstream through the real proxies (`Launcher.tls`): each proxy started once per test
in front of two TLS upstreams, a trusted one (its CA given to the proxy) and, on the route
/untrusted/, one whose certificate another CA signed.  The verified variant reaches the first and
refuses the second with the status measured for that proxy; the default variant shows what the
product's own TLS client does (the matrix's finding); a client certificate reaches an upstream
that requires one.  The SNI and the Host are `healthy.chaos`, a name of the certificate that is
not the address, so a SNI the upstream sees is the configured one.  Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest
import trio

from chaos_upstream.matrix import running
from chaos_upstream.proxies import LAUNCHERS, UpstreamTls, get_launcher, require
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import CLIENT_NAME, Material, generate

from conftest import T, settled

NAMES = ("localhost", "127.0.0.1", "healthy.chaos")
NOW = datetime.datetime.now(datetime.timezone.utc)
MATERIAL: Material = generate(NAMES, now=NOW)
"""The trusted upstream's: its CA is the one the proxy is given."""
OTHER: Material = generate(NAMES, now=NOW)
"""The untrusted upstream's: the same names, signed by a CA the proxy does not know."""

SERVER_NAME = "healthy.chaos"
HEALTHY = b"chaos-upstream: healthy\n"
LIMIT = 10.0
"""Per request: HAProxy's refusal takes its 3 retries, each after a turn-around delay."""

TLS_PROXIES = [name for name, launcher in LAUNCHERS.items() if launcher.upstream_tls != "none"]

REFUSED = {"nginx": 502, "haproxy": 503, "envoy": 503, "caddy": 502, "caddy-debian": 502, "traefik": 500,
           "apache": 500, "nghttpx": 502, "trafficserver": 502}
"""The status each proxy answers when it refuses the upstream's certificate (docs/proxies.md)."""

DEFAULTS = {
    "nginx": (200, 200), "envoy": (200, 200), "apache": (200, 200), "trafficserver": (200, 200),
    "haproxy": (200, 503), "caddy": (502, 502), "caddy-debian": (502, 502), "traefik": (500, 500),
    "nghttpx": (502, 502),
}
"""(trusted, untrusted) statuses under the product's own TLS defaults.  nginx, Envoy, Apache and
Traffic Server let another CA's certificate through; HAProxy, given the CA file it requires,
checks the chain; Caddy, Traefik and nghttpx check against the system's roots, which do not hold
the private CA, so they refuse both."""


@pytest.fixture
def tls_files(tmp_path):
    """UpstreamTls keyword arguments: MATERIAL's CA, and its client certificate and key, as files."""
    folder = tmp_path / "tls"
    folder.mkdir()
    (folder / "ca.pem").write_bytes(MATERIAL.ca_pem)
    (folder / "client.pem").write_bytes(MATERIAL.client.chain_pem)
    (folder / "client.key").write_bytes(MATERIAL.client.key_pem)
    return {"ca": folder / "ca.pem", "client_cert": folder / "client.pem", "client_key": folder / "client.key"}


async def fetch(port: int, path: str) -> tuple[int, bytes]:
    """(status, whole response) of a GET with Host `SERVER_NAME`, the connection closed after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()
    with trio.fail_after(LIMIT):
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode())
            while data := await stream.receive_some(65536):
                received += data
    return int(received.split(b" ", 2)[1]), bytes(received)


async def through(launcher, start_upstream, workdir, *, client_ca: bytes | None = None):
    """(trusted, untrusted) = ((status, response) of / and of /untrusted/, each upstream's journal),
    with the proxy in front of a MATERIAL upstream and, on /untrusted/, an OTHER one."""
    trusted = await start_upstream(tls=Contexts(MATERIAL, client_ca=client_ca))
    untrusted = await start_upstream(tls=Contexts(OTHER, client_ca=client_ca))
    async with running(launcher, trusted.addresses, T, workdir, routes={"/untrusted/": untrusted.addresses[0]}) as proxy:
        answers = [await fetch(proxy.port, "/"), await fetch(proxy.port, "/untrusted/x")]
        log = proxy.error_log()
    return answers, trusted.journal, log


@pytest.mark.proxy
@pytest.mark.parametrize("name", TLS_PROXIES)
async def test_the_verified_variant_reaches_the_trusted_upstream_and_refuses_another_ca(
        name, start_upstream, tmp_path, tls_files):
    tls = UpstreamTls(ca=tls_files["ca"], server_name=SERVER_NAME)
    launcher = dataclasses.replace(require(name), tls=tls)
    [(status, response), (refused, _)], journal, log = await through(launcher, start_upstream, tmp_path / "proxy")
    assert (status, response.endswith(HEALTHY)) == (200, True), log
    assert refused == REFUSED[name], log
    connections = await settled(journal, type="connection", count=1)
    assert {record.sni for record in connections} == {SERVER_NAME}


@pytest.mark.proxy
@pytest.mark.parametrize("name", TLS_PROXIES)
async def test_the_default_variant_shows_what_the_product_checks(name, start_upstream, tmp_path, tls_files):
    launcher = dataclasses.replace(require(name), tls=UpstreamTls(ca=tls_files["ca"], verify=False))
    [(trusted, _), (untrusted, response)], _, log = await through(launcher, start_upstream, tmp_path / "proxy")
    assert (trusted, untrusted) == DEFAULTS[name], log
    assert (untrusted == 200 and response.endswith(HEALTHY)) == (launcher.upstream_tls == "trusts")


@pytest.mark.proxy
@pytest.mark.parametrize("name", TLS_PROXIES)
async def test_a_client_certificate_reaches_an_upstream_that_requires_one(name, start_upstream, tmp_path, tls_files):
    launcher = dataclasses.replace(require(name), tls=UpstreamTls(**tls_files, server_name=SERVER_NAME))
    [(status, response), _], journal, log = await through(launcher, start_upstream, tmp_path / "proxy",
                                                          client_ca=MATERIAL.ca_pem)
    assert (status, response.endswith(HEALTHY)) == (200, True), log
    connections = await settled(journal, type="connection", count=1)
    assert all(f"CN={CLIENT_NAME}" in record.client_certificate for record in connections)


# What is rendered, without running the proxies.

def test_the_key_and_slug_say_which_tls(tls_files):
    verified, default = UpstreamTls(ca=tls_files["ca"]), UpstreamTls(ca=tls_files["ca"], verify=False)
    nginx, safe = get_launcher("nginx"), get_launcher("nginx:deploy-safe")
    assert [dataclasses.replace(nginx, tls=verified).key, dataclasses.replace(safe, tls=default).key] == [
        "nginx+tls", "nginx:deploy-safe+tls-default"]
    assert dataclasses.replace(safe, tls=default).slug == "nginx-deploy-safe-tls-default"
    assert (nginx.key, nginx.slug) == ("nginx", "nginx")


@pytest.mark.parametrize("name", [name for name in LAUNCHERS if name not in TLS_PROXIES])
def test_a_product_without_upstream_tls_refuses_it(name, tmp_path, tls_files):
    launcher = dataclasses.replace(get_launcher(name), tls=UpstreamTls(ca=tls_files["ca"]))
    assert name in {"squid", "lighttpd", "varnish"}
    with pytest.raises(ValueError, match=f"{name} cannot speak TLS to an upstream"):
        launcher.config(8080, [("127.0.0.1", 8081)], 1.0, tmp_path)


@pytest.mark.parametrize("name", TLS_PROXIES)
def test_only_the_verified_variant_names_the_server(name, tmp_path, tls_files):
    """The default variant adds nothing the product does not require: no name, and (but for
    HAProxy, which requires it) no CA; plain HTTP mentions neither."""
    launcher = get_launcher(name)
    routes = {"/r/": ("127.0.0.1", 8082)}

    def config(tls):
        return dataclasses.replace(launcher, tls=tls).config(8080, [("127.0.0.1", 8081)], 1.0, tmp_path, routes)

    verified = config(UpstreamTls(ca=tls_files["ca"], server_name="other.chaos"))
    default = config(UpstreamTls(ca=tls_files["ca"], verify=False))
    plain = config(None)
    ca = tls_files["ca"].name  # Traffic Server takes the folder and the file name apart
    assert ca in verified and ("other.chaos" in verified) == (name not in {"apache", "trafficserver"})
    assert "other.chaos" not in default and (ca in default) == (name == "haproxy")
    assert ca not in plain and "https://" not in plain


@pytest.mark.parametrize("kwargs, message", [
    ({"server_name": "127.0.0.1"}, "a DNS name"),
    ({"server_name": "two words"}, "a DNS name"),
    ({"client_cert": "/tmp/c.pem"}, "needs its key"),
    ({"ca": "relative/ca.pem"}, "an absolute path"),
    ({"ca": "/tmp/with space/ca.pem"}, "an absolute path"),
])
def test_upstream_tls_refuses_what_no_configuration_could_take(kwargs, message):
    from pathlib import Path

    values = {"ca": Path("/tmp/ca.pem"), **{key: Path(value) if key != "server_name" else value
                                             for key, value in kwargs.items()}}
    with pytest.raises(ValueError, match=message):
        UpstreamTls(**values)
