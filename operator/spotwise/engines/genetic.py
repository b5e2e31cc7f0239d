"""The genetic engine: DEAP evolution over integer genomes, scored in NumPy.

A genome holds, per workload, an index into its useful concurrency grid and the replicas
it runs beyond what that limit needs, and per candidate pool a node count. A decoder,
vectorized over the population, packs every workload's pods into the nodes the genome
pays for (cheapest pods first, honouring the on-demand share, the spot share, the
per-pool cap and the pool-loss rule), buys the cheapest node that hosts whatever is
left, and drops nodes nobody uses. Every decoded genome therefore meets the hard rules,
and evolution spends its time on what costs money: which pools, how many nodes, how
workloads share them. Seeds are per-workload exact placements (a small dynamic
program); a steepest-descent pass polishes the winner.

Fitness is the hourly cost plus, when asked, node churn against the previous plan; a
second objective, expected spot interruptions per hour, turns on NSGA-II
(`objectives="cost-risk"`). Deterministic for a seed: DEAP draws from the global
`random` module, so a solve seeds it under a lock and restores it afterwards.

Not here: the exact optimum (`exact.py`), learned proposals (`rl.py`, `hybrid.py`).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from deap import base, creator, tools
from numpy.typing import NDArray

from spotwise.domain import Plan, Problem
from spotwise.engines.base import (
    FloatArray,
    IntArray,
    Tables,
    allowed_grid,
    build_plan,
    build_tables,
    cover_unbounded,
    effective_need,
    register,
    survive_need,
    unwind_cover,
)

_EPS = 1e-9
_ROOM_EPS = 1e-6  # node fractions are sums of 1/k: tolerate rounding when a pod fits
_PENALTY = 1_000.0  # $/h per pod the decoder could not place
_REPLICA_TIE_BREAK = 1e-5  # the same tie-break as the exact engine
_LOCK = threading.Lock()

if not hasattr(creator, "SpotwiseFitnessCost"):
    creator.create("SpotwiseFitnessCost", base.Fitness, weights=(-1.0,))
    creator.create("SpotwiseFitnessCostRisk", base.Fitness, weights=(-1.0, -1.0))
    creator.create("SpotwiseGenomeCost", list, fitness=creator.SpotwiseFitnessCost)
    creator.create("SpotwiseGenomeCostRisk", list, fitness=creator.SpotwiseFitnessCostRisk)


@dataclass(frozen=True)
class Proposal:
    """A starting point for evolution in problem terms: concurrency per workload and
    pods per (workload, pool index of the problem)."""

    concurrency: Sequence[int]
    pods: IntArray  # (W, P)


@dataclass(frozen=True)
class Decoded:
    genomes: IntArray  # repaired: nodes actually used, replicas actually run
    grid: IntArray  # (n, W) index into each workload's useful grid
    pods: IntArray  # (n, W, C)
    nodes: IntArray  # (n, C)
    missing: IntArray  # (n,) pods that found no place


class _Space:
    """The genome layout for one problem and the decoder that turns genomes into
    placements, restricted to the candidate pools."""

    def __init__(
        self, tables: Tables, pools: list[int], churn_weight: float, previous_nodes: IntArray | None
    ) -> None:
        problem = tables.problem
        cons = problem.constraints
        self.tables = tables
        self.pools = np.array(sorted(pools), dtype=np.int64)
        self.n_w = tables.n_workloads
        self.n_c = len(self.pools)
        self.grid = [np.array(allowed_grid(tables, w), dtype=np.int64) for w in range(self.n_w)]
        self.need = [
            np.array([effective_need(tables, w, int(g)) for g in self.grid[w]])
            for w in range(self.n_w)
        ]
        self.survive = [
            np.array(
                [
                    survive_need(tables, w, int(g))
                    if cons.survive_pool_loss and problem.workloads[w].demand_rps > 0
                    else 0
                    for g in self.grid[w]
                ]
            )
            for w in range(self.n_w)
        ]
        self.max_rep = np.array([w.max_replicas for w in problem.workloads], dtype=np.int64)
        self.ppn = tables.ppn[:, self.pools]
        self.usable = tables.usable[:, self.pools]
        self.frac = np.where(self.usable, 1.0 / np.maximum(self.ppn, 1), 0.0)
        self.price = tables.price[self.pools]
        self.spot = tables.is_spot[self.pools]
        self.rate = np.array([problem.pools[p].interruptions_per_hour for p in self.pools])
        per_pod = np.where(self.usable, self.price * self.frac, np.inf)
        # Pools in the order the decoder fills them: cheapest pod first, per workload.
        by_price = [np.argsort(per_pod[w], kind="stable") for w in range(self.n_w)]
        self.spot_order = [o[self.spot[o] & self.usable[w, o]] for w, o in enumerate(by_price)]
        self.od_order = [o[~self.spot[o] & self.usable[w, o]] for w, o in enumerate(by_price)]
        # The most constrained workloads first (fewest pools they fit), then big pods
        # first, as in first-fit decreasing: small pods fill in around them.
        fits = self.usable.sum(axis=1)
        size = (
            np.where(self.usable, self.frac, 0).sum(axis=1) / np.maximum(fits, 1)
            if self.n_c
            else np.zeros(self.n_w)
        )
        self.workload_order = [int(w) for w in np.lexsort((-size, fits))]
        od = np.flatnonzero(~self.spot)
        self.cheapest_od = int(od[np.argmin(self.price[od])]) if od.size else -1
        self.max_nodes = cons.max_nodes_per_pool
        self.churn_weight = churn_weight
        self.previous = previous_nodes[self.pools] if previous_nodes is not None else None

    @property
    def length(self) -> int:
        return 2 * self.n_w + self.n_c

    def split(self, genomes: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        w = self.n_w
        return genomes[:, :w], genomes[:, w : 2 * w], genomes[:, 2 * w :]

    # -- decoding -------------------------------------------------------------------

    def decode(self, genomes: NDArray[np.int64]) -> Decoded:
        cons = self.tables.problem.constraints
        raw = np.asarray(genomes, dtype=np.int64).reshape(-1, self.length)
        g_raw, extra, n_raw = self.split(raw)
        rows = len(raw)
        g = np.empty_like(g_raw)
        replicas = np.empty_like(extra)
        for w in range(self.n_w):
            g[:, w] = np.clip(g_raw[:, w], 0, len(self.grid[w]) - 1)
            need = self.need[w][g[:, w]]
            replicas[:, w] = np.clip(need + np.maximum(extra[:, w], 0), need, self.max_rep[w])
        room = np.clip(n_raw, 0, self.max_nodes).astype(np.float64)
        pods = np.zeros((rows, self.n_w, self.n_c), dtype=np.int64)
        bought = np.zeros((rows, self.n_c), dtype=np.int64)
        missing_total = np.zeros(rows, dtype=np.int64)
        for w in self.workload_order:
            total = replicas[:, w]
            od_min = np.ceil(cons.on_demand_min_share * total - _EPS).astype(np.int64)
            spot_max = np.minimum(
                np.floor(cons.spot_max_share * total + _EPS).astype(np.int64), total - od_min
            )
            cap = np.floor(cons.spot_max_pool_share * total + _EPS).astype(np.int64)
            if cons.survive_pool_loss:
                cap = np.minimum(cap, np.maximum(total - self.survive[w][g[:, w]], 0))
            placed = pods[:, w, :]
            self._place(w, placed, room, self.od_order[w], od_min, None)
            self._place(w, placed, room, self.spot_order[w], spot_max, cap)
            self._place(w, placed, room, self.od_order[w], total - placed.sum(axis=1), None)
            missing = total - placed.sum(axis=1)
            if missing.any():
                missing = self._buy(w, placed, room, bought, missing, spot_max, cap)
            missing_total += missing
        used = (pods * self.frac[None]).sum(axis=1)
        nodes = np.ceil(used - _ROOM_EPS).astype(np.int64)
        nodes = np.maximum(nodes, 0)
        if self.cheapest_od >= 0:
            short = cons.on_demand_min_nodes - nodes[:, ~self.spot].sum(axis=1)
            nodes[:, self.cheapest_od] += np.maximum(short, 0)
        extra_run = (
            np.stack([replicas[:, w] - self.need[w][g[:, w]] for w in range(self.n_w)], axis=1)
            if self.n_w
            else extra
        )
        repaired = np.concatenate([g, extra_run, nodes], axis=1)
        return Decoded(repaired, g, pods, nodes, missing_total)

    def _place(
        self,
        w: int,
        placed: IntArray,
        room: FloatArray,
        order: IntArray,
        amount: IntArray,
        cap: IntArray | None,
    ) -> None:
        """Put up to `amount` pods of w into the free room of pools in `order`, filling
        each pool before the next. Each pool's fit does not depend on what went into the
        others, so the sequential fill is a clipped cumulative sum over the order."""
        if not len(order):
            return
        idx = order
        fit = np.floor(room[:, idx] * self.ppn[w, idx] + _ROOM_EPS).astype(np.int64)
        if cap is not None:
            fit = np.minimum(fit, cap[:, None] - placed[:, idx])
        fit = np.maximum(fit, 0)
        before = np.cumsum(fit, axis=1) - fit
        t = np.minimum(np.maximum(np.maximum(amount, 0)[:, None] - before, 0), fit)
        placed[:, idx] += t
        room[:, idx] -= t * self.frac[w, idx]

    def _buy(
        self,
        w: int,
        placed: IntArray,
        room: FloatArray,
        bought: IntArray,
        missing: IntArray,
        spot_max: IntArray,
        cap: IntArray,
    ) -> IntArray:
        """New nodes for pods that found no room: per genome the single pool that hosts
        all of them for the least, where the share rules allow them all there."""
        m = missing[:, None].astype(np.float64)
        extra_nodes = np.ceil(m * self.frac[w][None, :] - np.maximum(room, 0) - _ROOM_EPS)
        extra_nodes = np.maximum(extra_nodes, 0)
        cost = self.price[None, :] * extra_nodes
        allowed = np.broadcast_to(self.usable[w][None, :], cost.shape).copy()
        spot_room = spot_max - placed[:, self.spot].sum(axis=1)
        fits = cap[:, None] - placed >= missing[:, None]
        spot_ok = (spot_room[:, None] >= missing[:, None]) & fits
        allowed &= np.where(self.spot[None, :], spot_ok, True)
        cost = np.where(allowed, cost, np.inf)
        best = np.argmin(cost, axis=1)
        ok = np.isfinite(cost[np.arange(len(best)), best]) & (missing > 0)
        idx = np.flatnonzero(ok)
        p = best[idx]
        added = extra_nodes[idx, p].astype(np.int64)
        room[idx, p] += added - missing[idx] * self.frac[w, p]
        placed[idx, p] += missing[idx]
        bought[idx, p] += added
        return np.where(ok, 0, missing)

    def settle(self, genomes: NDArray[np.int64]) -> tuple[IntArray, FloatArray, FloatArray]:
        """Genomes to keep, with their fitness and risk, such that each kept genome
        decodes to exactly the plan it is scored by. The decoder's repaired genome (the
        nodes it actually used) is kept when decoding it again is no worse; the packing
        depends on the order pods meet free room, so it can be worse, and then the
        genome stays as it was."""
        first = self.decode(genomes)
        fit1, _, risk1 = self.score(first)
        second = self.decode(first.genomes)
        fit2, _, risk2 = self.score(second)
        keep_repaired = fit2 <= fit1 + 1e-12
        kept = np.where(
            keep_repaired[:, None],
            first.genomes,
            np.asarray(genomes, dtype=np.int64).reshape(first.genomes.shape),
        )
        return (kept, np.where(keep_repaired, fit2, fit1), np.where(keep_repaired, risk2, risk1))

    # -- fitness --------------------------------------------------------------------

    def score(self, decoded: Decoded) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(fitness, hourly cost, expected interruptions/h) per genome."""
        cons = self.tables.problem.constraints
        hourly = (decoded.nodes * self.price).sum(axis=1)
        fitness = hourly + _PENALTY * decoded.missing
        fitness = fitness + _REPLICA_TIE_BREAK * decoded.pods.sum(axis=(1, 2))
        fitness += _PENALTY * np.maximum(decoded.nodes - self.max_nodes, 0).sum(axis=1)
        if cons.max_hourly_cost is not None:
            fitness += 10.0 * np.maximum(hourly - cons.max_hourly_cost, 0)
        if self.previous is not None and self.churn_weight > 0:
            changed = np.abs(decoded.nodes - self.previous[None]) * self.price
            fitness += self.churn_weight * changed.sum(axis=1)
        risk = (decoded.nodes * np.where(self.spot, self.rate, 0.0)).sum(axis=1)
        return fitness, hourly, risk

    # -- conversions ----------------------------------------------------------------

    def genome_from(self, concurrency: Sequence[int], pods: IntArray) -> list[int]:
        """A genome from a placement over candidate pools (W, C)."""
        g, extra = [], []
        for w in range(self.n_w):
            values = self.tables.grids[w][self.grid[w]]
            gi = int(np.argmin(np.abs(values - concurrency[w])))
            g.append(gi)
            extra.append(max(0, int(pods[w].sum()) - int(self.need[w][gi])))
        nodes = np.ceil((pods * self.frac).sum(axis=0) - _ROOM_EPS).astype(np.int64)
        return g + extra + [int(v) for v in np.maximum(nodes, 0)]

    def from_proposal(self, proposal: Proposal) -> list[int]:
        pods = np.asarray(proposal.pods)[:, self.pools]
        return self.genome_from(proposal.concurrency, pods)

    def to_problem_arrays(self, genome: Sequence[int]) -> tuple[list[int], IntArray, IntArray]:
        d = self.decode(np.array([genome], dtype=np.int64))
        full_pods = np.zeros((self.n_w, self.tables.n_pools), dtype=np.int64)
        full_pods[:, self.pools] = d.pods[0]
        full_nodes = np.zeros(self.tables.n_pools, dtype=np.int64)
        full_nodes[self.pools] = d.nodes[0]
        grid_index = [int(self.grid[w][d.grid[0, w]]) for w in range(self.n_w)]
        return grid_index, full_pods, full_nodes


