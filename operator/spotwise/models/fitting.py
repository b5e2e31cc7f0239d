"""Fit Universal Scalability Law parameters to measured (in-flight, throughput) samples.

One replica's samples of requests in flight and completed requests/second give lam,
sigma and kappa by bounded non-linear least squares. The fit is only trusted when the
data can identify it (enough samples at enough distinct concurrency levels, and a good
r2); otherwise the caller's fallback (from the spec, or defaults) comes back with the
reason, so status can say why. Evaluating the model for planning lives in
`capacity.py`; this module neither queries metrics nor chooses a concurrency. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from spotwise.domain import Usl

MIN_DISTINCT_LEVELS = 3  # three parameters need at least three concurrency levels
MIN_R2 = 0.5
# In-flight values within this relative width count as one level: averaged gauges
# scatter around the same concurrency and do not help identify the curve.
_LEVEL_TOLERANCE = 0.01
_UPPER = 1.0 - 1e-9  # sigma, kappa < 1


@dataclass(frozen=True, slots=True)
class UslFit:
    """The outcome of a fit: `fitted` False means `usl` is the fallback, and `reason` why."""

    usl: Usl
    r2: float  # of the attempted fit on the throughput scale; 0.0 when none was attempted
    samples: int  # usable samples (finite, positive)
    fitted: bool
    reason: str


def _throughput(
    lam: float, sigma: float, kappa: float, c: NDArray[np.float64]
) -> NDArray[np.float64]:
    # The same formula as capacity.throughput, kept local so fitting does not depend on it.
    result: NDArray[np.float64] = lam * c / (1.0 + sigma * (c - 1.0) + kappa * c * (c - 1.0))
    return result


def _distinct_levels(c: NDArray[np.float64]) -> int:
    # Bins of equal relative width, so a dense cloud of samples still counts its spread.
    bins = np.floor(np.log(c) / np.log1p(_LEVEL_TOLERANCE))
    return int(np.unique(bins).size)


def _initial_guess(c: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """lam from the lowest-concurrency samples, then sigma and kappa by linear regression.

    With lam known, c*lam/X(c) - 1 = sigma*(c-1) + kappa*c*(c-1) is linear in sigma and
    kappa (Gunther's linearization), which starts the non-linear fit near its answer.
    """
    order = np.argsort(c)
    low = order[: max(3, c.size // 10)]
    lam = float(np.median(x[low] / c[low]))
    y = c * lam / x - 1.0
    a = np.column_stack([c - 1.0, c * (c - 1.0)])
    (sigma, kappa), *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.array(
        [lam, float(np.clip(sigma, 0.0, 0.5)), float(np.clip(kappa, 0.0, 0.5))],
        dtype=np.float64,
    )


def _fallback(fallback: Usl | None, reason: str, samples: int, r2: float = 0.0) -> UslFit:
    if fallback is None:
        raise ValueError(f"cannot fit USL: {reason}")
    return UslFit(fallback, r2, samples, False, reason)


def fit_usl(
    in_flight: ArrayLike,
    throughput: ArrayLike,
    *,
    fallback: Usl | None = None,
    min_samples: int = 8,
) -> UslFit:
    """Fit `Usl` to samples of requests in flight and requests/second of one replica.

    Samples with a non-finite or non-positive value are dropped. Too few samples, fewer
    than three distinct in-flight levels, or r2 below 0.5 return `fallback` with
    fitted=False and the reason; without a fallback those raise ValueError.
    """
    c = np.asarray(in_flight, dtype=np.float64).ravel()
    x = np.asarray(throughput, dtype=np.float64).ravel()
    if c.shape != x.shape:
        raise ValueError(f"in_flight has {c.size} samples but throughput has {x.size}")
    keep = np.isfinite(c) & np.isfinite(x) & (c > 0) & (x > 0)
    c, x = c[keep], x[keep]
    n = int(c.size)

    if n < min_samples:
        return _fallback(fallback, f"only {n} usable samples, need {min_samples}", n)
    levels = _distinct_levels(c)
    if levels < MIN_DISTINCT_LEVELS:
        return _fallback(
            fallback,
            f"only {levels} distinct in-flight level(s), need {MIN_DISTINCT_LEVELS}",
            n,
        )

    # Relative (log) residuals: throughput noise grows with throughput, and absolute
    # residuals would let the busiest samples decide the fit alone.
    log_x = np.log(x)

    def residuals(p: NDArray[np.float64]) -> NDArray[np.float64]:
        model = _throughput(float(p[0]), float(p[1]), float(p[2]), c)
        out: NDArray[np.float64] = np.log(np.maximum(model, 1e-300)) - log_x
        return out

    guess = _initial_guess(c, x)
    lower = np.array([1e-12, 0.0, 0.0])
    upper = np.array([np.inf, _UPPER, _UPPER])
    best: NDArray[np.float64] | None = None
    best_cost = np.inf
    # The linearized start is usually right; a generic start guards against the rare
    # case where noise at low concurrency throws it off.
    for start in (guess, np.array([guess[0], 0.05, 1e-3])):
        try:
            result = least_squares(
                residuals,
                np.clip(start, lower, upper * 0.999),
                bounds=(lower, upper),
                x_scale="jac",
                method="trf",
            )
        except (ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(result.x)) and result.cost < best_cost:
            best, best_cost = np.asarray(result.x, dtype=np.float64), float(result.cost)
    if best is None:
        return _fallback(fallback, "the least-squares fit did not converge", n)

    usl = Usl(lam=float(best[0]), sigma=float(best[1]), kappa=float(best[2]))
    predicted = _throughput(usl.lam, usl.sigma, usl.kappa, c)
    ss_res = float(np.sum((x - predicted) ** 2))
    ss_tot = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    if r2 < MIN_R2:
        return _fallback(fallback, f"fit explains too little (r2={r2:.2f} < {MIN_R2})", n, r2)
    return UslFit(usl, r2, n, True, f"fitted from {n} samples at {levels} levels, r2={r2:.2f}")
