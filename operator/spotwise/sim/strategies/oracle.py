"""`oracle`: the hindsight lower bound. At every step, the exact minimum-cost plan for
that step's true load under the policy's hard rules, bought instantly, never
interrupted, with no headroom.

It is not a strategy the simulator steps through: it knows the whole trace, so it is
computed directly. To stay fast over days of 10 s steps it looks each step's load up on
a grid rounded *down* (0.5 % buckets): cost only grows with load, so it stays a lower
bound. Replicas needed per workload and exact solves are cached, so steps whose loads
fall in the same buckets share one solve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from spotwise.decide import build_catalog, compile_problem
from spotwise.domain import CapacityType, Plan
from spotwise.engines.base import workload_tables
from spotwise.engines.exact import ExactEngine
from spotwise.sim.simulator import FloatArray, Series, SimResult, SimSetup

_BUCKET = 1.005  # loads are rounded down to a power of this: at most 0.5 % below the truth


def _round_down(load: float) -> float:
    if load <= 0:
        return 0.0
    return _BUCKET ** math.floor(math.log(load) / math.log(_BUCKET))


def oracle_result(
    setup: SimSetup,
    arrivals: FloatArray,
    step_seconds: float,
    *,
    on_step: Callable[[int], None] | None = None,
    spot_price_multiplier: Callable[[float], float] | None = None,
) -> SimResult:
    started = time.perf_counter()
    spec = setup.spec.model_copy(
        update={
            "objective": setup.spec.objective.model_copy(
                update={"headroom": 0.0, "max_hourly_cost": None}
            )
        }
    )
    catalog = build_catalog(spec)
    engine = ExactEngine(time_budget_seconds=10.0)
    names = [w.name for w in setup.workloads]
    template = compile_problem(spec, dict.fromkeys(names, 1.0), catalog=catalog)
    headroom = template.constraints.headroom
    needs: dict[tuple[int, float], tuple[bytes, bytes]] = {}
    plans: dict[tuple[tuple[bytes, bytes], ...], Plan] = {}
    price = {p.name: p.hourly_price for p in template.pools}
    rates: dict[int, tuple[float, float, int, int]] = {}
    series = Series()
    cost = 0.0
    for i, row in enumerate(arrivals):
        loads = [_round_down(float(x)) for x in row]
        key_parts = []
        for w, load in enumerate(loads):
            k = (w, load)
            if k not in needs:
                wl = replace(template.workloads[w], demand_rps=load)
                _, n, s = workload_tables(wl, headroom)
                needs[k] = (n.tobytes(), s.tobytes())
            key_parts.append(needs[k])
        key = tuple(key_parts)
        plan = plans.get(key)
        if plan is None:
            problem = replace(
                template,
                workloads=tuple(
                    replace(wl, demand_rps=load)
                    for wl, load in zip(template.workloads, loads, strict=True)
                ),
            )
            plan = plans[key] = engine.solve(problem)
        now = i * step_seconds
        mult = spot_price_multiplier(now) if spot_price_multiplier else 1.0
        spot_rate, od_rate, spot, total = (
            rates[id(plan)]
            if id(plan) in rates
            else rates.setdefault(id(plan), _rates(plan, price))
        )
        rate = spot_rate * mult + od_rate
        cost += rate * step_seconds / 3600.0
        series.time.append(now)
        series.cost_rate.append(rate)
        series.spot_nodes.append(spot)
        series.on_demand_nodes.append(total - spot)
        series.replicas.append([plan.workload(n).replicas for n in names])
        series.concurrency.append([plan.workload(n).concurrency for n in names])
        series.p95_ms.append([min(plan.workload(n).predicted_p95_ms, 30_000.0) for n in names])
        series.arrived.append([float(x) * step_seconds for x in row])
        series.served.append([float(x) * step_seconds for x in row])
        series.shed.append([0.0] * len(names))
        series.capacity.append([float(x) * step_seconds for x in row])
        series.violation.append(False)
        series.interruptions.append(0)
        if on_step is not None:
            on_step(i)
    return SimResult(
        "oracle",
        cost,
        series,
        interruptions=0,
        node_churn=0,
        decisions=len(plans),
        wall_seconds=time.perf_counter() - started,
        notes=[f"{len(plans)} distinct exact solves"],
    )


def _rates(plan: Plan, price: dict[str, float]) -> tuple[float, float, int, int]:
    """$/h of spot and on-demand nodes, spot nodes, all nodes."""
    spot = [n for n in plan.nodes if n.capacity_type is CapacityType.SPOT]
    od = [n for n in plan.nodes if n.capacity_type is not CapacityType.SPOT]
    return (
        sum(n.count * price[n.pool] for n in spot),
        sum(n.count * price[n.pool] for n in od),
        sum(n.count for n in spot),
        sum(n.count for n in plan.nodes),
    )
