import math

import numpy as np
import pytest

from spotwise.domain import Usl
from spotwise.models.fitting import UslFit, fit_usl


def usl_x(usl: Usl, c):
    c = np.asarray(c, dtype=float)
    return usl.lam * c / (1 + usl.sigma * (c - 1) + usl.kappa * c * (c - 1))


def peak_concurrency(usl: Usl) -> float:
    return math.sqrt((1 - usl.sigma) / usl.kappa)


def samples(usl: Usl, n: int = 200, seed: int = 0, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    c = rng.uniform(1, 60, n)
    return c, usl_x(usl, c) * (1 + rng.normal(0, noise, n))


FALLBACK = Usl(lam=10.0, sigma=0.1, kappa=0.01)


@pytest.mark.parametrize(
    "true",
    [Usl(lam=50, sigma=0.05, kappa=0.002), Usl(lam=120, sigma=0.1, kappa=0.0005)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_known_parameters(true, seed):
    c, x = samples(true, seed=seed)
    fit = fit_usl(c, x)
    assert fit.fitted, fit.reason
    assert fit.samples == 200
    assert fit.r2 > 0.8
    assert fit.usl.lam == pytest.approx(true.lam, rel=0.1)
    c_star = peak_concurrency(true)
    assert peak_concurrency(fit.usl) == pytest.approx(c_star, rel=0.1)
    assert usl_x(fit.usl, peak_concurrency(fit.usl)) == pytest.approx(usl_x(true, c_star), rel=0.1)


def test_fit_respects_bounds():
    # Throughput that grows super-linearly is outside the model; bounds must still hold.
    c = np.linspace(1, 30, 40)
    fit = fit_usl(c, c**1.2, fallback=FALLBACK)
    assert fit.usl.lam > 0
    assert 0 <= fit.usl.sigma < 1
    assert 0 <= fit.usl.kappa < 1


def test_thin_data_returns_fallback_with_reason():
    c, x = samples(Usl(50, 0.05, 0.002), n=5)
    fit = fit_usl(c, x, fallback=FALLBACK)
    assert fit == UslFit(FALLBACK, 0.0, 5, False, fit.reason)
    assert "5 usable samples" in fit.reason


def test_too_few_levels_returns_fallback():
    c = np.repeat([4.0, 8.0], 10)
    fit = fit_usl(c, usl_x(Usl(50, 0.05, 0.002), c), fallback=FALLBACK)
    assert not fit.fitted
    assert fit.usl == FALLBACK
    assert "distinct in-flight" in fit.reason


def test_poor_fit_returns_fallback():
    rng = np.random.default_rng(4)
    c = rng.uniform(1, 60, 100)
    fit = fit_usl(c, rng.uniform(1, 100, 100), fallback=FALLBACK)
    assert not fit.fitted
    assert fit.usl == FALLBACK
    assert "r2" in fit.reason
    assert fit.r2 < 0.5


def test_no_fallback_raises():
    with pytest.raises(ValueError, match="usable samples"):
        fit_usl([1.0, 2.0], [3.0, 4.0])


def test_garbage_samples_are_dropped():
    true = Usl(50, 0.05, 0.002)
    c, x = samples(true, n=120, seed=5)
    c[::7] = np.nan
    x[::11] = np.inf
    x[::13] = -1.0
    c[::17] = 0.0
    fit = fit_usl(c, x)
    keep = np.isfinite(c) & np.isfinite(x) & (c > 0) & (x > 0)
    assert fit.samples == int(keep.sum())
    assert fit.fitted, fit.reason
    assert fit.usl.lam == pytest.approx(true.lam, rel=0.1)


def test_all_nan_returns_fallback():
    fit = fit_usl([math.nan] * 20, [math.nan] * 20, fallback=FALLBACK)
    assert not fit.fitted
    assert fit.samples == 0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="samples"):
        fit_usl([1.0, 2.0, 3.0], [1.0, 2.0], fallback=FALLBACK)


def test_deterministic():
    c, x = samples(Usl(50, 0.05, 0.002), seed=8)
    assert fit_usl(c, x) == fit_usl(c.copy(), x.copy())
