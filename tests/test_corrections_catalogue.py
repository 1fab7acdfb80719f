"""The catalogue's expectations as issue 10 corrected them: a relayed response is an outcome a
scenario declares and the model checks, and every timing scenario's upstream ends its silence long
after the latest answer allowed, so that a late abort and none at all are told apart."""

import textwrap

import pytest

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.loading import parse
from chaos_upstream.plan.sent import Silence, longest_silence, read_head, sent
from chaos_upstream.verifier.judge import CAUGHT_UP
from chaos_upstream.verifier.probe import probe_limit

from conftest import CATALOGUE

RELAYING = """\
name: demo
description: a demo
phase: head
expect:
  outcomes: [502, relayed]
  relay:
    without: [Bad Header]
steps:
  - kind: status
    code: 200
  - kind: headers
    fields:
      - [Bad Header, x]
      - [Content-Length, "0"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(textwrap.dedent(text), "demo.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_a_relayed_outcome_parses_with_the_fields_it_must_lack():
    scenario = parse(RELAYING, "demo.yaml")
    assert scenario.expect.relays and scenario.expect.relay.without == [b"Bad Header"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("without: [Bad Header]", "without: [Good Header]", "expect.relay.without: the steps send no field named 'Good Header'"),
        ("outcomes: [502, relayed]", "outcomes: [502]", "relay: it says what a relayed response lacks, and no outcome is relayed"),
        ("steps:\n", "rules:\n  - {when: {method: [POST]}, steps: [{kind: close}]}\nsteps:\n",
         "a relayed response is compared with what the steps send: give steps, and no rules"),
    ],
)
def test_a_relayed_outcome_that_cannot_be_judged_is_refused(old, new, message):
    [problem] = problems(RELAYING.replace(old, new))
    assert message in problem


def test_the_upstreams_response_is_read_back_from_its_plan_leniently():
    oversized = sent(CATALOGUE.get("oversized-headers"))
    assert oversized.status == 200 and len(oversized.fields) == 258 and oversized.body == b"chaos-upstream: bighead\n"
    assert oversized.fields[:2] == ((b"Content-Type", b"text/plain"), (b"Content-Length", b"24"))
    assert sent(CATALOGUE.get("invalid-header-name")).fields[0] == (b"Bad Header", b"chaos")
    assert read_head(b"HTTP/1.1 200 OK\r\nA: b") is None
    assert read_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\nX:y\n\nrest").fields == ((b"X", b"y"),)


@pytest.mark.parametrize("name", ["oversized-headers", "invalid-header-name"])
def test_the_head_faults_a_proxy_may_relay_allow_a_502_or_the_relay(name):
    expect = CATALOGUE.get(name).expect
    assert expect.outcomes == [502, "relayed"] and expect.profiles["varnish"] == [503, "relayed"]


def test_the_oversized_head_is_larger_than_the_buffers_it_names_and_within_gos_limit():
    data = sent(CATALOGUE.get("oversized-headers"))
    head = sum(len(name) + len(value) + 4 for name, value in data.fields)
    assert 256 * 1024 <= head < 10 * 1024 * 1024  # Squid's 64 KB, Traffic Server's 128 KiB; Go's 10 MiB
    assert "not Apache's or Go's" in CATALOGUE.get("oversized-headers").description  # both relay it (docs/proxies.md)


@pytest.mark.parametrize("timing", [Timing(0.5), Timing(1.0), Timing(3.0)])
def test_every_timing_scenario_ends_its_silence_well_past_a_late_abort_and_within_the_probe(timing):
    """An abort that reaches the client a second after T (Envoy's delayed close, lighttpd's
    one-second clock) comes before the judge would take it for the upstream's own end; an end the
    proxy passes on a second late still comes within the probe's limit."""
    bounded = [s for s in CATALOGUE if s.expect.max_elapsed is not None]
    ends = {s.name: longest_silence(s, timing) for s in bounded}
    assert ends["stall-mid-body"] == Silence(4 * timing.proxy_timeout, "closed")
    assert ends["slow-headers"] == Silence(4 * timing.proxy_timeout, "answered")
    for scenario in bounded:
        silence = ends[scenario.name]
        if silence is None:  # a hang has no end of its own to be mistaken for
            continue
        assert timing.proxy_timeout + 1.0 < CAUGHT_UP * silence.ends, scenario.name
        assert silence.ends + 1.0 < probe_limit(timing), scenario.name