def _cover_capped(
    ppn: IntArray, price: FloatArray, upto: int, cap: int
) -> tuple[FloatArray, list[IntArray]]:
    """Cheapest way to host 0..upto pods with at most `cap` pods in any one pool: a
    knapsack over pools, each taken once with 0..cap pods."""
    cost = np.full(upto + 1, np.inf)
    cost[0] = 0.0
    choices: list[IntArray] = []
    ks = np.arange(min(cap, upto) + 1)
    s = np.arange(upto + 1)
    for i in range(len(ppn)):
        k_cost = price[i] * np.ceil(ks / ppn[i])
        prev = np.where(
            s[:, None] - ks[None, :] >= 0, cost[np.maximum(s[:, None] - ks[None, :], 0)], np.inf
        )
        total = prev + k_cost[None, :]
        k_best = np.argmin(total, axis=1)
        cost = total[s, k_best]
        choices.append(k_best.astype(np.int64))
    return cost, choices


def _unwind_capped(choices: list[IntArray], pods: int) -> IntArray:
    out = np.zeros(len(choices), dtype=np.int64)
    s = pods
    for i in range(len(choices) - 1, -1, -1):
        k = int(choices[i][s])
        out[i] = k
        s -= k
    return out


def dp_placement(space: _Space, w: int, g: int) -> tuple[IntArray, float]:
    """The cheapest placement of workload w at grid index g on nodes of its own: how
    many replicas (at least what the limit needs, more only if a pool-loss rule makes
    that cheaper) and how they split across candidate pools under the share rules.
    Exact for one workload; evolution then lets workloads share nodes."""
    cons = space.tables.problem.constraints
    need, surv = int(space.need[w][g]), int(space.survive[w][g])
    top = int(space.max_rep[w])
    od_idx = np.array(space.od_order[w], dtype=np.int64)
    spot_idx = np.array(space.spot_order[w], dtype=np.int64)
    od_cost, od_last = cover_unbounded(space.ppn[w, od_idx], space.price[od_idx], top)
    totals = sorted(
        {t for t in (need + d for d in range(0, 8)) if t <= top}
        | {min(top, int(need * f)) for f in (1.25, 1.5, 2.0)}
    )
    best = (np.inf, np.zeros(space.n_c, dtype=np.int64))
    spot_free: tuple[FloatArray, IntArray] | None = None
    for t in totals:
        od_min = math.ceil(cons.on_demand_min_share * t - _EPS)
        spot_max = min(math.floor(cons.spot_max_share * t + _EPS), t - od_min)
        cap = math.floor(cons.spot_max_pool_share * t + _EPS)
        if cons.survive_pool_loss:
            cap = min(cap, max(t - surv, 0))
        if not len(spot_idx) or cap <= 0:
            spot_max = 0
        spot_cost: FloatArray
        if spot_max > 0 and cap >= spot_max:
            if spot_free is None:
                spot_free = cover_unbounded(space.ppn[w, spot_idx], space.price[spot_idx], top)
            spot_cost = spot_free[0][: spot_max + 1]
            capped = None
        elif spot_max > 0:
            spot_cost, capped = _cover_capped(
                space.ppn[w, spot_idx], space.price[spot_idx], spot_max, cap
            )
        else:
            spot_cost, capped = np.zeros(1), None
        split = np.arange(len(spot_cost))
        total = spot_cost + od_cost[t - split]
        s_best = int(np.argmin(total))
        if total[s_best] + 1e-12 < best[0]:
            r = np.zeros(space.n_c, dtype=np.int64)
            r[od_idx] += unwind_cover(od_last, space.ppn[w, od_idx], t - s_best)
            if s_best > 0 and capped is not None:
                r[spot_idx] += _unwind_capped(capped, s_best)
            elif s_best > 0 and spot_free is not None:
                r[spot_idx] += unwind_cover(spot_free[1], space.ppn[w, spot_idx], s_best)
            best = (float(total[s_best]), r)
    return best[1], best[0]


