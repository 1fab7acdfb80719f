"""A scenario: what an upstream does on the wire, and what a client behind a correct proxy should see.

A scenario's behaviour is an ordered list of rules, each matching on the request (method, path,
headers, its ordinal), and a default list of steps for requests no rule matches. Invariant: a
scenario that validates can always be planned; every list of steps ends with at most one terminal
step, and only in last place.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from chaos_upstream.model.base import Model
from chaos_upstream.model.durations import FixedDuration
from chaos_upstream.model.h2_steps import H2_TERMINAL_STEPS, H2Headers, H2Step
from chaos_upstream.model.steps import TERMINAL_STEPS, Headers, Step, Text
from chaos_upstream.model.timeline import Event, Probing

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"

Phase = Literal["connection", "tls", "http2", "head", "body", "timing", "deploy"]
"""Where the fault strikes: before any response byte, in the TLS handshake or session, in HTTP/2's
frames, in the status line or headers, in the body, in the timing of an otherwise valid response, or
across restarts of the upstream."""

TlsFault = Literal[
    "valid", "handshake-stall", "reset-in-handshake", "handshake-alert", "expired-certificate", "wrong-name",
    "untrusted-certificate", "protocol-mismatch", "client-certificate-required",
]
"""What a TLS scenario does at the handshake: `valid`, nothing (a valid certificate for the name the
proxy asks for: its fault, if any, is in its steps); the rest, see `tls`."""

HANDSHAKE_FAULTS = frozenset({"handshake-stall", "reset-in-handshake", "handshake-alert"})
"""The TLS faults that end the connection at its ClientHello: no step ever runs."""

Kind = Literal["aborted", "masked-truncation", "malformed", "closed", "reset", "timeout", "relayed"]
"""What a client can see other than a complete response with a status code (the verifier's
classification); `relayed` is a complete response that is the upstream's own, intact (`Relay`)."""

RELAYED = "relayed"

RFC = "rfc"
PROFILES = (RFC, "varnish", "haproxy", "apache", "envoy")
"""Profiles a verdict can be judged under: the RFCs', and proxies' documented, defensible deviations
(Varnish: 503 for every failed fetch; HAProxy: 503 when no server could be reached after its
retries; Apache httpd: 503 for connection failures, 502 for backend timeouts; Envoy: 503 for a
connection that failed, or was closed or reset before the response head)."""

Outcome = Union[Annotated[int, Field(ge=100, le=599)], Kind]
"""A complete response with this status code, or one of the other kinds."""


class Ordinal(Model):
    """A range of request ordinals, counting from 1; either bound may be omitted."""

    first: int = Field(1, ge=1)
    """The first ordinal in the range."""
    last: int | None = Field(None, ge=1)
    """The last ordinal in the range; unbounded when omitted."""

    def contains(self, ordinal: int) -> bool:
        return self.first <= ordinal and (self.last is None or ordinal <= self.last)


class Match(Model):
    """Conditions on a request; all given must hold. An empty match matches every request."""

    method: list[str] | None = None
    """Request methods, case-sensitive as HTTP methods are (e.g. `[GET, HEAD]`)."""
    path: str | None = None
    """A shell-style glob on the path without the query (e.g. `/api/*`)."""
    headers: dict[str, str] = {}
    """Header name (any case) to a glob on its value."""
    request: Ordinal | None = None
    """The request's ordinal among all requests this scenario has handled."""
    on_connection: Ordinal | None = None
    """The request's ordinal on its connection (1 for the first request of a connection)."""
    attempt: Ordinal | None = None
    """The request's ordinal among those that carried its probe id (`X-Chaos-Probe`): 2 for a
    proxy's first retry of a probe. A request without a probe id is always its first attempt."""


class Rule(Model):
    """Steps for the requests that match; the first matching rule of a scenario applies."""

    when: Match = Match()
    """The condition."""
    steps: list[Step] | None = None
    """What to put on the wire."""
    http2: list[H2Step] | None = None
    """In a scenario served over HTTP/2 only: the frames to send instead."""
    scenario: str | None = Field(None, pattern=NAME_PATTERN)
    """Instead of steps: use the default steps of the scenario with this name."""

    @model_validator(mode="after")
    def _steps_or_scenario(self) -> Rule:
        if sum(given is not None for given in (self.steps, self.http2, self.scenario)) != 1:
            raise ValueError("give exactly one of steps, http2 or scenario")
        if self.steps is not None:
            check_terminal_last(self.steps)
        if self.http2 is not None:
            check_terminal_last(self.http2, H2_TERMINAL_STEPS)
        return self


class Relay(Model):
    """What the `relayed` outcome asks of a complete response, against the one the scenario's steps
    send: the upstream's status, every field it sent but those in `without` (names in any case, in
    any order across names, values byte for byte and in order within a name), none of `without`, and
    the whole body. A proxy may add fields of its own and rewrite the hop-by-hop ones and the framing
    (Connection, Keep-Alive, Transfer-Encoding; Content-Length when it re-frames the body)."""

    without: list[Text] = []
    """Names of fields the steps send that must not reach the client: a field a recipient must
    reject or remove (RFC 9110 §5.5), e.g. `["Bad Header"]`."""


