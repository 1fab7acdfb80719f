"""Judging: what the client saw, joined with what the upstream did, against what was expected.

Pure: a verdict is a function of the scenario, the client's Observation, the journal records of the
probe's attempts (None when the journal could not be consulted), the profile and the timing settings.
Invariants: a probe that the journal shows never reached the upstream is never a pass (but for a
refusing port, which nothing can reach); a complete response
carrying less body than the upstream declared is masked truncation, a failure whatever was
expected; a non-idempotent request that reached the upstream more than once is a failure whatever
the client saw; a response counts as `relayed` only when it carries the upstream's status, fields
and body as the steps sent them (`Relay`), judged from the client's bytes against the plan's.
Where the upstream ends a long silence past the latest outcome allowed (a stall, a late head), the
reason says whether the answer came before that end (the proxy's timeout fired) or with it (the
proxy never timed out).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import RELAYED, RFC, Outcome, Relay, Scenario
from chaos_upstream.plan.actions import Response
from chaos_upstream.plan.sent import longest_silence, sent
from chaos_upstream.records import ActionRecord, Attempt, RequestRecord
from chaos_upstream.verifier.classify import ABORTED, CLOSED, MALFORMED, RESET, STATUS, TIMEOUT, Observation
from chaos_upstream.verifier.relay import describe_relayed, quoted, relay_note, relay_problems

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
MASKED = "masked-truncation"

NON_IDEMPOTENT = {"POST", "PATCH"}
"""Methods a proxy must not replay once they may have reached the upstream (RFC 9110 9.2.2)."""

CAUGHT_UP = 0.9
"""An answer that comes after this share of the upstream's silence came with its end, not before:
the client's clock starts a little before the upstream's, so a relayed end is never early."""


@dataclass(frozen=True)
class Verdict:
    """A verdict with the one sentence a user can act on."""

    verdict: str
    """pass, fail or inconclusive."""
    kind: str
    """What the client saw, with masked-truncation told apart from a genuine complete response."""
    expected: str
    """The expectation under the profile, in words ("an aborted body or a 502")."""
    reason: str
    profile_only: bool = False
    """A pass only because the profile allows it: the RFC profile would have failed it."""
    late_only: bool = False
    """A fail only because the outcome came after `max_elapsed`: what the client saw was expected,
    and a busy machine can make an answer late (never early), so a second probe may tell."""


UNVERIFIED = {
    "expired-certificate": "an expired certificate",
    "wrong-name": "a certificate for another name",
    "untrusted-certificate": "a certificate signed by no authority it trusts",
}
"""The certificate faults a proxy must refuse at the handshake, and what it accepted when a 200 came through."""

VERIFICATION_OFF = ("the usual cause: nginx's proxy_ssl_verify is off unless set on; Envoy checks nothing without a "
                    "validation_context; HAProxy's `verify none`; Traefik's insecureSkipVerify")


def judge(
    scenario: Scenario,
    observation: Observation,
    attempts: list[Attempt] | None,
    *,
    method: str = "GET",
    profile: str = RFC,
    timing: Timing = Timing(),
) -> Verdict:
    """The verdict on one probe of `scenario`.  With `attempts` None (no journal to ask, as in a load
    test without the admin API) it rests on what the client saw alone: the checks that need the
    journal (never reached, replayed, masked truncation) are not made. Over HTTP/2 its reason ends
    with the frames the upstream sent on each attempt's stream (`frames_sent`)."""
    verdict = _judge(scenario, observation, attempts, method=method, profile=profile, timing=timing)
    sent_frames = frames_sent(attempts or [])
    return replace(verdict, reason=f"{verdict.reason}; {sent_frames}") if sent_frames else verdict


def frames_sent(attempts: list[Attempt]) -> str:
    """What the upstream sent on the HTTP/2 streams of the attempts, from their journal records:
    "on its HTTP/2 stream the upstream sent RST_STREAM(REFUSED_STREAM), then (attempt 2) HEADERS
    200, DATA 24 B + END_STREAM"; "" when no attempt came over HTTP/2."""
    streams = [attempt for attempt in attempts if isinstance(attempt, RequestRecord) and attempt.stream is not None]
    if not streams:
        return ""
    told = [", ".join(_frame(action) for action in attempt.actions if action.do != "wait") or "nothing" for attempt in streams]
    if len(told) == 1:
        return f"on its HTTP/2 stream the upstream sent {told[0]}"
    return "over HTTP/2 the upstream sent " + ", then ".join(f"(attempt {n}) {text}" for n, text in enumerate(told, 1))


def _frame(action: ActionRecord) -> str:
    """A journaled HTTP/2 action in the RFC's words: "rst-stream INTERNAL_ERROR" -> "RST_STREAM(INTERNAL_ERROR)"."""
    words = action.do.split()
    name, rest = words[0], words[1:]
    if name in ("rst-stream", "goaway"):
        code = rest[0]
        last = f", last-stream-id {rest[-1]}" if name == "goaway" else ""
        return f"{name.upper().replace('-', '_')}({code}{last})"
    if name == "data":
        return f"DATA {action.bytes} B" + (" + END_STREAM" if rest else "")
    if name in ("headers", "trailers"):
        return (f"HEADERS {rest[0]}" if name == "headers" else "trailer HEADERS") + (" + END_STREAM" if "end-stream" in rest else "")
    if name == "frame":
        return f"a frame of type {rest[1]} on stream {rest[-1]}"
    return {"close": "a close of the connection", "reset": "a TCP reset", "hang": "nothing for a while, then RST_STREAM(CANCEL)"}.get(name, name)


