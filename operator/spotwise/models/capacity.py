"""Per-replica capacity under the Universal Scalability Law (USL).

X(c) = lam*c / (1 + sigma*(c-1) + kappa*c*(c-1)) is the throughput of one replica with
c requests in flight, R(c) = c / X(c) its mean response time (Little's law). Throughput
peaks at c* = sqrt((1-sigma)/kappa) and falls past it, which is why a concurrency limit
has a sweet spot. Fitting the parameters from samples lives in `fitting.py`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spotwise.domain import Usl


def throughput(usl: Usl, in_flight: ArrayLike) -> NDArray[np.float64]:
    """Requests/second one replica completes with `in_flight` requests in progress."""
    c = np.asarray(in_flight, dtype=np.float64)
    return usl.lam * c / (1.0 + usl.sigma * (c - 1.0) + usl.kappa * c * (c - 1.0))


def response_time(usl: Usl, in_flight: ArrayLike) -> NDArray[np.float64]:
    """Mean seconds per request at `in_flight` requests in progress (c / X(c))."""
    c = np.asarray(in_flight, dtype=np.float64)
    return (1.0 + usl.sigma * (c - 1.0) + usl.kappa * c * (c - 1.0)) / usl.lam


def peak_concurrency(usl: Usl) -> float:
    """The in-flight count where throughput peaks; infinite without coherency cost."""
    if usl.kappa <= 0:
        return math.inf
    return math.sqrt((1.0 - usl.sigma) / usl.kappa)
