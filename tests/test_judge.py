"""Judging is pure: observation + journal attempts + profile + timing -> a verdict and its reason."""

import pytest

from chaos_upstream.model.durations import Timing
from chaos_upstream.verifier.capture import Capture
from chaos_upstream.verifier.classify import classify
from chaos_upstream.verifier.judge import judge

from conftest import CATALOGUE

T = Timing(1.0)


def seen(data: bytes, ending: str = "fin", at: float = 0.01):
    return classify(Capture(((at, data),) if data else (), ending, at))


def attempt(status=200, content_length=None, chunked=False, last_chunk=False, body_bytes=0, head_complete=True):
    response = dict(status=status, content_length=content_length, chunked=chunked, last_chunk=last_chunk,
                    head_complete=head_complete, body_bytes=body_bytes)
    return {"type": "request", "probe": "p", "response": response, "actions": [], "conn": 1, "t": 0.0}


CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"


def test_a_complete_response_of_less_than_the_upstream_declared_is_masked_truncation():
    verdict = judge(
        CATALOGUE.get("truncated-content-length"),
        seen(CHUNKED_OK, "open"),
        [attempt(content_length=100000, body_bytes=1000)],
        timing=T,
    )
    assert (verdict.verdict, verdict.kind) == ("fail", "masked-truncation")
    assert verdict.reason == (
        "expected the client to see an aborted body or a 502; it saw a complete chunked 200 of 1000 of the 100000 "
        "declared bytes (masked truncation: the proxy hid the upstream's failure)"
    )


def test_a_complete_chunked_response_from_an_unterminated_upstream_body_is_masked_truncation():
    verdict = judge(CATALOGUE.get("truncated-chunked"), seen(CHUNKED_OK), [attempt(chunked=True, body_bytes=1000)], timing=T)
    assert verdict.kind == "masked-truncation" and "unterminated chunked body" in verdict.reason


def test_the_proxys_own_502_for_a_truncation_is_a_pass_and_not_masked():
    verdict = judge(
        CATALOGUE.get("truncated-chunked"), seen(BAD_GATEWAY), [attempt(chunked=True, body_bytes=1000)], timing=T
    )
    assert (verdict.verdict, verdict.kind) == ("pass", "status")
    assert verdict.reason == "the client saw a complete 502 with a 0-byte body, as expected"


def test_an_aborted_body_is_a_pass_for_a_truncation():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    verdict = judge(CATALOGUE.get("truncated-content-length"), seen(data), [attempt(content_length=100000, body_bytes=1000)], timing=T)
    assert verdict.verdict == "pass"
    assert "a 200 whose content-length body ended after 1000 bytes of the 100000 declared, by a close" in verdict.reason


def test_a_probe_that_never_reached_the_upstream_is_inconclusive_never_a_pass():
    verdict = judge(CATALOGUE.get("close-before-response"), seen(BAD_GATEWAY), [], timing=T)
    assert verdict.verdict == "inconclusive"
    assert verdict.reason.startswith("the probe never reached the upstream, so it proves nothing")


def test_without_a_journal_the_verdict_rests_on_what_the_client_saw():
    unknown = judge(CATALOGUE.get("close-before-response"), seen(BAD_GATEWAY), None, timing=T)
    assert (unknown.verdict, unknown.reason) == ("pass", "the client saw a complete 502 with a 0-byte body, as expected")
    unknown_truncation = judge(CATALOGUE.get("truncated-chunked"), seen(CHUNKED_OK, "open"), None, timing=T)
    assert (unknown_truncation.verdict, unknown_truncation.kind) == ("fail", "status")


def test_a_refused_connection_has_no_attempt_to_show_and_is_judged_on_what_the_client_saw():
    assert judge(CATALOGUE.get("connection-refused"), seen(BAD_GATEWAY), [], timing=T).verdict == "pass"
    verdict = judge(CATALOGUE.get("connection-refused"), seen(b""), [], timing=T)
    assert (verdict.verdict, verdict.reason) == ("fail", "expected the client to see a 502; it saw the connection closed (FIN) with no response byte after 0.01 s")


def test_a_pass_only_under_a_proxys_profile_is_marked_so():
    unavailable = seen(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    verdict = judge(CATALOGUE.get("connection-refused"), unavailable, [], profile="haproxy", timing=T)
    assert (verdict.verdict, verdict.profile_only) == ("pass", True)
    assert verdict.reason.endswith("under the haproxy profile (the RFCs expect a 502)")
    assert not judge(CATALOGUE.get("connection-refused"), seen(BAD_GATEWAY), [], profile="haproxy", timing=T).profile_only


def test_a_post_replayed_to_the_upstream_fails_whatever_the_client_saw():
    verdict = judge(CATALOGUE.get("close-before-response"), seen(BAD_GATEWAY), [attempt(), attempt()], method="POST", timing=T)
    assert verdict.verdict == "fail" and "replayed a POST to the upstream (2 attempts)" in verdict.reason
    retried_get = judge(CATALOGUE.get("close-before-response"), seen(BAD_GATEWAY), [attempt(), attempt()], timing=T)
    assert retried_get.verdict == "pass"


@pytest.mark.parametrize(("at", "verdict", "words"), [(0.05, "fail", "no sooner than 0.80 s (0.8T)"), (1.0, "pass", "as expected"), (2.0, "fail", "within 1.60 s (1.6T)")])
def test_a_504_must_come_near_the_timeout(at, verdict, words):
    timeout = b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n"
    result = judge(CATALOGUE.get("never-respond"), seen(timeout, "open", at=at), [attempt(status=None)], timing=T)
    assert result.verdict == verdict and words in result.reason


def test_a_profile_pass_says_it_is_one():
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    rfc = judge(CATALOGUE.get("reset-before-response"), seen(unavailable), [attempt(status=None)], timing=T)
    varnish = judge(CATALOGUE.get("reset-before-response"), seen(unavailable), [attempt(status=None)], profile="varnish", timing=T)
    assert rfc.verdict == "fail" and varnish.verdict == "pass"
    assert varnish.reason.endswith("as expected under the varnish profile (the RFCs expect a 502)")


def test_the_upstreams_own_502_is_reported_as_passed_through():
    verdict = judge(CATALOGUE.get("upstream-502"), seen(BAD_GATEWAY), [attempt(status=502, content_length=0)], timing=T)
    assert verdict.verdict == "pass" and "(passed through: the upstream sent it)" in verdict.reason


@pytest.mark.parametrize(
    ("data", "ending", "words"),
    [
        (b"HTTP/1.1 abc OK\r\n\r\n", "fin", "an invalid HTTP/1.1 response (illegal status line"),
        (b"", "fin", "the connection closed (FIN) with no response byte"),
        (b"", "rst", "the connection reset (RST) with no response byte"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "fin", "an interim 100 response, then no final response before a close"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "fin", "a response cut off in its head by a close"),
    ],
)
def test_failing_reasons_say_what_the_client_saw(data, ending, words):
    verdict = judge(CATALOGUE.get("bad-status-line"), seen(data, ending), [attempt(status=None)], timing=T)
    assert verdict.verdict == "fail" and verdict.reason.startswith("expected the client to see a 502; it saw ")
    assert words in verdict.reason
