"""Probing: one request through the proxy under test, joined with the journal, judged.

This is the library API that `check`, the pytest plugin and the locust scenarios share:

    result = await probe("http://127.0.0.1:8080", scenario, journal, timing=Timing(0.5))
    result.verdict, result.observed, result.explain()

Invariant: every probe goes out on a fresh client connection with a unique X-Chaos-Probe id, and its
verdict is judged only from the bytes the client received and the journal records carrying that id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.selection import PROBE_HEADER, SCENARIO_HEADER, route_prefix
from chaos_upstream.records import Attempt
from chaos_upstream.verifier.attempts import Journal, attempts, settled_attempts
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import CLOSED, Observation, ResponseParser, classify
from chaos_upstream.verifier.exchange import Capture
from chaos_upstream.verifier.judge import INCONCLUSIVE, RFC, Verdict, describe_outcomes, judge

def probe_limit(timing: Timing) -> float:
    """A probe's own time limit: past the latest end in the catalogue (stall-mid-body's close and
    slow-headers' head, at 4T), with 1.5 s for a proxy that passes it on a second late (one that
    checks its timers once a second, or holds a close back, as Envoy's delayed_close_timeout does)."""
    return 4 * timing.proxy_timeout + 1.5


@dataclass(frozen=True)
class Result:
    """One judged probe: the verdict, what the client saw, and what the upstream did."""

    scenario: Scenario
    probe_id: str
    method: str
    profile: str
    judgement: Verdict
    observation: Observation
    capture: Capture | None
    """The raw bytes and timings; None when the proxy could not be reached at all."""
    attempts: tuple[Attempt, ...]
    """The journal's request records for this probe: one per time it reached the upstream."""
    stream: dict[str, Any] | None = None
    """For a stream of probes: its counts (the tally); the fields above are then its first error's,
    or its first probe's when there was none."""
    first: Result | None = None
    """When this is a second probe, made alone because the first failed only on timing
    (`Verdict.late_only`): the first one's result. This one's verdict stands."""

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def elapsed(self) -> float:
        """Seconds the probe took, or the whole stream."""
        return self.stream["duration_s"] if self.stream is not None else self.observation.elapsed

    @property
    def reprobed(self) -> bool:
        return self.first is not None

    @property
    def reason(self) -> str:
        """The verdict's reason; for a second probe, the first's too: "first probe: ...; probed again alone: ..."."""
        if self.first is None:
            return self.judgement.reason
        return f"first probe: {self.first.reason}; probed again alone: {self.judgement.reason}"

    @property
    def seen(self) -> str:
        """What the client saw, in two words: "status 502", "aborted 200", "reset"; for a stream,
        its errors: "3/161 errors"."""
        if self.stream is not None:
            return f"{self.stream['errors']}/{self.stream['requests']} errors"
        status = self.observation.status
        return self.judgement.kind + (f" {status}" if status is not None else "")

    @property
    def observed(self) -> dict[str, Any]:
        seen = self.observation
        return {
            "kind": self.judgement.kind,
            "status": seen.status,
            "elapsed_s": round(seen.elapsed, 4),
            "first_byte_s": None if seen.first_byte is None else round(seen.first_byte, 4),
            "body_bytes": seen.body_bytes,
            "framing": seen.framing,
            "ending": seen.ending,
            "upstream_attempts": len(self.attempts),
            **(self.stream or {}),
        }

    def to_json(self) -> dict[str, Any]:
        """The result as the check report's JSON has it."""
        return {
            "scenario": self.scenario.name,
            "verdict": self.verdict,
            "expected": self.scenario.expect.text(self.profile),
            "observed": self.observed,
            "reason": self.reason,
            "profile_only": self.judgement.profile_only,
            "probe": self.probe_id,
            "reprobed": self.reprobed,
            **({"first_probe": {"probe": self.first.probe_id, "observed": self.first.observed}} if self.first else {}),
        }

    def explain(self) -> str:
        """A readable account: the scenario, what was expected, what the client saw, what the upstream did."""
        seen = self.observation
        lines = [
            f"{self.scenario.name}: {self.verdict.upper()} ({self.profile} profile, probe {self.probe_id})",
            f"  on the wire:  {self.scenario.description}",
            f"  expected:     {self.judgement.expected}",
            f"  client saw:   {seen.summary()}",
            f"  verdict:      {self.reason}",
        ]
        if self.capture is not None and self.capture.data:
            lines.append(f"  first bytes:  {self.capture.data[:120]!r}")
        if self.stream is not None:
            lines.insert(4, f"  stream:       {_stream_line(self.stream)}")
            lines.append("  (below: the first error's probe, or the first probe)")
        if self.first is not None:
            lines.insert(4, f"  first probe:  {self.first.probe_id}: {self.first.observation.summary()} (probed again alone)")
        lines.append(f"  upstream:     {len(self.attempts)} attempt(s)")
        lines += [f"    - {_attempt_line(attempt)}" for attempt in self.attempts]
        return "\n".join(lines)


