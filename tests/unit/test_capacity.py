"""Per-replica capacity under the Universal Scalability Law: formula, peak, shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotwise.domain import Usl
from spotwise.models.capacity import peak_concurrency, response_time, throughput

# USLs with a finite peak (kappa > 0), kept away from degenerate corners.
PEAKED = st.builds(
    Usl,
    lam=st.floats(0.1, 1000),
    sigma=st.floats(0.0, 0.9),
    kappa=st.floats(1e-6, 0.1),
)
ANY_USL = st.builds(
    Usl,
    lam=st.floats(0.1, 1000),
    sigma=st.floats(0.0, 0.99),
    kappa=st.floats(0.0, 0.5),
)


# -- the formula -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        # X(c) = 10c / (1 + 0.1(c-1) + 0.01 c(c-1)), worked by hand
        (1, 10.0),
        (2, 20.0 / 1.12),
        (5, 50.0 / 1.6),
        (10, 100.0 / 2.8),
        (20, 200.0 / 6.7),
    ],
)
def test_throughput_matches_hand_values(c, expected):
    usl = Usl(lam=10.0, sigma=0.1, kappa=0.01)
    assert float(throughput(usl, c)) == pytest.approx(expected, rel=1e-12)


def test_throughput_at_one_in_flight_is_lambda():
    assert float(throughput(Usl(37.5, 0.3, 0.02), 1)) == pytest.approx(37.5)


def test_linear_scaling_without_contention_or_coherency():
    usl = Usl(lam=4.0)
    c = np.array([1, 2, 3, 10, 1000])
    np.testing.assert_allclose(throughput(usl, c), 4.0 * c)


def test_amdahl_throughput_approaches_lambda_over_sigma():
    # kappa = 0: throughput rises forever towards lam / sigma, never past it
    usl = Usl(lam=10.0, sigma=0.2)
    x = throughput(usl, np.array([1, 10, 100, 10_000, 1_000_000]))
    assert np.all(np.diff(x) > 0)
    assert np.all(x < 10.0 / 0.2)
    assert x[-1] == pytest.approx(10.0 / 0.2, rel=1e-4)


def test_throughput_is_vectorized_elementwise():
    usl = Usl(25.0, 0.03, 0.0005)
    cs = [1, 3, 7, 44, 45, 300]
    vector = throughput(usl, cs)
    assert vector.shape == (len(cs),)
    for c, x in zip(cs, vector, strict=True):
        assert float(throughput(usl, c)) == pytest.approx(float(x), rel=1e-15)


# -- the peak ----------------------------------------------------------------------------


def test_peak_concurrency_hand_value():
    assert peak_concurrency(Usl(10.0, 0.1, 0.01)) == pytest.approx(math.sqrt(0.9 / 0.01))
    assert peak_concurrency(Usl(25.0, 0.03, 0.0005)) == pytest.approx(math.sqrt(0.97 / 0.0005))


@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.5])
def test_peak_concurrency_is_infinite_without_coherency(sigma):
    assert peak_concurrency(Usl(10.0, sigma, 0.0)) == math.inf


@given(PEAKED)
def test_peak_concurrency_formula(usl):
    assert peak_concurrency(usl) == pytest.approx(math.sqrt((1 - usl.sigma) / usl.kappa))


@given(PEAKED)
def test_throughput_rises_to_the_peak_then_falls(usl):
    peak = peak_concurrency(usl)
    below = peak * np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    above = peak * np.array([1.05, 1.5, 3.0, 10.0, 50.0])
    x_below, x_peak, x_above = (
        throughput(usl, below),
        float(throughput(usl, peak)),
        throughput(usl, above),
    )
    assert np.all(np.diff(x_below) > 0), x_below
    assert np.all(np.diff(x_above) < 0), x_above
    assert np.all(x_below < x_peak)
    assert np.all(x_above < x_peak)


@given(PEAKED)
def test_peak_is_the_maximum_over_integers(usl):
    peak = peak_concurrency(usl)
    hi = max(2, math.ceil(peak) * 4)
    cs = np.arange(1, hi + 1)
    best = int(cs[int(np.argmax(throughput(usl, cs)))])
    if peak >= 1:
        assert best in (math.floor(peak), math.ceil(peak))
    else:
        assert best == 1


# -- response time ----------------------------------------------------------------------


@given(ANY_USL, st.lists(st.integers(1, 5000), min_size=1, max_size=20))
def test_response_time_is_littles_law(usl, cs):
    c = np.array(cs, dtype=float)
    np.testing.assert_allclose(response_time(usl, c), c / throughput(usl, c), rtol=1e-12)


def test_response_time_of_one_request_is_the_service_time():
    assert float(response_time(Usl(20.0, 0.3, 0.01), 1)) == pytest.approx(1 / 20.0)


@given(ANY_USL)
def test_response_time_never_falls_with_more_in_flight(usl):
    r = response_time(usl, np.arange(1, 500))
    assert np.all(np.diff(r) >= 0)
