"""The optimizer benchmark: the exact engine against the genetic one on fixed instances.

A full factorial of 96 deterministic instances: 3 catalog sizes (5, 20, 60 instance
types) x 4 demand levels (10, 100, 1,000, 5,000 requests/second in total, split over the
workloads with seeded weights) x 4 workload counts (1, 2, 3, 5) x 2 constraint sets
(loose, tight). Everything is drawn from a `numpy` generator seeded with (seed, the
instance's coordinates), so an instance never changes when others are added.

Per instance the exact engine (HiGHS, proves the optimum of the linear model) and the
genetic engine (default settings) solve the same `Problem`; both plans are re-checked
with `check_plan`. The gap is genetic cost / exact cost - 1: the exact cost is a lower
bound whenever its optimum was proven.

Not here: printing (`spotwise bench optimizer`, `bench/optimizer.py`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spotwise.catalog import builtin_catalog, load_catalog_csv
from spotwise.decide import reference_cost
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
from spotwise.engines import base as engines_base
from spotwise.engines import exact as engines_exact
from spotwise.engines import genetic as engines_genetic
from spotwise.engines.base import check_plan
from spotwise.engines.exact import ExactEngine
from spotwise.engines.genetic import GeneticEngine
from spotwise.models.latency import slo_floor_ms
from spotwise.models.packing import pods_per_node
from spotwise.models.risk import pools_for
from spotwise.stdio import native_stdout_to_stderr

TYPE_COUNTS: tuple[int, ...] = (5, 20, 60)
DEMAND_LEVELS: tuple[float, ...] = (10.0, 100.0, 1000.0, 5000.0)
WORKLOAD_COUNTS: tuple[int, ...] = (1, 2, 3, 5)
CONSTRAINT_SETS: tuple[str, ...] = ("loose", "tight")

TARGETS: dict[str, float] = {
    "exactMedianSeconds": 0.1,
    "geneticMedianGap": 0.01,
    "geneticP95Gap": 0.03,
    "geneticMedianSeconds": 0.3,
}

SHARED_CSV = "aws-us-east-1-instances.csv"
_TIME_BUDGET_NOTE = "time budget reached"
# Current-generation general purpose, compute and memory families: m5, c6i, r7a, m7i-flex...
_FAMILY = re.compile(r"^(?P<kind>[mcr])(?P<gen>\d+)[a-z-]*$")
_POD_CPU: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
_POD_MEMORY: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Instance:
    id: str
    problem: Problem
    types: int
    total_rps: float
    constraints: str
    catalog: str


# -- instances --------------------------------------------------------------------------


def default_shared_csv() -> Path | None:
    """../shared/data/aws-us-east-1-instances.csv next to the repository, if present."""
    here = Path(__file__).resolve()
    candidates = [
        here.parents[3].parent / "shared" / "data" / SHARED_CSV,
        Path.cwd().parent / "shared" / "data" / SHARED_CSV,
    ]
    for path in candidates:
        if path.is_file():
            return path
    return None


def _family(itype: InstanceType) -> str:
    return itype.name.split(".", 1)[0]


def _mixed_subset(
    types: Sequence[InstanceType], k: int, rng: np.random.Generator
) -> list[InstanceType]:
    """k types drawn round-robin over family kinds (m, c, r, t, ...) and within a kind
    over families, so small subsets still mix shapes and sizes."""
    if k >= len(types):
        return list(types)
    kinds: dict[str, dict[str, list[InstanceType]]] = {}
    for t in types:
        fam = _family(t)
        kinds.setdefault(fam[0], {}).setdefault(fam, []).append(t)
    queues: list[list[InstanceType]] = []
    for kind in sorted(kinds):
        fams = kinds[kind]
        order = [sorted(fams)[i] for i in rng.permutation(len(fams))]
        members = {f: [fams[f][i] for i in rng.permutation(len(fams[f]))] for f in order}
        queue: list[InstanceType] = []
        while any(members.values()):
            for f in order:
                if members[f]:
                    queue.append(members[f].pop())
        queues.append(queue)
    queues = [queues[i] for i in rng.permutation(len(queues))]
    out: list[InstanceType] = []
    while len(out) < k:
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return out


def shared_pool(path: Path) -> list[InstanceType]:
    """The candidates for the 60-type instances: current-generation (5+) m/c/r types
    with a spot price and an interruption bucket, 2 to 64 vCPU, no bare metal."""
    catalog = load_catalog_csv(path)
    out = []
    for t in catalog.instance_types:
        m = _FAMILY.match(_family(t))
        if m is None or int(m.group("gen")) < 5:
            continue
        if "metal" in t.name or not t.spot_available or t.interruption_bucket is None:
            continue
        if 2 <= t.vcpu <= 64:
            out.append(t)
    return out


def _pick_types(
    k: int, rng: np.random.Generator, shared: list[InstanceType] | None
) -> tuple[list[InstanceType], str]:
    builtin = builtin_catalog()
    if k <= len(builtin) and (k < 60 or shared is None):
        return _mixed_subset(builtin.instance_types, k, rng), f"builtin:{builtin.name}"
    if shared is not None and len(shared) >= k:
        return _mixed_subset(shared, k, rng), f"shared:{SHARED_CSV}"
    return list(builtin.instance_types), f"builtin:{builtin.name}"


def _pod(
    rng: np.random.Generator, types: Sequence[InstanceType], reserve: NodeReserve
) -> Resources:
    """A pod request in 0.25..2 CPU, 0.25..4 GiB, halved until it fits at least two of
    the instance's types (or the biggest one)."""
    pod = Resources(float(rng.choice(_POD_CPU)), float(rng.choice(_POD_MEMORY)))
    need = min(2, len(types))
    while sum(pods_per_node(pod, t, reserve) > 0 for t in types) < need and pod.cpu > 0.25:
        pod = Resources(max(0.25, pod.cpu / 2), max(0.25, pod.memory_gib / 2))
    return pod


