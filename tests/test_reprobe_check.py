"""`check` probes a verdict that failed only by coming late once more, alone, after its batch; any
other fail stands as it was found.

Strategy: the test decides which probe is late. Each scenario of its own catalogue answers its first
request one way and every later one another (a rule on the request's ordinal), and `check` probes a
real chaos-upstream upstream directly: what is tested is the check loop's decision (which results
get a second probe, that the second replaces the first, that the report says so), not a proxy, so
no proxy stands in for one. The late answers come 2T or 3T after the request against a bound of 1T, and
the prompt ones in milliseconds: 0.2 s of slack either way on a busy machine.
"""

from pathlib import Path

import pytest

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.matrix import running
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import require
from chaos_upstream.harness import serving
from chaos_upstream.verifier.check import check
from chaos_upstream.verifier.probe import Result

T = Timing(0.2)

PROMPT = """
  - kind: status
    code: {status}
  - kind: headers
    fields:
      Content-Length: "0"
"""
LATE = "\n  - kind: sleep\n    duration: {sleep}" + PROMPT


def scenario(name: str, expect: str, first: str, then: str) -> str:
    """A scenario whose first request gets the steps `first` and every later one `then`."""
    return (f"name: {name}\ndescription: a test's own\nphase: timing\nexpect:\n{expect}"
            f"rules:\n  - when:\n      request: {{last: 1}}\n    steps:{first.replace(chr(10), chr(10) + '  ')}\nsteps:{then}")


SCENARIOS = {
    "late-once": scenario("late-once", "  outcomes: [200]\n  max_elapsed: 1T\n", LATE.format(sleep="3T", status=200), PROMPT.format(status=200)),
    "late-always": scenario("late-always", "  outcomes: [200]\n  max_elapsed: 1T\n", LATE.format(sleep="2T", status=200), LATE.format(sleep="2T", status=200)),
    "wrong-once": scenario("wrong-once", "  outcomes: [200]\n", PROMPT.format(status=500), PROMPT.format(status=200)),
    "early-once": scenario("early-once", "  outcomes: [200]\n  min_elapsed: 1T\n", PROMPT.format(status=200), LATE.format(sleep="2T", status=200)),
    "on-time": scenario("on-time", "  outcomes: [200]\n  max_elapsed: 1T\n", PROMPT.format(status=200), PROMPT.format(status=200)),
}


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    for name, text in SCENARIOS.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return Catalogue.load([tmp_path])  # the built-ins too: the members serve `healthy` by default


async def checked(catalogue: Catalogue) -> tuple[dict[str, Result], list[str], list[dict]]:
    """(results by scenario, the scenarios in the order on_result saw them, the journal's request
    records), `check` probing the upstream directly."""
    shown: list[str] = []
    async with serving(catalogue, [("127.0.0.1", 0)], timing=T) as served:
        host, port = served.addresses[0]
        report = await check(f"http://{host}:{port}", [catalogue.get(name) for name in SCENARIOS], served.journal, timing=T,
                             members=served.members, on_result=lambda result: shown.append(result.scenario.name))
        records = served.journal.records(type="request", running=True)
    return {result.scenario.name: result for result in report.results}, shown, records


async def test_only_a_late_fail_is_probed_again_alone_after_its_batch_and_the_second_verdict_stands(catalogue):
    results, shown, records = await checked(catalogue)
    assert {name: (result.verdict, result.reprobed) for name, result in results.items()} == {
        "late-once": ("pass", True), "late-always": ("fail", True),
        "wrong-once": ("fail", False), "early-once": ("fail", False), "on-time": ("pass", False),
    }
    probes = {name: [r for r in records if r.scenario == name] for name in SCENARIOS}
    assert {name: len(requests) for name, requests in probes.items()} == {
        "late-once": 2, "late-always": 2, "wrong-once": 1, "early-once": 1, "on-time": 1}
    batch_done = max(r.t for requests in probes.values() for r in requests[:1]) + 3 * T.proxy_timeout
    always, once = probes["late-always"][1].t, probes["late-once"][1].t  # in the order their first probes failed
    assert always >= batch_done - 0.05, (always, batch_done)  # after the slowest of the batch (late-once's 3T) answered
    assert once >= always + 2 * T.proxy_timeout - 0.05, (once, always)  # alone: once late-always's second answered
    assert sorted(shown) == sorted(SCENARIOS) and shown[-2:] == ["late-always", "late-once"]  # each shown once, at the end
    late = results["late-once"]
    assert late.first is not None and late.first.verdict == "fail" and late.first.judgement.late_only
    assert late.probe_id == probes["late-once"][1].probe and late.first.probe_id == probes["late-once"][0].probe


async def test_the_report_says_a_verdict_was_probed_twice_and_what_the_first_probe_saw(catalogue):
    results, _, _ = await checked(catalogue)
    once, always = results["late-once"], results["late-always"]
    assert once.reason.startswith("first probe: expected a 200 within 0.20 s (1T); it came after 0.6")
    assert once.reason.endswith("; probed again alone: the client saw a complete 200 with a 0-byte body, as expected")
    assert always.reason.count("within 0.20 s (1T); it came after 0.4") == 2 and "; probed again alone: expected" in always.reason
    document = once.to_json()
    assert (document["reprobed"], document["first_probe"]["probe"]) == (True, once.first.probe_id)
    assert document["first_probe"]["observed"]["elapsed_s"] >= 3 * T.proxy_timeout > document["observed"]["elapsed_s"]
    assert results["wrong-once"].to_json()["reprobed"] is False and "first_probe" not in results["wrong-once"].to_json()
    assert results["wrong-once"].reason == "expected the client to see a 200; it saw a complete 500 with a 0-byte body (passed through: the upstream sent it)"
    assert f"  first probe:  {once.first.probe_id}: " in once.explain()



@pytest.mark.proxy
async def test_through_a_fleet_the_second_probe_too_waits_for_rotation_and_only_a_late_fail_gets_one(catalogue, tmp_path):
    """`check` probes one scenario at a time through a fleet, each once the proxy sends requests to
    every member again: a second probe is no exception. nginx balances two members here, with a
    timeout of its own far past the scenarios' (T is 0.2 s for them) so that it relays the late answers."""
    launcher = require("nginx")
    shown: list[str] = []
    async with serving(catalogue, [("127.0.0.1", 0)] * 2, timing=T) as served:
        async with running(launcher, served.addresses, 5.0, tmp_path) as proxy:
            report = await check(proxy.url, [catalogue.get("late-always"), catalogue.get("wrong-once")], served.journal,
                                 timing=T, members=served.members, on_result=lambda result: shown.append(result.scenario.name))
        records = served.journal.records(type="request", running=True)
    results = {result.scenario.name: result for result in report.results}
    assert {name: (r.verdict, r.reprobed) for name, r in results.items()} == {"late-always": ("fail", True), "wrong-once": ("fail", False)}
    assert shown == ["wrong-once", "late-always"]
    records.sort(key=lambda record: record.t)
    probed = [(r.scenario, r.t) for r in records if r.scenario != "healthy"]
    assert [name for name, _ in probed] == ["late-always", "wrong-once", "late-always"], probed
    waits = [r.t for r in records if r.scenario == "healthy" and probed[1][1] < r.t < probed[2][1]]
    assert len(waits) >= 8  # ROUND probes per member, every one a 200, before the second probe too
