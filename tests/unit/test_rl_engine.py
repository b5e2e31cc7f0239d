"""The rl engine without a trained agent: observation, shield, packer, the out-of-range
rule and the fallback, with fixed test policies standing in for the agent."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotwise.api import load_policy_file
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import DecisionError, compile_problem, engine_for
from spotwise.domain import Problem
from spotwise.engines.base import build_tables, check_plan
from spotwise.engines.rl import (
    GLOBAL_FEATURES,
    KNOBS,
    WORKLOAD_FEATURES,
    AgentCard,
    AgentError,
    Memory,
    RlEngine,
    feature_names,
    observation_bounds,
    observation_size,
    observe,
    one_change_to_multi,
    out_of_range,
    resolve_agent,
)

ROOT = Path(__file__).resolve().parents[2]
SHOP_DEMAND = {"frontend": 600.0, "checkout": 240.0, "catalog": 360.0}


@cache
def shop() -> ScalingPolicySpec:
    return load_policy_file(ROOT / "policies" / "shop-knative.yaml").spec


def problem(scale: float = 1.0) -> Problem:
    return compile_problem(shop(), {k: v * scale for k, v in SHOP_DEMAND.items()})


class Fixed:
    """A test policy: the same action every time (hold unless told otherwise)."""

    def __init__(self, action: list[int] | None = None) -> None:
        self.action = np.array(action or [1] * 9, dtype=np.int64)
        self.seen: list[np.ndarray] = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(obs)
        return self.action

    def sample(self, obs: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 3, size=self.action.size) for _ in range(count)]


def card_for(low: float = -10.0, high: float = 10.0, workloads: tuple[str, ...] = ()) -> AgentCard:
    names = workloads or ("frontend", "checkout", "catalog")
    n = observation_size(len(names))
    return AgentCard("test", "ppo", names, (low,) * n, (high,) * n)


def test_observation_is_bounded_float32_with_named_features():
    tables = build_tables(problem())
    obs = observe(tables, None, Memory(), 6 * 3600.0)
    low, high = observation_bounds(3)
    assert obs.dtype == np.float32
    assert obs.shape == (observation_size(3),) == low.shape
    assert ((obs >= low) & (obs <= high)).all()
    names = feature_names(["frontend", "checkout", "catalog"])
    assert len(names) == 3 * len(WORKLOAD_FEATURES) + len(GLOBAL_FEATURES) == obs.size
    assert names[0] == "frontend.load"
    # Time of day: 06:00 is a quarter turn.
    assert obs[names.index("time_sin")] == pytest.approx(1.0, abs=1e-6)


def test_observation_follows_the_previous_plan_and_the_load():
    engine = RlEngine(policy=Fixed(), churn_weight=0.25)
    engine.observe_time(0.0)
    plan = engine.solve(problem())
    names = feature_names(["frontend", "checkout", "catalog"])
    obs_now = engine.observation(build_tables(problem()), plan)
    obs_more = engine.observation(build_tables(problem(1.5)), plan)
    i = names.index("frontend.utilization")
    assert 0 < obs_now[i] < obs_more[i]
    assert obs_more[names.index("frontend.trend")] > 0
    assert obs_now[names.index("frontend.replicas")] > 0
    assert obs_now[names.index("cost_rate")] > 0


def test_hold_plans_meet_every_rule_and_spot_is_used_where_it_pays():
    plan = RlEngine(policy=Fixed(), churn_weight=0.25).solve(problem())
    assert plan.engine == "rl"
    assert plan.feasible and not check_plan(problem(), plan)
    assert sum(w.spot_replicas for w in plan.workloads) > 0


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    actions=st.lists(st.lists(st.integers(0, 2), min_size=9, max_size=9), min_size=1, max_size=6),
    scales=st.lists(st.floats(0.0, 3.0), min_size=6, max_size=6),
)
def test_the_shield_keeps_every_action_within_the_rules(actions, scales):
    """Whatever the agent does, tick after tick, every plan meets the hard rules."""
    engine = RlEngine(policy=Fixed(), churn_weight=0.25)
    previous = None
    for action, scale in zip(actions, scales, strict=False):
        p = problem(scale)
        previous = engine.plan_for(build_tables(p), previous, np.array(action))
        assert not check_plan(p, previous), (action, scale)


def test_knobs_move_replicas_concurrency_and_spot():
    p = problem()
    tables = build_tables(p)
    hold = RlEngine(policy=Fixed()).plan_for(tables, None, [1] * 9)
    more = RlEngine(policy=Fixed()).plan_for(tables, None, [2, 1, 1] * 3)
    no_spot = RlEngine(policy=Fixed())
    plan = None
    for _ in range(10):  # the spot target falls by 0.1 per decision
        plan = no_spot.plan_for(tables, plan, [1, 1, 0] * 3)
    assert plan is not None
    for name in SHOP_DEMAND:
        assert more.workload(name).replicas >= hold.workload(name).replicas
        assert plan.workload(name).spot_replicas == 0
    assert sum(more.workload(n).replicas for n in SHOP_DEMAND) > sum(
        hold.workload(n).replicas for n in SHOP_DEMAND
    )
    lower = RlEngine(policy=Fixed()).plan_for(tables, hold, [1, 0, 1] * 3)
    assert lower.workload("catalog").concurrency < hold.workload("catalog").concurrency


def test_the_packer_keeps_pods_where_they_are_when_nothing_changes():
    engine = RlEngine(policy=Fixed(), churn_weight=0.25)
    first = engine.solve(problem())
    again = engine.solve(problem(1.02), warm_start=first)
    assert again.nodes == first.nodes
    assert [w.pods_by_pool for w in again.workloads] == [w.pods_by_pool for w in first.workloads]


def test_out_of_range_rule():
    p = problem()
    obs = observe(build_tables(p), None, Memory(), 0.0)
    assert out_of_range(card_for(), p, obs) is None
    why = out_of_range(card_for(workloads=("web",)), p, obs)
    assert why is not None and "trained for workloads web" in why
    n = observation_size(3)
    low, high = np.zeros(n), np.full(n, 0.5)
    low[0] = high[0] = 0.001  # frontend.load barely moved in training
    tight = AgentCard("t", "ppo", ("frontend", "checkout", "catalog"), tuple(low), tuple(high * 6))
    why = out_of_range(tight, p, obs)
    assert why is not None and why.startswith("frontend.load = ")
    assert "outside the agent's training range" in why


def test_out_of_range_falls_back_to_genetic_and_the_plan_says_so():
    engine = RlEngine(
        policy=Fixed(), card=card_for(workloads=("a", "b", "c")), churn_weight=0.25, seed=3
    )
    plan = engine.solve(problem())
    assert plan.engine == "genetic" and plan.feasible
    assert plan.reasons[0].startswith("rl fell back to the genetic engine: the agent test")
    assert engine.fallbacks and engine.decisions == 1


def test_one_change_actions_move_exactly_one_knob():
    assert (one_change_to_multi(0, 3) == 1).all()
    for i in range(1, 2 * len(KNOBS) * 3 + 1):
        moved = one_change_to_multi(i, 3)
        assert (moved != 1).sum() == 1
        assert moved[(i - 1) // 2] == (2 if (i - 1) % 2 else 0)


def test_unknown_agents_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AgentError, match="agent 'nope' not found"):
        resolve_agent("nope")
    lonely = tmp_path / "lonely.zip"
    lonely.write_bytes(b"not a model")
    with pytest.raises(AgentError, match=r"no model card lonely\.json"):
        RlEngine(str(lonely))
    spec = shop().model_copy(
        update={"optimizer": shop().optimizer.model_copy(update={"engine": "rl"})}
    )
    spec.optimizer.rl.agent = str(tmp_path / "missing.zip")
    with pytest.raises(DecisionError) as err:
        engine_for(spec)
    assert "\n" not in str(err.value) and "not found" in str(err.value)


def test_observation_cares_about_nothing_but_the_problem_plan_and_memory():
    """Same inputs, same observation: the engine is deterministic."""
    p = replace(problem(), shunned_pools=frozenset())
    a = observe(build_tables(p), None, Memory(), 100.0)
    b = observe(build_tables(p), None, Memory(), 100.0)
    assert np.array_equal(a, b)


def test_an_engine_built_each_tick_goes_on_where_the_last_one_stopped():
    # The operator builds its engine afresh every tick (in worker processes); the
    # simulator keeps one. With the agent's knobs carried in the decision state, both
    # make the same plans, and the knobs do carry: "up" every tick keeps raising the
    # replica margin.
    from spotwise.decide import GuardState, Observation, WorkloadObservation, decide

    spec = shop().model_copy(
        update={"optimizer": shop().optimizer.model_copy(update={"engine": "rl"})}
    )
    up = [2, 1, 1] * 3  # per workload: margin up, concurrency and spot share held

    def observation(tick: int) -> Observation:
        grown = 1.2**tick  # new demand every tick, so every tick solves
        return Observation(
            at=1000.0 * tick,
            step_seconds=10.0,
            workloads=tuple(
                WorkloadObservation(name, (rate * grown,) * 12)
                for name, rate in SHOP_DEMAND.items()
            ),
        )

    kept = RlEngine(policy=Fixed(up))
    kept_state = fresh_state = GuardState()
    kept_plans, fresh_plans, mementos = [], [], []
    for tick in range(4):
        d = decide(spec, observation(tick), kept_state, engine=kept)
        kept_state = d.state
        kept_plans.append(d.plan)
        d = decide(spec, observation(tick), fresh_state, engine=RlEngine(policy=Fixed(up)))
        fresh_state = d.state
        fresh_plans.append(d.plan)
        mementos.append(fresh_state.engine_memory)
    strip = [[(w.name, w.replicas, w.concurrency) for w in p.workloads] for p in kept_plans]
    assert strip == [
        [(w.name, w.replicas, w.concurrency) for w in p.workloads] for p in fresh_plans
    ]
    assert kept_state.engine_memory == fresh_state.engine_memory
    margins = [dict((name, margin) for name, margin, *_ in m) for m in mementos]
    assert [m["frontend"] for m in margins] == sorted({m["frontend"] for m in margins})
