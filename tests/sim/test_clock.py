"""A member's clock: offset and drift, continuous under rate changes, invertible."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.clock import Clock

offsets = st.floats(-100.0, 100.0)
drifts = st.floats(-0.5, 0.5)
instants = st.floats(0.0, 1000.0)


@given(offset=offsets, drift=drifts, t=instants)
def test_true_time_inverts_local(offset: float, drift: float, t: float) -> None:
    c = Clock.start(0.0, offset, drift)
    assert c.true_time(c.local(t)) == pytest.approx(t, abs=1e-6)


@given(offset=offsets, drift=drifts, t=instants, rate=st.floats(0.1, 10.0), later=st.floats(0.0, 100.0))
def test_rate_change_keeps_the_clock_continuous_and_monotone(
    offset: float, drift: float, t: float, rate: float, later: float
) -> None:
    c = Clock.start(0.0, offset, drift)
    before = c.local(t)
    c.set_rate(t, rate)
    assert c.local(t) == pytest.approx(before, abs=1e-6)
    assert c.local(t + later) >= c.local(t)
    assert c.local(t + later) - c.local(t) == pytest.approx(later * rate, rel=1e-6, abs=1e-6)


@given(t=instants, delta=st.floats(-10.0, 10.0))
def test_bump_steps_the_reading_by_delta(t: float, delta: float) -> None:
    c = Clock.start(0.0, 0.0, 0.0)
    before = c.local(t)
    c.bump(t, delta)
    assert c.local(t) == pytest.approx(before + delta, abs=1e-6)


def test_reset_rate_restores_the_nominal_drift() -> None:
    c = Clock.start(0.0, 1.0, 0.001)
    c.set_rate(5.0, 2.0)
    c.reset_rate(10.0)
    assert c.rate == pytest.approx(1.001)
    assert c.offset(10.0) == pytest.approx(1.0 + 0.001 * 5 + 1.0 * 5)


def test_drift_of_minus_one_or_less_is_refused() -> None:
    with pytest.raises(ValueError, match="drift"):
        Clock.start(0.0, 0.0, -1.0)


@given(offset=offsets, drift=drifts, local=st.floats(0.0, 1000.0))
def test_at_true_time_of_a_reading_the_clock_shows_at_least_that_reading(offset: float, drift: float, local: float) -> None:
    # A member woken at true_time(deadline) must find its deadline due, or it would spin at one instant.
    c = Clock.start(0.0, offset, drift)
    assert c.local(c.true_time(local)) >= local
