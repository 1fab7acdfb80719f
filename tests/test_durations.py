import random

import pytest
from pydantic import TypeAdapter, ValidationError

from chaos_upstream.model.durations import Duration, Span, Timing, parse_span, resolve

DURATION = TypeAdapter(Duration)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(1.5, 1.5), (0, 0.0), ("1.5s", 1.5), ("250ms", 0.25), ("2T", 4.0), ("0.3T", 0.6), (".5T", 1.0), (" 3 ", 3.0)],
)
def test_spans_resolve_against_the_proxy_timeout(text, seconds):
    assert parse_span(text).seconds(Timing(proxy_timeout=2.0)) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [-1, "-2T", "2 minutes", "T", "", True, [1], float("nan")])
def test_bad_spans_are_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="duration"):
        parse_span(text)


def test_negative_duration_says_durations_are_never_negative():
    with pytest.raises(ValidationError, match="never negative"):
        DURATION.validate_python("-1s")


def test_uniform_draws_within_bounds_and_repeats_with_the_same_seed():
    uniform = DURATION.validate_python({"uniform": ["0.5T", "1T"]})
    draws = [resolve(uniform, Timing(2.0), random.Random(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert 1.0 <= draws[0] <= 2.0


def test_lognormal_is_capped_by_max_and_seeded():
    lognormal = DURATION.validate_python({"lognormal": {"median": "100ms", "sigma": 3, "max": "0.2s"}})
    rng = random.Random(3)
    values = [resolve(lognormal, Timing(), rng) for _ in range(200)]
    assert max(values) == pytest.approx(0.2)
    assert min(values) < 0.1
    rng = random.Random(3)
    assert values == [resolve(lognormal, Timing(), rng) for _ in range(200)]


def test_fixed_spans_never_draw_from_the_generator():
    rng = random.Random(1)
    state = rng.getstate()
    resolve(Span(1.0, relative=True), Timing(), rng)
    assert rng.getstate() == state
