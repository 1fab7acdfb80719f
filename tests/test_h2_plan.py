"""HTTP/2 plans, pure: the model's HTTP/2 steps, their planner, and HTTP/1.1 plans read as HTTP/2."""

from __future__ import annotations

import random
import typing

import pytest

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.h2_steps import H2Step
from chaos_upstream.model.loading import parse
from chaos_upstream.plan.actions import Close, Hang, KeepAlive, Plan, Reset, Send, Wait
from chaos_upstream.plan.h2_actions import Data, GoAway, Headers, RstStream, Trailers
from chaos_upstream.plan.h2_planner import STEP_PLANNERS, no_equivalent, plan_h2
from chaos_upstream.plan.h2_translate import NoEquivalent, translate
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.plan.sent import sent

from conftest import CATALOGUE

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"


def h1(*actions) -> Plan:
    return Plan("t", None, tuple(actions))


def planned(name: str, *, method: str = "GET", attempt: int = 1):
    return plan_h2(CATALOGUE.get(name), RequestInfo(method, "/", attempt=attempt), random.Random(0), Timing(0.2), CATALOGUE.get)


def test_every_http2_step_kind_has_a_planner():
    kinds = typing.get_args(typing.get_args(H2Step)[0])
    assert set(kinds) == set(STEP_PLANNERS)


def test_a_whole_response_becomes_headers_then_data_with_end_stream_and_loses_its_connection_fields():
    result = translate(h1(Send(HEAD + b"hello"), KeepAlive()))
    assert result.actions == (Headers(200, ((b"content-type", b"text/plain"), (b"content-length", b"5"))), Data(b"hello", end_stream=True))
    assert (result.response.status, result.response.content_length, result.response.last_chunk) == (200, 5, True)


def test_a_head_dripped_slowly_goes_out_whole_when_its_blank_line_would_have():
    result = translate(h1(Send(HEAD[:20]), Wait(1.0), Send(HEAD[20:] + b"hello"), KeepAlive()))
    assert [type(action) for action in result.actions] == [Wait, Headers, Data]


@pytest.mark.parametrize("ending", [Close(), Reset()])
def test_a_body_cut_short_by_a_close_or_a_reset_resets_the_stream_alone(ending):
    result = translate(h1(Send(HEAD + b"hel"), Wait(0.5), ending))
    assert result.actions[-2:] == (Wait(0.5), RstStream("INTERNAL_ERROR"))
    assert (result.response.body_bytes, result.response.last_chunk) == (3, False)


def test_a_response_held_unfinished_holds_its_stream():
    assert translate(h1(Send(HEAD + b"hel"), KeepAlive(2.0))).actions[-1] == Hang(2.0)
    assert translate(h1(Hang(None))).actions == (Hang(None),)


def test_a_close_ends_a_close_delimited_body_complete():
    result = translate(h1(Send(b"HTTP/1.1 200 OK\r\n\r\nabc"), Close()))
    assert result.actions[-1] == Data(b"", end_stream=True) and result.response.last_chunk


def test_chunked_framing_is_decoded_across_sends_and_its_trailers_become_a_trailer_headers():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    result = translate(h1(Send(head + b"3\r\nab"), Send(b"c\r\n2;ext=1\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"), KeepAlive()))
    assert result.actions == (Headers(200, ()), Data(b"ab"), Data(b"c"), Data(b"de"), Trailers(((b"x-sum", b"5"),)))
    assert result.response.body_bytes == 5 and result.response.last_chunk


def test_an_interim_head_is_an_informational_headers_and_a_head_request_ends_after_its_head():
    result = translate(h1(Send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + HEAD), KeepAlive()), method="HEAD")
    assert result.actions == (Headers(103, ((b"link", b"</a>"),)), Headers(200, ((b"content-type", b"text/plain"), (b"content-length", b"5"))),
                              Data(b"", end_stream=True))