def _workloads(
    n: int,
    total_rps: float,
    rng: np.random.Generator,
    types: Sequence[InstanceType],
    reserve: NodeReserve,
) -> tuple[Workload, ...]:
    weights = rng.dirichlet(np.full(n, 2.0))
    out = []
    for i in range(n):
        lam = float(np.exp(rng.uniform(np.log(10.0), np.log(200.0))))
        usl = Usl(
            lam=round(lam, 3),
            sigma=round(float(rng.uniform(0.01, 0.1)), 4),
            kappa=round(float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3)))), 6),
        )
        floor = slo_floor_ms(usl, 2.0)
        slo = float(round(rng.uniform(100.0, 1000.0), -1))
        slo = max(slo, float(np.ceil(1.5 * floor / 50.0) * 50.0))  # reachable, not trivial
        out.append(
            Workload(
                name=f"svc-{i}",
                demand_rps=round(float(total_rps * weights[i]), 3),
                slo_p95_ms=slo,
                usl=usl,
                pod=_pod(rng, types, reserve),
                min_replicas=int(rng.integers(1, 3)),
                max_replicas=500,
                min_concurrency=1,
                max_concurrency=256,
                tail_factor=2.0,
            )
        )
    return tuple(out)


def _constraints(kind: str, rng: np.random.Generator) -> Constraints:
    if kind == "loose":
        return Constraints(headroom=0.15)
    return Constraints(
        headroom=0.15,
        on_demand_min_share=float(rng.choice((0.2, 0.25, 0.3))),
        on_demand_min_nodes=1,
        spot_max_pool_share=float(rng.choice((0.4, 0.45, 0.5))),
        survive_pool_loss=True,
    )


