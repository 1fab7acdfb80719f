"""Durations in scenario files, and how they become seconds.

A duration is written as seconds (`1.5`, `"1.5s"`, `"250ms"`) or relative to the proxy's timeout
(`"2T"`, `"0.3T"`), or drawn from a distribution of such values with the injected generator.
Invariant: every duration is non-negative, and resolving one is a pure function of the duration,
the timing settings and the generator handed in.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, PlainSerializer, PlainValidator, Tag, WithJsonSchema

from chaos_upstream.model.base import Model

SPAN_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|T)?\s*$"
_SPAN_RE = re.compile(SPAN_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0}


@dataclass(frozen=True)
class Timing:
    """The settings that relative durations are resolved against."""

    proxy_timeout: float = 1.0
    """T: the read timeout the proxy under test is configured with, in seconds."""


@dataclass(frozen=True)
class Span:
    """A fixed duration: `value` seconds, or `value` times T when `relative`."""

    value: float
    relative: bool = False

    def seconds(self, timing: Timing) -> float:
        return self.value * timing.proxy_timeout if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}T" if self.relative else f"{self.value:g}s"


def parse_span(raw: Any) -> Span:
    """Read `1.5`, `"1.5s"`, `"250ms"` or `"2T"`; refuse negatives and anything else."""
    if isinstance(raw, Span):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError("a duration is a number of seconds or a string like '250ms', '1.5s', '2T'")
    if isinstance(raw, (int, float)):
        if raw < 0 or not math.isfinite(raw):
            raise ValueError("a duration must be a finite number of seconds, not negative")
        return Span(float(raw))
    match = _SPAN_RE.match(raw)
    if match is None:
        hint = " (durations are never negative)" if raw.strip().startswith("-") else ""
        raise ValueError(f"{raw!r} is not a duration like '250ms', '1.5s' or '2T'{hint}")
    value, unit = float(match.group(1)), match.group(3) or "s"
    if unit == "T":
        return Span(value, relative=True)
    return Span(value * _UNIT_SECONDS[unit])


FixedDuration = Annotated[
    Span,
    PlainValidator(parse_span),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": SPAN_PATTERN},
            ],
            "description": "Seconds (1.5, '1.5s', '250ms') or a multiple of the proxy timeout ('2T').",
        }
    ),
]


class Uniform(Model):
    """A duration drawn uniformly between two bounds."""

    uniform: tuple[FixedDuration, FixedDuration]
    """The lower and upper bound, e.g. `[0.1T, 0.5T]`."""

    def seconds(self, timing: Timing, rng: random.Random) -> float:
        low, high = (span.seconds(timing) for span in self.uniform)
        return rng.uniform(min(low, high), max(low, high))


class LogNormalParams(Model):
    """Parameters of a log-normal duration: heavy-tailed, like real service latencies."""

    median: FixedDuration
    """The median of the distribution."""
    sigma: float = Field(0.5, ge=0, le=5)
    """The standard deviation of the underlying normal; 0.5 gives a moderate tail."""
    max: FixedDuration | None = None
    """A cap, so that a draw from the tail cannot stall a test for minutes."""


class LogNormal(Model):
    """A duration drawn from a log-normal distribution."""

    lognormal: LogNormalParams

    def seconds(self, timing: Timing, rng: random.Random) -> float:
        params = self.lognormal
        median = params.median.seconds(timing)
        drawn = rng.lognormvariate(math.log(median), params.sigma) if median > 0 else 0.0
        return drawn if params.max is None else min(drawn, params.max.seconds(timing))


def _duration_form(raw: Any) -> str | None:
    if isinstance(raw, dict):
        return "Uniform" if "uniform" in raw else "LogNormal" if "lognormal" in raw else None
    return "Fixed"


Duration = Annotated[
    Union[
        Annotated[FixedDuration, Tag("Fixed")],
        Annotated[Uniform, Tag("Uniform")],
        Annotated[LogNormal, Tag("LogNormal")],
    ],
    Discriminator(
        _duration_form,
        custom_error_type="duration",
        custom_error_message="a duration is seconds, '250ms', '2T', {uniform: [a, b]} or {lognormal: {median: m}}",
    ),
]
"""Any duration a step may carry: a fixed span or a distribution, told apart by its form."""


def resolve(duration: Duration, timing: Timing, rng: random.Random) -> float:
    """Seconds for `duration`; draws from `rng` only when the duration is a distribution."""
    if isinstance(duration, Span):
        return duration.seconds(timing)
    return duration.seconds(timing, rng)
