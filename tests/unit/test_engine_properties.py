"""Properties every engine's plan has, on random problems (hypothesis).

Random catalogs (2-8 types, random shapes, prices, spot prices and buckets), 1-3
workloads with demands from 0 to 2,000 rps, random rule sets including budgets that may
be out of reach, and shunned pools. For the exact and the genetic engine:

- a feasible plan within budget breaks no rule (`check_plan` is empty);
- a feasible plan over budget breaks only the budget;
- `feasible` and `over_budget` agree with `check_plan`;
- an infeasible plan says why, and no plan is ever empty of workloads;
- the exact optimum, when proven, is a lower bound for the genetic cost, and whatever
  the genetic engine finds within the rules the exact engine finds too.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spotwise.domain import (
    Catalog,
    Constraints,
    InstanceType,
    Plan,
    Problem,
    Resources,
    Usl,
    Workload,
)
from spotwise.engines.base import check_plan
from spotwise.engines.exact import ExactEngine
from spotwise.engines.genetic import GeneticEngine
from spotwise.models.risk import pools_for

EXACT_BUDGET = 30.0


@st.composite
def instance_types(draw: st.DrawFn) -> tuple[InstanceType, ...]:
    n = draw(st.integers(2, 8))
    out = []
    for i in range(n):
        vcpu = draw(st.sampled_from((1, 2, 4, 8, 16)))
        memory = vcpu * draw(st.sampled_from((2, 4, 8)))
        od = round(vcpu * draw(st.floats(0.02, 0.06)), 4)
        spot = draw(st.one_of(st.none(), st.floats(0.2, 0.8)))
        out.append(
            InstanceType(
                f"t{i}.x{vcpu}",
                vcpu,
                memory,
                od,
                spot_price=None if spot is None else round(od * spot, 5),
                interruption_bucket=draw(st.one_of(st.none(), st.integers(0, 4))),
            )
        )
    return tuple(out)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Workload, ...]:
    n = draw(st.integers(1, 3))
    out = []
    for i in range(n):
        lo = draw(st.integers(1, 3))
        c_lo = draw(st.sampled_from((1, 1, 2, 4)))
        out.append(
            Workload(
                name=f"w{i}",
                demand_rps=draw(st.one_of(st.just(0.0), st.floats(0.5, 2000.0))),
                slo_p95_ms=draw(st.floats(100.0, 1000.0)),
                usl=Usl(
                    draw(st.floats(10.0, 200.0)),
                    draw(st.floats(0.0, 0.1)),
                    draw(st.floats(0.0, 0.003)),
                ),
                pod=Resources(
                    draw(st.sampled_from((0.25, 0.5, 1.0, 2.0))),
                    draw(st.sampled_from((0.25, 0.5, 1.0, 2.0, 4.0))),
                ),
                min_replicas=lo,
                max_replicas=lo + draw(st.sampled_from((0, 3, 20, 100, 400))),
                min_concurrency=c_lo,
                max_concurrency=max(c_lo, draw(st.sampled_from((1, 8, 64, 256)))),
            )
        )
    return tuple(out)


@st.composite
def constraints(draw: st.DrawFn) -> Constraints:
    return Constraints(
        headroom=draw(st.sampled_from((0.0, 0.15, 0.3))),
        on_demand_min_share=draw(st.sampled_from((0.0, 0.0, 0.2, 0.5))),
        on_demand_min_nodes=draw(st.sampled_from((0, 0, 1, 2))),
        spot_max_share=draw(st.sampled_from((1.0, 1.0, 0.5, 0.0))),
        spot_max_pool_share=draw(st.sampled_from((1.0, 0.5, 0.3))),
        survive_pool_loss=draw(st.booleans()),
        max_hourly_cost=draw(st.one_of(st.none(), st.floats(0.01, 2.0))),
        max_nodes_per_pool=draw(st.sampled_from((500, 500, 10, 3))),
    )


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    pools = pools_for(Catalog("random", draw(instance_types())))
    names = sorted(p.name for p in pools)
    shunned = draw(st.sets(st.sampled_from(names), max_size=max(0, len(names) // 2)))
    return Problem(draw(workloads()), pools, draw(constraints()), shunned_pools=frozenset(shunned))


def assert_consistent(problem: Problem, plan: Plan) -> None:
    names = [w.name for w in problem.workloads]
    assert [w.name for w in plan.workloads] == names  # never empty of workloads
    lines = check_plan(problem, plan)
    hard = [line for line in lines if not line.startswith("budget:")]
    if plan.feasible and not plan.over_budget:
        assert lines == [], lines
    if plan.over_budget and plan.feasible:
        assert lines and all(line.startswith("budget:") for line in lines), lines
    assert plan.feasible == (not hard), (plan.feasible, lines)
    assert plan.over_budget == (len(hard) < len(lines)), (plan.over_budget, lines)
    if not plan.feasible:
        assert plan.reasons
    for line in lines:
        assert line in plan.reasons  # the plan reports what is wrong with it
    assert plan.hourly_cost >= 0


def proven(plan: Plan) -> bool:
    return not any("time budget" in r for r in plan.reasons)


def within_rules(plan: Plan) -> bool:
    return plan.feasible and not plan.over_budget


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problem=problems())
def test_plans_respect_every_rule(problem: Problem) -> None:
    exact = ExactEngine(time_budget_seconds=EXACT_BUDGET).solve(problem)
    genetic = GeneticEngine().solve(problem, seed=0)
    for plan in (exact, genetic):
        event(
            f"{plan.engine}: "
            + ("over budget" if plan.over_budget else "within budget")
            + (", feasible" if plan.feasible else ", infeasible")
        )
    assert_consistent(problem, exact)
    assert_consistent(problem, genetic)
    if proven(exact) and within_rules(exact) and within_rules(genetic):
        assert genetic.hourly_cost >= exact.hourly_cost - 1e-6
    if within_rules(genetic) and exact.solve_seconds < EXACT_BUDGET:
        # The exact engine is complete: what the genetic engine found, it finds.
        assert within_rules(exact), exact.reasons
    if exact.feasible and exact.over_budget and proven(exact):
        # Over budget means no plan meets the rules within budget.
        assert not within_rules(genetic), genetic.reasons
