"""What the healthy path skips still holds: the plan cache answers exactly as the planner would (and
draws from the generator exactly as it would), the journal encodes as before, and a head measured
only when it could be too large is refused exactly as when every head was measured, and a request
head is known by its bytes only when they are one whole request without a body."""

import json
import random

import h11
import pytest

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.loading import parse
from chaos_upstream.plan.actions import Close, KeepAlive, Send
from chaos_upstream.plan.cache import PlanCache, fixed
from chaos_upstream.plan.planner import plan
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.server.journal import ENCODE
from chaos_upstream.server.reading import KEY_LIMIT, MAX_HEAD, KnownHeads, RequestReader, _checked, _counted_size
from chaos_upstream.server.wire import Wire

from conftest import CATALOGUE

KINDS = [
    None,
    RequestInfo("GET", "/"),
    RequestInfo("HEAD", "/"),
    RequestInfo("POST", "/", keep_alive=False),
    RequestInfo("HEAD", "/", keep_alive=False),
]
"""A request of every kind a fixed plan may depend on (None: a connection just accepted)."""


def make(text: str):
    return parse("name: t\ndescription: t\nphase: body\nexpect: {outcomes: [200]}\n" + text, "t.yaml")


@pytest.mark.parametrize("name", [scenario.name for scenario in CATALOGUE if scenario.steps or scenario.rules and not scenario.http2])
def test_every_catalogue_scenario_plans_as_the_planner_does_twice_over(name):
    scenario, cache = CATALOGUE.get(name), PlanCache()
    for request in KINDS * 2:
        cached_rng, planned_rng = random.Random(7), random.Random(7)
        cached = cache.plan(scenario, request, cached_rng, Timing(0.25), CATALOGUE.get)
        assert cached == plan(scenario, request, planned_rng, Timing(0.25), CATALOGUE.get)
        assert cached_rng.getstate() == planned_rng.getstate()


def test_a_fixed_scenario_is_planned_once_per_kind_of_request():
    cache, healthy = PlanCache(), CATALOGUE.get("healthy")
    first = cache.plan(healthy, RequestInfo("GET", "/a"), random.Random(1), Timing(1.0), CATALOGUE.get)
    again = cache.plan(healthy, RequestInfo("PUT", "/b", on_connection=5), random.Random(2), Timing(1.0), CATALOGUE.get)
    closing = cache.plan(healthy, RequestInfo("GET", "/a", keep_alive=False), random.Random(1), Timing(1.0), CATALOGUE.get)
    head = cache.plan(healthy, RequestInfo("HEAD", "/a"), random.Random(1), Timing(1.0), CATALOGUE.get)
    assert again is first and first.terminal == KeepAlive()
    assert closing.terminal == Close()
    assert head.actions[0] == Send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n")


def test_the_timing_is_part_of_what_a_fixed_plan_is_made_for():
    cache, slow = PlanCache(), CATALOGUE.get("slow-headers")
    short = cache.plan(slow, RequestInfo("GET", "/"), random.Random(0), Timing(0.25), CATALOGUE.get)
    long = cache.plan(slow, RequestInfo("GET", "/"), random.Random(0), Timing(1.0), CATALOGUE.get)
    assert (short.actions[0].until, long.actions[0].until) == (1.0, 4.0)


def test_a_scenario_with_a_drawn_duration_is_planned_anew_each_time():
    scenario = make("steps:\n  - {kind: sleep, duration: {uniform: [0s, 10s]}}\n  - {kind: status}\n")
    cache, rng = PlanCache(), random.Random(3)
    plans = [cache.plan(scenario, RequestInfo("GET", "/"), rng, Timing(1.0), CATALOGUE.get) for _ in range(3)]
    assert not fixed(scenario)
    assert len({p.actions[0].until for p in plans}) == 3


def test_a_scenario_with_rules_is_planned_for_each_request():
    scenario = make("rules:\n  - when: {path: /x}\n    steps: [{kind: reset}]\nsteps: [{kind: status}, {kind: keep-alive}]\n")
    cache = PlanCache()
    plain = cache.plan(scenario, RequestInfo("GET", "/"), random.Random(0), Timing(1.0), CATALOGUE.get)
    matched = cache.plan(scenario, RequestInfo("GET", "/x"), random.Random(0), Timing(1.0), CATALOGUE.get)
    assert not fixed(scenario) and (plain.rule, matched.rule) == (None, 0)