class Expectation(Model):
    """What a client behind a correct proxy should see (any of `outcomes`)."""

    outcomes: list[Outcome] = Field(min_length=1)
    """Acceptable outcomes under the RFC profile, e.g. `[502]` or `[aborted, 502]`."""
    min_elapsed: FixedDuration | None = None
    """The outcome must not come sooner than this (a 504 long before the timeout is suspect)."""
    max_elapsed: FixedDuration | None = None
    """The outcome must come within this."""
    profiles: dict[str, list[Outcome]] = {}
    """Outcomes that replace `outcomes` under a named profile, e.g. `varnish: [503]`."""
    errors: Literal["none", "while-down"] = "none"
    """For a stream of probes: a probe that does not get `outcomes` is an error; `none` allows no
    error at all, `while-down` allows errors while a member is down and for `recovery` after."""
    recovery: FixedDuration | None = None
    """With `errors: while-down`: how long after a member is back errors are still allowed."""
    relay: Relay = Relay()
    """What the `relayed` outcome checks of the response the client got (see Relay)."""

    @model_validator(mode="after")
    def _known_profiles(self) -> Expectation:
        unknown = sorted(set(self.profiles) - set(PROFILES[1:]))  # `outcomes` are the RFC profile's
        if unknown:
            raise ValueError(f"profiles: {unknown[0]!r} is not a profile to override; known: {', '.join(PROFILES[1:])}")
        if self.relay.without and not self.relays:
            raise ValueError("relay: it says what a relayed response lacks, and no outcome is relayed")
        return self

    @property
    def relays(self) -> bool:
        """Whether `relayed` is an outcome under some profile."""
        return any(RELAYED in outcomes for outcomes in (self.outcomes, *self.profiles.values()))

    def for_profile(self, profile: str) -> list[Outcome]:
        return self.profiles.get(profile, self.outcomes)

    def text(self, profile: str = RFC) -> str:
        """The outcomes under `profile`, as tables and reports show them: "aborted or 502"."""
        return " or ".join(map(str, self.for_profile(profile)))


