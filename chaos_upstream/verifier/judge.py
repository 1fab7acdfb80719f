"""Judging: what the client saw, joined with what the upstream did, against what was expected.

Pure: a verdict is a function of the scenario, the client's Observation, the journal records of the
probe's attempts (None when the journal could not be consulted), the profile and the timing settings.
Invariants: a probe that the journal shows never reached the upstream is never a pass (but for a
refusing port, which nothing can reach); a complete response
carrying less body than the upstream declared is masked truncation, a failure whatever was
expected; a non-idempotent request that reached the upstream more than once is a failure whatever
the client saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import PROFILES, RFC, Outcome, Scenario
from chaos_upstream.verifier.classify import ABORTED, MALFORMED, STATUS, TIMEOUT, Observation

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
MASKED = "masked-truncation"

NON_IDEMPOTENT = {"POST", "PATCH"}
"""Methods a proxy must not replay once they may have reached the upstream (RFC 9110 9.2.2)."""


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


def judge(
    scenario: Scenario,
    observation: Observation,
    attempts: list[dict[str, Any]] | None,
    *,
    method: str = "GET",
    profile: str = RFC,
    timing: Timing = Timing(),
) -> Verdict:
    """The verdict on one probe of `scenario`.  With `attempts` None (no journal to ask, as in a load
    test without the admin API) it rests on what the client saw alone: the checks that need the
    journal (never reached, replayed, masked truncation) are not made."""
    outcomes = scenario.expect.for_profile(profile)
    expected = describe_outcomes(outcomes)
    joined, attempts = attempts is not None, attempts or []
    kind = kind_of(observation, attempts)
    seen = describe(observation, kind, attempts)
    if joined and not attempts and scenario.trigger != "refuse":
        reason = f"the probe never reached the upstream, so it proves nothing about this fault: the client saw {seen}"
        return Verdict(INCONCLUSIVE, kind, expected, reason + " (the proxy answered on its own, e.g. from an earlier failure)")
    if method in NON_IDEMPOTENT and len(attempts) > 1:
        reason = f"the proxy replayed a {method} to the upstream ({len(attempts)} attempts); the client saw {seen}"
        return Verdict(FAIL, kind, expected, reason)
    if not matches(kind, observation.status, outcomes):
        return Verdict(FAIL, kind, expected, f"expected the client to see {expected}; it saw {seen}")
    late = _timing_problem(scenario, observation, kind, timing)
    if late:
        return Verdict(FAIL, kind, expected, f"expected {expected} {late}")
    note = _profile_note(scenario, kind, observation, profile)
    return Verdict(PASS, kind, expected, f"the client saw {seen}, as expected{note}", profile_only=bool(note))


def kind_of(observation: Observation, attempts: list[dict[str, Any]]) -> str:
    """What the client saw, with masked truncation (judged against the attempts) told apart."""
    return MASKED if _masked(observation, attempts) else observation.kind


def _masked(observation: Observation, attempts: list[dict[str, Any]]) -> bool:
    """A complete response from the upstream's status, with less body than the upstream declared."""
    if observation.kind != STATUS:
        return False
    for attempt in attempts:
        response = attempt.get("response", {})
        if response.get("status") == observation.status and _truncated(response) and observation.body_bytes < _declared(response):
            return True
    return False


def _truncated(response: dict[str, Any]) -> bool:
    """The upstream's response declared more body than it sent (or left its chunked body unterminated)."""
    if not response.get("head_complete"):
        return False
    length = response.get("content_length")
    if length is not None:
        return response["body_bytes"] < length
    return bool(response.get("chunked")) and not response.get("last_chunk")


def _declared(response: dict[str, Any]) -> float:
    length = response.get("content_length")
    return float(length) if length is not None else float("inf")


def matches(kind: str, status: int | None, outcomes: list[Outcome]) -> bool:
    """Whether what the client saw is one of the outcomes."""
    return any(
        (kind == STATUS and status == outcome) if isinstance(outcome, int) else kind == outcome for outcome in outcomes
    )


def _timing_problem(scenario: Scenario, observation: Observation, kind: str, timing: Timing) -> str:
    """Why the outcome came too soon or too late, or "" when it came in time (or no bounds are set)."""
    when = observation.first_byte if kind == STATUS and observation.first_byte is not None else observation.elapsed
    low, high = scenario.expect.min_elapsed, scenario.expect.max_elapsed
    if low is not None and when < low.seconds(timing):
        return f"no sooner than {low.seconds(timing):.2f} s ({low}); it came after {when:.2f} s"
    if high is not None and when > high.seconds(timing):
        return f"within {high.seconds(timing):.2f} s ({high}); it came after {when:.2f} s"
    return ""


def _profile_note(scenario: Scenario, kind: str, observation: Observation, profile: str) -> str:
    if profile == RFC or matches(kind, observation.status, scenario.expect.outcomes):
        return ""
    return f" under the {profile} profile (the RFCs expect {describe_outcomes(scenario.expect.outcomes)})"


def describe_outcomes(outcomes: list[Outcome]) -> str:
    """Expected outcomes in words: "a 502", "an aborted body or a 502"."""
    words = {ABORTED: "an aborted body", TIMEOUT: "no answer", "closed": "a close", "reset": "a reset"}
    return " or ".join(f"a {o}" if isinstance(o, int) else words.get(o, f"a {o} response") for o in outcomes)


def describe(observation: Observation, kind: str, attempts: list[dict[str, Any]]) -> str:
    """What the client saw, in words."""
    status, body = observation.status, observation.body_bytes
    upstream = next((a.get("response", {}) for a in attempts if a.get("response", {}).get("status") is not None), {})
    if kind == MASKED:
        declared = upstream.get("content_length")
        of = f"{body} of the {declared} declared bytes" if declared is not None else f"{body} bytes of an unterminated chunked body"
        return f"a complete {observation.framing} {status} of {of} (masked truncation: the proxy hid the upstream's failure)"
    if kind == STATUS:
        origin = " (passed through: the upstream sent it)" if status == upstream.get("status") and status >= 500 else ""
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
