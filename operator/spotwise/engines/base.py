"""The engine interface, the name -> factory registry, and what all engines share.

Every engine solves the same model so that their answers compare: per workload a
concurrency limit from a grid and the pods it runs in each pool; per pool a node count.
`Tables` precomputes the numbers that make that model linear in the pod counts (fewest
replicas that meet the SLO per limit, pods per node per pool). `build_plan` turns an
assignment into a `Plan`, and `check_plan` re-derives every hard rule from scratch so
that tests and callers can trust a plan without trusting the engine that made it.

Not here: how a policy becomes a problem (`spotwise.decide`), or any I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from spotwise.domain import (
    CapacityType,
    NodeCount,
    Plan,
    Problem,
    Workload,
    WorkloadPlan,
)
from spotwise.models.capacity import peak_concurrency, throughput
from spotwise.models.latency import min_replicas, p95_ms
from spotwise.models.packing import pods_per_node

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

_BASE_GRID = (
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    12,
    16,
    20,
    24,
    32,
    40,
    48,
    64,
    80,
    96,
    128,
    160,
    192,
    256,
    384,
    512,
    768,
    1024,
)
_EPS = 1e-9


class Engine(Protocol):
    name: str

    def solve(
        self, problem: Problem, *, warm_start: Plan | None = None, seed: int | None = None
    ) -> Plan: ...


@runtime_checkable
class Remembering(Protocol):
    """An engine that carries something from one decision to the next (the rl agent's
    knobs). `decide` keeps it in its state, so an engine built afresh for every tick, as
    the operator's worker processes build them, goes on where the last one stopped."""

    def memento(self) -> Hashable: ...

    def restore(self, memento: Hashable) -> None: ...


EngineFactory = Callable[..., Engine]
_REGISTRY: dict[str, EngineFactory] = {}