def spread_seeds(space: _Space, grid: Sequence[int]) -> list[list[int]]:
    """Joint seeds: every workload spread over the same k cheapest spot pools (k = 2..4,
    ranked on the combined load) plus one on-demand pool, each with the replica total
    that is cheapest per pod under the share, cap and pool-loss rules. What a per-workload
    seed misses: the pool-loss rule makes a few extra replicas on several shared spot
    pools cheaper than minimum replicas on demand."""
    cons = space.tables.problem.constraints
    spot = np.flatnonzero(space.spot)
    od = np.flatnonzero(~space.spot)
    if not spot.size or not od.size or space.n_w == 0:
        return []
    need = np.array([space.need[w][grid[w]] for w in range(space.n_w)], dtype=np.float64)
    with np.errstate(divide="ignore"):
        share = np.where(space.usable, space.frac, np.inf)
    load = (need[:, None] * share).sum(axis=0)  # nodes each pool would need for everything
    per_node = np.where(np.isfinite(load), space.price * load, np.inf)
    od_pool = int(od[np.argmin(per_node[od])])
    ranked = [
        int(p) for p in spot[np.argsort(per_node[spot], kind="stable")] if np.isfinite(per_node[p])
    ]
    seeds: list[list[int]] = []
    for k in (2, 3, 4):
        pools = ranked[:k]
        if len(pools) < 2:
            break
        pods = np.zeros((space.n_w, space.n_c), dtype=np.int64)
        extra = []
        for w in range(space.n_w):
            n, surv = int(space.need[w][grid[w]]), int(space.survive[w][grid[w]])
            usable = [p for p in pools if space.usable[w, p]]
            best: tuple[float, int, int] | None = None
            for t in range(n, min(int(space.max_rep[w]), 2 * n + 2) + 1):
                od_min = math.ceil(cons.on_demand_min_share * t - _EPS)
                spot_max = min(math.floor(cons.spot_max_share * t + _EPS), t - od_min)
                cap = math.floor(cons.spot_max_pool_share * t + _EPS)
                if cons.survive_pool_loss:
                    cap = min(cap, max(t - surv, 0))
                s = max(0, min(spot_max, cap * len(usable)))
                cost = (
                    (t - s) * space.price[od_pool] * space.frac[w, od_pool]
                    + s * float(np.mean([space.price[p] * space.frac[w, p] for p in usable]))
                    if usable
                    else np.inf
                )
                if best is None or cost < best[0] - 1e-12:
                    best = (cost, t, s)
            if best is None:
                return seeds
            _, t, s = best
            extra.append(t - n)
            pods[w, od_pool] += t - s
            for i in range(s):
                pods[w, usable[i % len(usable)]] += 1
        nodes = np.ceil((pods * space.frac).sum(axis=0) - _ROOM_EPS).astype(np.int64)
        seeds.append([int(x) for x in grid] + extra + [int(v) for v in np.maximum(nodes, 0)])
    return seeds


