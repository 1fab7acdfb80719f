"""Judging a stream of probes: counts by kind, inside and outside the windows members were down,
the recovery after each return, the attempts per probe, and the verdict with numbers in its reason.

Pure: a function of the scenario, the probes' samples (observation + journal attempts + when each was
sent), the windows of the timeline, the fleet size, the profile and the timing settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.timeline import Window
from chaos_upstream.verifier.judge import FAIL, INCONCLUSIVE, MASKED, NON_IDEMPOTENT, PASS, Verdict, describe_outcomes, kind_of, matches
from chaos_upstream.verifier.probe import Sample


@dataclass(frozen=True)
class Recovery:
    """After a member's return: when the client first got a good answer, and when a probe first reached that member."""

    member: int
    back: float
    first_success: float | None
    """Seconds from the return to the first probe (sent after it) that got an expected answer."""
    first_attempt: float | None
    """Seconds from the return to the first probe (sent after it) that reached this member."""

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "back_at_s": round(self.back, 3),
                "first_success_s": _rounded(self.first_success), "back_in_rotation_s": _rounded(self.first_attempt)}


@dataclass(frozen=True)
class Tally:
    """What a stream of probes saw."""

    requests: int
    kinds: Counter[str]
    """Probes by what the client saw: "status 200", "status 502", "aborted 200", "reset", ..."""
    errors: list[Sample]
    late: list[Sample]
    """The errors not excused: of probes in flight while no member was down, nor within the
    scenario's recovery after a return."""
    windows: list[Window]
    recoveries: list[Recovery]
    replayed: int
    """Probes that reached the upstreams more than once."""
    unreached: int
    """Probes that reached no upstream at all."""

    @property
    def excused(self) -> int:
        return len(self.errors) - len(self.late)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            **{kind: n for kind, n in sorted(self.kinds.items())},
            "errors": len(self.errors),
            "errors_while_down": self.excused,
            "errors_outside_down": len(self.late),
            "retried": self.replayed,
            "unreached": self.unreached,
            "down": [{"member": w.member, "from_s": round(w.start, 3), "to_s": _rounded(w.end)} for w in self.windows],
            "recovery": [recovery.to_json() for recovery in self.recoveries],
        }


def tally(scenario: Scenario, samples: Sequence[Sample], windows: Sequence[Window], profile: str, timing: Timing) -> Tally:
    outcomes = scenario.expect.for_profile(profile)
    grace = scenario.expect.recovery.seconds(timing) if scenario.expect.recovery is not None else 0.0
    kinds: Counter[str] = Counter()
    judged = []
    for sample in samples:
        kind = kind_of(sample.observation, list(sample.attempts))
        status = sample.observation.status
        kinds[kind + (f" {status}" if status is not None else "")] += 1
        judged.append((sample, matches(kind, status, outcomes)))
    errors = [sample for sample, good in judged if not good]
    late = [sample for sample in errors if not _excused(sample, windows, grace)]
    recoveries = [_recovery(window, judged) for window in windows if window.end is not None]
    return Tally(
        requests=len(samples), kinds=kinds, errors=errors, late=late, windows=list(windows), recoveries=recoveries,
        replayed=sum(len(s.attempts) > 1 for s in samples), unreached=sum(not s.attempts for s in samples),
    )


def _excused(sample: Sample, windows: Sequence[Window], grace: float) -> bool:
    """Whether the probe was in flight while a member was down, or within `grace` after its return."""
    return any(w.overlaps(sample.sent, sample.sent + sample.observation.elapsed, grace) for w in windows)


def _recovery(window: Window, judged: Sequence[tuple[Sample, bool]]) -> Recovery:
    """After `window`'s return: the first probe that got an expected answer, and the first that
    reached the member; `judged` pairs each sample with whether its answer was expected."""
    assert window.end is not None
    after = [(s, good) for s, good in judged if s.sent >= window.end]
    success = next((s.sent for s, good in after if good), None)
    attempt = next((s.sent for s, _ in after if any(a.member == window.member for a in s.attempts)), None)
    return Recovery(window.member, window.end, _since(success, window.end), _since(attempt, window.end))