def _stream_line(stream: dict[str, Any]) -> str:
    down = ", ".join(f"member {w['member']} down {w['from_s']}-{w['to_s']} s" for w in stream["down"])
    back = ", ".join(f"member {r['member']} back at {r['back_at_s']} s: first success {_after(r['first_success_s'])}, "
                     f"in rotation {_after(r['back_in_rotation_s'])}" for r in stream["recovery"])
    rotation = stream.get("in_rotation_s")
    waited = "not every member in rotation before it" if rotation is None else f"{rotation} s for every member to be in rotation first"
    return "; ".join(filter(None, [f"{stream['requests']} probes, {stream['errors']} errors "
                                   f"({stream['errors_while_down']} while down), {stream['retried']} retried", down, back, waited]))


def _after(seconds: float | None) -> str:
    return "never" if seconds is None else f"+{seconds} s"


def _attempt_line(attempt: Attempt) -> str:
    return f"conn {attempt.conn} at {attempt.t} s: {what_was_done(attempt)}"


def what_was_done(record: Attempt) -> str:
    """What the upstream did with one request, from its journal record: "send 89 B, close; closed"."""
    actions = ", ".join(a.do + (f" {a.bytes} B" if a.bytes is not None else "") for a in record.actions)
    ended = "still running" if record.running else record.ended
    return f"{actions or 'nothing sent'}; {ended}"


def probe_request(
    host: str, scenario: str | None, probe_id: str, *, method: str, path: str, body: bytes, headers: Sequence[tuple[str, str]]
) -> bytes:
    """The probe's bytes: a plain HTTP/1.1 request naming the probe, and the scenario unless None."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"{PROBE_HEADER}: {probe_id}"]
    if scenario is not None:
        lines.insert(2, f"{SCENARIO_HEADER}: {scenario}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Outgoing:
    """A probe ready to go: where to, its id, and its exact bytes."""

    host: str
    port: int
    probe_id: str
    request: bytes


def outgoing(
    proxy_url: str, scenario: Scenario, *, method: str, path: str | None, body: bytes,
    headers: Sequence[tuple[str, str]], name_scenario: bool = True,
) -> Outgoing:
    """The probe of `scenario` through the proxy at `proxy_url`, with a fresh id.  The path defaults
    to `/`, or to `/_chaos/NAME/` for a connection-level scenario, the prefix the proxy routes to that
    scenario's own port.  A probe that does not name the scenario (`name_scenario` False) is not
    one of its port's either: it goes to `/`, which the proxy sends to the fleet's members, and gets
    their default scenario."""
    url = urlsplit(proxy_url)
    probe_id = f"{scenario.name}-{uuid.uuid4().hex[:10]}"
    path = path or (route_prefix(scenario.name) if scenario.connection_level and name_scenario else "/")
    named = scenario.name if name_scenario else None
    request = probe_request(url.netloc, named, probe_id, method=method, path=path, body=body, headers=headers)
    return Outgoing(url.hostname or "127.0.0.1", url.port or 80, probe_id, request)


def probe_defaults(scenario: Scenario, method: str | None, body: bytes | None) -> tuple[str, bytes]:
    """The method and body of a probe: the scenario's own (`probes:`; a GET with no body) unless given."""
    return method or scenario.probes.method, scenario.probes.content if body is None else body