def _judge(
    scenario: Scenario,
    observation: Observation,
    attempts: list[Attempt] | None,
    *,
    method: str,
    profile: str,
    timing: Timing,
) -> Verdict:
    outcomes = scenario.expect.for_profile(profile)
    expected = describe_outcomes(outcomes, scenario.expect.relay)
    joined, attempts = attempts is not None, attempts or []
    kind = kind_of(observation, attempts, scenario, method=method, timing=timing)
    seen = (describe_relayed(scenario, observation, method, timing) if kind == RELAYED else describe(observation, kind, attempts)
            + relay_note(scenario, observation, kind, method, timing))
    if joined and not attempts and scenario.trigger != "refuse":
        reason = f"the probe never reached the upstream, so it proves nothing about this fault: the client saw {seen}"
        return Verdict(INCONCLUSIVE, kind, expected, reason + " (the proxy answered on its own, e.g. from an earlier failure)")
    if scenario.http2_only and any(isinstance(attempt, RequestRecord) and attempt.stream is None for attempt in attempts):
        reason = (f"the proxy spoke HTTP/1.1 to the upstream, which answers an HTTP/2 scenario 505, so this proves nothing: "
                  f"have the proxy speak HTTP/2 to it (h2c, or h2 over TLS); the client saw {seen}")
        return Verdict(INCONCLUSIVE, kind, expected, reason)
    if method in NON_IDEMPOTENT and len(attempts) > 1:
        reason = f"the proxy replayed a {method} to the upstream ({len(attempts)} attempts); the client saw {seen}"
        return Verdict(FAIL, kind, expected, reason)
    silence = _silence(scenario, observation, kind, timing, len(attempts))
    if not matches(kind, observation.status, outcomes):
        came = f"; it came after {_when(observation, kind):.2f} s{silence}" if silence else ""
        if scenario.tls in UNVERIFIED and kind == STATUS and observation.status == 200:
            return Verdict(FAIL, kind, expected, f"the proxy accepted {UNVERIFIED[scenario.tls]} from the upstream, which it had to "
                                                 f"refuse, and the client saw {seen}: its upstream TLS verification is off ({VERIFICATION_OFF})")
        return Verdict(FAIL, kind, expected, f"expected the client to see {expected}; it saw {seen}{came}")
    problem, late = _timing_problem(scenario, observation, kind, timing)
    if problem:
        if late and silence.endswith("fired"):
            silence += ", late"
        return Verdict(FAIL, kind, expected, f"expected {expected} {problem}{silence}", late_only=late)
    note = _profile_note(scenario, kind, observation, profile)
    came = f"; it came after {_when(observation, kind):.2f} s{silence}" if silence else ""
    return Verdict(PASS, kind, expected, f"the client saw {seen}, as expected{note}{came}", profile_only=bool(note))


def kind_of(
    observation: Observation, attempts: list[Attempt], scenario: Scenario | None = None, *,
    method: str = "GET", timing: Timing = Timing(),
) -> str:
    """What the client saw, with masked truncation (judged against the attempts) told apart, and,
    for a `scenario` that allows it, the upstream's response relayed intact (`relayed`)."""
    if _masked(observation, attempts):
        return MASKED
    if scenario is not None and scenario.expect.relays and observation.kind == STATUS:
        if not relay_problems(scenario, observation, method, timing):
            return RELAYED
    return observation.kind


def _masked(observation: Observation, attempts: list[Attempt]) -> bool:
    """A complete response from the upstream's status, with less body than the upstream declared."""
    if observation.kind != STATUS:
        return False
    for response in _responses(attempts):
        if response.status == observation.status and _truncated(response) and observation.body_bytes < _declared(response):
            return True
    return False


def _responses(attempts: list[Attempt]) -> list[Response]:
    """What the upstream declared, for each attempt planned (a refused request planned none)."""
    return [attempt.response for attempt in attempts if attempt.response is not None]


def _truncated(response: Response) -> bool:
    """The upstream's response declared more body than it sent (or left its chunked body unterminated)."""
    if not response.head_complete:
        return False
    if response.content_length is not None:
        return response.body_bytes < response.content_length
    return response.chunked and not response.last_chunk


def _declared(response: Response) -> float:
    return float(response.content_length) if response.content_length is not None else float("inf")


def matches(kind: str, status: int | None, outcomes: list[Outcome]) -> bool:
    """Whether what the client saw is one of the outcomes (a relayed response has its status too)."""
    return any(
        (kind in (STATUS, RELAYED) and status == outcome) if isinstance(outcome, int) else kind == outcome
        for outcome in outcomes
    )