def judge_stream(
    scenario: Scenario, counts: Tally, *, members: int, method: str, profile: str, timing: Timing
) -> Verdict:
    """The verdict on a whole stream; the reason names the numbers.  Without a timeline, errors that
    never reached the upstream prove nothing (as for a single probe): when all errors are such, the
    stream is inconclusive.  With one, they are what a down member looks like, and count."""
    expected = _expected(scenario, profile, timing)
    seen = _seen(counts)
    if scenario.timeline and members < scenario.min_members:
        reason = (f"{scenario.name} needs a fleet of at least {scenario.min_members} upstreams and the proxy has "
                  f"{members}: give --upstream {scenario.min_members} times")
        return Verdict(INCONCLUSIVE, "stream", expected, reason)
    if counts.unreached == counts.requests:
        return Verdict(INCONCLUSIVE, "stream", expected, f"no probe reached the upstreams, so nothing was tested: {seen}")
    unreached = [sample for sample in counts.errors if not sample.attempts]
    if not scenario.timeline and unreached and len(unreached) == len(counts.errors):
        reason = (f"{len(unreached)} probes got an error from the proxy without reaching the upstream (it answered on "
                  f"its own, e.g. having marked the upstream down after an earlier fault), so they prove nothing: {seen}")
        return Verdict(INCONCLUSIVE, "stream", expected, reason)
    masked = sum(n for kind, n in counts.kinds.items() if kind.startswith(MASKED))
    if masked:
        return Verdict(FAIL, "stream", expected, f"{masked} probes got a masked truncation; {seen}")
    if method in NON_IDEMPOTENT and counts.replayed:
        return Verdict(FAIL, "stream", expected, f"the proxy replayed a {method}: {counts.replayed} of {counts.requests} "
                                                 f"probes reached the upstreams more than once; {seen}")
    allowed = scenario.expect.errors == "while-down"
    if counts.errors and (not allowed or counts.late):
        return Verdict(FAIL, "stream", expected, f"expected {expected}; {seen}{_late(counts)}")
    return Verdict(PASS, "stream", expected, f"{seen}, as expected{_recovered(counts)}")


def _expected(scenario: Scenario, profile: str, timing: Timing) -> str:
    answer = describe_outcomes(scenario.expect.for_profile(profile), scenario.expect.relay)
    if scenario.expect.errors == "none":
        return f"{answer} on every probe"
    recovery = scenario.expect.recovery
    within = f" and at most {recovery} ({recovery.seconds(timing):.2f} s) after they are back" if recovery else ""
    return f"{answer} on every probe but while members are down{within}"


def _seen(counts: Tally) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.kinds.most_common())
    text = f"{counts.requests} probes got {kinds}"
    if counts.errors and counts.windows:
        text += f"; {len(counts.errors)} errors, {counts.excused} of them while a member was down"
    if counts.replayed:
        text += f"; {counts.replayed} probes reached the upstreams more than once (retried)"
    return text


def _late(counts: Tally) -> str:
    """Where the unexcused errors fall, in words the user can act on."""
    late = counts.late
    if not late or not counts.windows:
        return ""
    ends = [w for w in counts.windows if w.end is not None and w.end <= late[-1].sent]
    if not ends:
        return f"; errors came before any member went down (first at {late[0].sent:.2f} s)"
    back = max(w.end or 0.0 for w in ends)
    who = " and ".join(str(w.member) for w in ends if w.end == back)
    members = f"members {who} were" if " and " in who else f"member {who} was"
    passed = sum(_passed_through(sample) for sample in late)
    why = ("the proxy passed on answers the members gave while not ready" if passed == len(late)
           else "the proxy kept failing after the upstream returned")
    return f"; the last error came {late[-1].sent - back:.2f} s after {members} back: {why}"


def _passed_through(sample: Sample) -> bool:
    """Whether the client got a status a member itself sent (a 503 while starting), not the proxy's own."""
    status = sample.observation.status
    return status is not None and any(a.response is not None and a.response.status == status for a in sample.attempts)


def _recovered(counts: Tally) -> str:
    times = [r.first_success for r in counts.recoveries if r.first_success is not None]
    return f"; the first success came {max(times):.2f} s after a return at worst" if times else ""


def _since(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