@dataclass(frozen=True)
class Sample:
    """One probe, unjudged: what the client saw, and the attempts that reached the upstream."""

    probe_id: str
    observation: Observation
    capture: Capture | None
    """None when the proxy could not be reached at all (then `unreachable` says why)."""
    attempts: tuple[Attempt, ...]
    sent: float = 0.0
    """When its request went out, once connected (trio's clock; a stream makes it seconds from its
    own start): with `observation.elapsed`, the span in which it met the upstream's state."""
    unreachable: str = ""


def unreachable(probe_id: str, proxy_url: str, exc: OSError, sent: float) -> Sample:
    """The sample of a probe whose connection to the proxy failed: nothing was tested."""
    reason = f"could not connect to the proxy at {proxy_url} ({exc.strerror or exc}): nothing was tested"
    return Sample(probe_id, Observation(CLOSED, ending="refused"), None, (), sent, unreachable=reason)


def judged(scenario: Scenario, sample: Sample, *, method: str, profile: str, timing: Timing, joined: bool = True) -> Result:
    """The Result of a sample; with `joined` False its attempts are unknown (no journal was asked)."""
    if sample.unreachable:
        expected = describe_outcomes(scenario.expect.for_profile(profile), scenario.expect.relay)
        verdict = Verdict(INCONCLUSIVE, CLOSED, expected, sample.unreachable)
    else:
        attempts = list(sample.attempts) if joined else None
        verdict = judge(scenario, sample.observation, attempts, method=method, profile=profile, timing=timing)
    return Result(scenario, sample.probe_id, method, profile, verdict, sample.observation, sample.capture, sample.attempts)


async def send_probe(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    method: str,
    path: str | None = None,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    limit: float | None = None,
    name_scenario: bool = True,
) -> Sample:
    """Send one probe through the proxy and gather what came back and what reached the upstream.

    A connection-level scenario's attempts are the connections its port accepted during the probe:
    one probe at a time per such port.  A probe that does not name the scenario goes to the members
    (see `outgoing`): its attempts are its own request records, whatever the scenario's trigger."""
    out = outgoing(proxy_url, scenario, method=method, path=path, body=body, headers=headers, name_scenario=name_scenario)
    own_port = scenario.connection_level and name_scenario
    earlier = len(attempts(journal, scenario, out.probe_id)) if own_port else 0
    parser = ResponseParser(method)
    began = trio.current_time()
    try:
        seen = await capture(out.host, out.port, out.request, limit=limit or probe_limit(timing), done=parser.feed)
    except OSError as exc:
        return unreachable(out.probe_id, proxy_url, exc, began)
    sent = trio.current_time() - seen.elapsed  # the request went out once connected: a loaded machine may take a while to connect
    reached = await settled_attempts(journal, scenario if own_port else None, out.probe_id, earlier)
    return Sample(out.probe_id, classify(seen, method), seen, tuple(reached), sent)


async def probe(
    proxy_url: str,
    scenario: Scenario,
    journal: Journal,
    *,
    timing: Timing,
    profile: str = RFC,
    method: str | None = None,
    path: str | None = None,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    limit: float | None = None,
) -> Result:
    """Send one probe of `scenario` through the proxy at `proxy_url` and judge what came back.

    Method and body default to the scenario's own (`probes:`; a GET with no body unless it says)."""
    method, body = probe_defaults(scenario, method, body)
    sample = await send_probe(
        proxy_url, scenario, journal, timing=timing, method=method, path=path, body=body, headers=headers, limit=limit
    )
    return judged(scenario, sample, method=method, profile=profile, timing=timing)

