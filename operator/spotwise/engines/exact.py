"""The exact engine: a mixed-integer program solved by HiGHS through SciPy.

Variables: a binary choice of concurrency limit per workload (from its grid), integer
pods per (workload, pool), integer nodes per pool. The SLO enters as the fewest replicas
each limit needs, precomputed from the latency model, so the program is linear and its
optimum is proven. It is the yardstick for the other engines.

Not here: anything non-linear the genetic engine may also score (churn, risk trade-offs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from spotwise.domain import Plan, Problem
from spotwise.engines.base import (
    FloatArray,
    IntArray,
    Tables,
    allowed_grid,
    build_plan,
    build_tables,
    effective_need,
    nodes_for,
    register,
    survive_need,
)

_REPLICA_TIE_BREAK = 1e-5  # $/h per replica: among equal-cost plans prefer fewer pods


@dataclass
class _Rows:
    rows: list[int]
    cols: list[int]
    vals: list[float]
    lo: list[float]
    hi: list[float]

    def add(self, coefs: dict[int, float], lo: float, hi: float) -> None:
        r = len(self.lo)
        for col, val in coefs.items():
            if val != 0.0:
                self.rows.append(r)
                self.cols.append(col)
                self.vals.append(val)
        self.lo.append(lo)
        self.hi.append(hi)


@dataclass(frozen=True)
class Assignment:
    grid_index: list[int]
    pods: IntArray
    nodes: IntArray


class ExactEngine:
    name = "exact"

    def __init__(
        self, time_budget_seconds: float = 10.0, churn_weight: float = 0.0, **_: object
    ) -> None:
        self.time_budget_seconds = time_budget_seconds
        # Hours of a node's price charged per node added or removed against a warm start.
        self.churn_weight = churn_weight

    def solve(
        self, problem: Problem, *, warm_start: Plan | None = None, seed: int | None = None
    ) -> Plan:
        started = time.perf_counter()
        tables = build_tables(problem)
        notes: list[str] = []
        previous = None
        if warm_start is not None and self.churn_weight > 0:
            index = {p.name: i for i, p in enumerate(problem.pools)}
            previous = np.zeros(tables.n_pools)
            for node in warm_start.nodes:
                if node.pool in index:
                    previous[index[node.pool]] = node.count
        result = solve_tables(
            tables,
            budget=problem.constraints.max_hourly_cost,
            time_limit=self.time_budget_seconds,
            previous=previous,
            churn_weight=self.churn_weight,
        )
        if result.assignment is None and problem.constraints.max_hourly_cost is not None:
            # No plan meets the SLO within budget: the cheapest SLO-meeting one, marked.
            result = solve_tables(
                tables,
                budget=None,
                time_limit=self.time_budget_seconds,
                previous=previous,
                churn_weight=self.churn_weight,
            )
        if result.assignment is not None:
            assignment = result.assignment
            if not result.optimal:
                notes.append("time budget reached before the optimum was proven")
        else:
            notes.append(
                "no placement satisfies the node rules; showing the closest plan"
                if result.infeasible
                else "time budget reached before any plan was found; showing the closest"
            )
            assignment = _fallback_assignment(tables)
        return build_plan(
            tables,
            self.name,
            assignment.grid_index,
            assignment.pods,
            assignment.nodes,
            solve_seconds=time.perf_counter() - started,
            notes=tuple(notes),
        )


@register("exact")
def _factory(**options: object) -> ExactEngine:
    budget = options.get("time_budget_seconds", 10.0)
    return ExactEngine(time_budget_seconds=float(budget))  # type: ignore[arg-type]


def dominated_on_demand(tables: Tables) -> NDArray[np.bool_]:
    """On-demand pools another on-demand pool beats: no dearer and holding at least as
    many pods of every workload. No rule looks at a single on-demand pool, so moving
    every pod and node of a dominated pool to its dominator never hurts: dropping them
    keeps the optimum exact (checked only when the per-pool node cap cannot bind)."""
    n_p = tables.n_pools
    out = np.zeros(n_p, dtype=bool)
    problem = tables.problem
    # The move is only always possible when the dominator has room for it: when even
    # one node per pod of every workload stays under the per-pool node cap.
    most_nodes = (
        sum(w.max_replicas for w in problem.workloads) + problem.constraints.on_demand_min_nodes
    )
    if most_nodes > problem.constraints.max_nodes_per_pool:
        return out
    fits = np.where(tables.usable, tables.ppn, 0)
    od = [p for p in range(n_p) if not tables.is_spot[p]]
    for b in od:
        for a in od:
            if a == b or out[a]:
                continue
            no_dearer = tables.price[a] <= tables.price[b]
            holds = bool(np.all(fits[:, a] >= fits[:, b]))
            strictly = tables.price[a] < tables.price[b] or bool(np.any(fits[:, a] > fits[:, b]))
            if no_dearer and holds and (strictly or a < b):
                out[b] = True
                break
    return out


@dataclass(frozen=True)
class Outcome:
    assignment: Assignment | None  # None: infeasible, or nothing found in time
    optimal: bool
    infeasible: bool


def solve_tables(
    tables: Tables,
    *,
    budget: float | None,
    time_limit: float,
    previous: FloatArray | None = None,
    churn_weight: float = 0.0,
) -> Outcome:
    """The cost-minimal assignment and whether optimality was proven; with `previous`
    node counts, each node added or removed also costs `churn_weight` hours of its price."""
    problem = tables.problem
    cons = problem.constraints
    n_w, n_p = tables.n_workloads, tables.n_pools

    col = 0
    y_cols: list[dict[int, int]] = []  # w -> {grid index: column}
    for w in range(n_w):
        cols = {}
        for g in allowed_grid(tables, w):
            cols[g] = col
            col += 1
        y_cols.append(cols)
    dropped = dominated_on_demand(tables)
    r_cols: dict[tuple[int, int], int] = {}
    for w in range(n_w):
        for p in range(n_p):
            if tables.usable[w, p] and not dropped[p]:
                r_cols[(w, p)] = col
                col += 1
    n_cols: list[int] = list(range(col, col + n_p))
    col += n_p
    # R_w (replicas) and m_w (pods in w's biggest spot pool) keep the share rows sparse.
    total_cols = list(range(col, col + n_w))
    col += n_w
    biggest_cols = list(range(col, col + n_w))
    col += n_w
    churn_cols: list[int] = []
    if previous is not None and churn_weight > 0:
        churn_cols = list(range(col, col + n_p))  # |nodes - previous| per pool
        col += n_p

    lb = np.zeros(col)
    ub = np.full(col, np.inf)
    integrality = np.ones(col)
    cost = np.zeros(col)
    for cols in y_cols:
        for c in cols.values():
            ub[c] = 1
    for (w, _p), c in r_cols.items():
        ub[c] = problem.workloads[w].max_replicas
    open_pool = np.array([p.name not in problem.shunned_pools for p in problem.pools])
    for p, c in enumerate(n_cols):
        ub[c] = cons.max_nodes_per_pool if open_pool[p] and not dropped[p] else 0
        cost[c] = tables.price[p]
    for w, wl in enumerate(problem.workloads):
        lb[total_cols[w]] = wl.min_replicas
        ub[total_cols[w]] = wl.max_replicas
        cost[total_cols[w]] = _REPLICA_TIE_BREAK
        ub[biggest_cols[w]] = wl.max_replicas
        integrality[biggest_cols[w]] = 0  # a max of integers: integral at any optimum
    for p, c in enumerate(churn_cols):
        integrality[c] = 0
        cost[c] = churn_weight * tables.price[p]

    rows = _Rows([], [], [], [], [])
    for w, wl in enumerate(problem.workloads):
        total, biggest = total_cols[w], biggest_cols[w]
        mine = [(p, c) for (ww, p), c in r_cols.items() if ww == w]
        rows.add({c: 1.0 for c in y_cols[w].values()}, 1.0, 1.0)
        rows.add({**{c: 1.0 for _, c in mine}, total: -1.0}, 0.0, 0.0)
        # replicas >= what the chosen limit needs
        rows.add(
            {total: 1.0, **{c: -float(effective_need(tables, w, g)) for g, c in y_cols[w].items()}},
            0.0,
            np.inf,
        )
        spot = [c for p, c in mine if tables.is_spot[p]]
        if cons.on_demand_min_share > 0:
            rows.add(
                {
                    **{c: 1.0 for p, c in mine if not tables.is_spot[p]},
                    total: -cons.on_demand_min_share,
                },
                0.0,
                np.inf,
            )
        if spot and cons.spot_max_share < 1:
            rows.add({**{c: 1.0 for c in spot}, total: -cons.spot_max_share}, -np.inf, 0.0)
        if not spot:
            ub[biggest] = 0
            continue
        for c in spot:
            rows.add({c: 1.0, biggest: -1.0}, -np.inf, 0.0)
        if cons.spot_max_pool_share < 1:
            rows.add({biggest: 1.0, total: -cons.spot_max_pool_share}, -np.inf, 0.0)
        if cons.survive_pool_loss and wl.demand_rps > 0:
            rows.add(
                {
                    total: 1.0,
                    biggest: -1.0,
                    **{yc: -float(survive_need(tables, w, g)) for g, yc in y_cols[w].items()},
                },
                0.0,
                np.inf,
            )
    for p in range(n_p):
        fit: dict[int, float] = {n_cols[p]: -1.0}
        for w in range(n_w):
            if (w, p) in r_cols:
                fit[r_cols[(w, p)]] = 1.0 / float(tables.ppn[w, p])
        rows.add(fit, -np.inf, 1e-9)
    if cons.on_demand_min_nodes > 0:
        rows.add(
            {n_cols[p]: 1.0 for p in range(n_p) if not tables.is_spot[p]},
            float(cons.on_demand_min_nodes),
            np.inf,
        )
    if budget is not None:
        rows.add({n_cols[p]: float(tables.price[p]) for p in range(n_p)}, -np.inf, budget)
    if churn_cols and previous is not None:
        for p, c in enumerate(churn_cols):
            rows.add({c: 1.0, n_cols[p]: -1.0}, -float(previous[p]), np.inf)
            rows.add({c: 1.0, n_cols[p]: 1.0}, float(previous[p]), np.inf)

    matrix = coo_matrix((rows.vals, (rows.rows, rows.cols)), shape=(len(rows.lo), col)).tocsr()
    res = milp(
        cost,
        integrality=integrality,
        bounds=Bounds(lb, ub),
        constraints=LinearConstraint(matrix, np.array(rows.lo), np.array(rows.hi)),
        options={"time_limit": max(time_limit, 0.01), "mip_rel_gap": 1e-7, "presolve": True},
    )
    if res.x is None:
        return Outcome(None, optimal=False, infeasible=res.status == 2)
    x = np.round(res.x).astype(np.int64)
    grid_index = [max(cols, key=lambda g: x[cols[g]]) for cols in y_cols]
    pods = np.zeros((n_w, n_p), dtype=np.int64)
    for (w, p), c in r_cols.items():
        pods[w, p] = x[c]
    nodes = np.maximum(np.array([x[c] for c in n_cols], dtype=np.int64), nodes_for(tables, pods))
    return Outcome(Assignment(grid_index, pods, nodes), optimal=res.status == 0, infeasible=False)


def _fallback_assignment(tables: Tables) -> Assignment:
    """Every workload at its need in the cheapest pool it fits, ignoring share rules:
    a plan to show when the rules cannot all hold, never an empty answer."""
    n_w, n_p = tables.n_workloads, tables.n_pools
    pods = np.zeros((n_w, n_p), dtype=np.int64)
    grid_index = []
    for w in range(n_w):
        g = allowed_grid(tables, w)[0]
        grid_index.append(g)
        fits = np.flatnonzero(tables.usable[w])
        if fits.size:
            per_pod = tables.price[fits] / tables.ppn[w, fits]
            pods[w, fits[int(np.argmin(per_pod))]] = effective_need(tables, w, g)
    return Assignment(grid_index, pods, nodes_for(tables, pods))
