"""What a client gets from nginx, and from HAProxy for comparison, when the upstream misbehaves.

Each test starts the real proxy (its ordinary reverse-proxy configuration, upstream timeouts T =
0.5 s from pytest.ini) in front of a fresh chaos upstream, and sends one probe of a fault through it.
Run: `pytest examples/test_nginx_example.py`.  Where a proxy is wrong, its test fails and says why.
"""

import pytest

from chaos_upstream.testing import assert_verdict


@pytest.fixture(params=["nginx", "haproxy"])
def proxy(request, chaos_upstream, chaos_proxy):
    """The proxy under test, started in front of this test's chaos upstream."""
    return chaos_proxy(request.param, chaos_upstream)


def test_a_healthy_upstream_gets_through(chaos_upstream, proxy):
    result = chaos_upstream.probe(proxy, "healthy")
    assert_verdict(result)
    assert result.observed["status"] == 200


def test_a_hung_upstream_becomes_a_504_within_the_timeout(chaos_upstream, proxy):
    result = chaos_upstream.probe(proxy, "never-respond")
    assert_verdict(result)  # a 504, between 0.8T and 1.6T
    assert result.observed["elapsed_s"] < 2


@pytest.mark.parametrize("fault", ["truncated-chunked", "truncated-content-length", "reset-mid-body"])
def test_a_cut_body_reaches_the_client_visibly_cut(chaos_upstream, proxy, fault):
    assert_verdict(chaos_upstream.probe(proxy, fault))  # aborted (or a 502), never complete-looking


@pytest.mark.parametrize("fault", ["bad-status-line", "invalid-status-code"])
def test_a_broken_status_line_becomes_a_502(chaos_upstream, proxy, fault):
    assert_verdict(chaos_upstream.probe(proxy, fault))


def test_a_refused_connection_becomes_a_bad_gateway(chaos_upstream, proxy):
    # connection-refused has a port of its own, which chaos_proxy routed /_chaos/connection-refused/ to.
    # HAProxy answers 503 there, its documented behaviour: the probe judges it by HAProxy's profile.
    assert_verdict(chaos_upstream.probe(proxy, "connection-refused"))


def test_a_slow_login_times_out_and_is_not_replayed(chaos_upstream, proxy):
    # slow-login is our own scenario: scenarios/slow-login.yaml, loaded through pytest.ini.
    result = chaos_upstream.probe(proxy, "slow-login", method="POST", path="/login", body="user=ann")
    assert_verdict(result)
    assert result.observed["upstream_attempts"] == 1
