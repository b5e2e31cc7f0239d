"""The exact engine: a known optimum, budgets, unreachable SLOs, shunned pools and the
dominated-pool reduction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spotwise.catalog import builtin_catalog
from spotwise.domain import (
    Catalog,
    Constraints,
    InstanceType,
    NodeReserve,
    Plan,
    Problem,
    Resources,
    Usl,
    Workload,
)
from spotwise.engines.base import build_tables, check_plan
from spotwise.engines.exact import ExactEngine, dominated_on_demand
from spotwise.models.latency import p95_ms
from spotwise.models.packing import pods_per_node
from spotwise.models.risk import pools_for

# One pod = 1 CPU. small: 2 vCPU -> 1.73 allocatable cores -> 1 pod per node at $0.10.
# big: 8 vCPU -> 7.71 cores -> 7 pods per node at $0.60.
SMALL = InstanceType("small.large", 2, 8, 0.10)
BIG = InstanceType("big.2xlarge", 8, 32, 0.60)
POD = Resources(cpu=1.0, memory_gib=1.0)
# Concurrency fixed at 1 and no contention: each replica is an M/M/1 queue with service
# rate 10/s, mean response 1/(10 - a) at a rps, p95 = 2x that. A 1000 ms SLO needs
# a <= 8 rps per replica: 79 rps needs 10 replicas (79/9 = 8.8 rps is too much).
WEB = Workload(
    "web",
    demand_rps=79.0,
    slo_p95_ms=1000.0,
    usl=Usl(10.0, 0.0, 0.0),
    pod=POD,
    min_replicas=1,
    max_replicas=50,
    min_concurrency=1,
    max_concurrency=1,
)


def hand_problem(**constraints: object) -> Problem:
    return Problem(
        (WEB,), pools_for(Catalog("hand", (SMALL, BIG))), Constraints(headroom=0.0, **constraints)
    )  # type: ignore[arg-type]


def nodes_of(plan: Plan) -> dict[str, int]:
    return {n.pool: n.count for n in plan.nodes}


def test_hand_computed_facts():
    reserve = NodeReserve()
    assert pods_per_node(POD, SMALL, reserve) == 1
    assert pods_per_node(POD, BIG, reserve) == 7
    assert p95_ms(WEB.usl, replicas=10, concurrency=1, load_rps=79.0) <= 1000.0
    assert p95_ms(WEB.usl, replicas=9, concurrency=1, load_rps=79.0) > 1000.0
    assert build_tables(hand_problem()).need[0].tolist() == [10]


def test_known_optimum_mixes_both_pools():
    # 10 pods: 10 small = $1.00, 2 big = $1.20, 1 big + 3 small = $0.90 (the optimum).
    prob = hand_problem()
    plan = ExactEngine().solve(prob)
    assert plan.feasible and not plan.over_budget
    assert plan.hourly_cost == pytest.approx(0.90)
    assert nodes_of(plan) == {"big.2xlarge/on-demand": 1, "small.large/on-demand": 3}
    web = plan.workload("web")
    assert (web.replicas, web.concurrency) == (10, 1)
    assert dict(web.pods_by_pool) == {"big.2xlarge/on-demand": 7, "small.large/on-demand": 3}
    assert web.predicted_p95_ms <= 1000.0
    assert check_plan(prob, plan) == []
    assert not any("time budget" in r for r in plan.reasons)


def test_over_budget_returns_the_cheapest_slo_plan():
    prob = hand_problem(max_hourly_cost=0.50)
    plan = ExactEngine().solve(prob)
    assert plan.over_budget
    assert plan.feasible  # every hard rule but the budget holds
    assert plan.hourly_cost == pytest.approx(0.90)
    assert plan.workload("web").replicas == 10
    assert any(r.startswith("budget:") for r in plan.reasons)
    lines = check_plan(prob, plan)
    assert lines and all(line.startswith("budget:") for line in lines)


def test_budget_that_binds_but_holds():
    prob = hand_problem(max_hourly_cost=0.90)
    plan = ExactEngine().solve(prob)
    assert plan.feasible and not plan.over_budget
    assert plan.hourly_cost == pytest.approx(0.90)


def test_unreachable_slo_still_gives_a_plan():
    prob = replace(hand_problem(), workloads=(replace(WEB, max_replicas=5),))
    plan = ExactEngine().solve(prob)
    assert not plan.feasible
    assert plan.reasons
    assert any("SLO" in r for r in plan.reasons)
    web = plan.workload("web")
    assert web.replicas == 5  # as close as the bounds allow
    assert plan.nodes and plan.hourly_cost > 0


def test_slo_below_one_request_is_unreachable():
    prob = replace(hand_problem(), workloads=(replace(WEB, slo_p95_ms=150.0),))
    plan = ExactEngine().solve(prob)
    assert not plan.feasible
    assert plan.reasons
    assert plan.workloads and plan.workload("web").replicas >= 1


def test_shunned_pool_is_never_used():
    prob = replace(hand_problem(), shunned_pools=frozenset({"big.2xlarge/on-demand"}))
    plan = ExactEngine().solve(prob)
    assert plan.feasible
    assert nodes_of(plan) == {"small.large/on-demand": 10}
    assert plan.hourly_cost == pytest.approx(1.00)


def test_shunned_spot_pools_on_a_real_catalog():
    catalog = builtin_catalog().select(["m6i.large", "c6i.large", "m7g.large", "c7g.large"])
    ws = (
        replace(
            WEB,
            name="a",
            demand_rps=300.0,
            max_concurrency=64,
            usl=Usl(60.0, 0.05, 0.001),
            slo_p95_ms=300.0,
            pod=Resources(0.5, 1.0),
        ),
        replace(
            WEB,
            name="b",
            demand_rps=120.0,
            max_concurrency=32,
            usl=Usl(30.0, 0.03, 0.002),
            slo_p95_ms=500.0,
            pod=Resources(0.25, 0.5),
        ),
    )
    free = Problem(ws, pools_for(catalog), Constraints(spot_max_pool_share=0.5))
    first = ExactEngine().solve(free)
    used_spot = {p for p in nodes_of(first) if p.endswith("/spot")}
    assert used_spot
    prob = replace(free, shunned_pools=frozenset(used_spot))
    plan = ExactEngine().solve(prob)
    assert plan.feasible
    assert not used_spot & set(nodes_of(plan))
    for w in plan.workloads:
        assert not used_spot & {pool for pool, _ in w.pods_by_pool}
    assert check_plan(prob, plan) == []
    assert plan.hourly_cost >= first.hourly_cost - 1e-9


def _without_dominated(prob: Problem) -> tuple[Problem, list[str]]:
    mask = dominated_on_demand(build_tables(prob))
    dropped = [p.name for p, d in zip(prob.pools, mask, strict=True) if d]
    kept = tuple(p for p, d in zip(prob.pools, mask, strict=True) if not d)
    return replace(prob, pools=kept), dropped


def test_dominated_on_demand_pools_are_found():
    # other.large: small.large's shape at a higher price; tiny.large holds fewer pods.
    other = InstanceType("other.large", 2, 8, 0.11)
    prob = Problem((WEB,), pools_for(Catalog("c", (SMALL, BIG, other))), Constraints(headroom=0.0))
    reduced, dropped = _without_dominated(prob)
    assert dropped == ["other.large/on-demand"]
    assert ExactEngine().solve(prob).hourly_cost == pytest.approx(0.90)
    assert ExactEngine().solve(reduced).hourly_cost == pytest.approx(0.90)


@pytest.mark.parametrize("seed", range(4))
def test_dropping_dominated_pools_keeps_the_optimum(seed):
    """On a real catalog with every rule on, the optimum with and without the dominated
    on-demand pools is the same."""
    rng = np.random.default_rng(seed)
    catalog = builtin_catalog()
    names = list(rng.choice(catalog.names(), size=14, replace=False))
    cat = catalog.select(names)
    ws = tuple(
        Workload(
            f"w{i}",
            demand_rps=float(rng.uniform(20, 800)),
            slo_p95_ms=float(rng.uniform(200, 900)),
            usl=Usl(
                float(rng.uniform(20, 150)),
                float(rng.uniform(0.01, 0.1)),
                float(rng.uniform(1e-4, 3e-3)),
            ),
            pod=Resources(
                float(rng.choice([0.25, 0.5, 1.0])), float(rng.choice([0.25, 0.5, 1.0, 2.0]))
            ),
            min_replicas=2,
            max_replicas=300,
        )
        for i in range(2)
    )
    prob = Problem(
        ws,
        pools_for(cat),
        Constraints(
            on_demand_min_share=0.25,
            on_demand_min_nodes=1,
            spot_max_pool_share=0.5,
            survive_pool_loss=True,
        ),
    )
    reduced, dropped = _without_dominated(prob)
    full_plan = ExactEngine().solve(prob)
    reduced_plan = ExactEngine().solve(reduced)
    assert full_plan.feasible and reduced_plan.feasible
    assert full_plan.hourly_cost == pytest.approx(reduced_plan.hourly_cost, abs=1e-6)
    assert not set(dropped) & set(nodes_of(full_plan))


def test_dominated_pool_still_needed_when_the_dominator_is_capped():
    """Bug (reported to the lead): `dominated_on_demand` drops an on-demand pool that
    another beats on price and shape, but `max_nodes_per_pool` looks at single pools:
    when the dominator is capped, the dominated pool is needed. 10 one-pod nodes, at most
    5 per pool: 5 x $0.10 + 5 x $0.11 = $1.05 is feasible (the genetic engine finds it);
    the exact engine drops other.large and reports the problem infeasible."""
    other = InstanceType("other.large", 2, 8, 0.11)
    prob = Problem(
        (WEB,),
        pools_for(Catalog("c", (SMALL, other))),
        Constraints(headroom=0.0, max_nodes_per_pool=5),
    )
    plan = ExactEngine().solve(prob)
    assert check_plan(prob, plan) == []
    assert plan.feasible
    assert plan.hourly_cost == pytest.approx(1.05)


def test_infeasible_rules_are_not_blamed_on_the_time_budget():
    """Bug (reported to the lead): when the rules cannot all hold the program is proven
    infeasible at once, yet the fallback plan also says "time budget reached before the
    optimum was proven", which sends users to raise a budget that would not help."""
    spot_only = Problem(
        (WEB,),
        pools_for(
            Catalog("hand", (replace(SMALL, spot_price=0.04), replace(BIG, spot_price=0.25))),
            on_demand=False,
        ),
        Constraints(headroom=0.0, on_demand_min_share=0.5),
    )
    plan = ExactEngine(time_budget_seconds=30.0).solve(spot_only)
    assert not plan.feasible
    assert any("on-demand" in r for r in plan.reasons)
    assert plan.workload("web").replicas == 10
    assert not any("time budget" in r for r in plan.reasons), plan.reasons


