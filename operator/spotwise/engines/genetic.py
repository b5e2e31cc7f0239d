"""The genetic engine: DEAP evolution over integer genomes, scored in NumPy.

A genome holds, per workload, an index into its useful concurrency grid and its pods in
each candidate pool; node counts follow from the pods. A repair operator, vectorized
over the population, restores every hard rule it can (replica bounds, the SLO's replica
need, on-demand and spot shares, per-pool caps, surviving a pool loss), so evolution
spends its time on cost: which pools, how the pods of several workloads share nodes.
Fitness is the hourly cost plus, when asked, node churn against the previous plan, and
a second objective, expected spot interruptions, for NSGA-II (`objectives="cost-risk"`).

Deterministic for a seed: DEAP draws from the global `random` module, so a solve seeds it
under a lock and restores it after.

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
    IntArray,
    Tables,
    allowed_grid,
    build_plan,
    build_tables,
    effective_need,
    register,
)

_EPS = 1e-9
_PENALTY = 1_000.0  # $/h per unit of rule violation left after repair
_REPLICA_TIE_BREAK = 1e-5  # the same tie-break as the exact engine
_LOCK = threading.Lock()

if not hasattr(creator, "SpotwiseFitnessCost"):
    creator.create("SpotwiseFitnessCost", base.Fitness, weights=(-1.0,))
    creator.create("SpotwiseFitnessCostRisk", base.Fitness, weights=(-1.0, -1.0))
    creator.create("SpotwiseGenomeCost", list, fitness=creator.SpotwiseFitnessCost)
    creator.create("SpotwiseGenomeCostRisk", list, fitness=creator.SpotwiseFitnessCostRisk)


@dataclass(frozen=True)
class Proposal:
    """A starting point for evolution in pool terms: concurrency per workload and pods
    per (workload, pool index of the problem)."""

    concurrency: Sequence[int]
    pods: IntArray  # (W, P)


class _Space:
    """The genome layout for one problem: candidate pools and the arrays repair and
    fitness need, restricted to those pools."""

    def __init__(self, tables: Tables, pools: list[int], churn_weight: float,
                 previous_nodes: IntArray | None) -> None:
        problem = tables.problem
        cons = problem.constraints
        self.tables = tables
        self.pools = np.array(sorted(pools), dtype=np.int64)
        self.n_w = tables.n_workloads
        self.n_c = len(self.pools)
        self.grid = [np.array(allowed_grid(tables, w), dtype=np.int64) for w in range(self.n_w)]
        self.need = [np.array([effective_need(tables, w, int(g)) for g in self.grid[w]])
                     for w in range(self.n_w)]
        survive_on = cons.survive_pool_loss
        self.survive = [
            np.array([int(tables.survive[w][g]) if survive_on
                      and problem.workloads[w].demand_rps > 0 else 0 for g in self.grid[w]])
            for w in range(self.n_w)
        ]
        self.max_rep = np.array([w.max_replicas for w in problem.workloads], dtype=np.int64)
        self.ppn = tables.ppn[:, self.pools]
        self.usable = tables.usable[:, self.pools]
        self.price = tables.price[self.pools]
        self.spot = tables.is_spot[self.pools]
        self.rate = np.array([problem.pools[p].interruptions_per_hour for p in self.pools])
        with np.errstate(divide="ignore"):
            per_pod = np.where(self.usable, self.price / np.maximum(self.ppn, 1), np.inf)
        # Pools in the order repair fills them, cheapest pod first, per workload.
        self.spot_order = [[int(p) for p in np.argsort(per_pod[w], kind="stable")
                            if self.spot[p] and self.usable[w, p]] for w in range(self.n_w)]
        self.od_order = [[int(p) for p in np.argsort(per_pod[w], kind="stable")
                          if not self.spot[p] and self.usable[w, p]] for w in range(self.n_w)]
        od = np.flatnonzero(~self.spot)
        self.cheapest_od = int(od[np.argmin(self.price[od])]) if od.size else -1
        self.per_pod = per_pod
        self.churn_weight = churn_weight
        self.previous = previous_nodes[self.pools] if previous_nodes is not None else None

    @property
    def length(self) -> int:
        return self.n_w + self.n_w * self.n_c

    def split(self, genomes: NDArray[np.int64]) -> tuple[IntArray, IntArray]:
        g = genomes[:, : self.n_w]
        r = genomes[:, self.n_w:].reshape(len(genomes), self.n_w, self.n_c)
        return g, r

    def join(self, g: IntArray, r: IntArray) -> IntArray:
        return np.concatenate([g, r.reshape(len(g), -1)], axis=1)

    # -- repair ---------------------------------------------------------------------

    def repair(self, genomes: NDArray[np.int64]) -> IntArray:
        cons = self.tables.problem.constraints
        g, r = self.split(np.array(genomes, dtype=np.int64))
        g = g.copy()
        r = np.maximum(r, 0)
        for w in range(self.n_w):
            g[:, w] = np.clip(g[:, w], 0, len(self.grid[w]) - 1)
            need = self.need[w][g[:, w]]
            surv = self.survive[w][g[:, w]]
            rw = np.where(self.usable[w][None, :], r[:, w, :], 0)
            total = np.clip(rw.sum(axis=1), need, self.max_rep[w])
            od_min = np.ceil(cons.on_demand_min_share * total - _EPS).astype(np.int64)
            spot_max = np.minimum(np.floor(cons.spot_max_share * total + _EPS).astype(np.int64),
                                  total - od_min)
            cap = np.floor(cons.spot_max_pool_share * total + _EPS).astype(np.int64)
            if cons.survive_pool_loss:
                cap = np.minimum(cap, np.maximum(total - surv, 0))
            spot_idx = self.spot_order[w]
            od_idx = self.od_order[w]
            if spot_idx:
                rw[:, spot_idx] = np.minimum(rw[:, spot_idx], cap[:, None])
                excess = np.maximum(rw[:, spot_idx].sum(axis=1) - spot_max, 0)
                rw = _take(rw, spot_idx[::-1], excess)
            spot_now = rw[:, spot_idx].sum(axis=1) if spot_idx else np.zeros(len(g), np.int64)
            od_now = rw[:, od_idx].sum(axis=1) if od_idx else np.zeros(len(g), np.int64)
            # Too many on-demand pods beyond what the total leaves: drop dearest first.
            od_room = np.maximum(total - spot_now, od_min)
            rw = _take(rw, od_idx[::-1], np.maximum(od_now - od_room, 0))
            od_now = rw[:, od_idx].sum(axis=1) if od_idx else od_now
            # Fill: on-demand up to its minimum, then spot within caps, then on-demand;
            # each first into free slots of nodes already paid for.
            r[:, w, :] = rw
            free = self.free_slots(r, w)
            rw = _fill(rw, od_idx, np.maximum(od_min - od_now, 0), None, free)
            missing = np.maximum(total - rw.sum(axis=1), 0)
            if spot_idx:
                spot_room = np.maximum(spot_max - rw[:, spot_idx].sum(axis=1), 0)
                add = np.minimum(missing, spot_room)
                rw = _fill(rw, spot_idx, add, cap, free)
                missing = np.maximum(total - rw.sum(axis=1), 0)
            rw = _fill(rw, od_idx, missing, None, free)
            r[:, w, :] = rw
        return self.join(g, r)

    def free_slots(self, r: IntArray, w: int) -> IntArray:
        """Pods of workload w that fit, per genome and pool, in nodes the pods already
        placed force anyway (the unused part of each pool's last node)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(self.ppn[None] > 0, r / np.maximum(self.ppn[None], 1), 0.0)
        load = frac.sum(axis=1)
        slack = np.ceil(load - _EPS) - load
        return np.where(self.usable[w][None], np.floor(slack * self.ppn[w][None] + 1e-6),
                        0).astype(np.int64)

    # -- fitness --------------------------------------------------------------------

    def nodes(self, r: IntArray) -> IntArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(self.ppn[None] > 0, r / np.maximum(self.ppn[None], 1),
                            np.where(r > 0, 1e6, 0.0))
        n = np.ceil(frac.sum(axis=1) - _EPS).astype(np.int64)
        short = self.tables.problem.constraints.on_demand_min_nodes - n[:, ~self.spot].sum(axis=1)
        if self.cheapest_od >= 0:
            n[:, self.cheapest_od] += np.maximum(short, 0)
        return n

    def score(self, genomes: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                          NDArray[np.float64]]:
        """(fitness cost, hourly cost, expected interruptions/h) per genome."""
        cons = self.tables.problem.constraints
        g, r = self.split(genomes)
        n = self.nodes(r)
        hourly = (n * self.price).sum(axis=1)
        violation = np.zeros(len(g))
        for w in range(self.n_w):
            total = r[:, w, :].sum(axis=1)
            need = self.need[w][np.clip(g[:, w], 0, len(self.grid[w]) - 1)]
            violation += np.maximum(need - total, 0) + np.maximum(total - self.max_rep[w], 0)
            violation += np.where(self.usable[w], 0, r[:, w, :]).sum(axis=1)
        over = n - cons.max_nodes_per_pool
        violation += np.maximum(over, 0).sum(axis=1)
        fitness = hourly + _PENALTY * violation + _REPLICA_TIE_BREAK * r.sum(axis=(1, 2))
        if cons.max_hourly_cost is not None:
            fitness += 10.0 * np.maximum(hourly - cons.max_hourly_cost, 0)
        if self.previous is not None and self.churn_weight > 0:
            fitness += self.churn_weight * (np.abs(n - self.previous[None]) * self.price).sum(axis=1)
        risk = (n * np.where(self.spot, self.rate, 0.0)).sum(axis=1)
        return fitness, hourly, risk

    # -- conversions ----------------------------------------------------------------

    def genome_from(self, proposal: Proposal) -> list[int]:
        g = []
        for w in range(self.n_w):
            c = proposal.concurrency[w]
            concurrencies = self.tables.grids[w][self.grid[w]]
            g.append(int(np.argmin(np.abs(concurrencies - c))))
        r = np.asarray(proposal.pods)[:, self.pools]
        return g + [int(v) for v in r.reshape(-1)]

    def to_problem_arrays(self, genome: Sequence[int]) -> tuple[list[int], IntArray, IntArray]:
        arr = np.array([genome], dtype=np.int64)
        g, r = self.split(arr)
        n = self.nodes(r)[0]
        full_pods = np.zeros((self.n_w, self.tables.n_pools), dtype=np.int64)
        full_pods[:, self.pools] = r[0]
        full_nodes = np.zeros(self.tables.n_pools, dtype=np.int64)
        full_nodes[self.pools] = n
        grid_index = [int(self.grid[w][g[0, w]]) for w in range(self.n_w)]
        return grid_index, full_pods, full_nodes


def _take(rw: IntArray, order: Sequence[int], amount: IntArray) -> IntArray:
    """Remove `amount` pods per row, from pools in `order`."""
    left = amount.copy()
    for p in order:
        if not left.any():
            break
        t = np.minimum(left, rw[:, p])
        rw[:, p] -= t
        left -= t
    return rw


def _fill(rw: IntArray, order: Sequence[int], amount: IntArray, cap: IntArray | None,
          free: IntArray | None = None) -> IntArray:
    """Add `amount` pods per row to pools in `order`, each up to `cap`: first into `free`
    slots (no new node), then into pools that already hold some (keeps what evolution
    chose), then anywhere."""
    left = amount.copy()
    passes = (("free", "used", "any") if free is not None else ("used", "any"))
    for kind in passes:
        for p in order:
            if not left.any():
                return rw
            room = left if cap is None else np.maximum(cap - rw[:, p], 0)
            if kind == "free" and free is not None:
                room = np.minimum(room, free[:, p])
                eligible = free[:, p] > 0
            elif kind == "used":
                eligible = rw[:, p] > 0
            else:
                eligible = np.ones(len(rw), dtype=bool)
            t = np.where(eligible, np.minimum(left, room), 0)
            rw[:, p] += t
            left -= t
            if free is not None and kind == "free":
                free[:, p] -= t
    return rw


def candidate_pools(tables: Tables, per_type: int = 6, extra: Sequence[int] = ()) -> list[int]:
    """Pools worth a gene: per workload and capacity type the cheapest per pod and the
    cheapest per node (small nodes waste less at low load), enough spot pools to honour
    the per-pool cap and a pool loss, and any pool a warm start uses."""
    cons = tables.problem.constraints
    chosen: set[int] = set(extra)
    spot_needed = per_type
    if cons.spot_max_pool_share < 1:
        spot_needed = max(per_type, math.ceil(1 / max(cons.spot_max_pool_share, 0.01)) + 2)
    with np.errstate(divide="ignore"):
        per_pod = np.where(tables.usable, tables.price / np.maximum(tables.ppn, 1), np.inf)
    for is_spot, k in ((False, per_type), (True, spot_needed)):
        mask = tables.is_spot == is_spot
        for w in range(tables.n_workloads):
            ok = np.flatnonzero(mask & tables.usable[w])
            if not ok.size:
                continue
            chosen.update(int(p) for p in ok[np.argsort(per_pod[w, ok], kind="stable")[:k]])
            chosen.update(int(p) for p in ok[np.argsort(tables.price[ok], kind="stable")[:2]])
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
        self.last_generations = 0

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
        extra = sorted({int(p) for s in seeds for p in np.flatnonzero(np.asarray(s.pods).sum(0))})
        space = _Space(tables, candidate_pools(tables, self.pools_per_type, extra),
                       self.churn_weight, previous_nodes)
        run_seed = seed if seed is not None else (self.seed if self.seed is not None else 0)
        with _LOCK:
            state = random.getstate()
            try:
                random.seed(run_seed)
                best = self._evolve(space, seeds, np.random.default_rng(run_seed), started)
            finally:
                random.setstate(state)
        grid_index, pods, nodes = space.to_problem_arrays(best)
        notes = (f"evolved {self.last_generations} generations of {self.population} over "
                 f"{space.n_c} candidate pools",)
        return build_plan(tables, self.name, grid_index, pods, nodes,
                          solve_seconds=time.perf_counter() - started, notes=notes)

    # -- evolution ------------------------------------------------------------------

    def _evolve(self, space: _Space, seeds: Sequence[Proposal], rng: np.random.Generator,
                started: float) -> list[int]:
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
        hall = tools.HallOfFame(1)
        hall.update(pop)
        self.last_generations = 0
        for _gen in range(self.generations):
            if time.perf_counter() - started > self.time_budget_seconds:
                break
            parents = (tools.selTournamentDCD(pop, len(pop) - len(pop) % 4) if multi
                       else toolbox.select(pop, len(pop)))
            offspring = [genome_cls(p) for p in parents]
            for a, b in zip(offspring[::2], offspring[1::2], strict=False):
                if random.random() < 0.6:
                    toolbox.mate(a, b)
            for child in offspring:
                if random.random() < 0.7:
                    toolbox.mutate(child)
            repaired = space.repair(np.array(offspring, dtype=np.int64))
            for child, row in zip(offspring, repaired, strict=True):
                child[:] = row.tolist()
            self._evaluate(space, offspring, multi)
            # (mu + lambda): parents compete with their children, so the best never drops.
            if multi:
                pop = toolbox.select(pop + offspring, self.population)
            else:
                pool = pop + offspring
                pool.sort(key=lambda ind: ind.fitness.values[0])
                pop = _distinct(pool, self.population)
            hall.update(pop)
            self.last_generations += 1
        if multi:
            return list(_knee(pop))
        deadline = started + self.time_budget_seconds
        polished, _fit = local_search(space, list(hall[0]), deadline)
        return polished

    def _initial(self, space: _Space, seeds: Sequence[Proposal],
                 rng: np.random.Generator) -> IntArray:
        rows: list[list[int]] = [space.genome_from(s) for s in seeds]
        # Greedy seeds: every workload at one grid point, repair fills the cheapest pools.
        width = max(len(gr) for gr in space.grid) if space.n_w else 1
        for gi in range(width):
            rows.append([min(gi, len(space.grid[w]) - 1) for w in range(space.n_w)]
                        + [0] * (space.n_w * space.n_c))
        while len(rows) < self.population:
            g = [int(rng.integers(len(space.grid[w]))) for w in range(space.n_w)]
            r = np.zeros((space.n_w, space.n_c), dtype=np.int64)
            for w in range(space.n_w):
                usable = np.flatnonzero(space.usable[w])
                if usable.size:
                    picks = rng.choice(usable, size=min(usable.size, int(rng.integers(1, 4))),
                                       replace=False)
                    r[w, picks] = rng.integers(0, max(2, space.need[w].max()), size=picks.size)
            rows.append(g + [int(v) for v in r.reshape(-1)])
        return space.repair(np.array(rows[: max(self.population, len(seeds))], dtype=np.int64))

    @staticmethod
    def _evaluate(space: _Space, individuals: Sequence[Any], multi: bool) -> None:
        fitness, _hourly, risk = space.score(np.array(individuals, dtype=np.int64))
        for ind, f, k in zip(individuals, fitness, risk, strict=True):
            ind.fitness.values = (float(f), float(k)) if multi else (float(f),)


def _neighbours(space: _Space, genome: Sequence[int]) -> IntArray:
    """Every genome one move away: a workload's pods in one pool moved to another (all
    of them, or half), a whole pool emptied into another, a limit one grid step over."""
    n_w, n_c = space.n_w, space.n_c
    base_row = np.asarray(genome, dtype=np.int64)
    r = base_row[n_w:].reshape(n_w, n_c)
    out: list[IntArray] = []
    for w in range(n_w):
        for step in (-1, 1):
            g = int(base_row[w]) + step
            if 0 <= g < len(space.grid[w]):
                row = base_row.copy()
                row[w] = g
                out.append(row)
        targets = np.flatnonzero(space.usable[w])
        for p in np.flatnonzero(r[w]):
            for q in targets:
                if q == p:
                    continue
                for share in (1.0, 0.5):
                    k = int(r[w, p] * share) if share < 1 else int(r[w, p])
                    if k == 0:
                        continue
                    row = base_row.copy()
                    row[n_w + w * n_c + p] -= k
                    row[n_w + w * n_c + q] += k
                    out.append(row)
    used = np.flatnonzero(r.sum(axis=0))
    for p in used:
        for q in range(n_c):
            if q == p or not all(space.usable[v, q] or r[v, p] == 0 for v in range(n_w)):
                continue
            row = base_row.copy()
            for v in range(n_w):
                row[n_w + v * n_c + q] += row[n_w + v * n_c + p]
                row[n_w + v * n_c + p] = 0
            out.append(row)
    return np.array(out, dtype=np.int64).reshape(-1, space.length)


def local_search(space: _Space, genome: Sequence[int], deadline: float,
                 max_rounds: int = 50) -> tuple[list[int], float]:
    """Steepest descent over `_neighbours`, scored as one batch per round."""
    best = np.asarray(genome, dtype=np.int64)
    best_fit = float(space.score(best[None])[0][0])
    for _ in range(max_rounds):
        if time.perf_counter() > deadline:
            break
        cand = _neighbours(space, best.tolist())
        if not len(cand):
            break
        cand = space.repair(cand)
        fit = space.score(cand)[0]
        i = int(np.argmin(fit))
        if fit[i] >= best_fit - 1e-9:
            break
        best, best_fit = cand[i], float(fit[i])
    return best.tolist(), best_fit


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


def _crossover(a: list[int], b: list[int], *, space: _Space) -> tuple[list[int], list[int]]:
    """Swap whole workloads (limit and placement) between parents; with one workload,
    swap a run of pools instead."""
    n_w, n_c = space.n_w, space.n_c
    if n_w > 1:
        for w in range(n_w):
            if random.random() < 0.5:
                a[w], b[w] = b[w], a[w]
                lo, hi = n_w + w * n_c, n_w + (w + 1) * n_c
                a[lo:hi], b[lo:hi] = b[lo:hi], a[lo:hi]
    elif n_c > 1:
        i, j = sorted(random.sample(range(n_c + 1), 2))
        a[1 + i:1 + j], b[1 + i:1 + j] = b[1 + i:1 + j], a[1 + i:1 + j]
    return a, b


def _mutate(ind: list[int], *, space: _Space, rng: np.random.Generator) -> tuple[list[int]]:
    n_w, n_c = space.n_w, space.n_c
    w = int(rng.integers(n_w))
    row = n_w + w * n_c
    move = rng.random()
    if move < 0.2:
        ind[w] = max(0, min(len(space.grid[w]) - 1, ind[w] + int(rng.choice((-1, 1)))))
    elif move < 0.55:
        # Move some pods of one workload from a pool it uses to another.
        used = [p for p in range(n_c) if ind[row + p] > 0]
        usable = np.flatnonzero(space.usable[w])
        if used and usable.size:
            src = int(rng.choice(used))
            dst = int(rng.choice(usable))
            k = int(rng.integers(1, ind[row + src] + 1))
            ind[row + src] -= k
            ind[row + dst] += k
    elif move < 0.8:
        # Empty one pool of every workload into another pool of the same capacity type:
        # the move that frees whole nodes.
        src = int(rng.integers(n_c))
        same = [p for p in range(n_c) if p != src and space.spot[p] == space.spot[src]]
        if same:
            dst = int(rng.choice(same))
            for v in range(n_w):
                a, b = n_w + v * n_c + src, n_w + v * n_c + dst
                if space.usable[v, dst]:
                    ind[b] += ind[a]
                    ind[a] = 0
    else:
        p = int(rng.integers(n_c))
        ind[row + p] = max(0, ind[row + p] + int(rng.choice((-2, -1, 1, 2))))
    return (ind,)


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