class Scenario(Model):
    """One upstream behaviour, its phase and its expected outcome."""

    name: str = Field(pattern=NAME_PATTERN)
    """Lower-case letters, digits and dashes; what `X-Chaos-Scenario` names."""
    description: str = Field(min_length=1, max_length=200)
    """One line: what goes on the wire."""
    phase: Phase
    """Where the fault strikes."""
    expect: Expectation
    """What a client behind a correct proxy should see."""
    trigger: Literal["request", "accept", "refuse"] = "request"
    """`request`: the steps answer a request; `accept`: they run as soon as a connection is accepted,
    before any byte is read; `refuse`: no step, the port is bound but nothing listens, so the kernel
    refuses every connection.  `accept` and `refuse` are connection-level faults, each on a port
    of its own."""
    tls: TlsFault | None = None
    """Only served over TLS (`serve --tls`, `check --tls`): at the handshake, `handshake-stall`
    reads the ClientHello and never answers, `reset-in-handshake` resets right after it,
    `handshake-alert` answers it with a fatal handshake_failure alert; `expired-certificate`,
    `wrong-name` and `untrusted-certificate` present such a certificate, `protocol-mismatch`
    offers only TLS 1.0 and 1.1, `client-certificate-required` requires the proxy's certificate
    (mTLS); `valid` does nothing at the handshake. Any but `valid` acts before a request is read,
    so it needs a port of its own, or the SNI NAME.chaos."""
    request_body: Literal["discard", "record"] = "discard"
    """The request body is always read before the steps run; `record` keeps up to 64 KiB of it in
    the journal."""
    protocol: Literal["any", "http1", "http2"] = "any"
    """`http2`: the scenario means something only when the proxy speaks HTTP/2 to the upstream
    (`check --h2`, `matrix --h2`), as a timeline of GOAWAYs does; `http2` frames imply it. `http1`:
    its fault is HTTP/1.1's own (a connection's reuse, a body delimited by the close), which its
    steps would not keep over HTTP/2: there it answers 501, and `check --h2` leaves it out."""
    request_window: Literal["open", "stall"] = "open"
    """Over HTTP/2: `stall` never opens the request stream's flow-control window past its first
    64 KiB (no WINDOW_UPDATE for it), so a longer body never all comes and the steps never run."""
    on_expect: Literal["continue", "withhold"] = "continue"
    """A request with `Expect: 100-continue` whose body has not come yet: `continue` answers
    `HTTP/1.1 100 Continue` and then reads the body; `withhold` sends no 100 and lets the steps'
    response go first (RFC 9110 §10.1.1), and then closes the connection, its body never read."""
    probes: Probing = Probing()
    """How the verifier probes it: one GET by default, or a stream."""
    timeline: list[Event] = []
    """Deploy scenarios: what happens to the fleet's members over time (they serve `healthy`
    otherwise); a stream of probes runs for the whole timeline."""
    min_members: int = Field(1, ge=1)
    """The smallest fleet the scenario means something for (a rolling deploy needs two)."""
    rules: list[Rule] = []
    """Per-request behaviour; the first rule whose `when` matches applies."""
    steps: list[Step] = []
    """The behaviour when no rule matches: at least one step, except under `trigger: refuse` and
    in a timeline, whose members serve other scenarios."""
    http2: list[H2Step] = []
    """Instead of `steps`, for a scenario served over HTTP/2 only (h2c or h2): the frames on the
    request's stream when no rule matches. Over HTTP/1.1 such a scenario answers 505."""

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        check_terminal_last(self.steps)
        check_terminal_last(self.http2, H2_TERMINAL_STEPS)
        if self.http2 or any(rule.http2 is not None for rule in self.rules):
            _check_http2(self)
        if self.trigger != "request" and self.rules:
            raise ValueError(f"a scenario triggered on {self.trigger} has no request to match rules against")
        if self.timeline:
            if self.steps or self.trigger != "request":
                raise ValueError("timeline: a timeline's members serve other scenarios: give no steps and no trigger")
            if self.probes.every is None:
                raise ValueError("probes.every: a timeline is probed by a stream: say how often")
        elif (self.trigger == "refuse" or self.tls in HANDSHAKE_FAULTS) != (not (self.steps or self.http2)):
            raise ValueError("steps: a refusing scenario, or a TLS fault at the ClientHello, has no steps; any other needs at least one")
        if self.tls is not None and self.trigger != "request":
            raise ValueError(f"tls: a TLS scenario is triggered by its handshake, not on {self.trigger}")
        if self.http2 and self.protocol == "http1":
            raise ValueError("protocol: a scenario of HTTP/2 frames is not HTTP/1.1's")
        if self.expect.errors == "while-down" and (not self.timeline or self.expect.recovery is None):
            raise ValueError("expect.errors: while-down needs a timeline and expect.recovery")
        if self.expect.relays:
            check_relayable(self)
        return self

    @property
    def http2_only(self) -> bool:
        """Whether it needs a proxy speaking HTTP/2 to the upstream (its steps are HTTP/2 frames, or
        it says so); one with frames is served over HTTP/2 only."""
        return bool(self.http2) or self.protocol == "http2"

    @property
    def probed_alone(self) -> bool:
        """Whether `check` probes it alone, not beside others: a timeline; HTTP/2 frames, which may
        end the connection a proxy shares between requests (a GOAWAY, a close, a frame on stream 0),
        or make the proxy end it (Envoy takes a malformed response as the connection's error)."""
        return bool(self.timeline or self.http2)

    @property
    def connection_level(self) -> bool:
        """Whether the fault strikes before any request is read, so it needs a port of its own."""
        return self.trigger != "request" or self.tls not in (None, "valid")


def check_relayable(scenario: Scenario) -> None:
    """Raise unless a `relayed` outcome can be judged: against the one response the steps send,
    whose fields include every name `relay.without` gives."""
    steps = scenario.steps or scenario.http2
    if not steps or scenario.rules or scenario.trigger != "request":
        raise ValueError("expect: a relayed response is compared with what the steps send: give steps, and no rules")
    sent = {name.lower() for step in steps if isinstance(step, (Headers, H2Headers)) for name, _ in step.fields}
    missing = [name for name in scenario.expect.relay.without if name.lower() not in sent]
    if missing:
        raise ValueError(f"expect.relay.without: the steps send no field named {missing[0].decode('latin-1')!r}")


def _check_http2(scenario: Scenario) -> None:
    """Raise unless an HTTP/2 scenario is one: frames for its default steps and in every rule that
    gives steps, answering requests, without a TLS fault."""
    if scenario.steps or not scenario.http2:
        raise ValueError("http2: an HTTP/2 scenario gives its default frames in http2, and no steps")
    if any(rule.steps is not None for rule in scenario.rules):
        raise ValueError("rules: a rule of an HTTP/2 scenario gives http2 frames (or a scenario), not steps")
    if scenario.trigger != "request" or scenario.tls is not None or scenario.timeline:
        raise ValueError("http2: HTTP/2 frames answer a request: no trigger, tls or timeline with them")


def check_terminal_last(steps: list[Step] | list[H2Step], terminal: tuple[type, ...] = TERMINAL_STEPS) -> None:
    """Raise unless every terminal step (close, reset, hang, ...) stands last."""
    for index, step in enumerate(steps[:-1]):
        if isinstance(step, terminal):
            raise ValueError(f"step {index} ({step.kind}) ends the connection, so it must be the last step")