def build_instances(seed: int = 0, shared_csv: Path | None = None) -> list[Instance]:
    """The benchmark's instances, in a fixed order. `shared_csv` (default: the shared
    data file when present) supplies the 60-type catalogs."""
    path = shared_csv if shared_csv is not None else default_shared_csv()
    shared = shared_pool(path) if path is not None and path.is_file() else None
    reserve = NodeReserve()
    out: list[Instance] = []
    cells = [
        (ci, kind, k, di, rps, n)
        for ci, kind in enumerate(CONSTRAINT_SETS)
        for k in TYPE_COUNTS
        for di, rps in enumerate(DEMAND_LEVELS)
        for n in WORKLOAD_COUNTS
    ]
    for ci, kind, k, di, rps, n in cells:
        rng = np.random.default_rng(np.random.SeedSequence([seed, ci, k, int(rps), n]))
        types, source = _pick_types(k, rng, shared)
        catalog = Catalog(source, tuple(types))
        problem = Problem(
            workloads=_workloads(n, rps, rng, types, reserve),
            pools=pools_for(catalog),
            constraints=_constraints(kind, rng),
            reserve=reserve,
        )
        if kind == "tight" and di % 2 == 1:
            # A budget of 80% to 120% of the all-on-demand cost. At these sizes the
            # tight rules often cost about as much as all-on-demand (whole nodes, an
            # on-demand floor, survivors of a pool loss), so it binds on some
            # instances and is out of reach (over budget) on others.
            factor = float(rng.uniform(0.8, 1.2))
            budget = round(factor * reference_cost(problem), 2)
            problem = replace(
                problem, constraints=replace(problem.constraints, max_hourly_cost=budget)
            )
        out.append(
            Instance(
                id=f"t{k}-d{int(rps)}-w{n}-{kind}",
                problem=problem,
                types=len(types),
                total_rps=rps,
                constraints=kind,
                catalog=source,
            )
        )
    return out


# -- running ----------------------------------------------------------------------------


def _violations(problem: Problem, plan: Plan) -> dict[str, Any]:
    lines = check_plan(problem, plan)
    hard = [line for line in lines if not line.startswith("budget:")]
    out: dict[str, Any] = {"violations": len(hard), "budgetViolations": len(lines) - len(hard)}
    if hard:
        out["violationLines"] = hard
    return out


def _record(problem: Problem, plan: Plan, seconds: float) -> dict[str, Any]:
    return {
        "cost": round(plan.hourly_cost, 6),
        "seconds": round(seconds, 4),
        "feasible": plan.feasible,
        "overBudget": plan.over_budget,
        **_violations(problem, plan),
    }


def run_instance(instance: Instance, *, exact_time_limit: float, seed: int) -> dict[str, Any]:
    problem = instance.problem
    started = time.perf_counter()
    exact_plan = ExactEngine(time_budget_seconds=exact_time_limit).solve(problem)
    exact_seconds = time.perf_counter() - started
    engine = GeneticEngine()
    started = time.perf_counter()
    ga_plan = engine.solve(problem, seed=seed)
    ga_seconds = time.perf_counter() - started

    exact = _record(problem, exact_plan, exact_seconds)
    exact["proven"] = not any(_TIME_BUDGET_NOTE in r for r in exact_plan.reasons)
    genetic = _record(problem, ga_plan, ga_seconds)
    genetic["generations"] = engine.last_generations
    gap = ga_plan.hourly_cost / exact_plan.hourly_cost - 1.0 if exact_plan.hourly_cost > 0 else None
    return {
        "id": instance.id,
        "workloads": len(problem.workloads),
        "types": instance.types,
        "pools": len(problem.pools),
        "totalRps": instance.total_rps,
        "constraints": instance.constraints,
        "maxHourlyCost": problem.constraints.max_hourly_cost,
        "catalog": instance.catalog,
        "exact": exact,
        "genetic": genetic,
        "gap": None if gap is None else round(gap, 6),
    }


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 6) if values else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    exact_s = [r["exact"]["seconds"] for r in rows]
    ga_s = [r["genetic"]["seconds"] for r in rows]
    gaps = [r["gap"] for r in rows if r["gap"] is not None]
    summary: dict[str, Any] = {
        "instances": len(rows),
        "exactSecondsMedian": _pct(exact_s, 50),
        "exactSecondsP95": _pct(exact_s, 95),
        "geneticSecondsMedian": _pct(ga_s, 50),
        "geneticSecondsP95": _pct(ga_s, 95),
        "gapMedian": _pct(gaps, 50),
        "gapP95": _pct(gaps, 95),
        "gapMax": round(max(gaps), 6) if gaps else None,
        "exactProven": sum(bool(r["exact"]["proven"]) for r in rows),
        "exactFeasible": sum(bool(r["exact"]["feasible"]) for r in rows),
        "overBudget": sum(bool(r["exact"]["overBudget"]) for r in rows),
        "violations": {
            "exact": sum(r["exact"]["violations"] for r in rows),
            "genetic": sum(r["genetic"]["violations"] for r in rows),
        },
        "targets": dict(TARGETS),
    }
    actual = {
        "exactMedianSeconds": summary["exactSecondsMedian"],
        "geneticMedianGap": summary["gapMedian"],
        "geneticP95Gap": summary["gapP95"],
        "geneticMedianSeconds": summary["geneticSecondsMedian"],
    }
    summary["met"] = {k: actual[k] is not None and actual[k] <= TARGETS[k] for k in TARGETS}

    def worst(key: Any) -> list[str]:
        ranked = sorted((r for r in rows if key(r) is not None), key=key, reverse=True)
        return [r["id"] for r in ranked[:3]]

    summary["worst"] = {
        "gap": worst(lambda r: r["gap"]),
        "exactSeconds": worst(lambda r: r["exact"]["seconds"]),
        "geneticSeconds": worst(lambda r: r["genetic"]["seconds"]),
    }
    return summary


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpuCount": os.cpu_count(),
        "cpuModel": model,
        "loadAverage": load,
    }


