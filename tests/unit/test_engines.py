"""What every engine shares: the registry, the concurrency grid, the tables, and
`check_plan`, the independent re-check of every hard rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spotwise.domain import (
    CapacityType,
    Catalog,
    Constraints,
    InstanceType,
    NodeCount,
    Plan,
    Problem,
    Resources,
    Usl,
    Workload,
    WorkloadPlan,
)
from spotwise.engines import create_engine, engine_names
from spotwise.engines.base import (
    UnknownEngineError,
    build_tables,
    check_plan,
    concurrency_grid,
)
from spotwise.engines.exact import ExactEngine
from spotwise.engines.genetic import GeneticEngine
from spotwise.models.capacity import peak_concurrency
from spotwise.models.risk import pools_for

# Two 2-vCPU types: a 0.5-CPU pod fits 3 per node (1.73 allocatable cores).
A = InstanceType("a.large", 2, 8, 0.10, spot_price=0.04, interruption_bucket=0)
B = InstanceType("b.large", 2, 8, 0.12, spot_price=0.05, interruption_bucket=1)
CATALOG = Catalog("test", (A, B))
POD = Resources(cpu=0.5, memory_gib=0.5)
# 100 rps at up to 8 in flight: 10 replicas are far inside a 500 ms SLO, and so are
# 5 (what is left after losing half of them); 0 replicas are not.
WEB = Workload(
    "web",
    demand_rps=100.0,
    slo_p95_ms=500.0,
    usl=Usl(50.0, 0.05, 0.001),
    pod=POD,
    min_replicas=1,
    max_replicas=20,
)


def problem(**constraints: object) -> Problem:
    return Problem(
        workloads=(WEB,), pools=pools_for(CATALOG), constraints=Constraints(**constraints)
    )  # type: ignore[arg-type]


def make_plan(
    prob: Problem,
    pods: dict[str, int],
    nodes: dict[str, int] | None = None,
    *,
    concurrency: int = 8,
    replicas: int | None = None,
    cost: float | None = None,
) -> Plan:
    """A plan for WEB with `pods` per pool name; nodes default to what the pods need,
    the cost to what those nodes cost."""
    ppn = 3
    if nodes is None:
        nodes = {pool: -(-n // ppn) for pool, n in pods.items() if n > 0}
    prices = {p.name: p.hourly_price for p in prob.pools}
    node_counts = tuple(
        NodeCount(name.split("/")[0], CapacityType(name.split("/")[1]), n)
        for name, n in nodes.items()
        if n > 0
    )
    total = sum(pods.values())
    return Plan(
        engine="hand",
        feasible=True,
        over_budget=False,
        hourly_cost=cost if cost is not None else sum(prices[k] * n for k, n in nodes.items()),
        workloads=(
            WorkloadPlan(
                "web",
                total if replicas is None else replicas,
                concurrency,
                0.0,
                tuple((k, n) for k, n in pods.items() if n > 0),
            ),
        ),
        nodes=node_counts,
        capacity_after_worst_pool_loss=1.0,
    )


def only(lines: list[str], needle: str) -> str:
    """The single line of `lines`, which must mention `needle`."""
    assert len(lines) == 1, lines
    assert needle in lines[0], lines
    return lines[0]


# -- registry -----------------------------------------------------------------------------


def test_registry_builds_the_builtin_engines():
    assert {"exact", "genetic"} <= set(engine_names())
    exact = create_engine("exact", time_budget_seconds=3.0)
    assert isinstance(exact, ExactEngine)
    assert exact.name == "exact"
    assert exact.time_budget_seconds == 3.0
    genetic = create_engine("genetic", population=16, generations=5)
    assert isinstance(genetic, GeneticEngine)
    assert genetic.name == "genetic"
    assert (genetic.population, genetic.generations) == (16, 5)


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(UnknownEngineError) as info:
        create_engine("simplex")
    message = str(info.value)
    assert "simplex" in message
    for name in engine_names():
        assert name in message
    assert isinstance(info.value, KeyError)  # callers that catch KeyError keep working


# -- concurrency grid ---------------------------------------------------------------------


@given(
    lo=st.integers(1, 300),
    span=st.integers(0, 800),
    peak=st.one_of(st.just(float("inf")), st.floats(0.5, 2000.0)),
)
def test_concurrency_grid_properties(lo, span, peak):
    hi = lo + span
    grid = concurrency_grid(lo, hi, peak)
    values = grid.tolist()
    assert grid.dtype == np.int64
    assert values == sorted(set(values))  # strictly increasing
    assert values[0] == lo
    assert values[-1] == hi
    assert all(lo <= v <= hi for v in values)
    if np.isfinite(peak):
        for v in (int(np.floor(peak)), int(np.ceil(peak))):
            if lo <= v <= hi:
                assert v in values


def test_concurrency_grid_small_cases():
    assert concurrency_grid(1, 1).tolist() == [1]
    assert concurrency_grid(7, 7, peak=30.0).tolist() == [7]
    assert concurrency_grid(1, 10).tolist() == [1, 2, 3, 4, 5, 6, 8, 10]
    assert 13 in concurrency_grid(1, 256, peak=13.4).tolist()
    assert 14 in concurrency_grid(1, 256, peak=13.4).tolist()
    usl = Usl(50.0, 0.05, 0.001)
    peak = peak_concurrency(usl)
    grid = concurrency_grid(1, 256, peak).tolist()
    assert int(np.floor(peak)) in grid and int(np.ceil(peak)) in grid


# -- check_plan ---------------------------------------------------------------------------


def test_valid_hand_plan_passes():
    prob = problem()
    plan = make_plan(prob, {"a.large/on-demand": 6, "a.large/spot": 4})
    assert check_plan(prob, plan) == []


def test_engine_plans_pass_the_check():
    prob = problem(
        on_demand_min_share=0.3,
        on_demand_min_nodes=1,
        spot_max_pool_share=0.5,
        survive_pool_loss=True,
    )
    for engine in (ExactEngine(), GeneticEngine()):
        plan = engine.solve(prob, seed=1)
        assert plan.feasible and not plan.over_budget
        assert check_plan(prob, plan) == []


def test_replicas_above_max():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 21})
    only(check_plan(prob, plan), "21 replicas outside [1, 20]")


def test_replicas_below_min():
    prob = replace(problem(), workloads=(replace(WEB, min_replicas=12),))
    plan = make_plan(prob, {"a.large/spot": 10})
    only(check_plan(prob, plan), "10 replicas outside [12, 20]")


def test_replicas_do_not_match_pods():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 10}, replicas=11)
    assert any("add up to 10, not 11" in line for line in check_plan(prob, plan))


def test_too_few_nodes():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 10}, nodes={"a.large/spot": 3})
    only(check_plan(prob, plan), "need 4 nodes, plan has 3")


def test_pods_without_any_node():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 6, "b.large/spot": 4}, nodes={"a.large/spot": 2})
    only(check_plan(prob, plan), "b.large/spot need 2 nodes, plan has 0")


def test_slo_missed():
    prob = problem()
    plan = make_plan(prob, {"a.large/on-demand": 1}, concurrency=1)
    only(check_plan(prob, plan), "over the 500 ms SLO")


def test_on_demand_share():
    prob = problem(on_demand_min_share=0.5)
    plan = make_plan(prob, {"a.large/on-demand": 3, "a.large/spot": 7})
    only(check_plan(prob, plan), "3/10 on-demand, under the 0.5 minimum share")
    assert check_plan(prob, make_plan(prob, {"a.large/on-demand": 5, "a.large/spot": 5})) == []


def test_spot_share():
    prob = problem(spot_max_share=0.5)
    plan = make_plan(prob, {"a.large/on-demand": 3, "a.large/spot": 7})
    only(check_plan(prob, plan), "7/10 on spot, over the 0.5 maximum share")


def test_spot_pool_share():
    prob = problem(spot_max_pool_share=0.5)
    plan = make_plan(prob, {"a.large/spot": 6, "b.large/spot": 4})
    only(check_plan(prob, plan), "6/10 in a.large/spot, over the 0.5 maximum pool share")
    assert check_plan(prob, make_plan(prob, {"a.large/spot": 5, "b.large/spot": 5})) == []


def test_survive_pool_loss():
    prob = problem(survive_pool_loss=True)
    plan = make_plan(prob, {"a.large/spot": 10})
    only(check_plan(prob, plan), "losing a.large/spot leaves 0 replicas")
    # Split over two spot pools, losing either leaves 5: enough at 100 rps.
    assert check_plan(prob, make_plan(prob, {"a.large/spot": 5, "b.large/spot": 5})) == []


def test_min_on_demand_nodes():
    prob = problem(on_demand_min_nodes=1)
    plan = make_plan(prob, {"a.large/spot": 10})
    only(check_plan(prob, plan), "0 on-demand nodes, under the minimum of 1")
    # An empty on-demand node counts: the rule is about nodes, not pods.
    fixed = make_plan(prob, {"a.large/spot": 10}, nodes={"a.large/spot": 4, "a.large/on-demand": 1})
    assert check_plan(prob, fixed) == []


def test_max_nodes_per_pool():
    prob = problem(max_nodes_per_pool=3)
    plan = make_plan(prob, {"a.large/spot": 10})
    only(check_plan(prob, plan), "4 in a.large/spot, over the 3 limit")


def test_shunned_pool():
    prob = replace(problem(), shunned_pools=frozenset({"a.large/spot"}))
    plan = make_plan(prob, {"a.large/spot": 10})
    only(check_plan(prob, plan), "pods in shunned pool a.large/spot")


def test_unknown_pool():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 10})
    plan = replace(plan, nodes=(*plan.nodes, NodeCount("z.large", CapacityType.SPOT, 1)))
    lines = check_plan(prob, plan)
    assert any("z.large/spot is not a pool of this problem" in line for line in lines)


def test_budget_line_is_prefixed():
    prob = problem(max_hourly_cost=0.10)
    plan = make_plan(prob, {"a.large/spot": 10})  # 4 nodes at $0.04
    line = only(check_plan(prob, plan), "over the $0.10/h maximum")
    assert line.startswith("budget:")
    assert check_plan(replace(prob, constraints=Constraints(max_hourly_cost=0.16)), plan) == []


def test_cost_mismatch():
    prob = problem()
    plan = make_plan(prob, {"a.large/spot": 10}, cost=0.01)
    line = only(check_plan(prob, plan), "plan says $0.0100/h, its nodes cost $0.1600/h")
    assert line.startswith("cost:")


def test_missing_workload():
    prob = problem()
    plan = replace(make_plan(prob, {"a.large/spot": 10}), workloads=())
    assert any("web: missing from the plan" in line for line in check_plan(prob, plan))


# -- tables -------------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    lam=st.floats(5.0, 300.0),
    sigma=st.floats(0.0, 0.2),
    kappa=st.floats(0.0, 0.01),
    demand=st.floats(0.0, 3000.0),
    slo=st.floats(50.0, 2000.0),
    headroom=st.floats(0.0, 0.5),
    min_replicas=st.integers(1, 10),
    extra=st.integers(0, 200),
)
def test_tables_need_covers_survive_and_min_replicas(
    lam, sigma, kappa, demand, slo, headroom, min_replicas, extra
):
    w = Workload(
        "w",
        demand,
        slo,
        Usl(lam, sigma, kappa),
        POD,
        min_replicas=min_replicas,
        max_replicas=min_replicas + extra,
        max_concurrency=128,
    )
    tables = build_tables(
        Problem((w,), pools_for(CATALOG), Constraints(headroom=headroom, survive_pool_loss=True))
    )
    need, survive = tables.need[0], tables.survive[0]
    assert need.shape == survive.shape == tables.grids[0].shape
    met = need >= 0
    assert np.all(need[met] >= survive[met])
    assert np.all(need[met] >= min_replicas)
    assert np.all(need[met] <= w.max_replicas)
    assert np.all((need == -1) | met)
    assert (w.name in tables.slo_unreachable) == (not met.any())


def test_tables_zero_demand_needs_min_replicas():
    w = replace(WEB, demand_rps=0.0, min_replicas=3)
    tables = build_tables(Problem((w,), pools_for(CATALOG)))
    assert np.all(tables.need[0] == 3)
    assert np.all(tables.survive[0] == 0)


def test_tables_pods_per_node_and_usable():
    big = Resources(cpu=4.0, memory_gib=1.0)  # fits on no 2-vCPU type
    ws = (WEB, replace(WEB, name="big", pod=big))
    prob = Problem(
        ws,
        pools_for(CATALOG),
        Constraints(spot_max_share=0.0),
        shunned_pools=frozenset({"b.large/on-demand"}),
    )
    tables = build_tables(prob)
    assert tables.ppn.tolist() == [[3, 3, 3, 3], [0, 0, 0, 0]]
    names = [p.name for p in prob.pools]
    usable = {n: bool(u) for n, u in zip(names, tables.usable[0], strict=True)}
    assert usable == {
        "a.large/on-demand": True,
        "a.large/spot": False,
        "b.large/on-demand": False,
        "b.large/spot": False,
    }
    assert not tables.usable[1].any()
