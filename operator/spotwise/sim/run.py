"""Running several strategies on the same traces and seed, and summarizing them.

Strategies run in separate processes (one per core) because each is CPU-bound Python;
progress is reported through a shared counter so the CLI can draw one bar per strategy.
The summary is what `spotwise simulate -o json` prints; `costVsOracle` is each cost over
the oracle's (the hindsight lower bound), null when the oracle was not run.

Not here: the simulation itself (`simulator.py`), plots (`report.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.managers import DictProxy, SyncManager
from typing import Any

import numpy as np

from spotwise.api import parse_policy
from spotwise.sim.simulator import (
    FloatArray,
    SimConfig,
    SimResult,
    SimSetup,
    Simulation,
    setup_from_policy,
)
from spotwise.sim.strategies import create_strategy, strategy_names
from spotwise.sim.strategies.base import StrategyContext
from spotwise.sim.strategies.oracle import oracle_result

BASELINES = ("on-demand-hpa", "spot-greedy", "spotkube", "knative-default")


# Rough CPU per simulated day, relative (measured on the demo day): what to start first.
_RELATIVE_WORK = {"spotwise": 10, "spotkube": 7, "oracle": 6, "knative-default": 1.5}


def default_strategies(engine: str) -> list[str]:
    return [*BASELINES, f"spotwise:{engine}", "oracle"]


def check_strategy_names(names: Sequence[str]) -> None:
    known = set(strategy_names()) | {"oracle"}
    for name in names:
        base = name.partition(":")[0]
        if base not in known:
            raise ValueError(
                f"unknown strategy {name!r}; known: "
                f"{', '.join(sorted(known))} (spotwise takes :ENGINE)"
            )


@dataclass(frozen=True)
class Job:
    policy: dict[str, Any]  # the policy as data, so it crosses process boundaries
    arrivals: FloatArray
    strategy: str
    config: SimConfig
    agent: str | None = None


def run_one(job: Job, progress: DictProxy[str, int] | None = None) -> SimResult:
    setup = setup_from_policy(parse_policy(job.policy).spec)
    step = _reporter(progress, job.strategy)
    if job.strategy == "oracle":
        return oracle_result(
            setup,
            job.arrivals,
            job.config.step_seconds,
            on_step=step,
            spot_price_multiplier=job.config.spot_price_multiplier,
        )
    context = StrategyContext(
        setup.spec, setup.workloads, setup.pools, job.config.seed, agent=job.agent
    )
    strategy = create_strategy(job.strategy, context)
    return Simulation(setup, strategy, job.config).run(job.arrivals, on_step=step)


def _reporter(progress: DictProxy[str, int] | None, name: str) -> Callable[[int], None] | None:
    if progress is None:
        return None

    def report(i: int) -> None:
        if i % 50 == 0:
            progress[name] = i

    return report


def run_strategies(
    policy: Mapping[str, Any],
    arrivals: FloatArray,
    strategies: Sequence[str],
    config: SimConfig,
    *,
    agent: str | None = None,
    workers: int | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, SimResult]:
    """Every strategy on the same arrivals and seed; results in the order asked."""
    check_strategy_names(strategies)
    jobs = [Job(dict(policy), arrivals, s, config, agent) for s in strategies]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return {j.strategy: run_one(j) for j in jobs}
    with SyncManager() as manager, ProcessPoolExecutor(max_workers=workers) as pool:
        progress = manager.dict({s: 0 for s in strategies})
        # Longest first, so the slowest job never starts last on an idle machine.
        submitted = {
            j.strategy: pool.submit(run_one, j, progress)
            for j in sorted(
                jobs, key=lambda j: -_RELATIVE_WORK.get(j.strategy.partition(":")[0], 1)
            )
        }
        futures: dict[str, Future[SimResult]] = {s: submitted[s] for s in strategies}
        while not all(f.done() for f in futures.values()):
            if on_progress is not None:
                done = {
                    s: (len(arrivals) if f.done() else int(progress.get(s, 0)))
                    for s, f in futures.items()
                }
                on_progress(done)
            time.sleep(0.2)
        if on_progress is not None:
            on_progress({s: len(arrivals) for s in strategies})
        return {s: f.result() for s, f in futures.items()}


def summarize(results: Mapping[str, SimResult]) -> dict[str, Any]:
    """{"strategies": {name: metrics}}, with cost over the oracle's when it ran."""
    oracle = results.get("oracle")
    out: dict[str, Any] = {}
    for name, result in results.items():
        metrics: dict[str, Any] = dict(result.summary())
        metrics["costVsOracle"] = (
            round(result.cost / oracle.cost, 4) if oracle is not None and oracle.cost > 0 else None
        )
        out[name] = {
            k: metrics[k]
            for k in (
                "cost",
                "costVsOracle",
                "sloViolationPct",
                "p95Ms",
                "shedPct",
                "interruptions",
                "nodeChurn",
                "decisions",
                "wallSeconds",
            )
        }
    return {"strategies": out}


def weights_split(total: FloatArray, weights: Sequence[float]) -> FloatArray:
    """One trace shared by workloads in proportion to `weights`: (steps, W)."""
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("workload weights must be ≥ 0 and not all 0")
    return np.outer(total, w / w.sum())


__all__ = [
    "BASELINES",
    "SimSetup",
    "default_strategies",
    "run_one",
    "run_strategies",
    "summarize",
    "weights_split",
]
