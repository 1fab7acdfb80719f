"""Streams of probes: a steady, bounded series of probes through the proxy, while a timeline plays
out on the fleet's members, judged as a whole.

Invariants: a stream sends exactly `length / every + 1` probes, each on a fresh client connection,
and waits for all of them (each has the probe's own time limit); when it returns, every member
listens again and serves its default scenario, whatever the timeline did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.timeline import Change, schedule, stream_length, windows
from chaos_upstream.server.fleet import Member, play
from chaos_upstream.server.journal import Journal
from chaos_upstream.verifier.classify import CLOSED, Observation
from chaos_upstream.verifier.judge import RFC
from chaos_upstream.verifier.probe import Result, Sample, probe, send_probe
from chaos_upstream.verifier.tally import judge_stream, tally


async def probe_stream(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Sequence[Member] = (),
) -> Result:
    """Probe `scenario` with its stream (`probes.every`), playing its timeline on `members`."""
    assert scenario.probes.every is not None, "a stream needs probes.every"
    method, body = scenario.probes.method, scenario.probes.body.encode("latin-1")
    enough = not scenario.timeline or len(members) >= scenario.min_members
    changes = schedule(scenario, len(members), timing) if scenario.timeline and enough else []
    every = scenario.probes.every.seconds(timing)
    count = int(stream_length(scenario, changes, timing) / every) + 1 if enough else 0
    samples: list[Sample] = []

    async def one() -> None:
        sample = await send_probe(proxy_url, scenario, journal, timing=timing, method=method, body=body,
                                  name_scenario=not scenario.timeline)
        samples.append(replace(sample, sent=sample.sent - start))

    start = trio.current_time()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play, changes, members, start)
            for index in range(count):
                await trio.sleep_until(start + index * every)
                nursery.start_soon(one)
    finally:
        with trio.CancelScope(shield=True):
            for member in members:
                await member.start()
                member.serve(None)
    samples.sort(key=lambda sample: sample.sent)
    counts = tally(scenario, samples, windows(changes), profile, timing)
    verdict = judge_stream(scenario, counts, members=len(members), method=method, profile=profile, timing=timing)
    shown = (counts.errors or samples or [Sample(f"{scenario.name}-none", Observation(CLOSED, ending="none"), None, ())])[0]
    return Result(scenario, shown.probe_id, method, profile, verdict, shown.observation, shown.capture, shown.attempts,
                  stream={**counts.to_json(), "duration_s": round(trio.current_time() - start, 3)})


async def probe_scenario(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Sequence[Member] = (),
    **request: object,
) -> Result:
    """The scenario's probe as it says: one request (`request` passes on to `probe`: method, path,
    body, headers, limit), or its stream, which takes no request options (TypeError)."""
    if scenario.probes.every is None:
        return await probe(proxy_url, scenario, journal, timing=timing, profile=profile, **request)  # type: ignore[arg-type]
    if any(value not in (None, ()) for value in request.values()):
        raise TypeError(f"{scenario.name!r} is probed by a stream of its own requests: "
                        f"{', '.join(request)} do not apply")
    return await probe_stream(proxy_url, scenario, journal, timing=timing, profile=profile, members=members)
