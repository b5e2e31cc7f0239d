"""The rl engine: a trained agent moves replicas, concurrency and spot share per workload;
a shield keeps every plan inside the policy's hard rules; a packer buys the nodes.

One decision, as `RlEngine.solve` makes it:

1. `observe` turns the problem, the previous plan and the engine's memory into a
   normalized float32 vector: per workload `WORKLOAD_FEATURES`, then `GLOBAL_FEATURES`.
2. `out_of_range` compares that vector with the box of observations the agent saw in
   training (recorded in its model card). Outside it, or for a policy whose workloads
   are not the agent's (`workload_signature`), the decision falls back to the genetic
   engine and the plan's first reason says why.
3. The agent picks, per workload, one of down/hold/up for three knobs (`KNOBS`):
   the replica margin over the SLO need, the concurrency limit (one step along the
   engine grid, about x0.8 / x1.25) and the spot share target.
4. `shield` clips those choices to the hard rules: a limit that can meet the SLO within
   the replica bounds, at least the replicas that limit needs, the on-demand floor, the
   spot caps and the pool-loss rule.
5. `pack` sizes each workload (`split`: from that floor, the replica total and spot
   count whose nodes cost least) and places the pods: kept where the previous plan put
   them, Karpenter-like, or placed afresh, whichever costs less counting node churn;
   free room first, then the cheapest whole nodes (small dynamic programs per workload).
   `build_plan` re-checks every rule, and a plan that still breaks one falls back to the
   genetic engine.

The agent file is read once, when the engine is built (the only I/O here); solving does
none. stable-baselines3 and torch are imported only then, so everything else works
without the `rl` extra; the greedy action is then computed in NumPy (`GreedyMlp`).

Not here: the environment the agent is trained in and training itself (`spotwise.rl`),
the GA it falls back to (`genetic.py`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from spotwise.domain import Plan, Problem
from spotwise.engines.base import (
    FloatArray,
    IntArray,
    Tables,
    build_plan,
    build_tables,
    cover_unbounded,
    fallback_grid_index,
    register,
    survive_need,
    unwind_cover,
)
from spotwise.engines.genetic import GeneticEngine
from spotwise.models.capacity import throughput
from spotwise.models.latency import p95_ms

F32Array = NDArray[np.float32]

WORKLOAD_FEATURES: tuple[str, ...] = (
    "load",  # log2(1 + demand / peak throughput of one pod) / 8: pods at peak efficiency
    "trend",  # demand change since the last decision, relative, in [-1, 1]
    "need",  # log2(1 + fewest replicas the SLO needs at any limit) / 8
    "replicas",  # log2(1 + replicas of the previous plan) / 8
    "margin",  # the agent's replica margin over the SLO need, / MAX_MARGIN
    "concurrency",  # position of the previous limit in [min, max] on a log scale
    "concurrency_vs_best",  # grid steps from the limit with the fewest replicas, / 8
    "spot_share",  # spot pods / replicas in the previous plan
    "spot_target",  # the agent's spot share target
    "p95_vs_slo",  # previous plan's predicted p95 at the new demand / SLO, capped at 3
    "utilization",  # demand / capacity of the previous plan, capped at 3
)
GLOBAL_FEATURES: tuple[str, ...] = (
    "cost_rate",  # previous plan's $/h / the on-demand $/h of the SLO need, capped at 3
    "time_sin",  # time of day
    "time_cos",
)
KNOBS: tuple[str, ...] = ("replicas", "concurrency", "spot")  # each: 0 down, 1 hold, 2 up
CHOICES = 3
MARGIN_STEP = 0.1  # replica margin over the SLO need moves by this per decision
MAX_MARGIN = 0.5
SPOT_STEP = 0.1  # spot share target moves by this per decision
FEATURE_CAP = 3.0  # ratios are capped here so every observation stays bounded
# Outside the training box by more than this fraction of its span (plus a little for
# features that barely moved in training) is "out of range".
RANGE_TOLERANCE = 0.1
RANGE_FLOOR = 0.02
DEFAULT_AGENT = "shop-ppo"
AGENTS_DIR_ENV = "SPOTWISE_AGENTS_DIR"
_EPS = 1e-9
_ROOM_EPS = 1e-6


class AgentError(ValueError):
    """An agent that cannot be used: missing file or card, or the `rl` extra is absent.
    The message is one line."""


def observation_size(n_workloads: int) -> int:
    return n_workloads * len(WORKLOAD_FEATURES) + len(GLOBAL_FEATURES)


def feature_names(workloads: Sequence[str]) -> list[str]:
    return [f"{w}.{f}" for w in workloads for f in WORKLOAD_FEATURES] + list(GLOBAL_FEATURES)


def observation_bounds(n_workloads: int) -> tuple[F32Array, F32Array]:
    """The box every observation lies in (the env's observation space)."""
    lo_w = [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -FEATURE_CAP, 0.0, 0.0, 0.0, 0.0]
    hi_w = [FEATURE_CAP, 1.0, FEATURE_CAP, FEATURE_CAP, 1.0, 1.0, FEATURE_CAP, 1.0, 1.0]
    hi_w += [FEATURE_CAP, FEATURE_CAP]
    lo = np.array(lo_w * n_workloads + [0.0, -1.0, -1.0], dtype=np.float32)
    hi = np.array(hi_w * n_workloads + [FEATURE_CAP, 1.0, 1.0], dtype=np.float32)
    return lo, hi


# -- memory: what the agent set last time ---------------------------------------------


@dataclass
class Knobs:
    """The agent's own settings for one workload, carried between decisions."""

    margin: float = 0.0
    spot_target: float = 1.0  # as much spot as the rules allow, until the agent says less
    last_demand: float | None = None


@dataclass
class Memory:
    knobs: dict[str, Knobs] = field(default_factory=dict)

    def of(self, name: str) -> Knobs:
        return self.knobs.setdefault(name, Knobs())


# -- observation ----------------------------------------------------------------------


def _log8(x: float) -> float:
    return min(math.log2(1.0 + max(x, 0.0)) / 8.0, FEATURE_CAP)


def grid_position(grid: IntArray, concurrency: int) -> int:
    """Index of the grid limit nearest `concurrency` on a log scale."""
    return int(np.argmin(np.abs(np.log(grid) - math.log(max(concurrency, 1)))))


def cheapest_grid_index(tables: Tables, w: int) -> int:
    """The limit that needs the fewest replicas (then the fewest to survive a pool loss,
    then the larger limit, which queues less); the closest one when none meets the SLO."""
    need, surv = tables.need[w], tables.survive[w]
    ok = [g for g in range(len(need)) if need[g] >= 0]
    if not ok:
        return fallback_grid_index(tables, w)
    return min(ok, key=lambda g: (int(need[g]), int(surv[g]), -g))


def _peak_throughput(tables: Tables, w: int) -> float:
    usl = tables.problem.workloads[w].usl
    return float(np.max(throughput(usl, tables.grids[w].astype(np.float64))))


def _od_price_per_pod(tables: Tables, w: int) -> float:
    ok = tables.usable[w] & ~tables.is_spot
    if not ok.any():
        ok = tables.ppn[w] > 0
    if not ok.any():
        return 0.0
    return float(np.min(tables.price[ok] / np.maximum(tables.ppn[w, ok], 1)))


def observe(
    tables: Tables, previous: Plan | None, memory: Memory, time_of_day_seconds: float
) -> F32Array:
    """The agent's view of one decision: `WORKLOAD_FEATURES` per workload, then
    `GLOBAL_FEATURES`, as float32 within `observation_bounds`."""
    problem = tables.problem
    headroom = problem.constraints.headroom
    out: list[float] = []
    od_cost_of_need = 0.0
    for w, wl in enumerate(problem.workloads):
        knobs = memory.knobs.get(wl.name, Knobs())
        grid = tables.grids[w]
        best = cheapest_grid_index(tables, w)
        least = int(tables.need[w][best]) if tables.need[w][best] >= 0 else wl.max_replicas
        od_cost_of_need += max(least, 1) * _od_price_per_pod(tables, w)
        wp = _workload_plan(previous, wl.name)
        last = knobs.last_demand
        trend = 0.0
        if last is not None and max(last, wl.demand_rps) > _EPS:
            trend = (wl.demand_rps - last) / max(last, wl.demand_rps)
        if wp is not None and wp.replicas > 0:
            c = wp.concurrency
            replicas = wp.replicas
            spot_share = wp.spot_replicas / wp.replicas
            p95 = float(
                p95_ms(
                    wl.usl,
                    replicas=replicas,
                    concurrency=c,
                    load_rps=wl.demand_rps * (1 + headroom),
                    tail_factor=wl.tail_factor,
                )
            )
            p95_ratio = p95 / wl.slo_p95_ms if math.isfinite(p95) else FEATURE_CAP
            capacity = replicas * float(throughput(wl.usl, c))
            util = wl.demand_rps / capacity if capacity > 0 else FEATURE_CAP
        else:
            c = int(grid[best])
            replicas, spot_share = 0, 0.0
            p95_ratio = FEATURE_CAP if wl.demand_rps > 0 else 0.0
            util = FEATURE_CAP if wl.demand_rps > 0 else 0.0
        lo, hi = wl.min_concurrency, wl.max_concurrency
        c_pos = math.log(max(c, lo) / lo) / math.log(hi / lo) if hi > lo else 0.0
        out += [
            _log8(wl.demand_rps / max(_peak_throughput(tables, w), _EPS)),
            float(np.clip(trend, -1.0, 1.0)),
            _log8(least),
            _log8(replicas),
            knobs.margin / MAX_MARGIN,
            float(np.clip(c_pos, 0.0, 1.0)),
            float(np.clip((grid_position(grid, c) - best) / 8.0, -FEATURE_CAP, FEATURE_CAP)),
            spot_share,
            knobs.spot_target,
            min(p95_ratio, FEATURE_CAP),
            min(util, FEATURE_CAP),
        ]
    cost = previous.hourly_cost if previous is not None else 0.0
    cost_rate = cost / od_cost_of_need if od_cost_of_need > 0 else 0.0
    angle = 2.0 * math.pi * (time_of_day_seconds % 86400.0) / 86400.0
    out += [min(cost_rate, FEATURE_CAP), math.sin(angle), math.cos(angle)]
    lo_b, hi_b = observation_bounds(len(problem.workloads))
    return np.clip(np.array(out, dtype=np.float32), lo_b, hi_b)


def _workload_plan(plan: Plan | None, name: str) -> Any:
    if plan is None:
        return None
    try:
        return plan.workload(name)
    except KeyError:
        return None


# -- the training range ---------------------------------------------------------------


@dataclass(frozen=True)
class AgentCard:
    """What the engine needs from an agent's model card (`NAME.json`)."""

    name: str
    algo: str
    workloads: tuple[str, ...]
    low: tuple[float, ...]  # per feature, the least value seen in training
    high: tuple[float, ...]
    action_encoding: str = "multi-discrete"  # or "one-change" (DQN)
    signature: tuple[tuple[float, ...], ...] | None = None  # `workload_signature`

    @classmethod
    def from_json(cls, data: dict[str, Any], name: str) -> AgentCard:
        try:
            rng = data["observationRange"]
            return cls(
                name=name,
                algo=str(data["algo"]),
                workloads=tuple(str(w) for w in data["workloads"]),
                low=tuple(float(x) for x in rng["low"]),
                high=tuple(float(x) for x in rng["high"]),
                action_encoding=str(data.get("actionEncoding", "multi-discrete")),
                signature=tuple(tuple(float(x) for x in row) for row in data["workloadSignature"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AgentError(f"agent {name}: model card is missing or has a bad {e}") from None


SIGNATURE_FIELDS = ("sloP95Ms", "podCpu", "podMemoryGiB", "minConcurrency", "maxConcurrency")
PEAK_TOLERANCE = 0.25  # a fitted capacity may drift this far from the trained one


def workload_signature(problem: Problem) -> list[list[float]]:
    """Per workload what an agent is specific to: `SIGNATURE_FIELDS`, then the peak
    throughput of one pod (requests/second)."""
    out = []
    for w in problem.workloads:
        grid = np.arange(w.min_concurrency, w.max_concurrency + 1, dtype=np.float64)
        peak = float(np.max(throughput(w.usl, grid)))
        fixed = [w.slo_p95_ms, w.pod.cpu, w.pod.memory_gib, w.min_concurrency, w.max_concurrency]
        out.append([*fixed, round(peak, 6)])
    return out


def out_of_range(card: AgentCard, problem: Problem, obs: F32Array) -> str | None:
    """Why this observation is outside what the agent was trained on, or None.

    The rule: the policy's workloads must be the agent's, in order, with the same SLO,
    pod size and concurrency bounds and a peak throughput per pod within
    `PEAK_TOLERANCE` of the trained one; and every feature must lie within its training
    span [low, high] widened on both sides by `RANGE_TOLERANCE` of the span plus
    `RANGE_FLOOR`."""
    names = tuple(w.name for w in problem.workloads)
    if names != card.workloads:
        return (
            f"the agent {card.name} was trained for workloads {', '.join(card.workloads)}, "
            f"not {', '.join(names)}"
        )
    if card.signature is not None:
        for name, now, then in zip(names, workload_signature(problem), card.signature, strict=True):
            fixed = [f for f, a, b in zip(SIGNATURE_FIELDS, now, then, strict=False) if a != b]
            if fixed or abs(now[-1] / then[-1] - 1.0) > PEAK_TOLERANCE:
                what = ", ".join(fixed) if fixed else "peak throughput per pod"
                return f"{name} is not the workload the agent {card.name} was trained for ({what})"
    low = np.asarray(card.low, dtype=np.float64)
    high = np.asarray(card.high, dtype=np.float64)
    slack = RANGE_TOLERANCE * (high - low) + RANGE_FLOOR
    bad = np.flatnonzero((obs < low - slack) | (obs > high + slack))
    if not bad.size:
        return None
    i = int(bad[0])
    label = feature_names(names)[i]
    return (
        f"{label} = {float(obs[i]):.3g} is outside the agent's training range "
        f"[{low[i]:.3g}, {high[i]:.3g}]"
    )


# -- the shield -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shielded:
    """The agent's choices made safe, per workload: a grid index, the fewest replicas
    (the SLO need at that limit with the agent's margin, within the bounds) and the
    agent's knobs after this action (the spot target caps the spot share)."""

    grid_index: list[int]
    replicas: list[int]
    knobs: list[Knobs]


@dataclass(frozen=True)
class Sizes:
    """What the packer places, per workload: replicas, spot pods, most pods per spot pool."""

    replicas: list[int]
    spot: list[int]
    pool_cap: list[int]


def spot_limits(tables: Tables, w: int, g: int, replicas: int) -> tuple[int, int]:
    """(most spot pods, most spot pods per pool) for `replicas` at grid index g under
    the on-demand floor, the spot shares and the pool-loss rule."""
    cons = tables.problem.constraints
    wl = tables.problem.workloads[w]
    od_min = math.ceil(cons.on_demand_min_share * replicas - _EPS)
    most = min(math.floor(cons.spot_max_share * replicas + _EPS), replicas - od_min)
    cap = math.floor(cons.spot_max_pool_share * replicas + _EPS)
    if cons.survive_pool_loss and wl.demand_rps > 0:
        cap = min(cap, max(replicas - survive_need(tables, w, g), 0))
    pools = int((tables.usable[w] & tables.is_spot).sum())
    if cap <= 0 or pools == 0:
        return 0, 0
    return max(0, min(most, cap * pools)), cap


def shield(
    tables: Tables, previous: Plan | None, memory: Memory, action: Sequence[int] | IntArray
) -> Shielded:
    """Apply one action (`len(KNOBS)` choices per workload) and clip it to the rules."""
    problem = tables.problem
    grid_index, replicas, knobs_out = [], [], []
    for w, wl in enumerate(problem.workloads):
        a_rep, a_conc, a_spot = (int(x) - 1 for x in action[3 * w : 3 * w + 3])
        knobs = memory.knobs.get(wl.name, Knobs())
        grid = tables.grids[w]
        need = tables.need[w]
        wp = _workload_plan(previous, wl.name)
        start = grid_position(grid, wp.concurrency) if wp else cheapest_grid_index(tables, w)
        g = int(np.clip(start + a_conc, 0, len(grid) - 1))
        if need[g] < 0:
            # The limit cannot meet the SLO within the replica bounds: the nearest one
            # that can, preferring the direction the agent moved in.
            ok = np.flatnonzero(need >= 0)
            if ok.size:
                g = int(ok[np.lexsort((-(ok - g) * (a_conc or 1), np.abs(ok - g)))][0])
            else:
                g = fallback_grid_index(tables, w)
        margin = float(np.clip(knobs.margin + MARGIN_STEP * a_rep, 0.0, MAX_MARGIN))
        base = int(need[g]) if need[g] >= 0 else wl.max_replicas
        r = math.ceil(base * (1.0 + margin) - _EPS)
        r = int(np.clip(r, max(wl.min_replicas, base), wl.max_replicas))
        target = float(np.clip(knobs.spot_target + SPOT_STEP * a_spot, 0.0, 1.0))
        grid_index.append(g)
        replicas.append(r)
        knobs_out.append(Knobs(round(margin, 6), round(target, 6), wl.demand_rps))
    return Shielded(grid_index, replicas, knobs_out)


# -- the packer -----------------------------------------------------------------------


def _capped_costs(
    ppn: IntArray, price: FloatArray, upto: int, caps: IntArray
) -> tuple[FloatArray, list[IntArray]]:
    """Cheapest whole nodes for 0..upto pods with at most `caps[i]` pods in pool i (a
    knapsack over pools); inf where the caps do not allow that many."""
    cost = np.full(upto + 1, np.inf)
    cost[0] = 0.0
    choice: list[IntArray] = []
    s = np.arange(upto + 1)
    for i in range(len(ppn)):
        ks = np.arange(max(min(int(caps[i]), upto), 0) + 1)
        k_cost = price[i] * np.ceil(ks / ppn[i])
        prev = s[:, None] - ks[None, :]
        total = np.where(prev >= 0, cost[np.maximum(prev, 0)], np.inf) + k_cost[None, :]
        k_best = np.argmin(total, axis=1)
        cost = total[s, k_best]
        choice.append(k_best.astype(np.int64))
    return cost, choice


def _unwind_capped(choice: list[IntArray], pods: int) -> IntArray:
    out = np.zeros(len(choice), dtype=np.int64)
    left = pods
    for i in range(len(choice) - 1, -1, -1):
        out[i] = int(choice[i][left])
        left -= int(out[i])
    return out


def _efficient(ppn: IntArray, price: FloatArray, idx: IntArray, keep: int) -> IntArray:
    """Pools worth considering: the `keep` cheapest per pod, plus every pool no other
    pool beats on both pods per node and price (small nodes win small counts)."""
    if idx.size <= keep:
        return idx
    per_pod = price[idx] / ppn[idx]
    chosen = set(idx[np.argsort(per_pod, kind="stable")[:keep]].tolist())
    for p in idx:
        beaten = (ppn[idx] >= ppn[p]) & (price[idx] <= price[p])
        beaten &= (ppn[idx] > ppn[p]) | (price[idx] < price[p])
        if not beaten.any():
            chosen.add(int(p))
    return np.array(sorted(chosen), dtype=np.int64)


def split(
    tables: Tables,
    w: int,
    g: int,
    least: int,
    target: float,
    previous_spot: int,
    churn_weight: float,
) -> tuple[int, int, int]:
    """(replicas, spot pods, most per spot pool) for workload w at grid index g.

    Replicas are at least `least` (the SLO need with the agent's margin); spot pods are
    at most `target` of them, within the rules (`spot_limits`). Among the totals from
    `least` to `least + 7` and 1.25, 1.5 and 2 times it, and every spot count allowed,
    the one whose own nodes cost least wins, with moving a pod between capacity types
    charged `churn_weight` hours of an on-demand pod. Spot is not always cheaper (a
    small per-pool cap spreads pods over many half-empty nodes), and a few more
    replicas can be (the pool-loss rule then admits more of them on spot)."""
    wl = tables.problem.workloads[w]
    top = wl.max_replicas
    least = min(least, top)
    totals = sorted(
        {t for t in range(least, least + 8) if t <= top}
        | {min(top, math.ceil(least * f)) for f in (1.25, 1.5, 2.0)}
    )
    spot, od = _pool_candidates(tables, w)
    if od.size:
        od_cost, _ = cover_unbounded(tables.ppn[w, od], tables.price[od], totals[-1])
    else:
        od_cost = np.where(np.arange(totals[-1] + 1) == 0, 0.0, np.inf)
    per_pod = _od_price_per_pod(tables, w)
    limits = {}
    for t in totals:
        most, cap = spot_limits(tables, w, g, t)
        limits[t] = (min(most, math.floor(target * t + 0.5)) if spot.size else 0, cap)
    # One knapsack per distinct cap, as far as the largest count asked of it.
    spot_costs: dict[int, FloatArray] = {}
    for cap in {c for m, c in limits.values() if m > 0}:
        upto = max(m for m, c in limits.values() if c == cap)
        spot_costs[cap], _ = _capped_costs(
            tables.ppn[w, spot], tables.price[spot], upto, np.full(spot.size, cap)
        )
    best = (math.inf, least, 0, 0)
    for t in totals:
        most, cap = limits[t]
        spot_cost = spot_costs[cap][: most + 1] if most > 0 else np.zeros(1)
        ks = np.arange(most + 1)
        total = spot_cost + od_cost[t - ks] + churn_weight * per_pod * np.abs(ks - previous_spot)
        k = int(np.argmin(total))
        if total[k] < best[0] - 1e-12:
            best = (float(total[k]), t, k, cap)
    return best[1], best[2], best[3]


def _pool_candidates(tables: Tables, w: int) -> tuple[IntArray, IntArray]:
    """(spot, on-demand) pools worth a look for workload w's pods."""
    share = tables.problem.constraints.spot_max_pool_share
    keep = max(6, math.ceil(1.0 / max(share, 0.01)) + 2)
    key = (
        tables.ppn[w].tobytes(),
        tables.usable[w].tobytes(),
        tables.price.tobytes(),
        tables.is_spot.tobytes(),
        keep,
    )
    found = _CANDIDATES.get(key)
    if found is None:
        usable = tables.usable[w]
        spot = np.flatnonzero(usable & tables.is_spot)
        od = np.flatnonzero(usable & ~tables.is_spot)
        found = (
            _efficient(tables.ppn[w], tables.price, spot, keep),
            _efficient(tables.ppn[w], tables.price, od, 6),
        )
        if len(_CANDIDATES) >= 256:
            _CANDIDATES.clear()
        _CANDIDATES[key] = found
    return found


# Candidate pools depend only on pod shape, prices and which pools are open: the same
# every tick, except while a pool is shunned. Bounded: cleared past 256 entries.
_CANDIDATES: dict[tuple[object, ...], tuple[IntArray, IntArray]] = {}


def previous_placement(tables: Tables, previous: Plan | None) -> tuple[IntArray, IntArray]:
    """The previous plan's pods per (workload, pool) and nodes per pool, in this
    problem's pools; pods and nodes in pools that are no longer usable are dropped."""
    n_w, n_p = tables.ppn.shape
    pods = np.zeros((n_w, n_p), dtype=np.int64)
    nodes = np.zeros(n_p, dtype=np.int64)
    if previous is None:
        return pods, nodes
    index = {p.name: i for i, p in enumerate(tables.problem.pools)}
    for w, wl in enumerate(tables.problem.workloads):
        wp = _workload_plan(previous, wl.name)
        for pool, count in wp.pods_by_pool if wp is not None else ():
            if pool in index and tables.usable[w, index[pool]]:
                pods[w, index[pool]] = count
    for node in previous.nodes:
        p = index.get(node.pool)
        if p is not None and tables.problem.pools[p].name not in tables.problem.shunned_pools:
            nodes[p] = node.count
    return pods, nodes


def pack(
    tables: Tables, choice: Shielded, previous: Plan | None = None, churn_weight: float = 0.0
) -> tuple[IntArray, IntArray]:
    """Pods per (workload, pool) and nodes per pool for the shielded choice.

    First each workload's replicas and spot count (`split`, from the shielded floor).
    Then two placements are built and the cheaper one wins, counting `churn_weight` hours of
    a node's price for every node added or removed against the previous plan: one that
    keeps the previous plan's pods where they are (Karpenter's way: remove from the
    dearest pools, add into free room, then buy), and a fresh one."""
    prev_pods, prev_nodes = previous_placement(tables, previous)
    split_sizes = [
        split(
            tables,
            w,
            choice.grid_index[w],
            choice.replicas[w],
            choice.knobs[w].spot_target,
            int(prev_pods[w, tables.is_spot].sum()),
            churn_weight,
        )
        for w in range(len(choice.replicas))
    ]
    replicas = []
    for w, (r, k, _) in enumerate(split_sizes):
        # Make before break: on-demand pods that new spot pods replace stay for one more
        # decision, until the spot nodes (two minutes away) are up.
        was_spot = int(prev_pods[w, tables.is_spot].sum())
        was_od = int(prev_pods[w, ~tables.is_spot].sum())
        od = r - k
        if k > was_spot and was_od > od:
            top = tables.problem.workloads[w].max_replicas
            od = max(od, min(was_od, od + k - was_spot, top - k))
        replicas.append(k + od)
    sizes = Sizes(
        replicas=replicas,
        spot=[k for _, k, _ in split_sizes],
        pool_cap=[c for _, _, c in split_sizes],
    )
    best: tuple[float, IntArray, IntArray] | None = None
    starts = [(prev_pods, prev_nodes), (None, None)] if previous is not None else [(None, None)]
    for keep, bought in starts:
        pods, nodes = _place(tables, sizes, keep, bought)
        cost = float(nodes @ tables.price)
        cost += churn_weight * float(np.abs(nodes - prev_nodes) @ tables.price)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, pods, nodes)
    assert best is not None
    return best[1], best[2]


def _place(
    tables: Tables, choice: Sizes, keep: IntArray | None, bought: IntArray | None
) -> tuple[IntArray, IntArray]:
    """One placement: `keep` pods stay where they are (trimmed to the new counts, the
    dearest pods first), then each workload fills free room on `bought` and kept nodes
    (cheapest pod first; spot within the pool cap) and buys the cheapest whole nodes for
    the rest. Workloads with the fewest usable pools go first, bigger pods first among
    them. Spot pods that find no capped room go on-demand."""
    n_w, n_p = tables.ppn.shape
    pods = np.zeros((n_w, n_p), dtype=np.int64)
    room = bought.astype(np.float64) if bought is not None else np.zeros(n_p)
    frac = np.where(tables.ppn > 0, 1.0 / np.maximum(tables.ppn, 1), 0.0)
    per_pod = np.where(tables.usable, tables.price[None, :] * frac, np.inf)
    size = np.array([w.pod.cpu for w in tables.problem.workloads])
    order = [int(x) for x in np.lexsort((-size, tables.usable.sum(axis=1)))]
    caps = [np.full(n_p, c, dtype=np.int64) for c in choice.pool_cap]
    if keep is not None:
        for w in order:
            for spot, amount in (
                (True, choice.spot[w]),
                (False, choice.replicas[w] - choice.spot[w]),
            ):
                kept = np.where(tables.is_spot == spot, keep[w], 0)
                if spot:
                    kept = np.minimum(kept, caps[w])
                for p in np.argsort(-np.where(kept > 0, per_pod[w], -np.inf), kind="stable"):
                    if kept.sum() <= amount:
                        break
                    kept[p] -= min(int(kept[p]), int(kept.sum()) - amount)
                pods[w] += kept
                room -= kept * frac[w]
    for w in order:
        spot_cand, od_cand = _pool_candidates(tables, w)
        spot_pools = np.flatnonzero(tables.usable[w] & tables.is_spot)
        od_pools = np.flatnonzero(tables.usable[w] & ~tables.is_spot)
        left = choice.spot[w] - int(pods[w, spot_pools].sum())
        if left > 0 and spot_pools.size:
            left -= _fill(w, left, spot_pools, per_pod[w], room, pods, frac, caps[w])
            if left > 0 and spot_cand.size:
                room_left = caps[w][spot_cand] - pods[w, spot_cand]
                cost, picks = _capped_costs(
                    tables.ppn[w, spot_cand], tables.price[spot_cand], left, room_left
                )
                got = _unwind_capped(picks, int(np.flatnonzero(np.isfinite(cost))[-1]))
                _buy(w, spot_cand, got, room, pods, frac)
        placed_spot = int(pods[w, spot_pools].sum())
        left = choice.replicas[w] - placed_spot - int(pods[w, od_pools].sum())
        if left > 0 and od_pools.size:
            left -= _fill(w, left, od_pools, per_pod[w], room, pods, frac, None)
            if left > 0 and od_cand.size:
                _, last = cover_unbounded(tables.ppn[w, od_cand], tables.price[od_cand], left)
                _buy(w, od_cand, unwind_cover(last, tables.ppn[w, od_cand], left), room, pods, frac)
    nodes = np.ceil((pods * frac).sum(axis=0) - _ROOM_EPS).astype(np.int64)
    nodes = np.maximum(nodes, 0)
    od = np.flatnonzero(~tables.is_spot & (tables.ppn > 0).any(axis=0))
    short = tables.problem.constraints.on_demand_min_nodes - int(nodes[~tables.is_spot].sum())
    if short > 0 and od.size:
        nodes[int(od[np.argmin(tables.price[od])])] += short
    return pods, nodes


def _fill(
    w: int,
    amount: int,
    pools: IntArray,
    per_pod: FloatArray,
    room: FloatArray,
    pods: IntArray,
    frac: FloatArray,
    cap: IntArray | None,
) -> int:
    """Put up to `amount` pods of w into free room of `pools`, cheapest pod first
    (`per_pod` is w's price per pod in each pool)."""
    placed = 0
    for p in pools[np.argsort(per_pod[pools], kind="stable")]:
        if placed >= amount:
            break
        fits = math.floor(room[p] / frac[w, p] + _ROOM_EPS) if frac[w, p] > 0 else 0
        if cap is not None:
            fits = min(fits, int(cap[p] - pods[w, p]))
        take = max(0, min(fits, amount - placed))
        pods[w, p] += take
        room[p] -= take * frac[w, p]
        placed += take
    return placed


def _buy(
    w: int, cand: IntArray, got: IntArray, room: FloatArray, pods: IntArray, frac: FloatArray
) -> None:
    for p, k in zip(cand.tolist(), got.tolist(), strict=True):
        if k <= 0:
            continue
        used = k * frac[w, p]
        new = math.ceil(used - _ROOM_EPS)
        pods[w, p] += k
        room[p] += new - used


# -- the agent ------------------------------------------------------------------------


class Agent(Protocol):
    """A trained policy: an action for an observation, and a few sampled alternatives."""

    def act(self, obs: F32Array) -> IntArray: ...

    def sample(self, obs: F32Array, count: int, seed: int) -> list[IntArray]: ...


def one_change_to_multi(index: int, n_workloads: int) -> IntArray:
    """A `one-change` action (DQN's Discrete(2K + 1)) as a MultiDiscrete action: 0 holds
    every knob; 2k + 1 and 2k + 2 move knob k down and up."""
    out = np.ones(n_workloads * len(KNOBS), dtype=np.int64)
    if index > 0:
        knob, up = divmod(index - 1, 2)
        out[knob] = 2 if up else 0
    return out


def require_rl_extra() -> None:
    """Raise AgentError, saying what to install, when the `rl` extra is missing."""
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise AgentError(
            "engines rl and hybrid need the optional 'rl' extra (stable-baselines3, "
            f"gymnasium, torch), which is not installed ({e.name} is missing): "
            "pip install 'spotwise[rl]'"
        ) from None


class Sb3Agent:
    """A stable-baselines3 model loaded for inference on the CPU."""

    def __init__(self, path: Path, card: AgentCard) -> None:
        require_rl_extra()
        import stable_baselines3 as sb3
        import torch

        algos: dict[str, Any] = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}
        if card.algo not in algos:
            raise AgentError(f"agent {card.name}: unknown algorithm {card.algo!r}")
        # One thread: a small MLP runs fastest that way, and the operator's other work
        # keeps the remaining cores.
        torch.set_num_threads(1)
        try:
            self.model = algos[card.algo].load(str(path), device="cpu")
        except Exception as e:  # SB3 raises many kinds for a bad zip
            raise AgentError(f"agent {card.name}: cannot load {path}: {e}") from None
        self.card = card
        self._torch = torch
        self._greedy = GreedyMlp.of(self.model, card)

    def act(self, obs: F32Array) -> IntArray:
        if self._greedy is not None:
            return self._multi(self._greedy(obs))
        with self._torch.no_grad():
            action, _ = self.model.policy.predict(obs, deterministic=True)
        return self._multi(np.asarray(action))

    def sample(self, obs: F32Array, count: int, seed: int) -> list[IntArray]:
        if self.card.algo == "dqn":
            rng = np.random.default_rng(seed)
            n = len(KNOBS) * len(self.card.workloads)
            return [self._multi(np.asarray(rng.integers(2 * n + 1))) for _ in range(count)]
        policy = self.model.policy
        self._torch.manual_seed(seed)
        with self._torch.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            dist = policy.get_distribution(tensor)
            return [self._multi(dist.sample().cpu().numpy()[0]) for _ in range(count)]

    def _multi(self, action: NDArray[Any]) -> IntArray:
        if self.card.action_encoding == "one-change":
            return one_change_to_multi(int(action.reshape(-1)[0]), len(self.card.workloads))
        return np.asarray(action, dtype=np.int64).reshape(-1)


class GreedyMlp:
    """The deterministic action of a stable-baselines3 MLP policy, in NumPy.

    A decision needs one forward pass of a small network; torch's per-call overhead
    (tensor conversion, checks) is most of the time that takes, so the weights are
    copied out once and the same float32 arithmetic runs here. `of` returns None for a
    network it does not know, and the agent then asks stable-baselines3."""

    def __init__(self, layers: list[tuple[F32Array, F32Array, str]], groups: int) -> None:
        self.layers = layers  # (weight, bias, activation after it)
        self.groups = groups  # MultiDiscrete knobs of 3, or 0 for one discrete action

    @classmethod
    def of(cls, model: Any, card: AgentCard) -> GreedyMlp | None:
        import torch

        policy = model.policy
        if card.algo == "dqn":
            modules = list(policy.q_net.q_net)
            groups = 0
        else:
            modules = [*policy.mlp_extractor.policy_net, policy.action_net]
            groups = len(KNOBS) * len(card.workloads)
        kinds = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}
        layers: list[tuple[F32Array, F32Array, str]] = []
        for module in modules:
            if isinstance(module, torch.nn.Linear):
                weight = module.weight.detach().cpu().numpy().astype(np.float32)
                bias = module.bias.detach().cpu().numpy().astype(np.float32)
                layers.append((weight.T.copy(), bias, "none"))
            elif type(module) in kinds and layers:
                weight, bias, _ = layers[-1]
                layers[-1] = (weight, bias, kinds[type(module)])
            else:
                return None
        if groups and layers[-1][1].size != CHOICES * groups:
            return None
        return cls(layers, groups)

    def __call__(self, obs: F32Array) -> IntArray:
        x = np.asarray(obs, dtype=np.float32).reshape(1, -1)
        for weight, bias, activation in self.layers:
            x = x @ weight + bias
            if activation == "tanh":
                x = np.tanh(x)
            elif activation == "relu":
                x = np.maximum(x, 0.0)
        if self.groups:
            best: IntArray = np.argmax(x.reshape(self.groups, CHOICES), axis=1).astype(np.int64)
            return best
        return np.array([int(np.argmax(x))], dtype=np.int64)


def agent_search_path() -> list[Path]:
    """Where agent names are looked up, in order: $SPOTWISE_AGENTS_DIR, ./policies/agents,
    and the policies/agents folder of a source checkout."""
    dirs = []
    if os.environ.get(AGENTS_DIR_ENV):
        dirs.append(Path(os.environ[AGENTS_DIR_ENV]))
    dirs.append(Path.cwd() / "policies" / "agents")
    dirs.append(Path(__file__).resolve().parents[3] / "policies" / "agents")
    return dirs


def resolve_agent(agent: str | None) -> Path:
    """The agent file for a name under policies/agents or a path (`.zip` optional)."""
    name = agent or DEFAULT_AGENT
    given = Path(name)
    candidates = [given, given.with_suffix(".zip")] if given.suffix != ".zip" else [given]
    if given.parent == Path(".") and given.suffix in ("", ".zip"):
        candidates += [d / f"{given.stem}.zip" for d in agent_search_path()]
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(d) for d in agent_search_path())
    raise AgentError(f"agent {name!r} not found (as a path, or NAME.zip in {where})")


