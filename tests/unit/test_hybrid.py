"""The hybrid engine: rl proposals seed the genetic population, which runs half the
generations; without a usable agent it is the genetic engine alone, and says so."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from spotwise.api import load_policy_file
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import compile_problem
from spotwise.domain import Problem
from spotwise.engines.base import build_tables, check_plan
from spotwise.engines.hybrid import GENERATION_SHARE, HybridEngine
from spotwise.engines.rl import AgentCard, RlEngine, observation_size

ROOT = Path(__file__).resolve().parents[2]


@cache
def shop() -> ScalingPolicySpec:
    return load_policy_file(ROOT / "policies" / "shop-knative.yaml").spec


def problem(scale: float = 1.0) -> Problem:
    demand = {"frontend": 900.0, "checkout": 300.0, "catalog": 500.0}
    return compile_problem(shop(), {k: v * scale for k, v in demand.items()})


class Fixed:
    """A test policy: always the same action; sampled actions are seeded random."""

    def __init__(self, action: list[int]) -> None:
        self.action = np.array(action, dtype=np.int64)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action

    def sample(self, obs: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 3, size=self.action.size) for _ in range(count)]


def test_hybrid_runs_half_the_generations_and_respects_every_rule():
    engine = HybridEngine(policy=Fixed([1] * 9), generations=40, patience=12, seed=1)
    assert engine.genetic.generations == round(40 * GENERATION_SHARE)
    assert engine.genetic.patience == round(12 * GENERATION_SHARE)
    plan = engine.solve(problem(), seed=1)
    assert plan.engine == "hybrid"
    assert plan.reasons[0] == "hybrid: 8 rl proposals"
    assert plan.feasible and not check_plan(problem(), plan)
    assert engine.last_generations <= 20


def test_hybrid_is_never_worse_than_its_best_proposal():
    """Elitism: a seed in the first population is a plan the GA can always return."""
    for action in ([1] * 9, [2, 0, 2] * 3, [0, 2, 0] * 3):
        engine = HybridEngine(policy=Fixed(action), samples=1, seed=2)
        p = problem(1.3)
        proposal = RlEngine(policy=Fixed(action)).plan_for(build_tables(p), None, action)
        assert engine.solve(p, seed=2).hourly_cost <= proposal.hourly_cost + 1e-9


def test_without_a_usable_agent_hybrid_is_the_genetic_engine_and_says_so():
    n = observation_size(3)
    card = AgentCard("other", "ppo", ("web", "api", "db"), (0.0,) * n, (1.0,) * n)
    engine = HybridEngine(policy=Fixed([1] * 9), card=card, generations=40, seed=1)
    plan = engine.solve(problem(), seed=1)
    assert plan.engine == "hybrid" and plan.feasible
    assert plan.reasons[0].startswith("hybrid ran the genetic engine alone: the agent other")