@pytest.mark.parametrize(("data", "why"), [
    (b"HTTP/1.1 abc OK\r\n\r\n", "status line"),
    (b"<html>HTTP/0.9</html>", "status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "field line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunked framing is broken"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "not followed by CRLF"),
    (HEAD + b"hello, and more", "more body than its Content-Length"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "together"),
])
def test_what_http2_cannot_say_is_refused_with_the_reason(data, why):
    result = translate(h1(Send(data), Close()))
    assert isinstance(result, NoEquivalent) and why in result.reason, result


def test_every_request_level_catalogue_scenario_has_an_http2_plan_or_a_reason():
    reasons = {scenario.name: no_equivalent(scenario) for scenario in CATALOGUE}
    assert {name for name, reason in reasons.items() if reason} == {
        "bad-status-line", "http09-response", "invalid-header-name", "invalid-status-code", "malformed-chunk-size", "non-http-response",
        "keepalive-close-race", "tls-close-delimited-no-close-notify",  # protocol: http1
    }
    assert planned("truncated-content-length").actions[-1] == RstStream("INTERNAL_ERROR")
    assert [type(action) for action in planned("slow-headers").actions] == [Wait, Headers, Data]


def test_the_http2_catalogue_plans_its_frames():
    assert planned("h2-rst-before-headers").actions == (RstStream("INTERNAL_ERROR"),)
    after = planned("h2-rst-after-complete")
    assert after.actions[-2:] == (Data(after.actions[1].data, end_stream=True), RstStream("NO_ERROR"))
    assert after.response.last_chunk and after.response.body_bytes == 500
    mismatch = planned("h2-content-length-mismatch").response
    assert (mismatch.content_length, mismatch.body_bytes, mismatch.last_chunk) == (1000, 500, True)
    assert planned("h2-goaway-mid-stream").actions[-2:] == (GoAway("INTERNAL_ERROR", "this"), Close())


def test_a_rule_on_the_attempt_refuses_a_probes_first_stream_and_serves_its_retry():
    first, retry = planned("h2-refused-stream", attempt=1), planned("h2-refused-stream", attempt=2)
    assert (first.rule, first.actions) == (0, (RstStream("REFUSED_STREAM"),))
    assert retry.rule is None and retry.response.status == 200
    assert planned("h2-goaway-graceful", attempt=1).actions[0] == GoAway("NO_ERROR", "before")


def test_what_an_http2_scenario_sends_is_read_back_for_the_relay_check():
    trailers = sent(CATALOGUE.get("h2-trailers"))
    assert (trailers.status, trailers.fields, len(trailers.body)) == (200, ((b"content-type", b"application/octet-stream"),), 500)


MINIMAL = "name: t\ndescription: t\nphase: http2\nexpect: {outcomes: [502]}\n"


@pytest.mark.parametrize(("text", "complaint"), [
    ("steps: [{kind: close}]\nhttp2: [{kind: h2-rst-stream}]\n", "no steps"),
    ("rules: [{when: {}, steps: [{kind: close}]}]\nhttp2: [{kind: h2-rst-stream}]\n", "not steps"),
    ("http2: [{kind: close}, {kind: h2-rst-stream}]\n", "must be the last step"),
    ("trigger: accept\nhttp2: [{kind: h2-rst-stream}]\n", "answer a request"),
    ("http2: [{kind: h2-rst-stream, code: OOPS}]\n", "code"),
    ("http2: [{kind: h2-data}]\n", "exactly one of content or length"),
    ("rules: [{when: {}, http2: [{kind: close}], scenario: healthy}]\nhttp2: [{kind: h2-rst-stream}]\n", "exactly one of steps, http2 or scenario"),
])
def test_a_broken_http2_scenario_is_refused_with_the_field(text, complaint):
    with pytest.raises(ConfigError, match=complaint):
        parse(MINIMAL + text, "t.yaml")


def test_a_probe_body_given_by_its_length():
    scenario = CATALOGUE.get("h2-window-stall")
    assert scenario.probes.content == b"." * 262144 and scenario.request_window == "stall"
    with pytest.raises(ConfigError, match="body_length"):
        parse(MINIMAL + "probes: {body: x, body_length: 3}\nhttp2: [{kind: h2-rst-stream}]\n", "t.yaml")
