"""Training: a real (tiny) PPO run writes an agent and its model card, the rl and hybrid
engines load it, `spotwise simulate --agent` uses it; A2C and DQN train too. Tests train
a few hundred steps at most; the shipped agent comes from `make agent`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="the rl extra is not installed")

from typer.testing import CliRunner

from spotwise.api import load_policy_file
from spotwise.cli import app
from spotwise.decide import compile_problem
from spotwise.engines.base import check_plan
from spotwise.engines.hybrid import HybridEngine
from spotwise.engines.rl import AgentCard, RlEngine, observation_size
from spotwise.rl.env import EpisodeSettings
from spotwise.rl.train import (
    EvalSettings,
    TrainError,
    TrainSettings,
    card_markdown,
    load_arrivals,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "policies" / "shop-knative.yaml"
SHORT = EpisodeSettings(hours=1.0)
WEIGHTS = (0.5, 0.2, 0.3)
DEMAND = {"frontend": 700.0, "checkout": 280.0, "catalog": 420.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("agents") / "tiny.zip"
    train(
        load_policy_file(SHOP),
        SHOP,
        ["synthetic:flash-crowd:1"],
        out,
        TrainSettings(steps=128, envs=2, weights=WEIGHTS, episode=SHORT),
        EvalSettings(traces=("synthetic:noisy-diurnal:1",), days=0.05),
    )
    return out


def test_training_writes_the_agent_and_its_card(tiny):
    for suffix in (".zip", ".json", ".md", ".reward.png"):
        assert tiny.with_suffix(suffix).is_file(), suffix
    card = json.loads(tiny.with_suffix(".json").read_text())
    assert card["algo"] == "ppo" and card["steps"] == 128 and card["seed"] == 0
    assert card["traces"] == ["synthetic:flash-crowd:1"]
    assert card["workloads"] == ["frontend", "checkout", "catalog"]
    low, high = card["observationRange"]["low"], card["observationRange"]["high"]
    assert len(low) == len(high) == len(card["features"]) == observation_size(3)
    assert all(a <= b for a, b in zip(low, high, strict=True))
    assert card["rewardWeights"] == {"slo": 5.0, "churn": 0.05}
    assert card["trainingSeconds"] > 0
    run = card["evaluation"]["runs"][0]
    assert set(run["strategies"]) == {"spotwise:rl", "spotwise:genetic"}
    assert run["rlCostVsGenetic"] > 0 and run["rlEngine"]["engineCalls"] > 0
    md = tiny.with_suffix(".md").read_text()
    assert "## Held-out evaluation" in md and "tiny.reward.png" in md
    assert "## Out-of-range rule" in md
    assert md == card_markdown(card, "tiny.reward.png")


def test_the_engines_load_the_agent_and_plan_within_the_rules(tiny):
    problem = compile_problem(load_policy_file(SHOP).spec, DEMAND)
    engine = RlEngine(str(tiny), churn_weight=0.25)
    assert isinstance(engine.card, AgentCard) and engine.card.name == "tiny"
    plan = engine.solve(problem)
    assert plan.feasible and not check_plan(problem, plan)
    assert plan.engine == "rl" or plan.reasons[0].startswith("rl fell back")
    hybrid = HybridEngine(str(tiny), seed=1).solve(problem, seed=1)
    assert hybrid.engine == "hybrid" and hybrid.feasible


def test_the_agent_is_read_once_per_file_version(tiny):
    # The operator builds an engine every tick: the model is not read from disk again.
    first = RlEngine(str(tiny)).policy
    assert RlEngine(str(tiny)).policy is first
    # A new version of the file (a retrained agent) is read again.
    card = tiny.with_suffix(".json")
    os.utime(card, ns=(card.stat().st_atime_ns, card.stat().st_mtime_ns + 1_000_000))
    assert RlEngine(str(tiny)).policy is not first


def test_the_numpy_forward_pass_is_the_policys_greedy_action(tiny):
    engine = RlEngine(str(tiny))
    assert engine.policy._greedy is not None
    rng = np.random.default_rng(0)
    for _ in range(300):
        obs = rng.uniform(-1.0, 3.0, size=observation_size(3)).astype(np.float32)
        expected, _ = engine.policy.model.policy.predict(obs, deterministic=True)
        assert np.array_equal(engine.policy.act(obs), expected)


def test_observations_beyond_the_training_range_fall_back(tiny):
    problem = compile_problem(load_policy_file(SHOP).spec, {k: v * 40 for k, v in DEMAND.items()})
    plan = RlEngine(str(tiny), churn_weight=0.25, seed=1).solve(problem)
    assert plan.engine == "genetic"
    assert "outside the agent's training range" in plan.reasons[0]


def test_another_policys_workloads_fall_back(tiny):
    spec = load_policy_file(ROOT / "policies" / "web.yaml").spec
    problem = compile_problem(spec, {spec.workloads[0].name: 100.0})
    plan = RlEngine(str(tiny), seed=1).solve(problem)
    assert plan.engine == "genetic" and "was trained for workloads" in plan.reasons[0]


def test_simulate_runs_rl_and_hybrid_with_the_agent(tiny):
    result = CliRunner().invoke(
        app,
        [
            "simulate", "-f", str(SHOP), "--trace", "synthetic:noisy-diurnal:1",
            "--peak-rps", "1500", "--days", "0.02",
            "--strategies", "spotwise:rl,spotwise:hybrid", "--agent", str(tiny), "-o", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["strategies"]) == {"spotwise:rl", "spotwise:hybrid"}
    assert all(s["cost"] > 0 for s in summary["strategies"].values())


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_a2c_and_dqn_train_and_act(tmp_path, algo):
    out = tmp_path / f"{algo}.zip"
    train(
        load_policy_file(SHOP),
        SHOP,
        ["synthetic:diurnal:1"],
        out,
        TrainSettings(algo=algo, steps=64, envs=1, weights=WEIGHTS, episode=SHORT),
        EvalSettings(),
    )
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["actionEncoding"] == ("one-change" if algo == "dqn" else "multi-discrete")
    engine = RlEngine(str(out))
    obs = np.zeros(observation_size(3), dtype=np.float32)
    action = engine.policy.act(obs)
    expected, _ = engine.policy.model.policy.predict(obs, deterministic=True)
    assert np.array_equal(engine.policy._multi(np.asarray(expected)), action)
    assert action.shape == (9,) and set(action.tolist()) <= {0, 1, 2}
    if algo == "dqn":  # one knob at a time
        assert (action != 1).sum() <= 1


def test_traces_cut_to_dates(tmp_path):
    csv = tmp_path / "t.csv"
    rows = ["time,count"] + [
        f"1998-06-{1 + m // 1440:02d} {(m % 1440) // 60:02d}:{m % 60:02d}:00,{60 + m % 1440}"
        for m in range(3 * 1440)
    ]
    csv.write_text("\n".join(rows) + "\n")
    policy = load_policy_file(SHOP)
    arrivals = load_arrivals(
        f"{csv}@1998-06-02..1998-06-03", policy, peak_rps=100.0, weights=WEIGHTS, step_seconds=60
    )
    assert arrivals.shape == (1440, 3)
    assert arrivals.sum(axis=1).max() == pytest.approx(100.0)
    assert arrivals[0].sum() == pytest.approx(100.0 * 60 / (60 + 1439))
    with pytest.raises(TrainError, match=r"expected FROM\.\.TO"):
        load_arrivals(f"{csv}@1998-06-02", policy, peak_rps=1, weights=None, step_seconds=60)
    plain = tmp_path / "s.csv"
    plain.write_text("seconds,requests\n0,5\n60,6\n120,7\n")
    with pytest.raises(TrainError, match="ISO-8601 timestamps"):
        load_arrivals(f"{plain}@1998-06-02..1998-06-03", policy, peak_rps=1, weights=None,
                      step_seconds=60)  # fmt: skip


def test_train_command_errors_are_one_line(tmp_path):
    runner = CliRunner()
    bad_trace = runner.invoke(
        app,
        ["train", "-f", str(SHOP), "--trace", "nope.csv", "--out", str(tmp_path / "a.zip")],
    )
    assert bad_trace.exit_code == 1
    assert bad_trace.output.strip() == "nope.csv: file not found"
    assert len(bad_trace.output.strip().splitlines()) == 1
    bad_out = runner.invoke(
        app,
        ["train", "-f", str(SHOP), "--trace", "synthetic:diurnal:1", "--out", str(tmp_path / "a")],
    )
    assert bad_out.exit_code == 1 and "must end in .zip" in bad_out.output
    bad_weight = runner.invoke(
        app,
        ["train", "-f", str(SHOP), "--trace", "synthetic:diurnal:1", "--weight", "web=1",
         "--out", str(tmp_path / "a.zip")],
    )  # fmt: skip
    assert bad_weight.exit_code == 2 and "unknown workload 'web'" in bad_weight.output
