"""The Knative concurrency study: the KPA with other targets, the learned target, the
study's environment and its results."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="the rl extra is not installed")

from stable_baselines3.common.env_checker import check_env

from spotwise.rl.concurrency import (
    STUDY_POLICY,
    SWEEP,
    ConcurrencyEnv,
    KnativeFixed,
    LearnedConcurrency,
    run_study,
    study_policy,
)
from spotwise.rl.env import EpisodeSettings
from spotwise.sim.simulator import SimConfig, Simulation, setup_from_policy
from spotwise.sim.strategies.base import StrategyContext
from spotwise.sim.strategies.knative_default import KnativeDefault
from spotwise.sim.traces import synthetic

ROOT = Path(__file__).resolve().parents[2]


@cache
def arrivals(hours: float = 3.0) -> np.ndarray:
    day = synthetic("flash-crowd", 1.0, 10.0, 2000.0, seed=2)
    start = int(10 * 3600 / 10)
    return day.rps[start : start + int(hours * 360)].reshape(-1, 1)


def context() -> tuple[StrategyContext, object]:
    spec = study_policy().spec
    setup = setup_from_policy(spec)
    return StrategyContext(spec, setup.workloads, setup.pools, 1), setup


class Always:
    """A test policy: the same move every minute (0 down, 1 hold, 2 up)."""

    def __init__(self, move: int) -> None:
        self.move = move

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.array([self.move])

    def sample(self, obs: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
        return [self.act(obs)] * count


def simulate(strategy) -> object:
    _, setup = context()
    return Simulation(setup, strategy, SimConfig(seed=1, interruption_scale=0.0)).run(arrivals())


def test_the_shipped_study_policy_is_the_embedded_one():
    assert (ROOT / "policies" / "agents" / "knative-study.yaml").read_text() == STUDY_POLICY


def test_a_fixed_target_of_100_is_knative_default():
    ctx, _ = context()
    a = simulate(KnativeDefault(ctx))
    b = simulate(KnativeFixed(ctx, 100))
    assert a.series.replicas == b.series.replicas and a.cost == b.cost


def test_the_learned_target_moves_along_the_grid():
    ctx, _ = context()
    down = LearnedConcurrency(ctx, Always(0))
    simulate(down)
    assert down.limits[0] < 100 and min(down.limits) == 1  # one step a tick, to the floor
    hold = LearnedConcurrency(ctx, Always(1))
    simulate(hold)
    assert set(hold.limits) == {100}


def test_the_study_finds_the_concurrency_sweet_spot():
    study = run_study(study_policy().spec, arrivals(), Always(1), sweep=(10, 20, 100))
    assert [s["concurrency"] for s in study["sweep"]] == [10, 20, 100]
    by_c = {s["concurrency"]: s for s in study["sweep"]}
    assert study["knativeDefault"]["throughputRps"] == by_c[100]["throughputRps"]
    # Knative's default lets pods fill up past the USL peak (about 31 in flight), where
    # they slow down: it sheds more, serves less and its p95 is worse than a low target's.
    assert by_c[10]["shedPct"] < by_c[20]["shedPct"] < by_c[100]["shedPct"]
    assert by_c[10]["throughputRps"] > by_c[100]["throughputRps"]
    assert by_c[10]["p95Ms"] < by_c[100]["p95Ms"]
    best = study["bestFixed"]
    assert best["throughputRps"] >= 0.995 * max(s["throughputRps"] for s in study["sweep"])
    # A learner that always holds stays at Knative's default.
    assert study["learned"]["concurrency"] == pytest.approx(100)
    assert study["learnedVsDefault"]["throughputRatio"] == pytest.approx(1.0, abs=1e-3)


def test_the_concurrency_env_passes_check_env_without_warnings():
    env = ConcurrencyEnv(study_policy().spec, [arrivals()], settings=EpisodeSettings(hours=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)


def test_the_concurrency_env_rewards_serving_fast():
    env = ConcurrencyEnv(study_policy().spec, [arrivals()], settings=EpisodeSettings(hours=1))
    env.reset(seed=3)
    rewards = []
    while True:
        _, r, _, truncated, _ = env.step(np.array([1]))
        rewards.append(r)
        if truncated:
            break
    assert len(rewards) == 360  # one decision per 10 s step
    assert all(r <= 1.0 for r in rewards) and np.mean(rewards) > 0
    assert SWEEP[0] < 100 < SWEEP[-1]