def _when(observation: Observation, kind: str) -> float:
    """When the outcome came: a complete response's first byte, else the end."""
    return observation.first_byte if kind == STATUS and observation.first_byte is not None else observation.elapsed


def _silence(scenario: Scenario, observation: Observation, kind: str, timing: Timing, attempts: int) -> str:
    """Where the outcome came against the end of the upstream's longest silence, when that end lies
    past `max_elapsed`: ", before the upstream closed (at 4.00 s): the proxy's timeout fired",
    ", when the upstream closed (at 4.00 s): the proxy never timed out", or, when the proxy tried
    again or answered with a status of its own, that its timeout fired whenever the answer came;
    "" otherwise."""
    high = scenario.expect.max_elapsed
    if high is None or kind not in (STATUS, ABORTED, CLOSED, RESET, MASKED):
        return ""
    silence = longest_silence(scenario, timing)
    if silence is None or silence.ends <= high.seconds(timing):
        return ""
    if attempts > 1:
        return f", after {attempts} attempts at the upstream: the proxy's timeout fired, and it tried again"
    own = kind == STATUS and observation.status != sent(scenario, timing=timing).status
    if _when(observation, kind) >= CAUGHT_UP * silence.ends and not own:
        return f", when the upstream {silence.then} (at {silence.ends:.2f} s): the proxy never timed out"
    return f", before the upstream {silence.then} (at {silence.ends:.2f} s): the proxy's timeout fired"


def _timing_problem(scenario: Scenario, observation: Observation, kind: str, timing: Timing) -> tuple[str, bool]:
    """Why the outcome came too soon or too late ("" when it came in time, or no bounds are set),
    and whether it came too late."""
    when = _when(observation, kind)
    low, high = scenario.expect.min_elapsed, scenario.expect.max_elapsed
    if low is not None and when < low.seconds(timing):
        return f"no sooner than {low.seconds(timing):.2f} s ({low}); it came after {when:.2f} s", False
    if high is not None and when > high.seconds(timing):
        return f"within {high.seconds(timing):.2f} s ({high}); it came after {when:.2f} s", True
    return "", False


def _profile_note(scenario: Scenario, kind: str, observation: Observation, profile: str) -> str:
    if profile == RFC or matches(kind, observation.status, scenario.expect.outcomes):
        return ""
    return f" under the {profile} profile (the RFCs expect {describe_outcomes(scenario.expect.outcomes, scenario.expect.relay)})"


def describe_outcomes(outcomes: list[Outcome], relay: Relay = Relay()) -> str:
    """Expected outcomes in words: "a 502", "an aborted body or a 502", "a 502 or the upstream's
    response relayed intact without its 'Bad Header' field"."""
    without = " and ".join(quoted(name) for name in relay.without)
    words = {ABORTED: "an aborted body", TIMEOUT: "no answer", "closed": "a close", "reset": "a reset",
             RELAYED: "the upstream's response relayed intact" + (f" without its {without} field" if without else "")}
    return " or ".join(f"a {o}" if isinstance(o, int) else words.get(o, f"a {o} response") for o in outcomes)


def describe(observation: Observation, kind: str, attempts: list[Attempt]) -> str:
    """What the client saw, in words."""
    status, body = observation.status, observation.body_bytes
    upstream = next((response for response in _responses(attempts) if response.status is not None), Response())
    if kind == MASKED:
        declared = upstream.content_length
        of = f"{body} of the {declared} declared bytes" if declared is not None else f"{body} bytes of an unterminated chunked body"
        return f"a complete {observation.framing} {status} of {of} (masked truncation: the proxy hid the upstream's failure)"
    if kind == STATUS:
        origin = " (passed through: the upstream sent it)" if status == upstream.status and status >= 500 else ""
        return f"a complete {status} with a {body}-byte body{origin}"
    if kind == ABORTED:
        return _describe_aborted(observation)
    if kind == MALFORMED:
        return f"an invalid HTTP/1.1 response ({observation.detail[:80]})"
    if kind == TIMEOUT:
        head = f"a {status} head, then " if status is not None else ""
        return f"{head}nothing more within the probe's {observation.elapsed:.1f} s limit"
    ending = "closed (FIN)" if kind == "closed" else "reset (RST)"
    return f"the connection {ending} with no response byte after {observation.elapsed:.2f} s"


def _describe_aborted(observation: Observation) -> str:
    end = {"fin": "a close", "rst": "a reset"}.get(observation.ending, "the end")
    if observation.status is None and observation.interim:
        codes = " and ".join(map(str, observation.interim))
        return f"an interim {codes} response, then no final response before {end}"
    if observation.status is None:
        return f"a response cut off in its head by {end}"
    declared = observation.header(b"content-length")
    if observation.framing == "chunked":
        shortfall = "without its last chunk"
    elif declared is not None:
        shortfall = f"of the {declared.decode()} declared"
    else:
        shortfall = "before its framing was complete"
    return f"a {observation.status} whose {observation.framing} body ended after {observation.body_bytes} bytes {shortfall}, by {end}"
