"""Predicted p95 latency: monotone, saturating, a concurrency sweet spot, fewest replicas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spotwise.domain import Usl
from spotwise.models.capacity import peak_concurrency, response_time, throughput
from spotwise.models.latency import (
    mean_response_seconds,
    min_replicas,
    p95_ms,
    slo_floor_ms,
    sweet_spot,
)

WEB = Usl(lam=25.0, sigma=0.03, kappa=0.0005)  # policies/web.yaml; peak at ~44 in flight

USLS = st.builds(
    Usl,
    lam=st.floats(0.5, 500),
    sigma=st.floats(0.0, 0.5),
    kappa=st.floats(0.0, 0.01),
)
PEAKED = st.builds(
    Usl,
    lam=st.floats(0.5, 500),
    sigma=st.floats(0.0, 0.5),
    kappa=st.floats(1e-5, 0.01),
)
LOADS = st.floats(0.0, 5000.0)
REPLICAS = st.integers(1, 200)
LIMITS = st.integers(1, 512)
TAILS = st.floats(1.0, 5.0)


def p95(usl: Usl, n: int, c: int, load: float, tail: float = 2.0) -> float:
    return float(p95_ms(usl, replicas=n, concurrency=c, load_rps=load, tail_factor=tail))


# -- monotonicity --------------------------------------------------------------------------


@given(USLS, LOADS, LOADS, REPLICAS, LIMITS, TAILS)
def test_p95_never_falls_with_more_load(usl, a, b, n, c, tail):
    lo, hi = sorted((a, b))
    assert p95(usl, n, c, lo, tail) <= p95(usl, n, c, hi, tail) * (1 + 1e-9)


@given(USLS, LOADS, REPLICAS, REPLICAS, LIMITS, TAILS)
def test_p95_never_rises_with_more_replicas(usl, load, n1, n2, c, tail):
    few, many = sorted((n1, n2))
    assert p95(usl, many, c, load, tail) <= p95(usl, few, c, load, tail) * (1 + 1e-9)


@given(USLS, LOADS, LIMITS, TAILS)
def test_p95_is_proportional_to_the_tail_factor(usl, load, c, tail):
    base = p95(usl, 3, c, load, 1.0)
    scaled = p95(usl, 3, c, load, tail)
    if math.isinf(base):
        assert math.isinf(scaled)
    else:
        assert scaled == pytest.approx(base * tail, rel=1e-12)


# -- saturation --------------------------------------------------------------------------


@given(USLS, REPLICAS, LIMITS, st.floats(1.0 + 1e-9, 10.0))
def test_infinite_when_per_replica_load_exceeds_the_limit_throughput(usl, n, c, factor):
    load = n * float(throughput(usl, c)) * factor
    assert math.isinf(p95(usl, n, c, load))


@given(USLS, LIMITS)
def test_infinite_when_per_replica_load_equals_the_limit_throughput(usl, c):
    # one replica, so load / replicas is exactly X(c) with no rounding
    assert math.isinf(p95(usl, 1, c, float(throughput(usl, c))))


@given(USLS, REPLICAS, LIMITS)
def test_finite_just_below_the_limit_throughput(usl, n, c):
    load = n * float(throughput(usl, c)) * 0.99
    assert math.isfinite(p95(usl, n, c, load))


def test_zero_replicas_with_load_is_infinite():
    assert math.isinf(p95(WEB, 0, 8, 10.0))


# -- vanishing load ------------------------------------------------------------------------


@given(USLS, REPLICAS, LIMITS, TAILS, st.sampled_from([0.0, 1e-12, 1e-9]))
def test_vanishing_load_gives_tail_times_single_request_time(usl, n, c, tail, load):
    expected = 1000.0 * tail * float(response_time(usl, 1))
    assert p95(usl, n, c, load, tail) == pytest.approx(expected, rel=1e-6)
    assert slo_floor_ms(usl, tail) == pytest.approx(expected, rel=1e-12)


@given(USLS, LOADS, REPLICAS, LIMITS, TAILS)
def test_never_below_the_single_request_floor(usl, load, n, c, tail):
    assert p95(usl, n, c, load, tail) >= slo_floor_ms(usl, tail) * (1 - 1e-9)


def test_single_server_matches_mm1():
    # c = 1, no contention: an M/M/1 queue, mean time in system 1 / (mu - a)
    usl = Usl(lam=10.0)
    for load in (1.0, 5.0, 9.0):
        mean = float(mean_response_seconds(usl, load, 1))
        assert mean == pytest.approx(1.0 / (10.0 - load), rel=1e-9)


# -- the concurrency sweet spot ------------------------------------------------------------


def test_sweet_spot_is_inside_the_grid_at_high_load():
    grid = np.array([1, 2, 4, 8, 16, 32, 44, 64, 128, 256, 512, 1024])
    load = 0.9 * float(throughput(WEB, peak_concurrency(WEB)))
    best = sweet_spot(WEB, load, grid)
    assert grid[0] < best < grid[-1]
    means = mean_response_seconds(WEB, load, grid)
    at_best = float(mean_response_seconds(WEB, load, best))
    assert math.isfinite(at_best)
    assert at_best < means[0]  # too low a limit queues requests
    assert at_best < means[-1]  # too high a limit lets contention win
    assert at_best == pytest.approx(float(means.min()))


def test_sweet_spot_beats_finite_neighbours():
    # at 300 rps all three limits keep up, and the one at the USL peak is strictly best
    means = mean_response_seconds(WEB, 300.0, np.array([32, 44, 64]))
    assert np.all(np.isfinite(means))
    assert means[1] < means[0]
    assert means[1] < means[2]
    assert sweet_spot(WEB, 300.0, [32, 44, 64]) == 44


@given(PEAKED)
def test_sweet_spot_exists_for_any_peaked_usl(usl):
    peak = peak_concurrency(usl)
    assume(4 <= peak <= 2000)
    low, high = 1, math.ceil(peak * 50)
    grid = np.unique(
        np.array(
            [
                low,
                math.floor(peak) // 2,
                math.floor(peak),
                math.ceil(peak),
                math.ceil(peak) * 2,
                high,
            ]
        )
    )
    load = 0.9 * float(throughput(usl, peak))
    assume(load > float(throughput(usl, low)))  # one request at a time cannot keep up
    best = sweet_spot(usl, load, grid)
    assert low < best < high
    at_best = float(mean_response_seconds(usl, load, best))
    assert math.isfinite(at_best)
    assert at_best < float(mean_response_seconds(usl, load, low))
    assert at_best < float(mean_response_seconds(usl, load, high))


def test_sweet_spot_when_nothing_keeps_up_is_the_throughput_peak():
    grid = [1, 8, 44, 128]
    assert sweet_spot(WEB, 1e6, grid) == 44


# -- fewest replicas for an SLO ------------------------------------------------------------


@given(
    USLS,
    st.floats(0.01, 5000),
    st.floats(1.0, 5000),
    st.lists(LIMITS, min_size=1, max_size=6),
    TAILS,
)
def test_min_replicas_is_the_smallest_that_meets_the_slo(usl, load, slo, limits, tail):
    ns = min_replicas(
        usl, concurrency=limits, load_rps=load, slo_p95_ms=slo, tail_factor=tail, limit=100_000
    )
    assert ns.shape == (len(limits),)
    for n, c in zip(ns.tolist(), limits, strict=True):
        if n == 0:
            assert p95(usl, 100_000, c, load, tail) > slo
            continue
        assert p95(usl, n, c, load, tail) <= slo
        if n > 1:
            assert p95(usl, n - 1, c, load, tail) > slo


@given(
    USLS,
    st.floats(0.01, 5000),
    st.floats(1.0, 2000),
    st.lists(st.tuples(LIMITS, st.integers(0, 3000)), min_size=1, max_size=6),
    st.integers(1, 3000),
)
def test_a_hint_never_changes_min_replicas(usl, load, slo, limits_and_hints, limit):
    limits, hints = (list(x) for x in zip(*limits_and_hints, strict=True))
    plain = min_replicas(usl, concurrency=limits, load_rps=load, slo_p95_ms=slo, limit=limit)
    hinted = min_replicas(
        usl, concurrency=limits, load_rps=load, slo_p95_ms=slo, limit=limit, hint=hints
    )
    assert hinted.tolist() == plain.tolist()


def test_min_replicas_hand_example():
    grid = [1, 8, 44]
    ns = min_replicas(WEB, concurrency=grid, load_rps=1000.0, slo_p95_ms=200.0)
    for n, c in zip(ns.tolist(), grid, strict=True):
        assert n > 1
        assert p95(WEB, n, c, 1000.0) <= 200.0 < p95(WEB, n - 1, c, 1000.0)
    # one request at a time needs far more replicas than a limit near the peak
    assert ns[0] > ns[2]


@given(USLS, st.floats(0.0, 5000), st.floats(0.01, 0.999), LIMITS, TAILS)
def test_min_replicas_is_zero_below_the_single_request_floor(usl, load, frac, c, tail):
    slo = slo_floor_ms(usl, tail) * frac
    assert min_replicas(
        usl, concurrency=c, load_rps=load, slo_p95_ms=slo, tail_factor=tail
    ).tolist() == [0]


def test_min_replicas_at_zero_load():
    floor = slo_floor_ms(WEB)
    assert min_replicas(
        WEB, concurrency=[1, 64], load_rps=0.0, slo_p95_ms=floor * 1.01
    ).tolist() == [1, 1]
    assert min_replicas(
        WEB, concurrency=[1, 64], load_rps=0.0, slo_p95_ms=floor * 0.99
    ).tolist() == [0, 0]


def test_min_replicas_is_zero_when_the_load_needs_more_than_the_limit():
    need = int(min_replicas(WEB, concurrency=8, load_rps=5000.0, slo_p95_ms=200.0)[0])
    assert need > 3
    assert min_replicas(
        WEB, concurrency=8, load_rps=5000.0, slo_p95_ms=200.0, limit=need - 1
    ).tolist() == [0]
    assert min_replicas(
        WEB, concurrency=8, load_rps=5000.0, slo_p95_ms=200.0, limit=need
    ).tolist() == [need]


# -- vectorized and scalar calls agree -----------------------------------------------------


@given(USLS, st.lists(st.tuples(REPLICAS, LIMITS, LOADS), min_size=1, max_size=12), TAILS)
def test_vectorized_p95_agrees_with_scalar_calls(usl, cases, tail):
    n, c, load = (np.array(x) for x in zip(*cases, strict=True))
    vector = p95_ms(usl, replicas=n, concurrency=c, load_rps=load, tail_factor=tail)
    scalar = [p95(usl, int(ni), int(ci), float(li), tail) for ni, ci, li in cases]
    np.testing.assert_allclose(vector, scalar, rtol=1e-9)


@given(USLS, st.floats(0.01, 5000), st.floats(1.0, 2000), st.lists(LIMITS, min_size=2, max_size=8))
def test_vectorized_min_replicas_agrees_with_scalar_calls(usl, load, slo, limits):
    vector = min_replicas(usl, concurrency=limits, load_rps=load, slo_p95_ms=slo)
    scalar = [
        int(min_replicas(usl, concurrency=c, load_rps=load, slo_p95_ms=slo)[0]) for c in limits
    ]
    assert vector.tolist() == scalar


@given(USLS, st.floats(0.0, 2000), st.lists(LIMITS, min_size=1, max_size=8))
def test_vectorized_mean_response_agrees_with_scalar_calls(usl, load, limits):
    vector = mean_response_seconds(usl, load, np.array(limits))
    scalar = [float(mean_response_seconds(usl, load, c)) for c in limits]
    np.testing.assert_allclose(vector, scalar, rtol=1e-9)


def test_concurrency_below_one_is_rejected():
    with pytest.raises(ValueError, match="at least 1"):
        mean_response_seconds(WEB, 10.0, 0)