def test_capped_dominator_does_not_make_a_dearer_proven_optimum():
    """The same bug, found by the property test: two identical 2-vCPU on-demand types,
    at most 3 nodes per pool, 4 nodes needed. Using both costs 4 x $0.0625 = $0.25 (the
    genetic engine's plan); with one dropped as "dominated" the exact engine proves a
    16-vCPU node at $0.50 optimal."""
    one = InstanceType("one.x2", 2, 4, 0.0625)
    two = InstanceType("two.x2", 2, 4, 0.0625)
    big = InstanceType("big.x16", 16, 32, 0.5)
    idle = Usl(10.0, 0.0, 0.0)
    ws = (
        Workload(
            "w0",
            0.0,
            100.0,
            idle,
            Resources(0.25, 0.25),
            min_replicas=1,
            max_replicas=1,
            max_concurrency=1,
        ),
        Workload(
            "w1",
            0.0,
            100.0,
            idle,
            Resources(1.0, 0.25),
            min_replicas=3,
            max_replicas=3,
            max_concurrency=1,
        ),
    )
    prob = Problem(
        ws,
        pools_for(Catalog("c", (one, two, big)), spot=False),
        Constraints(headroom=0.0, max_nodes_per_pool=3),
    )
    plan = ExactEngine().solve(prob)
    assert plan.feasible and not plan.over_budget
    assert plan.hourly_cost == pytest.approx(0.25)


def test_fallback_plan_avoids_shunned_pools():
    """Bug (reported to the lead): when the rules cannot all hold, `_fallback_assignment`
    puts every pod in the cheapest pool it fits (`ppn > 0`), shunned or not: here the
    spot pool that was just interrupted. 10 one-pod nodes are needed, at most 5 per pool,
    and the only open pool is small.large on-demand."""
    spot_small = replace(SMALL, spot_price=0.04)
    prob = Problem(
        (WEB,),
        pools_for(Catalog("hand", (spot_small,))),
        Constraints(headroom=0.0, max_nodes_per_pool=5),
        shunned_pools=frozenset({"small.large/spot"}),
    )
    plan = ExactEngine().solve(prob)
    assert not plan.feasible
    assert plan.workload("web").replicas == 10
    assert "small.large/spot" not in nodes_of(plan)
    assert not any("shunned" in line for line in check_plan(prob, plan))