def test_a_scenario_loaded_again_is_planned_afresh():
    cache = PlanCache()
    first = cache.plan(make("steps: [{kind: status, code: 201}]"), None, random.Random(0), Timing(1.0), CATALOGUE.get)
    second = cache.plan(make("steps: [{kind: status, code: 202}]"), None, random.Random(0), Timing(1.0), CATALOGUE.get)
    assert (first.response.status, second.response.status) == (201, 202)


def test_the_journal_encodes_records_as_compact_json_did():
    record = {"type": "request", "t": 1.5, "target": "/é\u2028", "response": {"status": None}, "actions": [{"do": "send"}]}
    assert ENCODE(record) == json.dumps(record, separators=(",", ":"))


def _head(fields: list[tuple[bytes, bytes]]) -> h11.Request:
    return h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"x"), *fields])


@pytest.mark.parametrize("lines", [MAX_HEAD // 5 + 1, MAX_HEAD // 4])
def test_a_head_counted_over_the_limit_is_refused_however_few_bytes_it_came_in(lines):
    """The shortest field lines (`a:\\r\\n`, 4 bytes) count 5 each: measured whenever the bytes
    received could hold such a head, and a 431 then, exactly as when every head was measured."""
    head = _head([(b"a", b"")] * lines)
    wire = 16 + 9 + 4 * lines + 2  # request line, host line, the fields, the blank line
    counted = _counted_size(head, tuple(head.headers))
    assert counted > MAX_HEAD and wire <= counted
    with pytest.raises(h11.RemoteProtocolError) as refused:
        _checked(head, wire)
    assert refused.value.error_status_hint == 431


def test_a_head_that_came_in_few_bytes_is_not_measured_and_passes():
    head = _head([(b"x-a", b"b" * 100)] * 10)
    assert _checked(head, MAX_HEAD * 4 // 5).fields == tuple(head.headers)
    assert _counted_size(head, tuple(head.headers)) <= MAX_HEAD


class Pieces:
    """A stream handing over the given pieces, one per read, then b"" (the peer's FIN)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.wire = Wire(self, None)  # type: ignore[arg-type]  # the reader only receives

    async def receive_some(self, max_bytes: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


async def read(known: KnownHeads, *pieces: bytes, leftover: bytes = b"") -> RequestReader:
    reader = RequestReader(Pieces(*pieces).wire, leftover, known)
    assert await reader.read_head() is not None
    reader.awaits_continue()
    await reader.read_body()
    return reader


GET = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Chaos-Scenario: healthy\r\n\r\n"


async def test_a_request_that_came_whole_is_known_by_its_bytes_and_not_parsed_again():
    known = KnownHeads()
    first = await read(known, GET)
    again = await read(known, GET)
    assert len(known) == 1 and again.head is first.head and again.complete and again.leftover == b""
    assert again.head.headers[-1] == ("x-chaos-scenario", "healthy") and again.head.keeps_alive
    assert again.awaits_continue() is False and again.body_bytes == 0


@pytest.mark.parametrize("pieces, leftover", [
    ((GET[:10], GET[10:]), b""),  # came in two reads
    ((GET + GET,), b""),  # another request came after it
    ((b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",), b""),  # a body
    ((b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", b"ab"), b""),  # a 100 awaited
    ((GET[5:],), GET[:5]),  # began in what the previous request left
])
async def test_only_a_whole_bodiless_request_alone_in_one_read_is_remembered(pieces, leftover):
    known = KnownHeads()
    await read(known, *pieces, leftover=leftover)
    assert len(known) == 0


async def test_known_heads_are_bounded_in_count_and_size_and_forget_the_oldest_first():
    known = KnownHeads(size=2)
    heads = [GET.replace(b"/a", b"/%d" % n) for n in range(3)]
    for head in heads:
        await read(known, head)
    assert len(known) == 2 and known.get(heads[0]) is None and known.get(heads[2]) is not None
    huge = GET.replace(b"/a", b"/" + b"x" * KEY_LIMIT)
    await read(known, huge)
    assert known.get(huge) is None
