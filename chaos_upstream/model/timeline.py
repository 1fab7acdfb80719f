"""Timelines and probe streams: what happens to the members of a fleet over time, and how it is probed.

A deploy scenario is a timeline of events over the fleet's members (stop listening, start again,
change what is served), probed by a steady stream of requests through the proxy for its whole
length.  Invariant: every time is a fixed duration (seconds or a multiple of T), so a timeline
resolves to the same schedule for the same fleet size and timing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from chaos_upstream.model.base import Model
from chaos_upstream.model.durations import FixedDuration, Span


class Event(Model):
    """Something that happens to members of the fleet at a point of the timeline."""

    at: FixedDuration = Span(0.0)
    """When, from the start of the timeline."""
    members: int | Literal["all", "each"] = "all"
    """Which members: one by its index (from 0), all at once, or each in turn (see `every`)."""
    every: FixedDuration | None = None
    """With `members: each`: member k acts at `at + k * every`."""
    do: Literal["stop", "start", "serve", "restart"]
    """stop: stop listening (new connections are refused); start: listen again on the same port;
    serve: change what the member answers from then on; restart: a hot restart, the listening
    socket handed to the next incarnation before this one lets go of its connections as
    `in_flight` says (over HTTP/2, a drain is a GOAWAY), so no connection is refused."""
    in_flight: Literal["finish", "reset"] = "finish"
    """With stop or restart: let every busy connection finish its response and close idle keep-alive
    ones at once (a graceful drain), or reset every open connection (a crash, a kill -9)."""
    scenario: str | None = None
    """With start or serve: the scenario the member answers with from then on (start: `healthy`
    unless given; e.g. `starting-unavailable` for a member not ready yet)."""

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        if (self.members == "each") != (self.every is not None):
            raise ValueError("every: give it with members: each, and only then")
        if self.do == "serve" and self.scenario is None:
            raise ValueError("scenario: a serve event names the scenario to serve")
        if self.do in ("stop", "restart") and self.scenario is not None:
            raise ValueError(f"scenario: a {self.do} event serves what the member served")
        return self


class Probing(Model):
    """How the verifier probes a scenario: one request, or a steady stream of them."""

    method: str = Field("GET", pattern=r"^[A-Z]+$")
    """The probes' method; a POST must reach the upstreams once, whatever the proxy does."""
    body: str = ""
    """The probes' body (latin-1 text)."""
    body_length: int = Field(0, ge=0, le=16 * 1024 * 1024)
    """Instead of `body`: a body of this many bytes (dots), e.g. one past HTTP/2's 64 KiB window."""
    every: FixedDuration | None = None
    """Send a probe this often (each on a fresh client connection) instead of a single one."""
    duration: FixedDuration | None = None
    """How long the stream lasts; for a timeline, by default until 3T after its last event."""

    @model_validator(mode="after")
    def _consistent(self) -> Probing:
        if self.duration is not None and self.every is None:
            raise ValueError("duration: a stream needs `every` too")
        if self.body and self.body_length:
            raise ValueError("body_length: give a body or its length, not both")
        return self

    @property
    def content(self) -> bytes:
        """The probes' body as bytes."""
        return self.body.encode("latin-1") if not self.body_length else b"." * self.body_length
