"""Predicted p95 latency of n replicas, each admitting at most c requests at once.

Each replica is a birth-death queue whose service rate depends on how many requests are
in flight: with k <= c in flight it completes X(k) requests/second (the USL curve); above
the limit, the extra requests wait in front of the replica and it completes X(c). The
mean number in the system follows from the stationary distribution, the mean response
time from Little's law, and p95 = tail_factor * mean. A tail factor of 2 matches a
log-normal response time with a coefficient of variation of about 0.55, typical of web
services; it is set per workload.

This is where concurrency gets its sweet spot: a low limit queues requests that a
replica could have served in parallel; a limit past the USL peak lets contention slow
every request down. The model is monotone: more load or fewer replicas never lower
the prediction.

Not here: how load is forecast (`demand.py`) or how pods pack onto nodes (`packing.py`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spotwise.domain import Usl
from spotwise.models.capacity import response_time, throughput

_TINY_LOAD = 1e-9


def mean_response_seconds(
    usl: Usl, load_rps: ArrayLike, concurrency: ArrayLike
) -> NDArray[np.float64]:
    """Mean seconds a request spends at one replica receiving `load_rps`; inf when the
    replica cannot keep up (load >= X(concurrency))."""
    if np.ndim(load_rps) == 0 and np.ndim(concurrency) == 0:
        # The simulator asks one value at a time, thousands of times: skip broadcasting.
        return np.asarray(_mean_response_one(usl, float(load_rps), int(concurrency)))  # type: ignore[arg-type]
    a = np.maximum(np.asarray(load_rps, dtype=np.float64), _TINY_LOAD)
    c = np.asarray(concurrency, dtype=np.int64)
    a, c = np.broadcast_arrays(a, c)
    if np.any(c < 1):
        raise ValueError("concurrency must be at least 1")
    ks, cum_log_x, _ = _basis(usl, int(c.max()) if c.size else 1)
    # log of the unnormalised stationary weight of k in flight: k*log(a) - sum_{j<=k} log X(j)
    log_w = np.log(a)[..., None] * ks - cum_log_x
    inside = ks <= c[..., None]
    log_w = np.where(inside, log_w, -np.inf)
    shift = log_w.max(axis=-1, keepdims=True)
    w = np.exp(log_w - shift)

    x_at_limit = throughput(usl, c.astype(np.float64))
    rho = a / x_at_limit
    stable = rho < 1.0
    rho_s = np.where(stable, rho, 0.0)
    w_at_limit = np.take_along_axis(w, c[..., None], axis=-1)[..., 0]
    # Queued states c+1, c+2, ... form a geometric tail with ratio rho.
    tail_mass = w_at_limit * rho_s / (1.0 - rho_s)
    tail_items = w_at_limit * (c * rho_s / (1.0 - rho_s) + rho_s / (1.0 - rho_s) ** 2)
    total = w.sum(axis=-1) + tail_mass
    in_system = ((w * ks).sum(axis=-1) + tail_items) / total
    mean = in_system / a
    # At vanishing load the formula is 0/0-prone; the limit is one request's service time.
    mean = np.maximum(mean, response_time(usl, 1.0))
    return np.where(stable, mean, np.inf)


def _mean_response_one(usl: Usl, load_rps: float, c: int) -> float:
    """mean_response_seconds for one load and one limit, the same formula."""
    if c < 1:
        raise ValueError("concurrency must be at least 1")
    a = max(load_rps, _TINY_LOAD)
    ks, cum_log_x, x = _basis(usl, c)
    rho = a / float(x[c - 1])
    if not rho < 1.0:
        return math.inf
    log_w = math.log(a) * ks - cum_log_x
    w = np.exp(log_w - log_w.max())
    w_at_limit = float(w[c])
    tail_mass = w_at_limit * rho / (1.0 - rho)
    tail_items = w_at_limit * (c * rho / (1.0 - rho) + rho / (1.0 - rho) ** 2)
    total = float(w.sum()) + tail_mass
    in_system = (float((w * ks).sum()) + tail_items) / total
    return max(in_system / a, float(response_time(usl, 1.0)))


@functools.lru_cache(maxsize=1024)
def _basis(
    usl: Usl, k_max: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """k = 0..k_max, the cumulative log throughput up to each k, and X(1..k_max)."""
    ks = np.arange(k_max + 1, dtype=np.float64)
    x = np.asarray(throughput(usl, ks[1:]), dtype=np.float64)
    cum_log_x = np.concatenate(([0.0], np.cumsum(np.log(x))))
    for array in (ks, cum_log_x, x):
        array.flags.writeable = False
    return ks, cum_log_x, x


def p95_ms(
    usl: Usl,
    *,
    replicas: ArrayLike,
    concurrency: ArrayLike,
    load_rps: ArrayLike,
    tail_factor: float = 2.0,
) -> NDArray[np.float64]:
    """Predicted p95 in milliseconds when `load_rps` spreads evenly over `replicas`."""
    n = np.asarray(replicas, dtype=np.float64)
    load = np.asarray(load_rps, dtype=np.float64)
    per_replica = np.where(n > 0, load / np.maximum(n, 1.0), np.inf)
    mean = mean_response_seconds(
        usl, np.where(np.isfinite(per_replica), per_replica, 0.0), concurrency
    )
    mean = np.where(np.isfinite(per_replica) | (load <= 0), mean, np.inf)
    return 1000.0 * tail_factor * mean


def min_replicas(
    usl: Usl,
    *,
    concurrency: ArrayLike,
    load_rps: float,
    slo_p95_ms: float,
    tail_factor: float = 2.0,
    limit: int = 1_000_000,
    hint: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Fewest replicas whose predicted p95 meets the SLO, per concurrency limit.

    Returns 0 where no replica count up to `limit` can meet it (the SLO is below what a
    single request takes, or the load needs more than `limit` replicas). `hint` (per
    limit, e.g. the answer at a nearby load) only speeds the search up: the answer is
    the same with or without it."""
    c = np.atleast_1d(np.asarray(concurrency, dtype=np.int64))
    if load_rps <= 0:
        floor_ms = slo_floor_ms(usl, tail_factor)
        return np.where(floor_ms <= slo_p95_ms, 1, 0).astype(np.int64) * np.ones_like(c)

    def meets(n: NDArray[np.int64]) -> NDArray[np.bool_]:
        p = p95_ms(usl, replicas=n, concurrency=c, load_rps=load_rps, tail_factor=tail_factor)
        return p <= slo_p95_ms

    # Stability needs n * X(c) > load, so `floor` replicas never meet the SLO (or it is 0).
    floor = np.maximum(np.floor(load_rps / throughput(usl, c.astype(np.float64))), 0)
    floor = np.minimum(floor, limit).astype(np.int64)
    lo = floor
    hi = np.maximum(floor, 1)
    if hint is not None:
        hi = np.clip(np.asarray(hint, dtype=np.int64), hi, limit)
        ok = meets(hi)
        # Where the hint meets, try one below: usually that fails and the search is over.
        below = np.maximum(hi - 1, floor)
        probe = ok & (below > floor)
        if probe.any():
            fails_below = ~meets(np.maximum(below, 1)) & probe
            lo = np.where(fails_below, below, lo)
            hi = np.where(probe & ~fails_below, below, hi)
        lo = np.where(ok, lo, hi)  # where the hint fails, the answer is above it
    else:
        ok = meets(hi)
    while not ok.all():
        grow = ~ok & (hi < limit)
        if not grow.any():
            break
        lo = np.where(grow, hi, lo)
        hi = np.where(grow, np.minimum(hi * 2, limit), hi)
        ok = meets(hi)
    # Invariant for bisection: meets(hi) where ok; lo never meets (or is 0).
    lo = np.where(ok, np.minimum(lo, hi - 1), lo)
    while True:
        gap = ok & (hi - lo > 1)
        if not gap.any():
            break
        mid = (lo + hi) // 2
        m = meets(np.maximum(mid, 1))
        hi = np.where(gap & m, mid, hi)
        lo = np.where(gap & ~m, mid, lo)
    return np.where(ok, hi, 0).astype(np.int64)


def slo_floor_ms(usl: Usl, tail_factor: float = 2.0) -> float:
    """The lowest p95 any number of replicas can give: one request alone, times the tail."""
    return 1000.0 * tail_factor * float(response_time(usl, 1.0))


def sweet_spot(usl: Usl, load_per_replica_rps: float, limits: ArrayLike) -> int:
    """The limit among `limits` with the lowest mean response time at that load."""
    lim = np.asarray(limits, dtype=np.int64)
    means = mean_response_seconds(usl, load_per_replica_rps, lim)
    if not np.isfinite(means).any():
        return int(lim[np.argmax(throughput(usl, lim.astype(np.float64)))])
    return int(lim[int(np.argmin(means))])


__all__ = ["mean_response_seconds", "min_replicas", "p95_ms", "slo_floor_ms", "sweet_spot"]
