"""Series of probes: a steady, bounded series of probes through the proxy, while a timeline plays
out on the fleet's members, judged as a whole.

Invariants: a series sends exactly `length / every + 1` probes, each on a fresh client connection,
and waits for all of them (each has the probe's own time limit); when it returns, the fleet has been
told to restore every member (each listens again and serves its default scenario, whatever the
timeline did). A timeline starts only once the proxy sends requests to every member again (or
ROTATION_LIMIT has passed), so that what came before it (a member a proxy still holds down after an
earlier fault) does not count against it. The fleet itself is served and driven by whoever passes it
(chaos_upstream.harness): the verifier only asks it to play and to restore.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence, Sized
from dataclasses import replace
from typing import Protocol

import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.timeline import Change, schedule, stream_length, windows
from chaos_upstream.verifier.attempts import Journal
from chaos_upstream.verifier.classify import CLOSED, STATUS, Observation
from chaos_upstream.verifier.judge import RFC, Verdict
from chaos_upstream.verifier.probe import Result, Sample, probe, send_probe
from chaos_upstream.verifier.tally import judge_stream, tally

Address = tuple[str, int]


class Fleet(Protocol):
    """The upstreams a check or a series goes through, as the verifier sees them: their addresses,
    in the order of the `member` index that the journal's records carry, and a timeline played on
    them. `len()` is the number of members."""

    @property
    def addresses(self) -> list[Address]:
        ...

    def __len__(self) -> int:
        ...

    async def play(self, changes: Sequence[Change], start: float) -> None:
        """Carry out each change at its time (trio's clock, from `start`), in order."""

    async def restore(self) -> None:
        """Every member listening again and serving its default scenario, whatever was played."""


ROTATION_LIMIT = 12.0
"""Seconds a timeline waits for the proxy to send requests to every member again: past nginx's
default `fail_timeout` (10 s), the longest a proxy's default passive check holds a member out that a
timeline can wait for (Traffic Server's 300 s is not waited for)."""

ROTATION_EVERY = 0.025
"""Seconds between the probes that wait for the fleet to be back in rotation before a single probe:
a stream's usual pace."""

ROUND = 4
"""Probes per member in a row that must all get a 200, from every member, for the fleet to count as
back in rotation."""


def not_in_rotation(verdict: Verdict, waited: float) -> Verdict:
    """`verdict`, its reason saying that the fleet was not back in rotation after `waited` seconds,
    when the probing began."""
    return replace(verdict, reason=f"{verdict.reason} (before it, the proxy had not sent requests to every member "
                                   f"for {waited:g} s: an earlier fault may have shaped what came back)")


async def in_rotation(
    proxy_url: str, scenario: Scenario, journal: Journal, members: Sized, *, timing: Timing, every: float,
    limit: float = ROTATION_LIMIT,
) -> float | None:
    """Seconds until the proxy answers ROUND probes per member in a row with 200s, from every member,
    or None when it has not within `limit`. The probes are the stream's own GETs, one every `every`
    seconds: they name no scenario and go to `/`, whatever `scenario` is (it only names them), so
    they reach the members even before a connection-level scenario, whose path leads to its own port."""
    recent: deque[tuple[bool, set[int]]] = deque(maxlen=ROUND * len(members))
    start = trio.current_time()
    while trio.current_time() - start < limit:
        sample = await send_probe(proxy_url, scenario, journal, timing=timing, method="GET", name_scenario=False)
        seen = sample.observation
        recent.append((seen.kind == STATUS and seen.status == 200, {a.member for a in sample.attempts}))
        served = set().union(*(who for _, who in recent))
        if len(recent) == recent.maxlen and all(ok for ok, _ in recent) and served >= set(range(len(members))):
            return round(trio.current_time() - start, 3)
        await trio.sleep(every)
    return None


async def probe_series(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Fleet | None = None,
    rotation_limit: float = ROTATION_LIMIT,
) -> Result:
    """Probe `scenario` with its stream (`probes.every`), playing its timeline on `members` once they
    are in rotation (waiting at most `rotation_limit` seconds)."""
    assert scenario.probes.every is not None, "a stream needs probes.every"
    method, body = scenario.probes.method, scenario.probes.content
    size = len(members or ())
    enough = not scenario.timeline or size >= scenario.min_members
    changes = schedule(scenario, size, timing) if scenario.timeline and enough else []
    every = scenario.probes.every.seconds(timing)
    count = int(stream_length(scenario, changes, timing) / every) + 1 if enough else 0
    rotation = await in_rotation(proxy_url, scenario, journal, members or (), timing=timing, every=every,
                                 limit=rotation_limit) if changes else 0.0
    samples: list[Sample] = []

    async def one() -> None:
        sample = await send_probe(proxy_url, scenario, journal, timing=timing, method=method, body=body,
                                  name_scenario=not scenario.timeline)
        samples.append(replace(sample, sent=sample.sent - start))

    start = trio.current_time()
    try:
        async with trio.open_nursery() as nursery:
            if members is not None:
                nursery.start_soon(members.play, changes, start)
            for index in range(count):
                await trio.sleep_until(start + index * every)
                nursery.start_soon(one)
    finally:
        with trio.CancelScope(shield=True):
            if members is not None:
                await members.restore()
    samples.sort(key=lambda sample: sample.sent)
    counts = tally(scenario, samples, windows(changes), profile, timing)
    verdict = judge_stream(scenario, counts, members=size, method=method, profile=profile, timing=timing)
    if rotation is None:
        verdict = not_in_rotation(verdict, rotation_limit)
    shown = (counts.errors or samples or [Sample(f"{scenario.name}-none", Observation(CLOSED, ending="none"), None, ())])[0]
    return Result(scenario, shown.probe_id, method, profile, verdict, shown.observation, shown.capture, shown.attempts,
                  stream={**counts.to_json(), "duration_s": round(trio.current_time() - start, 3), "in_rotation_s": rotation})


async def probe_scenario(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    members: Fleet | None = None,
    rotation_limit: float = ROTATION_LIMIT,
    **request: object,
) -> Result:
    """The scenario's probe as it says: one request (`request` passes on to `probe`: method, path,
    body, headers, limit), or its stream, which takes no request options (TypeError)."""
    if scenario.probes.every is None:
        return await probe(proxy_url, scenario, journal, timing=timing, profile=profile, **request)  # type: ignore[arg-type]
    if any(value not in (None, ()) for value in request.values()):
        raise TypeError(f"{scenario.name!r} is probed by a stream of its own requests: "
                        f"{', '.join(request)} do not apply")
    return await probe_series(proxy_url, scenario, journal, timing=timing, profile=profile, members=members,
                              rotation_limit=rotation_limit)
