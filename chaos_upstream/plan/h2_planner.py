"""The HTTP/2 planner: (scenario, request, generator, timing) -> the plan of the request's stream.

Pure and deterministic, as `planner.plan` is. A scenario of HTTP/2 frames (`http2`) is planned from
them (its rules too: a rule's frames, or another scenario's plan); any other is planned as over
HTTP/1.1 and read as HTTP/2 (`h2_translate`), or refused with the reason it has no equivalent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from chaos_upstream.model import h2_steps as h2
from chaos_upstream.model import steps as s
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan import wirebytes
from chaos_upstream.plan.actions import Close, Hang, Plan, Reset, Response
from chaos_upstream.plan.h2_actions import Data, Frame, GoAway, H2Action, Headers, RstStream, Trailers
from chaos_upstream.plan.h2_translate import NoEquivalent, translate
from chaos_upstream.plan.planner import Context, Lookup, matches, no_lookup, plan
from chaos_upstream.plan.request import RequestInfo


HTTP1_ONLY = "its fault is HTTP/1.1's own (protocol: http1), which its steps would not keep over HTTP/2"


def plan_h2(scenario: Scenario, request: RequestInfo, rng: random.Random, timing: Timing, lookup: Lookup) -> Plan | NoEquivalent:
    """The plan of `request`'s stream under `scenario`, or why the scenario has no HTTP/2 form."""
    if scenario.protocol == "http1":
        return NoEquivalent(scenario.name, HTTP1_ONLY)
    if not scenario.http2:
        return translate(plan(scenario, request, rng, timing, lookup), request.method)
    for index, rule in enumerate(scenario.rules):
        if matches(rule.when, request):
            if rule.http2 is not None:
                return _frames(scenario.name, index, rule.http2, request, rng, timing)
            other = lookup(rule.scenario or "").model_copy(update={"rules": []})
            planned = plan_h2(other, request, rng, timing, lookup)
            return planned if isinstance(planned, NoEquivalent) else replace(planned, scenario=scenario.name, rule=index)
    return _frames(scenario.name, None, scenario.http2, request, rng, timing)


def no_equivalent(scenario: Scenario) -> str | None:
    """Why a request-level scenario's default steps have no HTTP/2 form (None when they have one,
    or it answers no request: a timeline, a connection-level fault, a refusing port)."""
    if scenario.protocol == "http1":
        return HTTP1_ONLY
    if scenario.http2 or scenario.timeline or scenario.trigger != "request" or not scenario.steps:
        return None
    request = RequestInfo(scenario.probes.method, "/")
    planned = translate(plan(scenario.model_copy(update={"rules": []}), request, random.Random(0), Timing(), no_lookup), request.method)
    return planned.reason if isinstance(planned, NoEquivalent) else None


def _frames(name: str, rule: int | None, steps: list[Any], request: RequestInfo, rng: random.Random, timing: Timing) -> Plan:
    context = Context(request, timing, rng, response=dict(vars(Response(chunked=True))))
    actions = [action for step in steps for action in STEP_PLANNERS[type(step)](step, context)]
    return Plan(name, rule, tuple(actions), Response(**context.response))  # type: ignore[arg-type]


def _headers(step: h2.H2Headers, context: Context) -> Iterator[H2Action]:
    if step.status >= 200:
        lengths = {value.strip() for name, value in step.fields if name.lower() == b"content-length"}
        length = next(iter(lengths)) if len(lengths) == 1 else b""
        context.response.update(status=step.status, content_length=int(length) if length.isdigit() else None,
                                head_complete=True, last_chunk=step.end_stream)
    yield Headers(step.status, tuple(step.fields), step.end_stream)


def _data(step: h2.H2Data, context: Context) -> Iterator[H2Action]:
    start = context.response["body_bytes"]
    data = step.content if step.content is not None else wirebytes.filler(start, step.length or 0)
    context.response["body_bytes"] = start + len(data)
    context.response["last_chunk"] = context.response["last_chunk"] or step.end_stream
    yield Data(data, step.end_stream)


def _trailers(step: h2.H2Trailers, context: Context) -> Iterator[H2Action]:
    context.response["last_chunk"] = True
    yield Trailers(tuple(step.fields))


def _rst_stream(step: h2.H2RstStream, context: Context) -> Iterator[H2Action]:
    yield RstStream(step.code)


def _goaway(step: h2.H2Goaway, context: Context) -> Iterator[H2Action]:
    yield GoAway(step.code, step.last_stream)


def _frame(step: h2.H2Frame, context: Context) -> Iterator[H2Action]:
    yield Frame(step.type, step.flags, step.stream == "connection", step.payload)


def _sleep(step: s.Sleep, context: Context) -> Iterator[H2Action]:
    yield context.wait(context.seconds(step.duration))


def _close(step: s.Close, context: Context) -> Iterator[H2Action]:
    yield Close(close_notify=step.close_notify)


def _reset(step: s.Reset, context: Context) -> Iterator[H2Action]:
    yield Reset()


def _hang(step: s.Hang, context: Context) -> Iterator[H2Action]:
    yield Hang(None if step.limit is None else context.seconds(step.limit))


STEP_PLANNERS: dict[type, Any] = {
    h2.H2Headers: _headers,
    h2.H2Data: _data,
    h2.H2Trailers: _trailers,
    h2.H2RstStream: _rst_stream,
    h2.H2Goaway: _goaway,
    h2.H2Frame: _frame,
    s.Sleep: _sleep,
    s.Close: _close,
    s.Reset: _reset,
    s.Hang: _hang,
}
"""HTTP/2 step kind -> planner; a test checks every member of the H2Step union has one."""
