"""Real nginx and HAProxy, started by chaos_upstream.proxies in front of tiny socket upstreams."""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import pytest

from chaos_upstream.proxies import (
    LAUNCHERS,
    Launcher,
    ProxyFailed,
    ProxyNotInstalled,
    RunningProxy,
    UnknownProxy,
    get_launcher,
    require,
)

pytestmark = pytest.mark.proxy

PROXY_TIMEOUT = 0.5
HOST = "chaos.example:8443"
"""Sent by the client; the answering upstream echoes the Host it got, to prove it is preserved."""


class Upstream(socketserver.StreamRequestHandler):
    """One upstream connection; a reset by the proxy (HAProxy aborts with RST) ends it quietly."""

    timeout = 5  # a stuck test ends with an error instead of hanging

    def handle(self) -> None:
        with suppress(ConnectionResetError):
            self.serve()

    def serve(self) -> None:
        raise NotImplementedError


class Answering(Upstream):
    """Answers every request head on the connection with 200 and the Host header as body."""

    def serve(self) -> None:
        while (host := self.read_head()) is not None:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(host), host))

    def read_head(self) -> bytes | None:
        host = b""
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            host = value.strip() if name.lower() == b"host" else host
        return host if line else None


class Routed(Answering):
    """Answers every request with 200 and the request target as body: proves a route was taken."""

    def serve(self) -> None:
        while (target := self.rfile.readline().split(b" ")[1:2]) and self.read_head() is not None:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(target[0]), target[0]))


class Silent(Upstream):
    """Reads whatever comes and never answers, until the proxy hangs up."""

    def serve(self) -> None:
        self.rfile.read()


@contextmanager
def upstream(handler: type[socketserver.BaseRequestHandler]) -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    # A short poll interval: `shutdown` waits for it, and it would otherwise add 0.5 s to each test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()  # joins the handler threads
        thread.join()


def get(conn: http.client.HTTPConnection, path: str = "/") -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Host": HOST})
    response = conn.getresponse()
    return response.status, response.read()


def assert_gone(proxy: RunningProxy) -> None:
    assert proxy.process.returncode is not None
    with pytest.raises(ProcessLookupError):  # no worker left in the proxy's process group either
        os.killpg(proxy.process.pid, 0)


@pytest.fixture(params=sorted(LAUNCHERS))
def launcher(request: pytest.FixtureRequest) -> Launcher:
    return require(request.param)


def test_version_looks_like_a_release_number(launcher: Launcher) -> None:
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", launcher.version())


def test_config_names_every_address_and_route(launcher: Launcher, tmp_path: Path) -> None:
    text = launcher.config(8080, [("127.0.0.1", 8081), ("127.0.0.1", 8082)], 0.5, tmp_path,
                           routes={"/_chaos/accept-then-close/": ("127.0.0.1", 8083)})
    assert "8080" in text
    assert "127.0.0.1:8081" in text and "127.0.0.1:8082" in text
    assert "/_chaos/accept-then-close/" in text and "8083" in text


def test_effective_timeout_rounds_up_to_the_proxys_step_and_minimum(launcher: Launcher) -> None:
    step = launcher.timeout_step_ms / 1000
    low = max(step, launcher.min_timeout_s)
    assert launcher.effective_timeout(step) == low
    assert launcher.effective_timeout(low + step / 2) == low + step


def test_route_prefix_must_be_a_path(launcher: Launcher, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="begins and ends with '/'"):
        launcher.config(8080, [("127.0.0.1", 8081)], 0.5, tmp_path, routes={"_chaos/x": ("127.0.0.1", 1)})


def test_proxies_requests_over_kept_alive_connections(launcher: Launcher, tmp_path: Path) -> None:
    with upstream(Answering) as address, launcher.launch([address], PROXY_TIMEOUT, tmp_path) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        with closing(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)) as conn:
            assert get(conn) == (200, HOST.encode()), proxy.error_log()
            assert get(conn) == (200, HOST.encode()), proxy.error_log()
    assert proxy.name == launcher.name and proxy.version == launcher.version()
    assert_gone(proxy)


