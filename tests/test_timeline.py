"""Timelines resolved for a fleet, and streams of probes judged: pure, no socket, no clock."""

import pytest

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.loading import parse
from chaos_upstream.plan.timeline import Change, Window, schedule, stream_length, windows
from chaos_upstream.verifier.exchange import Capture
from chaos_upstream.verifier.classify import classify
from chaos_upstream.verifier.probe import Sample
from chaos_upstream.verifier.tally import judge_stream, tally

from conftest import CATALOGUE, request_record

T = Timing(0.5)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"


def sample(sent: float, data: bytes = OK, members: tuple[int, ...] = (0,)) -> Sample:
    seen = classify(Capture(((0.001, data),), "open", 0.001))
    return Sample(f"p{sent}", seen, None, tuple(request_record(1, member=m) for m in members), sent=sent)


def test_a_rolling_deploy_takes_members_one_after_another_starting_each_before_stopping_the_next():
    changes = schedule(CATALOGUE.get("rolling-deploy"), 3, T)
    assert [(c.at, c.member, c.do) for c in changes] == [
        (0.5, 0, "stop"), (1.5, 0, "start"), (1.5, 1, "stop"), (2.5, 1, "start"), (2.5, 2, "stop"), (3.5, 2, "start"),
    ]
    assert windows(changes) == [Window(0, 0.5, 1.5), Window(1, 1.5, 2.5), Window(2, 2.5, 3.5)]
    assert stream_length(CATALOGUE.get("rolling-deploy"), changes, T) == 3.5 + 1.5


def test_a_restart_stops_every_member_at_once_and_resets_what_is_in_flight():
    changes = schedule(CATALOGUE.get("restart-during-deploy"), 2, T)
    assert [(c.at, c.member, c.do, c.in_flight) for c in changes] == [
        (0.5, 0, "stop", "reset"), (0.5, 1, "stop", "reset"), (2.5, 0, "start", "finish"), (2.5, 1, "start", "finish"),
    ]


def test_a_hot_restart_leaves_no_member_down():
    changes = schedule(CATALOGUE.get("h2-goaway-during-deploy"), 2, T)
    assert [(c.at, c.member, c.do, c.in_flight) for c in changes] == [(0.5, 0, "restart", "finish"), (1.5, 1, "restart", "finish")]
    assert windows(changes) == []


def test_a_member_that_never_comes_back_is_down_to_the_end():
    assert windows([Change(1.0, 1, "stop")]) == [Window(1, 1.0, None)]
    assert Window(1, 1.0, None).overlaps(99.0, 99.0) and not Window(1, 1.0, 2.0).overlaps(2.5, 2.5, after=0.4)


def test_an_event_for_a_member_the_fleet_lacks_is_a_config_error():
    scenario = parse(PATTERN.replace("members: each\n    every: 2s", "members: 5"), "mine.yaml")
    with pytest.raises(ConfigError, match="timeline.0.members: no member 5 in a fleet of 3"):
        schedule(scenario, 3, T)


PATTERN = """\
name: three-pods
description: 3 members, maxUnavailable 1, 2 s per pod, readiness 1 s late
phase: deploy
min_members: 3
probes:
  every: 50ms
expect:
  outcomes: [200]
timeline:
  - at: 1s
    members: each
    every: 2s
    do: stop
  - at: 2s
    members: each
    every: 2s
    do: start
    scenario: starting-unavailable
  - at: 3s
    members: each
    every: 2s
    do: serve
    scenario: healthy
"""


def test_the_documented_deploy_pattern_resolves_as_written():
    scenario = parse(PATTERN, "three-pods.yaml")
    changes = schedule(scenario, 3, T)
    member1 = [(c.at, c.do, c.scenario) for c in changes if c.member == 1]
    assert member1 == [(3.0, "stop", None), (4.0, "start", "starting-unavailable"), (5.0, "serve", "healthy")]
    assert stream_length(scenario, changes, T) == 7.0 + 1.5


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("  - at: 1s\n    members: each\n    do: stop\n", "every: give it with members: each, and only then"),
        ("  - at: 1s\n    do: serve\n", "scenario: a serve event names the scenario to serve"),
        ("  - at: 1s\n    do: stop\n    scenario: healthy\n", "scenario: a stop event serves what the member served"),
    ],
)
def test_timeline_events_are_checked(event, message):
    text = PATTERN[: PATTERN.index("timeline:")] + "timeline:\n" + event
    with pytest.raises(ConfigError) as caught:
        parse(text, "bad.yaml")
    assert any(message in str(problem) for problem in caught.value.problems), caught.value.problems


