import math

import numpy as np
import pytest

from spotwise.models.demand import Forecast, forecast

STEP = 10.0
HORIZON = 180.0  # 18 steps


def run(history, **kwargs):
    return forecast(history, step_seconds=STEP, horizon_seconds=HORIZON, **kwargs)


def test_empty_history_is_zeros():
    assert run([]) == Forecast(0.0, 0.0, 0.0, 0.0, 0)
    assert run([math.nan, math.nan]).samples == 0


def test_single_sample():
    f = run([42.0])
    assert f.point == f.upper == 42.0
    assert f.samples == 1


def test_constant_series_has_no_headroom():
    f = run([100.0] * 50)
    assert f.point == pytest.approx(100.0)
    assert f.upper == pytest.approx(100.0)
    assert f.trend == pytest.approx(0.0)


def test_headroom_follows_volatility():
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 1.0, 300)
    smooth = run(100.0 + 1.0 * noise)
    noisy = run(100.0 + 15.0 * noise)
    assert smooth.point == pytest.approx(noisy.point, rel=0.2)
    assert noisy.headroom > 5 * smooth.headroom
    assert smooth.headroom > 0


def test_rising_trend_forecasts_above_last_value():
    history = 100.0 + 3.0 * np.arange(120)
    undamped = run(history, phi=1.0)
    assert undamped.trend == pytest.approx(3.0, rel=0.01)
    assert undamped.point == pytest.approx(history[-1] + 3.0 * HORIZON / STEP, rel=0.01)
    # Damped (the default): the trend adds phi + phi^2 + ... + phi^18 steps, not 18.
    f = run(history)
    assert history[-1] < f.point < undamped.point
    assert f.point == pytest.approx(f.level + f.trend * 0.9 * (1 - 0.9**18) / 0.1, rel=1e-9)


def test_damping_keeps_noise_from_swinging_the_point():
    # Minute-to-minute noise (15 %) around a flat level: the undamped trend extrapolates
    # each wobble over the whole horizon, the damped one much less, so plans built on it
    # swing less (and scale-down stabilization keeps fewer of their peaks).
    rng = np.random.default_rng(21)
    series = np.repeat(1000.0 * rng.lognormal(0.0, 0.15, 100), 6)  # per minute, 10 s steps

    def swing(**kwargs: float) -> float:
        points = np.array([run(series[i - 90 : i], **kwargs).point for i in range(90, 600, 6)])
        return float(np.mean(np.abs(np.diff(points)) / points[1:]))

    assert swing() < 0.75 * swing(phi=1.0)


def test_noisy_rising_trend_still_rises():
    rng = np.random.default_rng(3)
    history = 100.0 + 3.0 * np.arange(200) + rng.normal(0, 5, 200)
    f = run(history)
    assert f.point > 100.0 + 3.0 * 199
    assert f.upper > f.point


def test_non_negative_when_falling_to_zero():
    history = np.maximum(0.0, 500.0 - 10.0 * np.arange(100))
    f = run(history)
    assert f.point >= 0.0
    assert f.upper >= f.point
    f = run([50.0, 20.0])  # the trend alone would go far below zero
    assert f.point == 0.0
    assert f.upper >= 0.0


def test_nans_are_skipped():
    history = [10.0, math.nan, 12.0, 14.0, math.inf, 16.0]
    assert run(history) == run([10.0, 12.0, 14.0, 16.0])
    assert run(history).samples == 4


def test_deterministic():
    rng = np.random.default_rng(11)
    history = rng.gamma(5.0, 20.0, 500)
    assert run(history) == run(history.copy()) == run(list(history))


def test_upper_grows_with_horizon_and_quantile():
    rng = np.random.default_rng(5)
    history = 200.0 + rng.normal(0, 10, 300)
    short = forecast(history, step_seconds=STEP, horizon_seconds=30.0)
    long = forecast(history, step_seconds=STEP, horizon_seconds=300.0)
    assert long.headroom > short.headroom
    assert run(history, quantile=0.99).headroom > run(history, quantile=0.8).headroom


def test_window_uses_recent_residuals_only():
    rng = np.random.default_rng(9)
    calm_after_storm = np.concatenate(
        [100.0 + rng.normal(0, 30, 200), 100.0 + rng.normal(0, 1, 100)]
    )
    assert run(calm_after_storm, window=60).headroom < run(calm_after_storm, window=300).headroom


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step_seconds": 0.0, "horizon_seconds": 60.0},
        {"step_seconds": 10.0, "horizon_seconds": -1.0},
        {"step_seconds": 10.0, "horizon_seconds": 60.0, "quantile": 1.5},
        {"step_seconds": 10.0, "horizon_seconds": 60.0, "alpha": 0.0},
        {"step_seconds": 10.0, "horizon_seconds": 60.0, "window": 0},
        {"step_seconds": 10.0, "horizon_seconds": 60.0, "phi": 0.0},
        {"step_seconds": 10.0, "horizon_seconds": 60.0, "phi": 1.5},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        forecast([1.0, 2.0, 3.0], **kwargs)
