"""Real reverse proxies (nginx, HAProxy, Apache, Varnish, Squid, Traffic Server, lighttpd, Envoy,
Traefik, Caddy, nghttpx) started in front of chaos-upstream, one uniform API.

    launcher = get_launcher("nginx")
    with launcher.launch(upstreams=[("127.0.0.1", 8081)], proxy_timeout=0.5, workdir=path) as proxy:
        ...  # talk to proxy.url

TLS to the upstream: `dataclasses.replace(launcher, tls=UpstreamTls(ca=...))` speaks it, verified
(or `verify=False`: the product's own defaults), with each launcher's `upstream_tls` saying what
those defaults do, or that the product cannot ("none").  HTTP/2 to the upstream:
`dataclasses.replace(launcher, h2=True)` speaks h2c with prior knowledge, or h2 by ALPN with `tls`,
where `upstream_h2` says the product can (`h2_setup.h2_launchers` picks those).

`LAUNCHERS` maps each proxy's name to its launcher; the launchers are immutable and stateless, so
one instance per product serves every caller. The errors a proxy raises (ProxyError and its kinds,
UnknownProxy) live in the one tree of chaos_upstream.errors, and are re-exported here, where users
import them.
"""

from __future__ import annotations

import dataclasses
import os

from chaos_upstream.errors import PortTaken, ProxyError, ProxyFailed, ProxyNotInstalled, UnknownProxy
from chaos_upstream.proxies.apache import ApacheLauncher
from chaos_upstream.proxies.caddy import CaddyDebianLauncher, CaddyLauncher
from chaos_upstream.proxies.envoy import EnvoyLauncher
from chaos_upstream.proxies.haproxy import HaproxyLauncher
from chaos_upstream.proxies.launcher import Launcher
from chaos_upstream.proxies.lighttpd import LighttpdLauncher
from chaos_upstream.proxies.nghttpx import NghttpxLauncher
from chaos_upstream.proxies.nginx import NginxLauncher
from chaos_upstream.proxies.running import RunningProxy
from chaos_upstream.proxies.settings import UpstreamTls
from chaos_upstream.proxies.squid import SquidLauncher
from chaos_upstream.proxies.trafficserver import TrafficServerLauncher
from chaos_upstream.proxies.traefik import TraefikLauncher
from chaos_upstream.proxies.varnish import VarnishLauncher

__all__ = [
    "LAUNCHERS", "REQUIRE_PROXIES_ENV", "Launcher", "PortTaken", "ProxyError", "ProxyFailed",
    "ProxyNotInstalled", "RunningProxy", "UnknownProxy", "UpstreamTls", "get_launcher", "require",
]

LAUNCHERS: dict[str, Launcher] = {
    launcher.name: launcher
    for launcher in (NginxLauncher(), HaproxyLauncher(), ApacheLauncher(), VarnishLauncher(),
                     SquidLauncher(), TrafficServerLauncher(), LighttpdLauncher(), EnvoyLauncher(),
                     TraefikLauncher(), CaddyLauncher(), CaddyDebianLauncher(), NghttpxLauncher())
}
"""Every supported proxy, nginx and HAProxy (the required two) first; the matrix keeps this order."""

REQUIRE_PROXIES_ENV = "CHAOS_UPSTREAM_REQUIRE_PROXIES"
"""Set to "1" (as CI does) to make a missing proxy fail the tests instead of skipping them."""


def get_launcher(name: str) -> Launcher:
    """The launcher called `name`, or `name:variant` for one of its other configurations;
    `UnknownProxy` (a KeyError) lists the known ones."""
    product, _, variant = name.partition(":")
    try:
        launcher = LAUNCHERS[product]
    except KeyError:
        raise UnknownProxy(f"unknown proxy {product!r}; known: {', '.join(LAUNCHERS)}") from None
    if not variant:
        return launcher
    known = dict(launcher.variants)
    if variant not in known:
        raise UnknownProxy(f"{product} has no variant {variant!r}; known: {', '.join(known) or 'none'}")
    return dataclasses.replace(launcher, variant=variant)


def require(name: str) -> Launcher:
    """For tests: the launcher if its proxy is installed, else skip (or fail, under REQUIRE_PROXIES_ENV)."""
    launcher = get_launcher(name)
    try:
        launcher.binary_path()
    except ProxyNotInstalled as missing:
        import pytest  # only tests call this; the package must not depend on pytest

        if os.environ.get(REQUIRE_PROXIES_ENV) == "1":
            pytest.fail(f"{missing} (and {REQUIRE_PROXIES_ENV}=1)")
        pytest.skip(f"{missing} (set {REQUIRE_PROXIES_ENV}=1 to fail instead)")
    return launcher
