"""The planner is pure: scenario + request + seeded generator + timing -> the same plan every time."""

import ast
import random
import typing
from pathlib import Path

import pytest

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.loading import parse
from chaos_upstream.model.steps import Step
from chaos_upstream.plan.actions import Close, HalfClose, Hang, KeepAlive, Reset, Send, Wait
from chaos_upstream.plan.planner import STEP_PLANNERS, plan
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.server.wire import ACTION_RUNNERS

from conftest import CATALOGUE

PACKAGE = Path(__file__).resolve().parents[1] / "chaos_upstream"
SANS_IO = ["model", "plan"]


def make(text: str):
    return parse("name: t\ndescription: t\nphase: body\nexpect: {outcomes: [200]}\n" + text, "t.yaml")


def plan_for(scenario, request=None, seed=0, timeout=1.0):
    request = request or RequestInfo("GET", "/")
    return plan(scenario, request, random.Random(seed), Timing(timeout), CATALOGUE.get)


def test_every_step_kind_has_a_planner_and_every_action_a_runner():
    step_types = typing.get_args(typing.get_args(Step)[0])
    assert set(STEP_PLANNERS) == set(step_types)
    assert set(ACTION_RUNNERS) == {Send, Wait, Close, Reset, HalfClose, Hang, KeepAlive}


@pytest.mark.parametrize("folder", SANS_IO)
def test_the_core_never_imports_trio_or_socket(folder):
    for path in (PACKAGE / folder).glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not names & {"trio", "socket", "h11", "time", "asyncio"}, path


def test_consecutive_sends_merge_into_one_write():
    actions = plan_for(CATALOGUE.get("healthy")).actions
    assert actions == (
        Send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nchaos-upstream: healthy\n"),
        KeepAlive(),
    )


def test_drip_waits_are_offsets_from_the_start_so_nothing_drifts():
    actions = plan_for(CATALOGUE.get("drip-body"), timeout=1.0).actions
    waits = [action.until for action in actions if isinstance(action, Wait)]
    assert waits == pytest.approx([0.3 * n for n in range(1, 11)])
    sends = [action for action in actions if isinstance(action, Send)]
    assert len(sends) == 11 and sum(len(s.data) for s in sends[1:]) == 640


def test_waits_scale_with_the_proxy_timeout():
    actions = plan_for(CATALOGUE.get("slow-headers"), timeout=0.25).actions
    assert actions[0] == Wait(1.0)  # 4T


def test_a_client_that_asks_to_close_gets_a_close_not_keep_alive():
    request = RequestInfo("GET", "/", keep_alive=False)
    assert plan_for(CATALOGUE.get("healthy"), request).terminal == Close()


def test_steps_without_an_ending_close_with_a_fin():
    assert plan_for(make("steps: [{kind: status}]")).terminal == Close()


def test_head_requests_get_the_head_but_no_body_bytes():
    plan_ = plan_for(CATALOGUE.get("truncated-content-length"), RequestInfo("HEAD", "/"))
    assert plan_.actions[0] == Send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n")
    assert plan_.response.body_bytes == 1000


@pytest.mark.parametrize(
    ("name", "status", "length", "chunked", "last", "complete", "body"),
    [
        ("truncated-content-length", 200, 100000, False, False, True, 1000),
        ("truncated-chunked", 200, None, True, False, True, 1000),
        ("headers-then-close", 200, 24, False, False, False, 0),
        ("conflicting-content-length", 200, None, False, False, True, 24),
        ("bad-status-line", None, None, False, False, False, 24),
        ("interim-then-final", 200, 24, False, False, True, 24),
    ],
)
def test_the_plan_says_what_the_response_declares(name, status, length, chunked, last, complete, body):
    response = plan_for(CATALOGUE.get(name)).response
    assert (response.status, response.content_length, response.chunked, response.last_chunk) == (status, length, chunked, last)
    assert (response.head_complete, response.body_bytes) == (complete, body)


RULES = """
rules:
  - when: {request: {last: 3}}
    steps: [{kind: reset}]
  - when: {method: [POST], path: "/api/*", headers: {x-tenant: "blue*"}}
    steps: [{kind: close}]
  - when: {on_connection: {first: 2}}
    scenario: upstream-502
steps: [{kind: status, code: 204}, {kind: keep-alive}]
"""


@pytest.mark.parametrize(
    ("request_info", "rule", "terminal"),
    [
        (RequestInfo("GET", "/", ordinal=1), 0, Reset()),
        (RequestInfo("GET", "/", ordinal=3), 0, Reset()),
        (RequestInfo("POST", "/api/x?q=1", (("x-tenant", "blue-7"),), ordinal=4), 1, Close()),
        (RequestInfo("POST", "/api/x", (("x-tenant", "red"),), ordinal=4), None, KeepAlive()),
        (RequestInfo("GET", "/", on_connection=2, ordinal=9), 2, KeepAlive()),
        (RequestInfo("GET", "/", ordinal=4), None, KeepAlive()),
    ],
)
def test_rules_match_on_method_path_headers_and_ordinals(request_info, rule, terminal):
    result = plan_for(make(RULES), request_info)
    assert (result.rule, result.terminal) == (rule, terminal)


def test_a_borrowed_scenario_supplies_its_steps():
    result = plan_for(make(RULES), RequestInfo("GET", "/", on_connection=2, ordinal=9))
    assert result.actions[0].data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    scenario = make("steps:\n" + "  - {kind: sleep, duration: {lognormal: {median: 1s, sigma: 1}}}\n" * 5)
    assert plan_for(scenario, seed=11) == plan_for(scenario, seed=11)
    assert plan_for(scenario, seed=11) != plan_for(scenario, seed=12)
