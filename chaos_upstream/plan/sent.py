"""What the upstream sends for a scenario, read back: its response as a head and a body, and the
longest silence in it. What the judge holds a proxy's answer against.

Pure, like the planner it plans with: the same scenario, method and timing always give the same
answer. `read_head` reads a head leniently (a field line is what precedes its first colon and what
follows), so that the fields an HTTP parser refuses, such as a name with a space, are still seen.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from chaos_upstream.model.durations import Span, Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.model.steps import Drip, Sleep
from chaos_upstream.plan.actions import Close, HalfClose, Plan, Reset, Send, Wait
from chaos_upstream.plan.h2_actions import Data, Headers
from chaos_upstream.plan.h2_planner import plan_h2
from chaos_upstream.plan.h2_translate import NoEquivalent
from chaos_upstream.plan.planner import no_lookup, plan
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.plan.wirebytes import HEAD_END

Field = tuple[bytes, bytes]

STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})(?:[ \r]|$)")


@dataclass(frozen=True)
class Head:
    """A final response head, read leniently from the bytes."""

    status: int | None
    """The status code, or None when the first line is no status line."""
    fields: tuple[Field, ...]
    """(name, value) per field line, in order: the name as it was (its case, any space in it), the
    value without the whitespace around it; a line with no colon is a name with an empty value."""
    end: int
    """Where the body begins in the bytes read."""


def read_head(data: bytes) -> Head | None:
    """The final head at the start of `data` (interim 1xx heads skipped), or None when no head in
    it is complete."""
    start = 0
    while (end := HEAD_END.search(data, start)) is not None:
        first, *lines = data[start : end.start()].split(b"\n")
        match = STATUS_LINE.match(first)
        status = int(match.group(1)) if match else None
        if status is not None and 100 <= status < 200:
            start = end.end()
            continue
        return Head(status, tuple(_field(line.rstrip(b"\r")) for line in lines), end.end())
    return None


def _field(line: bytes) -> Field:
    name, _, value = line.partition(b":")
    return name, value.strip(b" \t")


@dataclass(frozen=True)
class Sent:
    """The response the steps put on the wire, read back."""

    status: int | None
    fields: tuple[Field, ...]
    body: bytes
    """The body bytes as sent (after the head, framing included: steps send bytes, not messages)."""


def sent(scenario: Scenario, method: str = "GET", timing: Timing = Timing()) -> Sent:
    """What the scenario's default steps send in answer to a `method` request (the plan of a first
    request on a connection, with a generator seeded 0: distributions are drawn from it); for HTTP/2
    frames, the final HEADERS and the DATA."""
    if scenario.http2:
        return _sent_h2(scenario, method, timing)
    data = b"".join(action.data for action in _plan(scenario, method, timing).actions if isinstance(action, Send))
    head = read_head(data)
    if head is None:
        return Sent(None, (), b"")
    return Sent(head.status, head.fields, data[head.end :])


def _sent_h2(scenario: Scenario, method: str, timing: Timing) -> Sent:
    planned = plan_h2(scenario.model_copy(update={"rules": []}), RequestInfo(method, "/"), random.Random(0), timing, no_lookup)
    actions = () if isinstance(planned, NoEquivalent) else planned.actions
    heads = [action for action in actions if isinstance(action, Headers) and action.status >= 200]
    body = b"".join(action.data for action in actions if isinstance(action, Data))
    return Sent(heads[0].status, heads[0].fields, body) if heads else Sent(None, (), b"")


def _plan(scenario: Scenario, method: str, timing: Timing) -> Plan:
    """The plan of the default steps (rules set aside) for a first `method` request to `/`."""
    return plan(scenario.model_copy(update={"rules": []}), RequestInfo(method, "/"), random.Random(0), timing, no_lookup)


@dataclass(frozen=True)
class Silence:
    """The upstream's longest silence in a response: when it ends, and what the upstream does then."""

    ends: float
    """Seconds from the request."""
    then: str
    """"answered" (its first byte), "resumed" (more bytes), "closed" or "reset"."""


def longest_silence(scenario: Scenario, timing: Timing = Timing()) -> Silence | None:
    """The longest wait in the default steps' response to a GET, and what ends it; None when they
    never wait, or their waits are drawn from a distribution (no one time to name), or the longest
    one is followed by nothing the client could see (a hang)."""
    waits = [step.duration if isinstance(step, Sleep) else step.every for step in scenario.steps
             if isinstance(step, (Sleep, Drip))]
    if not waits or not all(isinstance(duration, Span) for duration in waits):
        return None
    clock, longest, sent_any, best = 0.0, 0.0, False, None
    actions = _plan(scenario, "GET", timing).actions
    for index, action in enumerate(actions):
        if isinstance(action, Send):
            sent_any = True
        if not isinstance(action, Wait):
            continue
        gap, clock = action.until - clock, action.until
        after = actions[index + 1] if index + 1 < len(actions) else None
        then = _then(after, sent_any)
        if gap > longest and then is not None:
            longest, best = gap, Silence(action.until, then)
    return best


def _then(action: object, sent_any: bool) -> str | None:
    if isinstance(action, Send):
        return "resumed" if sent_any else "answered"
    if isinstance(action, (Close, HalfClose)):
        return "closed"
    if isinstance(action, Reset):
        return "reset"
    return None
