"""Every example in policies/ is ready to use: it validates, and both engines recommend a
feasible plan for modest demand within the policy's budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spotwise.api import load_policy_file
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.cli import app
from spotwise.decide import build_catalog, compile_problem, recommend
from spotwise.engines.base import check_plan

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml"))
ENGINES = ["exact", "genetic"]


def unhurried(path: Path) -> ScalingPolicySpec:
    """The policy with a time budget that never binds on a slow machine: the engines'
    answers then depend only on the seed, never on wall-clock time."""
    spec = load_policy_file(path).spec
    optimizer = spec.optimizer.model_copy(update={"time_budget_seconds": 60.0})
    return spec.model_copy(update={"optimizer": optimizer})


def modest_demands(spec: ScalingPolicySpec, scale: float = 4.0) -> dict[str, float]:
    """`scale` single-request service rates per workload: a few replicas' worth."""
    out = {}
    for w in spec.workloads:
        assert w.capacity is not None, (
            f"workload {w.name}: an example policy should carry capacity so that "
            "`spotwise recommend` works offline"
        )
        out[w.name] = scale * w.capacity.service_rate_rps
    return out


def test_there_are_example_policies():
    assert len(POLICY_FILES) >= 3
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in POLICY_FILES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_policy_validates(path):
    policy = load_policy_file(path)
    assert policy.kind == "ScalingPolicy"
    assert len(build_catalog(policy.spec)) > 0
    result = CliRunner().invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("scale", [1.0, 4.0, 10.0])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_policy_recommends_within_budget(path, engine, scale):
    spec = unhurried(path)
    demands = modest_demands(spec, scale)
    rec = recommend(spec, demands, engine=engine, seed=11)
    plan = rec.plan
    assert plan.engine == engine
    assert plan.feasible, plan.reasons
    assert not plan.over_budget
    assert check_plan(compile_problem(spec, demands), plan) == []
    budget = spec.objective.max_hourly_cost
    if budget is not None:
        assert plan.hourly_cost <= budget
    assert plan.hourly_cost <= rec.on_demand_hourly_cost + 1e-9
    assert 0.0 <= rec.savings_ratio < 1.0
    for w in plan.workloads:
        ws = spec.workload(w.name)
        assert ws.replicas.min <= w.replicas <= ws.replicas.max
        assert ws.concurrency.min <= w.concurrency <= ws.concurrency.max
        assert w.predicted_p95_ms <= ws.slo.latency_p95_ms


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_policy_engines_agree_on_cost(path):
    """The genetic engine reaches the exact optimum on these small examples (or close)."""
    spec = unhurried(path)
    demands = modest_demands(spec)
    exact = recommend(spec, demands, engine="exact").plan
    genetic = recommend(spec, demands, engine="genetic", seed=11).plan
    assert exact.hourly_cost <= genetic.hourly_cost + 1e-9
    assert genetic.hourly_cost <= exact.hourly_cost * 1.25 + 1e-9


def test_the_demo_runs_the_shop_spot_example_policy() -> None:
    from spotwise.sim.demo import demo_policy_text

    assert demo_policy_text() == (ROOT / "policies" / "shop-spot.yaml").read_text()
