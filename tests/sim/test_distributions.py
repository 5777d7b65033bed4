"""Latency specs parse, print back, and sample inside their support."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.distributions import DistributionError, DistributionKind, Latency

times = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(lo=times, width=times, seed=st.integers(0, 2**32))
def test_uniform_samples_stay_within_bounds(lo: float, width: float, seed: int) -> None:
    lat = Latency(DistributionKind.UNIFORM, lo, lo + width)
    rng = random.Random(seed)
    for _ in range(20):
        assert lo <= lat.sample(rng) <= lo + width


@given(lo=times, extra=times, seed=st.integers(0, 2**32))
def test_exponential_never_goes_below_its_floor(lo: float, extra: float, seed: int) -> None:
    lat = Latency(DistributionKind.EXPONENTIAL, lo, lo + extra)
    rng = random.Random(seed)
    assert all(lat.sample(rng) >= lo for _ in range(20))


@given(median=st.floats(min_value=1e-6, max_value=1.0), sigma=st.floats(0.0, 2.0), seed=st.integers(0, 2**32))
def test_lognormal_samples_are_positive(median: float, sigma: float, seed: int) -> None:
    lat = Latency(DistributionKind.LOGNORMAL, median, sigma)
    rng = random.Random(seed)
    assert all(lat.sample(rng) > 0 for _ in range(20))


@pytest.mark.parametrize(
    "spec", ["constant:0.002", "uniform:0.001:0.005", "exponential:0.001:0.003", "lognormal:0.002:0.5"]
)
def test_spec_round_trips(spec: str) -> None:
    assert Latency.parse(spec).spec() == spec


def test_constant_always_gives_its_value() -> None:
    lat = Latency.parse("constant:0.25")
    rng = random.Random(1)
    assert {lat.sample(rng) for _ in range(10)} == {0.25}
    assert lat.mean() == 0.25


def test_same_seed_gives_same_samples() -> None:
    lat = Latency.parse("lognormal:0.002:0.7")
    a, b = random.Random(5), random.Random(5)
    assert [lat.sample(a) for _ in range(50)] == [lat.sample(b) for _ in range(50)]


@pytest.mark.parametrize(
    "spec, why",
    [
        ("gaussian:1:2", "unknown distribution"),
        ("uniform:1", "takes 2 parameter"),
        ("uniform:2:1", "HI must not be less than LO"),
        ("constant:x", "must be numbers"),
        ("constant:-1", "must not be negative"),
        ("lognormal:0:1", "MEDIAN must be greater than 0"),
    ],
)
def test_bad_specs_are_rejected_with_a_reason(spec: str, why: str) -> None:
    with pytest.raises(DistributionError, match=why):
        Latency.parse(spec)
