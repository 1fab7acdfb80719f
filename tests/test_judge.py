"""Judging is pure: observation + journal attempts + profile + timing -> a verdict and its reason."""

import pytest

from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.actions import Response
from chaos_upstream.records import AcceptRecord
from chaos_upstream.verifier.exchange import Capture
from chaos_upstream.verifier.classify import classify
from chaos_upstream.verifier.judge import judge

from chaos_upstream.records import AcceptRecord

from conftest import CATALOGUE, request_record

T = Timing(1.0)


def seen(data: bytes, ending: str = "fin", at: float = 0.01):
    return classify(Capture(((at, data),) if data else (), ending, at))


def attempt(status=200, content_length=None, chunked=False, last_chunk=False, body_bytes=0, head_complete=True):
    response = Response(status=status, content_length=content_length, chunked=chunked, last_chunk=last_chunk,
                        head_complete=head_complete, body_bytes=body_bytes)
    return request_record(1, probe="p", t=0.0, response=response, actions=())


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


@pytest.mark.parametrize(("at", "verdict", "words", "late_only"), [
    (0.05, "fail", "no sooner than 0.80 s (0.8T)", False), (1.0, "pass", "as expected", False),
    (2.0, "fail", "within 1.60 s (1.6T)", True),
])
def test_a_504_must_come_near_the_timeout_and_only_a_late_one_may_owe_its_fail_to_timing_alone(at, verdict, words, late_only):
    timeout = b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n"
    result = judge(CATALOGUE.get("never-respond"), seen(timeout, "open", at=at), [attempt(status=None)], timing=T)
    assert result.verdict == verdict and words in result.reason
    assert result.late_only is late_only  # a busy machine delays an answer, never hastens it


def test_a_fail_for_anything_but_coming_late_is_not_late_only_even_when_it_also_came_late():
    """What the client saw decides first: a wrong status, a replay or a masked truncation is a
    finding however late it came."""
    late_502 = judge(CATALOGUE.get("never-respond"), seen(BAD_GATEWAY, "open", at=2.0), [attempt(status=None)], timing=T)
    replayed = judge(CATALOGUE.get("stall-mid-body"), seen(ABORTED_STALL, at=2.0),
                     [attempt(content_length=100000, body_bytes=1000)] * 2, method="POST", timing=T)
    assert (late_502.verdict, replayed.verdict) == ("fail", "fail")
    assert not late_502.late_only and not replayed.late_only


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


def upstream_bytes(name: str) -> bytes:
    """The exact bytes the scenario's steps put on the wire (what a proxy relays when it relays)."""
    import random

    from chaos_upstream.plan.actions import Send
    from chaos_upstream.plan.planner import plan
    from chaos_upstream.plan.request import RequestInfo

    actions = plan(CATALOGUE.get(name), RequestInfo("GET", "/"), random.Random(0), T, CATALOGUE.get).actions
    return b"".join(action.data for action in actions if isinstance(action, Send))


