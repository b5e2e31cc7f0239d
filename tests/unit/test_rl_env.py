"""The gymnasium environment over the simulator: the SB3 checker, seeding, rewards,
episodes and vectorization."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="the rl extra is not installed")

from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env

from spotwise.api import load_policy_file
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.engines.rl import KNOBS, observation_size
from spotwise.rl.env import (
    REWARD_WEIGHTS,
    EpisodeSettings,
    RewardWeights,
    SpotwiseEnv,
)
from spotwise.sim.run import weights_split
from spotwise.sim.simulator import Series
from spotwise.sim.traces import synthetic

ROOT = Path(__file__).resolve().parents[2]
SHORT = EpisodeSettings(hours=1.0)


@cache
def shop() -> ScalingPolicySpec:
    return load_policy_file(ROOT / "policies" / "shop-knative.yaml").spec


@cache
def traces() -> tuple[np.ndarray, ...]:
    day = synthetic("flash-crowd", 0.25, 10.0, 2000.0, seed=4)
    return (weights_split(day.rps, [0.5, 0.2, 0.3]),)


def env(**kwargs) -> SpotwiseEnv:
    return SpotwiseEnv(shop(), traces(), settings=kwargs.pop("settings", SHORT), **kwargs)


def test_check_env_passes_without_a_single_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env(), warn=True)


def test_spaces_match_the_engine():
    e = env()
    assert e.observation_space.shape == (observation_size(3),)
    assert e.observation_space.dtype == np.float32
    assert list(e.action_space.nvec) == [3] * (len(KNOBS) * 3)


def rollout(e: SpotwiseEnv, seed: int, action: list[int], steps: int = 8):
    obs, info = e.reset(seed=seed)
    out = [(obs, 0.0)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = e.step(np.array(action))
        assert not terminated
        out.append((obs, reward))
        if truncated:
            break
    return info, out


def test_the_same_seed_gives_the_same_episode():
    a_info, a = rollout(env(), 5, [1] * 9)
    b_info, b = rollout(env(), 5, [1] * 9)
    assert a_info == b_info
    for (oa, ra), (ob, rb) in zip(a, b, strict=True):
        assert np.array_equal(oa, ob) and ra == rb
    c_info, _ = rollout(env(), 6, [1] * 9)
    assert c_info != a_info


def test_an_episode_ends_by_truncation_with_costs_charged_as_rewards():
    e = env()
    e.reset(seed=1)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = e.step(np.ones(9, dtype=np.int64))
        assert e.observation_space.contains(obs)
        assert reward < 0  # nodes always cost something
        total += reward
        steps += 1
        if truncated:
            break
    # One hour of decisions: the engine is asked at least every 5 minutes.
    assert 12 <= steps <= 60
    assert not terminated and total < 0


def test_reward_weights_are_charged_as_documented():
    e = env(weights=RewardWeights(slo=5.0, churn=0.5))
    e.reset(seed=0)
    minute = e.settings.step_seconds / 60.0
    ref = e._reference
    calm, violated = Series(violation=[False]), Series(violation=[True])
    assert e._reward(calm, ref, 0) == pytest.approx(-minute)
    assert e._reward(violated, 0.0, 0) == pytest.approx(-5.0 * minute)
    assert e._reward(calm, 0.0, 3) == pytest.approx(-1.5)
    assert REWARD_WEIGHTS.slo > 0 and REWARD_WEIGHTS.churn > 0


def test_more_margin_costs_more_than_holding():
    _, hold = rollout(env(), 2, [1] * 9, steps=10)
    _, more = rollout(env(), 2, [2, 1, 1] * 3, steps=10)
    assert sum(r for _, r in more) < sum(r for _, r in hold)


def test_episodes_need_a_trace_at_least_one_episode_long():
    with pytest.raises(ValueError, match="no trace is as long as one episode"):
        SpotwiseEnv(shop(), traces(), settings=EpisodeSettings(hours=24.0))
    with pytest.raises(ValueError, match=r"not a \(steps, 3\) array"):
        SpotwiseEnv(shop(), [np.ones((100, 2))], settings=SHORT)


def test_vectorized_envs_step_together():
    vec = make_vec_env(lambda: env(), n_envs=2, seed=0)
    obs = vec.reset()
    assert obs.shape == (2, observation_size(3))
    obs, rewards, _dones, _ = vec.step(np.ones((2, 9), dtype=np.int64))
    assert obs.shape == (2, observation_size(3)) and rewards.shape == (2,)
    vec.close()


def test_the_driver_steps_exactly_like_simulation_run():
    """SimDriver repeats Simulation.run's loop body; a strategy that never asks the agent
    must give the same run either way."""
    from spotwise.rl.env import SimDriver
    from spotwise.sim.simulator import SimConfig, Simulation, setup_from_policy
    from spotwise.sim.strategies.base import StrategyContext
    from spotwise.sim.strategies.knative_default import KnativeDefault

    setup = setup_from_policy(shop())
    arrivals = traces()[0][:720]
    config = SimConfig(seed=4, interruption_scale=100.0)

    def strategy():
        return KnativeDefault(StrategyContext(shop(), setup.workloads, setup.pools, 4))

    reference = Simulation(setup, strategy(), config).run(arrivals)
    sim = Simulation(setup, strategy(), config)
    steps: list[Series] = []
    asked, _ = SimDriver(sim, arrivals).run(lambda step, cost, churn: steps.append(step) or 0.0)
    assert asked is None and len(steps) == len(arrivals)
    assert sim.cluster.billed_dollars == pytest.approx(reference.cost, rel=1e-12)
    assert [s.replicas[0] for s in steps] == reference.series.replicas
    assert [s.violation[0] for s in steps] == reference.series.violation