def register(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def add(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = factory
        return factory

    return add


class UnknownEngineError(KeyError):
    def __str__(self) -> str:
        return f"unknown engine {self.args[0]!r}; known: {', '.join(engine_names())}"


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def create_engine(name: str, **options: object) -> Engine:
    """The engine registered as `name`, built with `options` (e.g. time_budget_seconds)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownEngineError(name) from None
    return factory(**options)


def concurrency_grid(lo: int, hi: int, peak: float = math.inf) -> IntArray:
    """Candidate concurrency limits in [lo, hi]: a geometric grid plus both ends and the
    two integers around the USL peak, where the best limit usually sits."""
    values = {v for v in _BASE_GRID if lo <= v <= hi} | {lo, hi}
    if math.isfinite(peak):
        values |= {v for v in (math.floor(peak), math.ceil(peak)) if lo <= v <= hi}
    return np.array(sorted(values), dtype=np.int64)


@dataclass(frozen=True)
class Tables:
    """A problem in numbers. Index w runs over workloads, g over a workload's grid,
    p over pools. `need[w][g]` is -1 where that limit cannot meet the SLO within
    max replicas."""

    problem: Problem
    grids: list[IntArray]
    need: list[IntArray]  # replicas for the SLO at demand * (1 + headroom), >= min_replicas
    survive: list[IntArray]  # replicas for the SLO at demand alone, after losing a pool
    ppn: IntArray  # (W, P) pods per node, 0 = does not fit
    price: FloatArray  # (P,)
    is_spot: NDArray[np.bool_]  # (P,)
    usable: NDArray[np.bool_]  # (W, P) pods of w may go to p
    slo_unreachable: list[str] = field(default_factory=list)  # names whose SLO no limit meets

    @property
    def n_workloads(self) -> int:
        return len(self.grids)

    @property
    def n_pools(self) -> int:
        return len(self.price)


def workload_tables(w: Workload, headroom: float) -> tuple[IntArray, IntArray, IntArray]:
    """A workload's concurrency grid, the replicas each limit needs for the SLO at
    demand * (1 + headroom) (-1: not within max replicas), and the replicas each needs
    at demand alone (what must survive a pool loss)."""
    grid = concurrency_grid(w.min_concurrency, w.max_concurrency, peak_concurrency(w.usl))
    planned = w.demand_rps * (1.0 + headroom)
    limit = max(w.max_replicas, 1) * 4  # beyond max only to report how far off it is
    if w.demand_rps <= 0:
        n = np.full(grid.shape, w.min_replicas, dtype=np.int64)
        s = np.zeros(grid.shape, dtype=np.int64)
    else:
        n = _min_replicas_near(w, grid, planned, limit)
        s = _min_replicas_near(w, grid, w.demand_rps, limit)
        n = np.where(n > 0, np.maximum(n, w.min_replicas), -1)
    n = np.where(n > w.max_replicas, -1, n)
    return grid, n.astype(np.int64), s.astype(np.int64)


# The last replica counts found per workload shape. A control loop asks again at a
# nearby load each tick, so they start the search next to the answer; they never
# change it (see min_replicas). Bounded: cleared when it grows past _HINTS_MAX keys.
_HINTS: dict[tuple[object, ...], IntArray] = {}
_HINTS_MAX = 4096


def _min_replicas_near(w: Workload, grid: IntArray, load: float, limit: int) -> IntArray:
    """min_replicas for w's SLO at `load`, the search started from the last answer."""
    key = (w.usl, w.slo_p95_ms, w.tail_factor, limit, grid.tobytes(), load == w.demand_rps)
    found = min_replicas(
        w.usl,
        concurrency=grid,
        load_rps=load,
        slo_p95_ms=w.slo_p95_ms,
        tail_factor=w.tail_factor,
        limit=limit,
        hint=_HINTS.get(key),
    )
    if len(_HINTS) >= _HINTS_MAX:
        _HINTS.clear()
    _HINTS[key] = np.where(found > 0, found, limit)
    return found


def build_tables(problem: Problem) -> Tables:
    """The problem's tables. A tick asks for them several times (the guard, the cache
    key, the engine): equal problems share one read-only copy."""
    return _tables_of(problem)


@functools.lru_cache(maxsize=8)
def _tables_of(problem: Problem) -> Tables:
    cons = problem.constraints
    grids: list[IntArray] = []
    need: list[IntArray] = []
    survive: list[IntArray] = []
    unreachable: list[str] = []
    for w in problem.workloads:
        grid, n, s = workload_tables(w, cons.headroom)
        if not (n >= 0).any():
            unreachable.append(w.name)
        grids.append(grid)
        need.append(n)
        survive.append(s)

    pools = problem.pools
    ppn = np.array(
        [
            [pods_per_node(w.pod, p.instance_type, problem.reserve) for p in pools]
            for w in problem.workloads
        ],
        dtype=np.int64,
    ).reshape(len(problem.workloads), len(pools))
    price = np.array([p.hourly_price for p in pools], dtype=np.float64)
    is_spot = np.array([p.is_spot for p in pools], dtype=bool)
    open_pool = np.array([p.name not in problem.shunned_pools for p in pools], dtype=bool)
    usable = (ppn > 0) & open_pool[None, :]
    if cons.spot_max_share <= 0:
        usable &= ~is_spot[None, :]
    for array in (*grids, *need, *survive, ppn, price, is_spot, usable):
        array.flags.writeable = False
    return Tables(problem, grids, need, survive, ppn, price, is_spot, usable, unreachable)


def fallback_grid_index(tables: Tables, w: int) -> int:
    """For a workload whose SLO no limit meets: the limit that gets closest, the one
    with the most throughput per replica at max replicas."""
    wl = tables.problem.workloads[w]
    grid = tables.grids[w]
    p95 = p95_ms(
        wl.usl,
        replicas=wl.max_replicas,
        concurrency=grid,
        load_rps=wl.demand_rps * (1 + tables.problem.constraints.headroom),
        tail_factor=wl.tail_factor,
    )
    return (
        int(np.argmin(np.where(np.isfinite(p95), p95, np.inf)))
        if np.isfinite(p95).any()
        else int(np.argmax(grid))
    )


def allowed_grid(tables: Tables, w: int) -> list[int]:
    """Grid indices worth a binary: those meeting the SLO that no other limit beats on
    both replicas needed and replicas needed after a pool loss (cost depends on the
    limit only through those two), or the closest one when none meets it."""
    need, survive = tables.need[w], tables.survive[w]
    ok = [g for g, n in enumerate(need) if n >= 0]
    if not ok:
        return [fallback_grid_index(tables, w)]
    check_survive = tables.problem.constraints.survive_pool_loss
    # Among equal requirements keep the limit a replica serves the most at: it has the
    # most room when load grows before the next plan (a limit past the USL peak ties at
    # low load, then needs more replicas). Equal throughput: the larger limit queues less.
    capacity = throughput(tables.problem.workloads[w].usl, tables.grids[w].astype(np.float64))
    keep: dict[tuple[int, int], int] = {}
    for g in ok:
        key = (int(need[g]), int(survive[g]) if check_survive else 0)
        if any(k[0] <= key[0] and k[1] <= key[1] and k != key for k in keep):
            continue
        if key in keep and capacity[keep[key]] > capacity[g]:
            continue
        keep = {k: v for k, v in keep.items() if not (key[0] <= k[0] and key[1] <= k[1])}
        keep[key] = g
    return sorted(keep.values())


def effective_need(tables: Tables, w: int, g: int) -> int:
    """Replicas workload w must run at grid index g: what the SLO needs, or max replicas
    for a workload whose SLO is out of reach."""
    n = int(tables.need[w][g])
    return n if n >= 0 else tables.problem.workloads[w].max_replicas


def survive_need(tables: Tables, w: int, g: int) -> int:
    """Replicas workload w must keep after losing any one spot pool, at grid index g,
    capped at what it runs. For a workload whose planned SLO is out of reach this can ask
    for every replica to survive (no spot pods at all); when even the unpadded demand is
    out of reach the requirement is 0 (the plan is infeasible anyway)."""
    return min(int(tables.survive[w][g]), effective_need(tables, w, g))


def refresh_predictions(problem: Problem, plan: Plan) -> Plan:
    """The same plan with predicted p95s for the problem's current demand."""
    headroom = problem.constraints.headroom
    by_name = {w.name: w for w in problem.workloads}
    workloads = []
    for wp in plan.workloads:
        wl = by_name.get(wp.name)
        if wl is None:
            workloads.append(wp)
            continue
        p95 = float(
            p95_ms(
                wl.usl,
                replicas=wp.replicas,
                concurrency=wp.concurrency,
                load_rps=wl.demand_rps * (1 + headroom),
                tail_factor=wl.tail_factor,
            )
        )
        workloads.append(replace(wp, predicted_p95_ms=p95))
    return replace(plan, workloads=tuple(workloads))


def nodes_for(tables: Tables, pods: IntArray) -> IntArray:
    """Nodes each pool needs for `pods` (W, P): the sum of node fractions, rounded up."""
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(
            tables.ppn > 0, pods / np.maximum(tables.ppn, 1), np.where(pods > 0, np.inf, 0)
        )
    nodes: IntArray = np.ceil(frac.sum(axis=0) - _EPS).astype(np.int64)
    return nodes


def build_plan(
    tables: Tables,
    engine: str,
    grid_index: list[int],
    pods: IntArray,
    nodes: IntArray,
    *,
    solve_seconds: float,
    notes: tuple[str, ...] = (),
) -> Plan:
    """A `Plan` for an assignment, with `feasible`, `over_budget` and reasons checked
    by `check_plan`."""
    problem = tables.problem
    pools = problem.pools
    cons = problem.constraints
    wplans: list[WorkloadPlan] = []
    for w, wl in enumerate(problem.workloads):
        c = int(tables.grids[w][grid_index[w]])
        replicas = int(pods[w].sum())
        p95 = float(
            p95_ms(
                wl.usl,
                replicas=replicas,
                concurrency=c,
                load_rps=wl.demand_rps * (1 + cons.headroom),
                tail_factor=wl.tail_factor,
            )
        )
        by_pool = tuple(
            (pools[p].name, int(pods[w, p])) for p in range(len(pools)) if pods[w, p] > 0
        )
        wplans.append(WorkloadPlan(wl.name, replicas, c, p95, by_pool))
    node_counts = tuple(
        NodeCount(pools[p].instance_type.name, pools[p].capacity_type, int(nodes[p]))
        for p in range(len(pools))
        if nodes[p] > 0
    )
    cost = float((nodes * tables.price).sum())
    interruptions = float(
        sum(int(nodes[p]) * pools[p].interruptions_per_hour for p in range(len(pools)))
    )
    draft = Plan(
        engine=engine,
        feasible=True,
        over_budget=False,
        hourly_cost=round(cost, 6),
        workloads=tuple(wplans),
        nodes=node_counts,
        capacity_after_worst_pool_loss=capacity_after_worst_pool_loss(tables, pods),
        expected_interruptions_per_hour=interruptions,
        solve_seconds=solve_seconds,
    )
    problems = check_plan(problem, draft)
    over_budget = any(p.startswith("budget:") for p in problems)
    hard = [p for p in problems if not p.startswith("budget:")]
    reasons = tuple(notes) + tuple(problems)
    return Plan(
        engine=engine,
        feasible=not hard,
        over_budget=over_budget,
        hourly_cost=draft.hourly_cost,
        workloads=draft.workloads,
        nodes=node_counts,
        capacity_after_worst_pool_loss=draft.capacity_after_worst_pool_loss,
        expected_interruptions_per_hour=interruptions,
        solve_seconds=solve_seconds,
        reasons=reasons,
    )


def capacity_after_worst_pool_loss(tables: Tables, pods: IntArray) -> float:
    """Over workloads, the smallest fraction of replicas left after the worst spot pool
    is lost (1.0 with no spot)."""
    worst = 1.0
    for w in range(pods.shape[0]):
        total = int(pods[w].sum())
        if total == 0:
            continue
        spot = pods[w][tables.is_spot]
        biggest = int(spot.max()) if spot.size else 0
        worst = min(worst, (total - biggest) / total)
    return worst


def check_plan(problem: Problem, plan: Plan) -> list[str]:
    """Every hard rule the plan breaks, one line each, derived from the problem alone.
    Budget problems start with `budget:`."""
    out: list[str] = []
    cons = problem.constraints
    pools = {p.name: p for p in problem.pools}
    nodes_by_pool = {n.pool: n.count for n in plan.nodes}
    for pool_name in nodes_by_pool:
        if pool_name not in pools:
            out.append(f"nodes: {pool_name} is not a pool of this problem")
    load: dict[str, float] = {name: 0.0 for name in pools}
    for wl in problem.workloads:
        try:
            wp = plan.workload(wl.name)
        except KeyError:
            out.append(f"{wl.name}: missing from the plan")
            continue
        total = sum(n for _, n in wp.pods_by_pool)
        if total != wp.replicas:
            out.append(f"{wl.name}: pods by pool add up to {total}, not {wp.replicas} replicas")
        if not wl.min_replicas <= wp.replicas <= wl.max_replicas:
            out.append(
                f"{wl.name}: {wp.replicas} replicas outside [{wl.min_replicas}, {wl.max_replicas}]"
            )
        if not wl.min_concurrency <= wp.concurrency <= wl.max_concurrency:
            out.append(
                f"{wl.name}: concurrency {wp.concurrency} outside "
                f"[{wl.min_concurrency}, {wl.max_concurrency}]"
            )
        planned = wl.demand_rps * (1 + cons.headroom)
        p95 = float(
            p95_ms(
                wl.usl,
                replicas=wp.replicas,
                concurrency=wp.concurrency,
                load_rps=planned,
                tail_factor=wl.tail_factor,
            )
        )
        if wl.demand_rps > 0 and p95 > wl.slo_p95_ms * (1 + 1e-9):
            out.append(
                f"{wl.name}: predicted p95 {_ms(p95)} over the {wl.slo_p95_ms:g} ms SLO "
                f"at {planned:.4g} rps"
            )
        spot_pods = 0
        spot_by_pool: dict[str, int] = {}
        for pool_name, n in wp.pods_by_pool:
            pool = pools.get(pool_name)
            if pool is None:
                out.append(f"{wl.name}: pods in unknown pool {pool_name}")
                continue
            ppn = pods_per_node(wl.pod, pool.instance_type, problem.reserve)
            if ppn == 0:
                out.append(f"{wl.name}: a pod does not fit on {pool.instance_type.name}")
                continue
            if pool_name in problem.shunned_pools:
                out.append(f"{wl.name}: pods in shunned pool {pool_name}")
            load[pool_name] += n / ppn
            if pool.is_spot:
                spot_pods += n
                spot_by_pool[pool_name] = n
        if wp.replicas > 0:
            on_demand = wp.replicas - spot_pods
            if on_demand < cons.on_demand_min_share * wp.replicas - _EPS:
                out.append(
                    f"{wl.name}: {on_demand}/{wp.replicas} on-demand, under the "
                    f"{cons.on_demand_min_share:g} minimum share"
                )
            if spot_pods > cons.spot_max_share * wp.replicas + _EPS:
                out.append(
                    f"{wl.name}: {spot_pods}/{wp.replicas} on spot, over the "
                    f"{cons.spot_max_share:g} maximum share"
                )
            for pool_name, n in spot_by_pool.items():
                if n > cons.spot_max_pool_share * wp.replicas + _EPS:
                    out.append(
                        f"{wl.name}: {n}/{wp.replicas} in {pool_name}, over the "
                        f"{cons.spot_max_pool_share:g} maximum pool share"
                    )
            if cons.survive_pool_loss and spot_by_pool and wl.demand_rps > 0:
                worst_pool, lost = max(spot_by_pool.items(), key=lambda kv: kv[1])
                left = wp.replicas - lost
                p95_left = float(
                    p95_ms(
                        wl.usl,
                        replicas=left,
                        concurrency=wp.concurrency,
                        load_rps=wl.demand_rps,
                        tail_factor=wl.tail_factor,
                    )
                )
                if p95_left > wl.slo_p95_ms * (1 + 1e-9):
                    out.append(
                        f"{wl.name}: losing {worst_pool} leaves {left} replicas with "
                        f"p95 {_ms(p95_left)} over the SLO"
                    )
    for pool_name, frac in load.items():
        have = nodes_by_pool.get(pool_name, 0)
        if have > cons.max_nodes_per_pool:
            out.append(f"nodes: {have} in {pool_name}, over the {cons.max_nodes_per_pool} limit")
        if frac > have + 1e-6:
            out.append(
                f"nodes: pods in {pool_name} need {math.ceil(frac - 1e-6)} nodes, plan has {have}"
            )
    od_nodes = sum(n.count for n in plan.nodes if n.capacity_type is CapacityType.ON_DEMAND)
    if od_nodes < cons.on_demand_min_nodes:
        out.append(
            f"nodes: {od_nodes} on-demand nodes, under the minimum of {cons.on_demand_min_nodes}"
        )
    cost = sum(n.count * pools[n.pool].hourly_price for n in plan.nodes if n.pool in pools)
    if abs(cost - plan.hourly_cost) > 1e-4 * max(1.0, cost):
        out.append(f"cost: plan says ${plan.hourly_cost:.4f}/h, its nodes cost ${cost:.4f}/h")
    if cons.max_hourly_cost is not None and cost > cons.max_hourly_cost + 1e-9:
        out.append(f"budget: ${cost:.2f}/h over the ${cons.max_hourly_cost:.2f}/h maximum")
    return out


def _ms(value: float) -> str:
    return "unbounded" if not math.isfinite(value) else f"{value:.0f} ms"


def cover_unbounded(ppn: IntArray, price: FloatArray, upto: int) -> tuple[FloatArray, IntArray]:
    """Cheapest nodes (any number from any pool) to host 0..upto pods: cost and, per
    pod count, the pool of the last node added (-1 for none)."""
    cost = np.full(upto + 1, np.inf)
    last = np.full(upto + 1, -1, dtype=np.int64)
    cost[0] = 0.0
    if not len(ppn):
        return cost, last
    for o in range(1, upto + 1):
        options = cost[np.maximum(o - ppn, 0)] + price
        i = int(np.argmin(options))
        cost[o], last[o] = options[i], i
    return cost, last


def unwind_cover(last: IntArray, ppn: IntArray, pods: int) -> IntArray:
    """Pods per pool for the cover `cover_unbounded` found."""
    out = np.zeros(len(ppn), dtype=np.int64)
    o = pods
    while o > 0 and last[o] >= 0:
        i = int(last[o])
        take = min(int(ppn[i]), o)
        out[i] += take
        o -= take
    return out