def test_errors_while_down_are_excused_and_recovery_is_measured():
    scenario = CATALOGUE.get("restart-during-deploy")
    down = [Window(0, 0.5, 2.5)]
    samples = [sample(0.0), sample(1.0, BAD, ()), sample(2.6, BAD, ()), sample(3.0), sample(3.1, OK, (0,))]
    counts = tally(scenario, samples, down, "rfc", T)
    assert (counts.requests, len(counts.errors), counts.excused) == (5, 2, 2)
    assert counts.kinds == {"status 200": 3, "status 502": 2}
    [recovery] = counts.recoveries
    assert (recovery.first_success, recovery.first_attempt) == pytest.approx((0.5, 0.5))
    verdict = judge_stream(scenario, counts, members=2, method="GET", profile="rfc", timing=T)
    assert verdict.verdict == "pass" and "5 probes got 3 status 200, 2 status 502; 2 errors, 2 of them while" in verdict.reason


def test_an_error_long_after_the_return_fails_and_says_how_long_after():
    scenario = CATALOGUE.get("restart-during-deploy")
    samples = [sample(1.0, BAD, ()), sample(4.0, BAD, (1,)), sample(4.2)]
    counts = tally(scenario, samples, [Window(0, 0.5, 2.5), Window(1, 0.5, 2.5)], "rfc", T)
    verdict = judge_stream(scenario, counts, members=2, method="GET", profile="rfc", timing=T)
    assert verdict.verdict == "fail"
    assert verdict.reason.endswith(
        "the last error came 1.50 s after members 0 and 1 were back: the proxy kept failing after the upstream returned"
    )


def test_no_error_at_all_is_allowed_in_a_rolling_deploy():
    scenario = CATALOGUE.get("rolling-deploy")
    counts = tally(scenario, [sample(0.0), sample(0.6, BAD, ())], [Window(0, 0.5, 1.5)], "rfc", T)
    verdict = judge_stream(scenario, counts, members=2, method="GET", profile="rfc", timing=T)
    assert (verdict.verdict, verdict.expected) == ("fail", "a 200 on every probe")


def test_a_fleet_too_small_for_the_scenario_is_inconclusive():
    counts = tally(CATALOGUE.get("rolling-deploy"), [], [], "rfc", T)
    verdict = judge_stream(CATALOGUE.get("rolling-deploy"), counts, members=1, method="GET", profile="rfc", timing=T)
    assert verdict.verdict == "inconclusive" and "give --upstream 2 times" in verdict.reason


def test_without_a_timeline_errors_that_never_reached_the_upstream_prove_nothing():
    scenario = CATALOGUE.get("keepalive-close-race")
    unreached = tally(scenario, [sample(0.0), sample(0.1, BAD, ()), sample(0.2, BAD, ())], [], "rfc", T)
    verdict = judge_stream(scenario, unreached, members=1, method="GET", profile="rfc", timing=T)
    assert verdict.verdict == "inconclusive"
    assert verdict.reason.startswith("2 probes got an error from the proxy without reaching the upstream")
    reached = tally(scenario, [sample(0.0), sample(0.1, BAD, ()), sample(0.2, BAD, (0,))], [], "rfc", T)
    assert judge_stream(scenario, reached, members=1, method="GET", profile="rfc", timing=T).verdict == "fail"


def test_a_post_that_reached_the_upstreams_twice_fails_whatever_the_client_saw():
    scenario = CATALOGUE.get("keepalive-close-race")
    counts = tally(scenario, [sample(0.0, OK, (0, 1))], [], "rfc", T)
    verdict = judge_stream(scenario, counts, members=1, method="POST", profile="rfc", timing=T)
    assert verdict.verdict == "fail" and verdict.reason.startswith("the proxy replayed a POST: 1 of 1 probes")


def test_a_timeline_may_only_serve_scenarios_that_answer_requests(tmp_path):
    from chaos_upstream.model.catalogue import Catalogue

    (tmp_path / "mine.yaml").write_text(PATTERN.replace("scenario: healthy", "scenario: accept-then-close"))
    with pytest.raises(ConfigError) as caught:
        Catalogue.load([tmp_path])
    [problem] = caught.value.problems
    assert str(problem).endswith(
        "mine.yaml:23: timeline.2.scenario: 'accept-then-close' does not answer requests (it is connection-level or a timeline)"
    )