def engine_sources() -> dict[str, str]:
    """A short SHA-256 of each engine module's source: which code a result came from."""
    out = {}
    for module in (engines_base, engines_exact, engines_genetic):
        path = Path(module.__file__ or "")
        try:
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        except OSError:
            out[path.name] = "unreadable"
    return out


def _warm_up() -> None:
    """One tiny solve per engine, so imports and first-call setup are not timed."""
    t = builtin_catalog().instance_types[0]
    problem = Problem(
        workloads=(Workload("warm", 5.0, 500.0, Usl(50.0, 0.05, 0.001), Resources(0.25, 0.25)),),
        pools=pools_for(Catalog("warm", (t,))),
    )
    ExactEngine(time_budget_seconds=5.0).solve(problem)
    GeneticEngine(generations=2).solve(problem, seed=0)


def run_optimizer_benchmark(
    *,
    exact_time_limit: float = 60.0,
    seed: int = 0,
    console: Console | None = None,
    shared_csv: Path | None = None,
) -> dict[str, Any]:
    """Solve every instance with both engines; a JSON-ready dict of machine, per-instance
    results and a summary against the targets. Progress goes to `console` (stderr)."""
    console = console if console is not None else Console(stderr=True)
    path = shared_csv if shared_csv is not None else default_shared_csv()
    rows: list[dict[str, Any]] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
    )
    with native_stdout_to_stderr(), Progress(*columns, console=console) as progress:
        instances = build_instances(seed, path)
        _warm_up()
        started = machine()
        task = progress.add_task("optimizer", total=len(instances), current="")
        for inst in instances:
            progress.update(task, current=inst.id)
            rows.append(run_instance(inst, exact_time_limit=exact_time_limit, seed=seed))
            progress.advance(task)
        progress.update(task, current="done")
    info = machine()
    info["loadAverageAtStart"] = started["loadAverage"]
    sixty = sorted({r["catalog"] for r in rows if r["types"] >= 59})
    ga = GeneticEngine()
    return {
        "benchmark": "optimizer",
        "machine": info,
        "settings": {
            "seed": seed,
            "exactTimeLimitSeconds": exact_time_limit,
            "genetic": {
                "population": ga.population,
                "generations": ga.generations,
                "timeBudgetSeconds": ga.time_budget_seconds,
            },
            "catalog60": sixty[0] if len(sixty) == 1 else sixty,
            "sharedCsv": str(path) if path is not None and path.is_file() else None,
            "engineSources": engine_sources(),
        },
        "instances": rows,
        "summary": summarize(rows),
    }