def load_agent(agent: str | None) -> tuple[Sb3Agent, AgentCard]:
    """The agent and its model card. Loaded once per process and file version: the
    operator builds an engine every tick, and reading the model costs far more than a
    decision."""
    require_rl_extra()
    path = resolve_agent(agent).resolve()
    card_path = path.with_suffix(".json")
    try:
        versions = (path.stat().st_mtime_ns, card_path.stat().st_mtime_ns)
    except FileNotFoundError:
        versions = (path.stat().st_mtime_ns, 0)  # the missing card is reported below
    return _load_agent(path, versions)


@functools.lru_cache(maxsize=8)
def _load_agent(path: Path, versions: tuple[int, int]) -> tuple[Sb3Agent, AgentCard]:
    card_path = path.with_suffix(".json")
    try:
        data = json.loads(card_path.read_text("utf-8"))
    except FileNotFoundError:
        raise AgentError(f"agent {path}: no model card {card_path.name} next to it") from None
    except (OSError, ValueError) as e:
        raise AgentError(f"agent {path}: cannot read {card_path.name}: {e}") from None
    card = AgentCard.from_json(data, path.stem)
    return Sb3Agent(path, card), card


# -- the engine -----------------------------------------------------------------------


class RlEngine:
    """The rl engine. `agent` is a name under policies/agents or a path; `policy`, if
    given, replaces the loaded agent (the training environment passes its own). Options
    meant for the genetic engine configure the fallback."""

    name = "rl"

    def __init__(
        self,
        agent: str | None = None,
        *,
        policy: Agent | None = None,
        card: AgentCard | None = None,
        time_budget_seconds: float = 2.0,
        clock: Callable[[], float] | None = None,
        **genetic_options: Any,
    ) -> None:
        if policy is None:
            policy, card = load_agent(agent)
        self.policy = policy
        self.card = card
        self.memory = Memory()
        self.clock = clock or time.time
        # decide charges node churn to every engine: the packer weighs it too.
        self.churn_weight = float(genetic_options.get("churn_weight", 0.0))
        self.fallback = GeneticEngine(time_budget_seconds=time_budget_seconds, **genetic_options)
        self.decisions = 0
        self.fallbacks: dict[str, int] = {}  # first words of the reason -> count
        self._time_override: float | None = None

    def observe_time(self, seconds: float) -> None:
        """Set the time of day of the next decision (the simulator's clock); without
        it the engine reads `clock` (the wall clock)."""
        self._time_override = seconds

    def memento(self) -> Hashable:
        """The agent's knobs per workload, as plain data (see `Remembering`)."""
        return tuple(
            sorted(
                (name, k.margin, k.spot_target, k.last_demand)
                for name, k in self.memory.knobs.items()
            )
        )

    def restore(self, memento: Hashable) -> None:
        """Knobs from `memento()`; None (a first decision) forgets them all."""
        if memento is None:
            self.memory = Memory()
            return
        if not isinstance(memento, tuple):
            raise TypeError(f"not an rl engine memento: {type(memento).__name__}")
        self.memory = Memory(
            {name: Knobs(margin, spot, last) for name, margin, spot, last in memento}
        )

    def solve(
        self, problem: Problem, *, warm_start: Plan | None = None, seed: int | None = None
    ) -> Plan:
        started = time.perf_counter()
        tables = build_tables(problem)
        obs = self.observation(tables, warm_start)
        why = out_of_range(self.card, problem, obs) if self.card is not None else None
        if why is not None:
            return self._fall_back(problem, warm_start, seed, why)
        plan = self.plan_for(tables, warm_start, self.policy.act(obs), started=started)
        if not plan.feasible or plan.over_budget:
            first = plan.reasons[0] if plan.reasons else "infeasible"
            return self._fall_back(problem, warm_start, seed, f"its plan breaks a rule ({first})")
        return plan

    def observation(self, tables: Tables, warm_start: Plan | None) -> F32Array:
        if warm_start is None:
            self.memory = Memory()  # a fresh start: nothing the agent set still holds
        at = self._time_override if self._time_override is not None else self.clock()
        return observe(tables, warm_start, self.memory, at)

    def plan_for(
        self,
        tables: Tables,
        warm_start: Plan | None,
        action: Sequence[int] | IntArray,
        *,
        started: float | None = None,
        remember: bool = True,
    ) -> Plan:
        """The shielded, packed plan for `action`; the agent's knobs are remembered."""
        started = time.perf_counter() if started is None else started
        choice = shield(tables, warm_start, self.memory, action)
        pods, nodes = pack(tables, choice, warm_start, self.churn_weight)
        if remember:
            for wl, knobs in zip(tables.problem.workloads, choice.knobs, strict=True):
                self.memory.knobs[wl.name] = knobs
            self.decisions += 1
        return build_plan(
            tables,
            self.name,
            choice.grid_index,
            pods,
            nodes,
            solve_seconds=time.perf_counter() - started,
        )

    def _fall_back(
        self, problem: Problem, warm_start: Plan | None, seed: int | None, why: str
    ) -> Plan:
        self.decisions += 1
        key = why.split(" = ")[0].split(" (")[0]
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
        plan = self.fallback.solve(problem, warm_start=warm_start, seed=seed)
        return replace(plan, reasons=(f"rl fell back to the genetic engine: {why}", *plan.reasons))


@register("rl")
def _factory(**options: Any) -> RlEngine:
    return RlEngine(**options)
