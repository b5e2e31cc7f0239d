"""The savings benchmark's bookkeeping: targets per run, aggregates, the noise yardstick
and the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spotwise.benchmarks.savings import (
    NOISE_QUANTILES,
    SavingsSettings,
    aggregate,
    benchmark_traces,
    lognormal_noise_quantile,
    noise_quantile_traces,
    noise_yardstick,
    plot_savings,
    targets,
)
from spotwise.sim.traces import SYNTHETIC_NOISE_CV, Trace, with_noise


def _metrics(cost: float, slo: float, minutes: float, oracle: float) -> dict[str, float]:
    return {
        "cost": cost,
        "costVsOracle": round(cost / oracle, 4),
        "sloViolationPct": slo,
        "violationMinutes": minutes,
        "interruptions": 1,
        "wallSeconds": 100.0,
    }


def _run(trace: str, seed: int, spotwise_cost: float) -> dict[str, object]:
    oracle = 1.8
    return {
        "trace": trace,
        "seed": seed,
        "strategies": {
            "on-demand-hpa": _metrics(5.0, 1.2, 17.0, oracle),
            "spot-greedy": _metrics(2.1, 1.7, 24.0, oracle),
            "spotwise:genetic": _metrics(spotwise_cost, 0.4, 6.0, oracle),
            "oracle": _metrics(oracle, 0.0, 0.0, oracle),
        },
    }


RUNS = [_run("a", 1, 2.2), _run("a", 2, 2.2), _run("b", 1, 2.25)]


def test_targets_are_checked_on_every_run_not_on_the_mean() -> None:
    met = targets(RUNS)
    assert met["costAtMost0.45xOnDemandHpa"] is True  # 2.2 and 2.25 of 5.0
    # One run at 0.48x misses, even though the mean stays below 0.45x.
    assert targets([*RUNS, _run("c", 1, 2.4)])["costAtMost0.45xOnDemandHpa"] is False
    assert met["fewerViolationMinutesThanSpotGreedy"] is True
    assert met["costAtMost1.1xSpotGreedy"] is True
    assert met["costAtMost1.3xOracle"] is True


def test_aggregate_is_relative_to_on_demand_hpa() -> None:
    agg = aggregate(RUNS)["spotwise:genetic"]
    assert agg["costVsOnDemandHpaMax"] == 0.45
    assert agg["costVsOnDemandHpaMean"] == round((0.44 + 0.44 + 0.45) / 3, 4)


def test_the_plot_is_written(tmp_path: Path) -> None:
    # Three equal values whose float mean is not exactly them (the real run hit this).
    third = [_run("e", seed, 2.2) for seed in (1, 2, 3)]
    for run, share in zip(third, (0.1, 0.1, 0.1), strict=True):
        run["strategies"]["spotwise:genetic"]["sloViolationPct"] = share  # type: ignore[index]
    result = {"runs": [*RUNS, *third], "settings": {"seeds": [1, 2, 3], "days": 2.0}}
    path = plot_savings(result, tmp_path / "savings.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_the_noise_quantile_is_the_generators(q: float) -> None:
    flat = Trace("flat", 60.0, np.ones(400_000))
    drawn = with_noise(flat, cv=SYNTHETIC_NOISE_CV, seed=3).rps
    assert lognormal_noise_quantile(q, SYNTHETIC_NOISE_CV) == pytest.approx(
        float(np.quantile(drawn, q)), rel=0.003
    )


def test_the_yardstick_covers_all_but_the_noise_tail() -> None:
    settings = SavingsSettings(days=1.0)
    load = benchmark_traces(None, settings)
    yardsticks = noise_quantile_traces(settings)
    assert set(yardsticks) == {(n, q) for n in load for q in NOISE_QUANTILES}
    for (name, q), trace in yardsticks.items():
        assert trace.steps == load[name].steps
        short = float(np.mean(trace.rps < load[name].rps))
        # Interpolating minutes to 10 s steps smooths both: a bit fewer steps short than 1-q.
        assert 0.2 * (1 - q) < short < 1.2 * (1 - q), (name, q, short)


def test_the_yardstick_is_related_to_its_own_traces_runs() -> None:
    out = noise_yardstick(RUNS, {("a", 0.99): 2.0, ("z", 0.99): 9.0}, {("a", 0.99): 0.5})
    assert out == [
        {
            "trace": "a",
            "noiseQuantile": 0.99,
            "cost": 2.0,
            "costVsOracle": round(2.0 / 1.8, 4),
            "costVsOnDemandHpa": 0.4,
            "stepsShortPct": 0.5,
            "engineCostVsYardstick": 1.1,
        }
    ]
