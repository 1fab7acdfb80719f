"""Your own proxy with your own configuration: HAProxy, started the way you start it in production.

chaos-upstream provides only the upstream: the test writes the configuration, pointed at
`chaos_upstream.host` and `chaos_upstream.port`, and starts `haproxy -db -f` itself.  HAProxy logs
to stderr, which pytest captures and shows for a failed test.  The timeouts of the configuration
and the upstream's T must agree: `timeout server 500ms` here, and T = 0.5 s in pytest.ini.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from chaos_upstream.testing import assert_verdict, free_port

CONFIG = """\
global
    log stderr format raw local0 info
defaults
    mode http
    log global
    option httplog
    option dontlognull          # no log line for a connection without a request (the readiness check)
    timeout connect 500ms
    timeout server 500ms
    timeout client 30s
    retries 1
    retry-on empty-response     # an upstream that closes without answering gets one more try
frontend web
    bind 127.0.0.1:{port}
    http-request disable-l7-retry if METH_POST  # else retry-on replays POSTs: test_a_post_is_never_replayed
    default_backend app
backend app
    server app1 {upstream}
"""


@pytest.fixture
def my_haproxy(chaos_upstream, tmp_path):
    """Our HAProxy in front of the chaos upstream: its URL; stopped at the end of the test."""
    haproxy = shutil.which("haproxy", path=f"{os.environ['PATH']}:/usr/sbin") or pytest.skip("haproxy is not installed")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, upstream=f"{chaos_upstream.host}:{chaos_upstream.port}"))
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)])
    try:
        deadline = time.monotonic() + 5
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except ConnectionRefusedError:
                time.sleep(0.01)
        else:
            pytest.fail(f"haproxy did not listen on port {port} (exit status {process.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGUSR1)  # a soft stop: requests still ending get their log line first
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_hung_upstream_becomes_a_504(chaos_upstream, my_haproxy):
    assert_verdict(chaos_upstream.probe(my_haproxy, "never-respond"))


def test_an_upstream_closing_without_answer_is_tried_twice_then_a_502(chaos_upstream, my_haproxy):
    result = chaos_upstream.probe(my_haproxy, "close-before-response")
    assert_verdict(result)
    assert result.observed["upstream_attempts"] == 2  # our `retries 1` / `retry-on empty-response`


def test_a_post_is_never_replayed(chaos_upstream, my_haproxy):
    result = chaos_upstream.probe(my_haproxy, "post-not-retried")  # a POST whose connection is reset
    assert_verdict(result)
    assert result.observed["upstream_attempts"] == 1


def test_our_client_sees_a_504_while_the_upstream_is_slow(chaos_upstream, my_haproxy):
    chaos_upstream.active = "slow-headers"  # what every request that names no scenario gets
    client = http.client.HTTPConnection(my_haproxy.removeprefix("http://"), timeout=5)
    client.request("GET", "/api/orders")
    assert client.getresponse().status == 504
    client.close()
    [request] = chaos_upstream.journal.records(type="request", running=True)  # the upstream still sleeps
    assert (request.target, request.scenario, request.chosen_by) == ("/api/orders", "slow-headers", "active")


@pytest.mark.xfail(strict=True, reason="HAProxy 2.6 forwards a four-digit status code (known, accepted)")
def test_an_invalid_status_code_becomes_a_502(chaos_upstream, my_haproxy):
    assert_verdict(chaos_upstream.probe(my_haproxy, "invalid-status-code"))
