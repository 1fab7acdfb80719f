"""The planner: (scenario, request, generator, timing) -> Plan. Pure and deterministic.

Invariant: the same arguments (and a generator in the same state) always give the same plan.
Each step kind maps to one function in STEP_PLANNERS; each returns the actions for its step and
updates the running account of what the response declares. Consecutive sends are merged, so that a
response with no waits in it goes out in one write, as a real server's would.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos_upstream.model import steps as s
from chaos_upstream.model.durations import Timing, resolve
from chaos_upstream.model.scenario import Match, Scenario
from chaos_upstream.plan import wirebytes
from chaos_upstream.plan.actions import (
    Action,
    Close,
    HalfClose,
    Hang,
    KeepAlive,
    Plan,
    Reset,
    Response,
    Send,
    Wait,
)
from chaos_upstream.plan.request import RequestInfo

Lookup = Callable[[str], Scenario]

BLANK_RESPONSE: dict[str, Any] = dict(vars(Response()))
"""What a response declares before any step: the planning pass's account starts as a copy (not
`asdict`, which copies deeply and cost a twentieth of a request)."""


@dataclass
class Context:
    """The running state of one planning pass (local to `plan`, never shared)."""

    request: RequestInfo | None
    timing: Timing
    rng: random.Random
    clock: float = 0.0
    """Offset of the next action from the plan's start, in seconds."""
    response: dict[str, Any] = field(default_factory=BLANK_RESPONSE.copy)
    """The running account of what the response declares; frozen into a Response at the end."""

    def seconds(self, duration: Any) -> float:
        return resolve(duration, self.timing, self.rng)

    def wait(self, seconds: float) -> Wait:
        self.clock += seconds
        return Wait(self.clock)

    def body(self, data: bytes) -> Iterator[Action]:
        """Body bytes, counted; none go on the wire for a HEAD request, as HTTP requires."""
        self.response["body_bytes"] += len(data)
        if data and not (self.request and self.request.method == "HEAD"):
            yield Send(data)


def plan(
    scenario: Scenario,
    request: RequestInfo | None,
    rng: random.Random,
    timing: Timing,
    lookup: Lookup,
) -> Plan:
    """The plan for `request` (None for a connection just accepted) under `scenario`."""
    rule, steps = select_steps(scenario, request, lookup)
    context = Context(request, timing, rng)
    actions = [action for step in steps for action in STEP_PLANNERS[type(step)](step, context)]
    if not actions or not isinstance(actions[-1], (Close, Reset, HalfClose, Hang, KeepAlive)):
        actions.append(Close())
    if isinstance(actions[-1], KeepAlive) and request is not None and not request.keep_alive:
        actions[-1] = Close()
    return Plan(scenario.name, rule, tuple(_merge_sends(actions)), Response(**context.response))


def no_lookup(name: str) -> Scenario:
    """The lookup for a plan of a scenario's default steps, its rules set aside: nothing to look up."""
    raise LookupError(name)


def select_steps(
    scenario: Scenario, request: RequestInfo | None, lookup: Lookup
) -> tuple[int | None, Sequence[s.Step]]:
    """The first rule matching `request`, with its steps; else (None, the default steps)."""
    if request is not None:
        for index, rule in enumerate(scenario.rules):
            if matches(rule.when, request):
                steps = rule.steps if rule.steps is not None else lookup(rule.scenario or "").steps
                return index, steps
    return None, scenario.steps


def matches(when: Match, request: RequestInfo) -> bool:
    """True when every condition of `when` holds for `request`."""
    return (
        (when.method is None or request.method in when.method)
        and (when.path is None or fnmatch.fnmatchcase(request.match_path, when.path))
        and all(
            (value := request.header(name)) is not None and fnmatch.fnmatchcase(value, pattern)
            for name, pattern in when.headers.items()
        )
        and (when.request is None or when.request.contains(request.ordinal))
        and (when.on_connection is None or when.on_connection.contains(request.on_connection))
        and (when.attempt is None or when.attempt.contains(request.attempt))
    )


def _merge_sends(actions: list[Action]) -> Iterator[Action]:
    pending = b""
    for action in actions:
        if isinstance(action, Send):
            pending += action.data
            continue
        if pending:
            yield Send(pending)
            pending = b""
        yield action


def _status(step: s.Status, context: Context) -> Iterator[Action]:
    if step.raw is not None:
        context.response["status"] = None
        yield Send(step.raw)
        return
    if step.code >= 200:
        context.response["status"] = step.code
    yield Send(wirebytes.status_line(step.version, step.code, step.reason))


def _headers(step: s.Headers, context: Context) -> Iterator[Action]:
    lengths = [value.strip() for name, value in step.fields if name.lower() == b"content-length"]
    chunked = any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower() for name, value in step.fields
    )
    declared = int(lengths[0]) if len(set(lengths)) == 1 and lengths[0].isdigit() else None
    final = context.response["status"] is not None
    if final:
        context.response.update(content_length=declared, chunked=chunked, head_complete=step.end)
    yield Send(wirebytes.header_block(step.fields, end=step.end, pad_to=step.pad_to))


def _body(step: s.Body, context: Context) -> Iterator[Action]:
    start = context.response["body_bytes"]
    data = step.content if step.content is not None else wirebytes.filler(start, step.length or 0)
    yield from context.body(data)


def _chunked(step: s.Chunked, context: Context) -> Iterator[Action]:
    framed = []
    for size in step.chunks:
        framed.append(wirebytes.chunk(wirebytes.filler(context.response["body_bytes"], size)))
        context.response["body_bytes"] += size
    if step.last:
        framed.append(wirebytes.last_chunk(step.trailers))
        context.response["last_chunk"] = True
    if not (context.request and context.request.method == "HEAD"):
        yield Send(b"".join(framed))


def _raw(step: s.Raw, context: Context) -> Iterator[Action]:
    yield Send(step.data * step.repeat)


def _sleep(step: s.Sleep, context: Context) -> Iterator[Action]:
    yield context.wait(context.seconds(step.duration))


def _drip(step: s.Drip, context: Context) -> Iterator[Action]:
    sent = 0
    while sent < step.length:
        if sent:
            yield context.wait(context.seconds(step.every))
        size = min(step.size, step.length - sent)
        yield from context.body(wirebytes.filler(context.response["body_bytes"], size))
        sent += size


def _close(step: s.Close, context: Context) -> Iterator[Action]:
    yield Close(close_notify=step.close_notify)


def _reset(step: s.Reset, context: Context) -> Iterator[Action]:
    yield Reset()


def _optional(duration: Any, context: Context) -> float | None:
    return None if duration is None else context.seconds(duration)


def _half_close(step: s.HalfClose, context: Context) -> Iterator[Action]:
    yield HalfClose(_optional(step.limit, context))


def _hang(step: s.Hang, context: Context) -> Iterator[Action]:
    yield Hang(_optional(step.limit, context))


def _keep_alive(step: s.KeepAlive, context: Context) -> Iterator[Action]:
    yield KeepAlive(_optional(step.idle_close, context))


STEP_PLANNERS: dict[type, Callable[[Any, Context], Iterator[Action]]] = {
    s.Status: _status,
    s.Headers: _headers,
    s.Body: _body,
    s.Chunked: _chunked,
    s.Raw: _raw,
    s.Sleep: _sleep,
    s.Drip: _drip,
    s.Close: _close,
    s.Reset: _reset,
    s.HalfClose: _half_close,
    s.Hang: _hang,
    s.KeepAlive: _keep_alive,
}
"""Step kind -> planner; a test checks every member of the Step union has one."""