def test_a_route_sends_its_prefix_to_its_own_address(launcher: Launcher, tmp_path: Path) -> None:
    with (upstream(Answering) as address, upstream(Routed) as routed,
          launcher.launch([address], PROXY_TIMEOUT, tmp_path, {"/_chaos/routed/": routed}) as proxy,
          closing(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)) as conn):
        assert get(conn, "/_chaos/routed/probe") == (200, b"/_chaos/routed/probe"), proxy.error_log()
        assert get(conn, "/elsewhere") == (200, HOST.encode()), proxy.error_log()


TIMEOUT_STATUS = {"varnish": 503, "apache": 502}
"""What a proxy answers when its upstream never responds, where that is not 504 (see the profiles)."""

ATTEMPTS = {"trafficserver": 4}
"""Times a proxy tries a silent upstream by default before it answers (Traffic Server retries 3 times)."""

TIMER_SLACK = {"squid": 2.0, "lighttpd": 2.5, "trafficserver": 1.0}
"""Seconds a proxy's timeout may fire late: those that check their timers once a second (Squid's
3 s timeout was seen to fire after 4.996 s on a loaded machine)."""

EARLY = {"squid": 1.0}
"""Seconds a proxy's timeout may fire early: Squid's whole-second clock rounds down, too."""


@pytest.mark.realtime
def test_silent_upstream_gets_504_after_proxy_timeout(launcher: Launcher, tmp_path: Path) -> None:
    timeout = launcher.effective_timeout(PROXY_TIMEOUT)
    latest = ATTEMPTS.get(launcher.name, 1) * (timeout + TIMER_SLACK.get(launcher.name, 0.5)) + 0.5
    with upstream(Silent) as address, launcher.launch([address], PROXY_TIMEOUT, tmp_path) as proxy:
        with closing(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=latest + 2)) as conn:
            started = time.monotonic()
            status, _ = get(conn)
            elapsed = time.monotonic() - started
    assert status == TIMEOUT_STATUS.get(launcher.profile, 504), proxy.error_log()
    assert 0.8 * timeout - EARLY.get(launcher.name, 0.0) <= elapsed <= latest, proxy.error_log()
    assert_gone(proxy)


def test_an_invalid_port_is_refused_before_any_proxy_sees_it(launcher: Launcher, tmp_path: Path) -> None:
    """Several proxies take port 70000 as 4464 (getaddrinfo), or start and answer 400: refuse it first."""
    with pytest.raises(ValueError, match="127.0.0.1:70000: a port is a number from 1 to 65535"):
        launcher.start([("127.0.0.1", 70000)], PROXY_TIMEOUT, tmp_path)


def test_a_config_the_proxy_rejects_is_reported_with_its_own_words(launcher: Launcher, tmp_path: Path) -> None:
    broken = type("Broken", (type(launcher),), {"render": lambda self, settings: "}{ not a configuration\n"})()
    with pytest.raises(ProxyFailed, match=f"{launcher.name} rejected its configuration .*\\(status [1-9]"):
        broken.start([("127.0.0.1", 8081)], PROXY_TIMEOUT, tmp_path)


def test_missing_binary_raises_proxy_not_installed(launcher: Launcher, tmp_path: Path) -> None:
    missing = dataclasses.replace(launcher, binary="chaos-upstream-no-such-proxy")
    assert not missing.installed()
    with pytest.raises(ProxyNotInstalled, match="chaos-upstream-no-such-proxy"):
        missing.start([("127.0.0.1", 1)], PROXY_TIMEOUT, tmp_path)


def test_unknown_proxy_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError) as raised:
        get_launcher("no-such-proxy")
    assert isinstance(raised.value, UnknownProxy)
    assert str(raised.value) == f"unknown proxy 'no-such-proxy'; known: {', '.join(LAUNCHERS)}"