def relayed_by_go(data: bytes, *, drop: bytes = b"", keep_after: int | None = None, alter: bytes = b"", body: bytes | None = None) -> bytes:
    """`data` as a Go proxy relays it: fields sorted by name, names in canonical case, its own Date
    and Connection added; optionally a field dropped, the head cut after `keep_after` fields, one
    value altered, another body."""
    head, _, rest = data.partition(b"\r\n\r\n")
    _, *lines = head.split(b"\r\n")
    fields = [line.split(b": ", 1) for line in lines if not (drop and line.startswith(drop + b":"))]
    fields = sorted(([b"-".join(p.capitalize() for p in name.split(b"-")), value] for name, value in fields), key=lambda f: f[0])
    if keep_after is not None:
        fields = [f for f in fields if f[0] in (b"Content-Type", b"Content-Length")] + [f for f in fields if f[0].startswith(b"X-")][:keep_after]
    if alter:
        fields = [[name, b"altered" if name == alter else value] for name, value in fields]
    lines = [b"HTTP/1.1 200 OK", b"Date: Mon, 01 Dec 2025 00:00:00 GMT", b"Connection: keep-alive"]
    lines += [name + b": " + value for name, value in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (rest if body is None else body)


def test_an_oversized_head_relayed_whole_by_a_proxy_that_reorders_and_adds_fields_passes_as_relayed():
    scenario = CATALOGUE.get("oversized-headers")
    verdict = judge(scenario, seen(relayed_by_go(upstream_bytes("oversized-headers")), "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("pass", "relayed"), verdict.reason
    assert verdict.reason == ("the client saw the upstream's complete 200 relayed intact (its 258 fields byte for byte, "
                              "and its 24-byte body), as expected")
    assert verdict.expected == "a 502 or the upstream's response relayed intact"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"keep_after": 100}, "156 of the 258 field names the upstream sent are missing (first 'X-Chaos-Pad-00100')"),
        ({"alter": b"X-Chaos-Pad-00007"}, "1 field(s) altered (first 'X-Chaos-Pad-00007': b'ppp"),
        ({"body": b"chaos-upstream: BIGHEAD\n"}, "its 24-byte body is not the upstream's 24 bytes"),
    ],
)
def test_an_oversized_head_cut_or_altered_on_the_way_is_a_failure_that_says_what_was_lost(change, words):
    data = relayed_by_go(upstream_bytes("oversized-headers"), **change)
    verdict = judge(CATALOGUE.get("oversized-headers"), seen(data, "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("fail", "status")
    assert verdict.reason.startswith("expected the client to see a 502 or the upstream's response relayed intact; it saw a "
                                     "complete 200 with a 24-byte body, not the upstream's response intact: ")
    assert words in verdict.reason


def test_an_oversized_head_refused_with_a_502_passes_and_a_hang_fails():
    assert judge(CATALOGUE.get("oversized-headers"), seen(BAD_GATEWAY), [attempt()], timing=T).verdict == "pass"
    hang = judge(CATALOGUE.get("oversized-headers"), seen(b"", "timeout", at=4.5), [attempt()], timing=T)
    assert (hang.verdict, hang.kind) == ("fail", "timeout")


def test_an_invalid_field_removed_and_the_rest_relayed_passes_and_says_so():
    data = relayed_by_go(upstream_bytes("invalid-header-name"), drop=b"Bad Header")
    verdict = judge(CATALOGUE.get("invalid-header-name"), seen(data, "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("pass", "relayed"), verdict.reason
    assert verdict.reason == ("the client saw the upstream's complete 200 relayed intact without its 'Bad Header' field "
                              "(its 2 other fields byte for byte, and its 24-byte body), as expected")


def test_an_invalid_field_relayed_to_the_client_fails_and_the_reason_names_it():
    data = relayed_by_go(upstream_bytes("invalid-header-name")).replace(b"Bad header:", b"Bad Header:")
    verdict = judge(CATALOGUE.get("invalid-header-name"), seen(data, "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("fail", "malformed")
    assert verdict.reason.endswith("its head relaying the field the proxy should have rejected or removed ('Bad Header: chaos')")
    assert judge(CATALOGUE.get("invalid-header-name"), seen(BAD_GATEWAY), [attempt()], timing=T).verdict == "pass"


def test_a_relay_that_renames_the_invalid_field_or_loses_another_is_not_intact():
    renamed = relayed_by_go(upstream_bytes("invalid-header-name")).replace(b"Bad header:", b"Bad-Header:")
    verdict = judge(CATALOGUE.get("invalid-header-name"), seen(renamed, "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("fail", "status")
    assert verdict.reason.endswith("not the upstream's response intact: the field 'Bad Header' is there renamed 'Bad-Header', "
                                   "which the proxy should have rejected or removed")
    lost = relayed_by_go(upstream_bytes("invalid-header-name").replace(b"Content-Type: text/plain\r\n", b""), drop=b"Bad Header")
    verdict = judge(CATALOGUE.get("invalid-header-name"), seen(lost, "open"), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert verdict.verdict == "fail" and "1 of the 2 field names the upstream sent are missing (first 'Content-Type')" in verdict.reason


def test_a_relay_that_reframes_the_body_chunked_may_drop_the_content_length():
    data = relayed_by_go(upstream_bytes("invalid-header-name"), drop=b"Bad Header")
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: 24", b"Transfer-Encoding: chunked")
    verdict = judge(CATALOGUE.get("invalid-header-name"), seen(head + b"\r\n\r\n18\r\n" + body + b"\r\n0\r\n\r\n", "open"),
                    [attempt(content_length=24, body_bytes=24)], timing=T)
    assert (verdict.verdict, verdict.kind) == ("pass", "relayed"), verdict.reason


ABORTED_STALL = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000


@pytest.mark.parametrize(
    ("at", "verdict", "reason"),
    [
        (1.1, "pass", "as expected; it came after 1.10 s, before the upstream closed (at 4.00 s): the proxy's timeout fired"),
        (2.0, "fail", "expected an aborted body or a 504 within 1.60 s (1.6T); it came after 2.00 s, before the upstream "
                      "closed (at 4.00 s): the proxy's timeout fired, late"),
        (4.02, "fail", "expected an aborted body or a 504 within 1.60 s (1.6T); it came after 4.02 s, when the upstream "
                       "closed (at 4.00 s): the proxy never timed out"),
    ],
)
def test_a_stalled_body_aborted_says_whether_the_proxy_timed_out_or_passed_the_upstreams_close_on(at, verdict, reason):
    result = judge(CATALOGUE.get("stall-mid-body"), seen(ABORTED_STALL, at=at), [attempt(content_length=100000, body_bytes=1000)], timing=T)
    assert result.verdict == verdict and result.reason.endswith(reason), result.reason


def test_a_late_head_passed_on_is_told_apart_from_a_late_504():
    late_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n" + b"x" * 24
    relayed = judge(CATALOGUE.get("slow-headers"), seen(late_200, "open", at=4.01), [attempt(content_length=24, body_bytes=24)], timing=T)
    assert relayed.verdict == "fail" and relayed.reason == (
        "expected the client to see a 504; it saw a complete 200 with a 24-byte body; it came after 4.01 s, when the "
        "upstream answered (at 4.00 s): the proxy never timed out")
    timeout = b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n"
    late_504 = judge(CATALOGUE.get("slow-headers"), seen(timeout, "open", at=3.0), [attempt(status=None)], timing=Timing(1.0))
    assert late_504.verdict == "fail" and late_504.reason.endswith("it came after 3.00 s, before the upstream answered "
                                                                   "(at 4.00 s): the proxy's timeout fired, late")


def test_a_504_that_comes_with_the_upstreams_late_head_is_still_the_proxys_own_timeout():
    """Caddy with lb_retries and two members: three attempts, each cut at T, a 504 at 4T. The answer
    coming with the upstream's end says nothing then: the retries, or a status the upstream never
    sends, show the proxy's timeout fired."""
    timeout = b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n"
    scenario = CATALOGUE.get("slow-headers")
    retried = judge(scenario, seen(timeout, "open", at=3.99), [attempt(status=None)] * 3, timing=Timing(1.0))
    assert retried.verdict == "fail" and retried.reason.endswith(
        "it came after 3.99 s, after 3 attempts at the upstream: the proxy's timeout fired, and it tried again")
    once = judge(scenario, seen(timeout, "open", at=3.99), [attempt(status=None)], timing=Timing(1.0))
    assert once.verdict == "fail" and once.reason.endswith("the proxy's timeout fired, late"), once.reason


def test_a_hang_with_no_end_of_its_own_gets_no_word_on_the_upstreams_end():
    timeout = b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n"
    result = judge(CATALOGUE.get("never-respond"), seen(timeout, "open", at=1.0), [attempt(status=None)], timing=T)
    assert result.reason == "the client saw a complete 504 with a 0-byte body, as expected"


@pytest.mark.parametrize(("name", "accepted"), [
    ("tls-expired-certificate", "an expired certificate"),
    ("tls-wrong-name", "a certificate for another name"),
    ("tls-untrusted-certificate", "a certificate signed by no authority it trusts"),
])
def test_a_200_through_a_certificate_fault_says_the_proxy_accepted_it_and_why(name, accepted):
    past = b"HTTP/1.1 200 OK\r\nContent-Length: 41\r\n\r\nchaos-upstream: served past a TLS fault!\n"
    through = AcceptRecord(t=0.0, conn=1, scenario=name, rule=None, ended="handshake-done", duration=0.001)
    verdict = judge(CATALOGUE.get(name), seen(past, "open"), [through], timing=T)
    assert verdict.verdict == "fail"
    assert verdict.reason.startswith(f"the proxy accepted {accepted} from the upstream, which it had to refuse, and the client saw")
    assert "proxy_ssl_verify" in verdict.reason


def test_a_502_for_a_certificate_fault_is_a_pass():
    refused = AcceptRecord(t=0.0, conn=1, scenario="tls-wrong-name", rule=None, ended="tls-handshake-failed: x", duration=0.001)
    verdict = judge(CATALOGUE.get("tls-wrong-name"), seen(BAD_GATEWAY, "open"), [refused], timing=T)
    assert verdict.verdict == "pass"


def test_over_http2_the_reason_names_each_attempts_frames_and_an_http11_hop_proves_nothing():
    from chaos_upstream.records import ActionRecord

    refused = request_record(1, probe="p", t=0.0, stream=1, actions=(ActionRecord("rst-stream REFUSED_STREAM", 0.0),))
    served = request_record(2, probe="p", t=0.0, stream=1, response=Response(status=200, content_length=24, chunked=True,
                            last_chunk=True, head_complete=True, body_bytes=24),
                            actions=(ActionRecord("headers 200", 0.0), ActionRecord("data end-stream", 0.0, 24)))
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n" + b"x" * 24
    verdict = judge(CATALOGUE.get("h2-refused-stream"), seen(ok), [refused, served], timing=T)
    assert verdict.verdict == "pass" and verdict.reason.endswith(
        "; over HTTP/2 the upstream sent (attempt 1) RST_STREAM(REFUSED_STREAM), then (attempt 2) HEADERS 200, DATA 24 B + END_STREAM")
    http11 = request_record(1, probe="p", t=0.0, status=505, error="scenario h2-refused-stream is HTTP/2 only")
    hop = judge(CATALOGUE.get("h2-refused-stream"), seen(b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\n\r\n"), [http11], timing=T)
    assert hop.verdict == "inconclusive" and hop.reason.startswith("the proxy spoke HTTP/1.1 to the upstream")
