"""Demand forecast over a planning horizon, with headroom that follows volatility.

Holt's linear (double exponential) smoothing gives a level and a trend; the point
forecast extends the trend over the horizon (the tick interval plus node lead time),
damped (Gardner-McKenzie, `phi`) so that a trend that picked up minute-to-minute noise
is not carried over the whole horizon.
The upper bound adds a quantile of recent one-step-ahead errors, widened with the
square root of the horizon, so a noisy series gets more headroom than a smooth one at
the same level. This is not a seasonal model and it does not read metrics: it takes
a series that the caller already fetched. Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Forecast:
    """Demand expected `horizon` ahead, in the units of the history (e.g. requests/s)."""

    level: float  # smoothed value at the last sample
    trend: float  # smoothed change per step
    point: float  # level + trend * horizon steps, never negative
    upper: float  # point + volatility headroom, never below point
    samples: int  # finite samples the forecast is based on

    @property
    def headroom(self) -> float:
        """upper - point: what volatility adds on top of the point forecast."""
        return self.upper - self.point


def forecast(
    history: Sequence[float] | NDArray[np.floating],
    *,
    step_seconds: float,
    horizon_seconds: float,
    quantile: float = 0.95,
    alpha: float = 0.5,
    beta: float = 0.1,
    phi: float = 0.9,
    window: int = 60,
) -> Forecast:
    """Forecast `horizon_seconds` past the last sample of `history` (one per `step_seconds`).

    `alpha` and `beta` smooth the level and the trend, `phi` damps the trend (1: not at
    all); `window` is how many recent one-step errors set the headroom, and `quantile`
    which of them. Non-finite samples (gaps in scraped metrics) are skipped.
    """
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
    if not horizon_seconds >= 0:
        raise ValueError(f"horizon_seconds must be >= 0, got {horizon_seconds}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in 0..1, got {quantile}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in 0..1, got {beta}")
    if not 0.0 < phi <= 1.0:
        raise ValueError(f"phi must be in (0, 1], got {phi}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")

    x = np.asarray(history, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Forecast(0.0, 0.0, 0.0, 0.0, 0)
    if n == 1:
        value = max(float(x[0]), 0.0)
        return Forecast(value, 0.0, value, value, 1)

    # Start the trend at the first difference: with trend 0 a steady ramp would be
    # under-forecast for ~1/beta steps, exactly when scaling up matters.
    values: list[float] = x.tolist()  # plain floats: the recursion is sequential anyway
    level = values[1]
    trend = values[1] - values[0]
    residuals = np.empty(n - 2, dtype=np.float64)
    for t in range(2, n):
        predicted = level + phi * trend
        residuals[t - 2] = values[t] - predicted
        new_level = alpha * values[t] + (1.0 - alpha) * predicted
        trend = beta * (new_level - level) + (1.0 - beta) * phi * trend
        level = new_level

    steps = horizon_seconds / step_seconds
    point = max(level + trend * _damped_steps(phi, steps), 0.0)
    recent = residuals[-window:]
    if recent.size == 0:
        return Forecast(level, trend, point, point, n)
    # Signed errors: only under-forecasts (demand above the prediction) call for headroom.
    spread = max(float(np.quantile(recent, quantile)), 0.0)
    upper = point + spread * math.sqrt(steps)
    return Forecast(level, trend, point, upper, n)


def _damped_steps(phi: float, steps: float) -> float:
    """phi + phi^2 + ... + phi^steps: how many steps of trend a damped forecast adds."""
    if phi == 1.0:
        return steps
    return float(phi * (1.0 - phi**steps) / (1.0 - phi))