def candidate_pools(tables: Tables, per_type: int = 6, extra: Sequence[int] = ()) -> list[int]:
    """Pools worth a gene. Per workload and capacity type: the cheapest hosts of k of its
    pods for k from one pod up to all it needs (small nodes win small k, big nodes big
    k), enough spot pools to honour the per-pool cap and a pool loss, and any pool a
    warm start uses."""
    cons = tables.problem.constraints
    chosen: set[int] = set(extra)
    spot_needed = per_type
    if cons.spot_max_pool_share < 1:
        spot_needed = max(per_type, math.ceil(1 / max(cons.spot_max_pool_share, 0.01)) + 2)
    for w in range(tables.n_workloads):
        needs = [effective_need(tables, w, g) for g in allowed_grid(tables, w)]
        n = max(1, min(needs))
        sizes = sorted(
            {1, 2, 3, 4, max(1, n // 4), max(1, n // 2), max(1, (3 * n) // 4), n, max(1, n - 1)}
        )
        for is_spot, k in ((False, per_type), (True, spot_needed)):
            ok = np.flatnonzero((tables.is_spot == is_spot) & tables.usable[w])
            if not ok.size:
                continue
            ppn = tables.ppn[w, ok]
            per_pod = tables.price[ok] / ppn
            chosen.update(int(p) for p in ok[np.argsort(per_pod, kind="stable")[:k]])
            for size in sizes:
                hosting = tables.price[ok] * np.ceil(size / ppn)
                chosen.update(int(p) for p in ok[np.argsort(hosting, kind="stable")[:2]])
    # Workloads share nodes: also the cheapest hosts of the combined load, and of parts
    # of it, counted in node fractions.
    least = np.array(
        [
            max(1, min(effective_need(tables, w, g) for g in allowed_grid(tables, w)))
            for w in range(tables.n_workloads)
        ],
        dtype=np.float64,
    )
    fits_all = tables.usable.all(axis=0) if tables.n_workloads else np.zeros(0, dtype=bool)
    with np.errstate(divide="ignore"):
        node_share = np.where(tables.usable, 1.0 / np.maximum(tables.ppn, 1), np.inf)
    for part in (1.0, 0.5, 0.25):
        load = (least[:, None] * part * node_share).sum(axis=0)
        hosting = tables.price * np.ceil(load - _EPS)
        for is_spot, k in ((False, 3), (True, max(3, spot_needed))):
            ok = np.flatnonzero((tables.is_spot == is_spot) & fits_all)
            chosen.update(int(p) for p in ok[np.argsort(hosting[ok], kind="stable")[:k]])
    if not chosen and tables.n_pools:
        chosen.add(int(np.argmin(tables.price)))
    return sorted(chosen)


class GeneticEngine:
    name = "genetic"

    def __init__(
        self,
        population: int = 64,
        generations: int = 40,
        time_budget_seconds: float = 2.0,
        objectives: str = "cost",
        churn_weight: float = 0.0,
        seed: int | None = None,
        pools_per_type: int = 6,
        polish: bool = True,
        patience: int = 12,
        **_: object,
    ) -> None:
        if objectives not in ("cost", "cost-risk"):
            raise ValueError(f"objectives must be cost or cost-risk, not {objectives!r}")
        self.population = population
        self.generations = generations
        self.time_budget_seconds = time_budget_seconds
        self.objectives = objectives
        self.churn_weight = churn_weight
        self.seed = seed
        self.pools_per_type = pools_per_type
        self.polish = polish
        self.patience = patience  # generations without a better best before stopping
        self.last_generations = 0
        self._spread: list[list[int]] = []

    def solve(
        self,
        problem: Problem,
        *,
        warm_start: Plan | None = None,
        seed: int | None = None,
        proposals: Sequence[Proposal] = (),
    ) -> Plan:
        started = time.perf_counter()
        tables = build_tables(problem)
        index = {p.name: i for i, p in enumerate(problem.pools)}
        seeds = list(proposals)
        previous_nodes = None
        if warm_start is not None:
            warm = proposal_from_plan(tables, warm_start, index)
            if warm is not None:
                seeds.append(warm)
            previous_nodes = np.zeros(tables.n_pools, dtype=np.int64)
            for node in warm_start.nodes:
                if node.pool in index:
                    previous_nodes[index[node.pool]] = node.count
        extra = sorted(
            {int(p) for s in seeds for p in np.flatnonzero(np.asarray(s.pods).sum(0))}
            | (
                {int(p) for p in np.flatnonzero(previous_nodes)}
                if previous_nodes is not None
                else set()
            )
        )
        extra = [p for p in extra if problem.pools[p].name not in problem.shunned_pools]
        space = _Space(
            tables,
            candidate_pools(tables, self.pools_per_type, extra),
            self.churn_weight,
            previous_nodes,
        )
        run_seed = seed if seed is not None else (self.seed if self.seed is not None else 0)
        with _LOCK:
            state = random.getstate()
            try:
                random.seed(run_seed)
                # A control loop re-solves a problem close to the last one, whose plan is
                # seeded: the search confirms or mends it, and half the patience does that.
                patience = max(3, self.patience // 2) if warm_start else self.patience
                best = self._evolve(
                    space, seeds, np.random.default_rng(run_seed), started, patience
                )
            finally:
                random.setstate(state)
        grid_index, pods, nodes = space.to_problem_arrays(best)
        notes = (
            f"evolved {self.last_generations} generations of {self.population} over "
            f"{space.n_c} candidate pools",
        )
        return build_plan(
            tables,
            self.name,
            grid_index,
            pods,
            nodes,
            solve_seconds=time.perf_counter() - started,
            notes=notes,
        )

    # -- evolution ------------------------------------------------------------------

    def _evolve(
        self,
        space: _Space,
        seeds: Sequence[Proposal],
        rng: np.random.Generator,
        started: float,
        patience: int,
    ) -> list[int]:
        multi = self.objectives == "cost-risk"
        genome_cls: Any = creator.SpotwiseGenomeCostRisk if multi else creator.SpotwiseGenomeCost
        toolbox = base.Toolbox()
        toolbox.register("mate", _crossover, space=space)
        toolbox.register("mutate", _mutate, space=space, rng=rng)
        if multi:
            toolbox.register("select", tools.selNSGA2)
        else:
            toolbox.register("select", tools.selTournament, tournsize=3)

        pop = [genome_cls(g) for g in self._initial(space, seeds, rng)]
        self._evaluate(space, pop, multi)
        pop = toolbox.select(pop, self.population) if multi else _best(pop, self.population)
        hall = tools.HallOfFame(1)
        hall.update(pop)
        self.last_generations = 0
        deadline = started + self.time_budget_seconds
        best_seen, stale = hall[0].fitness.values[0], 0
        for _gen in range(self.generations):
            if time.perf_counter() > deadline or (not multi and stale >= patience):
                break
            parents = (
                tools.selTournamentDCD(pop, len(pop) - len(pop) % 4)
                if multi
                else toolbox.select(pop, len(pop))
            )
            offspring = [genome_cls(p) for p in parents]
            for a, b in zip(offspring[::2], offspring[1::2], strict=False):
                if random.random() < 0.6:
                    toolbox.mate(a, b)
            for child in offspring:
                if random.random() < 0.8:
                    toolbox.mutate(child)
            self._evaluate(space, offspring, multi)
            # (mu + lambda): parents compete with their children, so the best never drops.
            pop = (
                toolbox.select(pop + offspring, self.population)
                if multi
                else _best(pop + offspring, self.population)
            )
            hall.update(pop)
            self.last_generations += 1
            if hall[0].fitness.values[0] < best_seen - 1e-9:
                best_seen, stale = hall[0].fitness.values[0], 0
            else:
                stale += 1
        if multi:
            return list(_knee(pop))
        if not self.polish:
            return list(hall[0])
        # Polish the winner and the joint spread seeds: a seed whose raw decode looked
        # dear (over budget, say) can descend to a better plan than evolution kept.
        starts = [list(hall[0]), *self._spread]
        best, best_fit = list(hall[0]), hall[0].fitness.values[0]
        for start in starts:
            polished, fit = local_search(space, start, deadline)
            if fit < best_fit - 1e-12:
                best, best_fit = polished, fit
        return best

    def _initial(
        self, space: _Space, seeds: Sequence[Proposal], rng: np.random.Generator
    ) -> IntArray:
        rows: list[list[int]] = [space.from_proposal(s) for s in seeds]
        # Constructive seeds: each workload on its own nodes as cheaply as possible (its
        # best limit, then every limit); the decoder then lets them share.
        placed = [
            [dp_placement(space, w, g) for g in range(len(space.grid[w]))] for w in range(space.n_w)
        ]
        best_g = [int(np.argmin([c for _, c in placed[w]])) for w in range(space.n_w)]
        combos = [best_g] + [
            [min(gi, len(space.grid[w]) - 1) for w in range(space.n_w)]
            for gi in range(max((len(gr) for gr in space.grid), default=1))
        ]
        for gs in combos:
            pods = np.array([placed[w][gs[w]][0] for w in range(space.n_w)], dtype=np.int64)
            pods = pods.reshape(space.n_w, space.n_c)
            rows.append(
                space.genome_from(
                    [int(space.tables.grids[w][space.grid[w][gs[w]]]) for w in range(space.n_w)],
                    pods,
                )
            )
            # The same pods, each workload on nodes of its own: more room to repack.
            own = np.ceil(pods * space.frac - _ROOM_EPS).sum(axis=0).astype(np.int64)
            rows.append(rows[-1][: 2 * space.n_w] + [int(v) for v in own])
        rows.append(best_g + [0] * (space.n_w + space.n_c))  # greedy: decoder buys all
        self._spread = spread_seeds(space, best_g)
        rows.extend(self._spread)
        while len(rows) < self.population:
            g = [int(rng.integers(len(space.grid[w]))) for w in range(space.n_w)]
            nodes = np.zeros(space.n_c, dtype=np.int64)
            picks = rng.choice(
                space.n_c, size=min(space.n_c, int(rng.integers(1, 4))), replace=False
            )
            nodes[picks] = rng.integers(1, 4, size=picks.size)
            rows.append(g + [0] * space.n_w + [int(v) for v in nodes])
        return space.decode(np.array(rows, dtype=np.int64)).genomes

    @staticmethod
    def _evaluate(space: _Space, individuals: Sequence[Any], multi: bool) -> None:
        if not individuals:
            return
        genomes, fitness, risk = space.settle(np.array(individuals, dtype=np.int64))
        for ind, row, f, k in zip(individuals, genomes, fitness, risk, strict=True):
            ind[:] = row.tolist()
            ind.fitness.values = (float(f), float(k)) if multi else (float(f),)


def _best(individuals: list[Any], size: int) -> list[Any]:
    ranked = sorted(individuals, key=lambda ind: ind.fitness.values[0])
    return _distinct(ranked, size)


def _neighbours(space: _Space, genome: Sequence[int]) -> IntArray:
    """Every genome one move away: a node fewer or more in a pool, a node moved between
    pools, a pool emptied, a limit or the extra replicas one step over."""
    n_w, n_c = space.n_w, space.n_c
    row0 = np.asarray(genome, dtype=np.int64)
    nodes = row0[2 * n_w :]
    out: list[IntArray] = []

    def variant(**changes: int) -> None:
        row = row0.copy()
        for key, delta in changes.items():
            kind, idx = key[0], int(key[1:])
            pos = {"g": idx, "e": n_w + idx, "n": 2 * n_w + idx}[kind]
            row[pos] += delta
        out.append(row)

    for w in range(n_w):
        for step in (-1, 1):
            if 0 <= row0[w] + step < len(space.grid[w]):
                variant(**{f"g{w}": step})
            if row0[n_w + w] + step >= 0:
                variant(**{f"e{w}": step})
    used = np.flatnonzero(nodes)
    for p in range(n_c):
        variant(**{f"n{p}": 1})
    for p in (int(x) for x in used):
        have = int(nodes[p])
        variant(**{f"n{p}": -1})
        variant(**{f"n{p}": -have})
        for q in range(n_c):
            if q == p:
                continue
            variant(**{f"n{p}": -1, f"n{q}": 1})
            # A whole pool swapped for a few nodes of another (fewer, bigger nodes).
            for k in sorted({1, (have + 1) // 2, have}):
                if have > 1 or k > 1:
                    variant(**{f"n{p}": -have, f"n{q}": k})
    return np.array(out, dtype=np.int64).reshape(-1, space.length)


def local_search(
    space: _Space, genome: Sequence[int], deadline: float, max_rounds: int = 40
) -> tuple[list[int], float]:
    """Steepest descent over `_neighbours`, each round decoded and scored as one batch."""
    start, fit0, _ = space.settle(np.array([genome], dtype=np.int64))
    best, best_fit = start[0], float(fit0[0])
    for _ in range(max_rounds):
        if time.perf_counter() > deadline:
            break
        cand, fit, _risk = space.settle(_neighbours(space, best.tolist()))
        i = int(np.argmin(fit))
        if fit[i] >= best_fit - 1e-9:
            break
        best, best_fit = cand[i], float(fit[i])
    return best.tolist(), best_fit


def _crossover(a: list[int], b: list[int], *, space: _Space) -> tuple[list[int], list[int]]:
    """Swap whole workloads (limit and extra replicas), then a run of pools."""
    n_w, n_c = space.n_w, space.n_c
    for w in range(n_w):
        if random.random() < 0.5:
            a[w], b[w] = b[w], a[w]
            a[n_w + w], b[n_w + w] = b[n_w + w], a[n_w + w]
    if n_c > 1:
        i, j = sorted(random.sample(range(n_c + 1), 2))
        lo, hi = 2 * n_w + i, 2 * n_w + j
        a[lo:hi], b[lo:hi] = b[lo:hi], a[lo:hi]
    return a, b


def _mutate(ind: list[int], *, space: _Space, rng: np.random.Generator) -> tuple[list[int]]:
    n_w, n_c = space.n_w, space.n_c
    base_n = 2 * n_w
    used = [p for p in range(n_c) if ind[base_n + p] > 0]
    move = rng.random()
    if move < 0.15 and n_w:
        w = int(rng.integers(n_w))
        ind[w] = max(0, min(len(space.grid[w]) - 1, ind[w] + int(rng.choice((-1, 1)))))
    elif move < 0.25 and n_w:
        w = int(rng.integers(n_w))
        ind[n_w + w] = 0 if rng.random() < 0.5 else max(0, ind[n_w + w] + int(rng.choice((-1, 1))))
    elif move < 0.55 and used:
        # One node fewer: the decoder re-homes its pods in free room or the best new node.
        p = int(rng.choice(used))
        ind[base_n + p] -= 1
    elif move < 0.85 and used:
        p, q = int(rng.choice(used)), int(rng.integers(n_c))
        ind[base_n + p] -= 1
        ind[base_n + q] += 1
    else:
        q = int(rng.integers(n_c))
        ind[base_n + q] += 1
    return (ind,)


def _distinct(sorted_pool: list[Any], size: int) -> list[Any]:
    """The best `size` individuals, skipping exact duplicates while there are enough
    others: keeps the population from collapsing onto one plan."""
    out: list[Any] = []
    seen: set[tuple[int, ...]] = set()
    for ind in sorted_pool:
        key = tuple(ind)
        if key in seen:
            continue
        seen.add(key)
        out.append(ind)
        if len(out) == size:
            return out
    for ind in sorted_pool:
        if len(out) == size:
            break
        out.append(ind)
    return out


def _knee(front: Sequence[Any]) -> Any:
    """The plan nearest the ideal point after scaling both objectives to [0, 1]."""
    values = np.array([ind.fitness.values for ind in front])
    lo, hi = values.min(axis=0), values.max(axis=0)
    scaled = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    return front[int(np.argmin(np.hypot(scaled[:, 0], scaled[:, 1])))]


def proposal_from_plan(tables: Tables, plan: Plan, index: dict[str, int]) -> Proposal | None:
    """A previous plan in genome terms; None when its workloads no longer match."""
    names = [w.name for w in tables.problem.workloads]
    try:
        wplans = [plan.workload(n) for n in names]
    except KeyError:
        return None
    pods = np.zeros((len(names), tables.n_pools), dtype=np.int64)
    for w, wp in enumerate(wplans):
        for pool, n in wp.pods_by_pool:
            if pool in index:
                pods[w, index[pool]] = n
    return Proposal([wp.concurrency for wp in wplans], pods)


@register("genetic")
def _factory(**options: Any) -> GeneticEngine:
    return GeneticEngine(**options)
