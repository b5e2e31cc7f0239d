"""Where `decide()` runs for the operator: in worker processes, off the event loop.

Why processes and not threads: a solve is CPU-bound Python and NumPy (the genetic engine)
or native code (HiGHS), for up to the policy's `optimizer.timeBudgetSeconds`. In a thread
it holds the GIL for most of that time, and kopf's watch streams, peering heartbeats and
the liveness probe all share the one event loop with it. HiGHS also prints debug lines to
file descriptor 1, and `spotwise.stdio.native_stdout_to_stderr` redirects that descriptor
for the whole process, which threads cannot share safely. A worker process redirects its
own descriptor 1 to 2 once, when it starts, and the GIL stays free for the loop. Arguments
and results (spec, observation, guard state, decision) are small frozen dataclasses and
pydantic models, so pickling costs far less than a solve.

Not here: observing, acting or status (the tick does that with what this returns).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import (
    Decision,
    GuardState,
    Observation,
    compile_problem,
    decide,
    reference_cost,
)

# A solve respects its engine's time budget; this only bounds a tick that waits on a
# worker that stopped answering (queueing behind other policies' solves included).
WAIT_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class Solved:
    decision: Decision
    seconds: float  # CPU time of the decision in the worker
    on_demand_hourly_cost: float | None  # the all-on-demand reference, when computed


class Solver(Protocol):
    """Runs one tick's decision."""

    async def solve(
        self,
        spec: ScalingPolicySpec,
        observation: Observation,
        state: GuardState | None,
        *,
        want_reference: bool,
    ) -> Solved: ...

    def close(self) -> None: ...


def solve_tick(
    spec: ScalingPolicySpec,
    observation: Observation,
    state: GuardState | None,
    want_reference: bool,
) -> Solved:
    """`decide()`, plus the all-on-demand reference cost when the plan was solved anew this
    tick (or the caller has none): savings are measured against it. Raises DecisionError
    for a policy the decision cannot use."""
    started = _cpu()
    decision = decide(spec, observation, state)
    reference = None
    solved_now = decision.state.last_solved_at == observation.at and not decision.held
    if decision.plan is not None and decision.demands and (solved_now or want_reference):
        capacities = {w.name: w.capacity for w in observation.workloads if w.capacity}
        problem = compile_problem(spec, dict(decision.demands), capacities=capacities)
        reference = reference_cost(problem)
    return Solved(decision, _cpu() - started, reference)


def _cpu() -> float:
    return os.times().user + os.times().system


class InlineSolver:
    """Solves on the calling thread, blocking the loop: for tests and one-shot tools."""

    async def solve(
        self,
        spec: ScalingPolicySpec,
        observation: Observation,
        state: GuardState | None,
        *,
        want_reference: bool,
    ) -> Solved:
        return solve_tick(spec, observation, state, want_reference)

    def close(self) -> None:
        pass


def _worker_init() -> None:
    # The worker's descriptor 1 carries nothing useful: send native prints to stderr for
    # good, and leave Ctrl-C to the operator, which shuts the pool down itself.
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


SolveTick = Callable[[ScalingPolicySpec, Observation, GuardState | None, bool], Solved]


class ProcessSolver:
    """Solves in a pool of worker processes (spawned: no fork of a running event loop).

    A pool whose worker died is replaced on the next solve. A solve that outlasts its wait
    (twice the time budget plus `margin_seconds`) is stuck, and a process cannot cancel a
    job it is running: the pool is shut down, its workers are terminated, and the next
    solve starts a fresh pool. Otherwise the stuck job would keep its worker busy and every
    later solve would queue behind it until it timed out too."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        margin_seconds: float = WAIT_MARGIN_SECONDS,
        solve_in_worker: SolveTick = solve_tick,
    ) -> None:
        self.workers = workers or default_workers()
        self.margin_seconds = margin_seconds
        self._solve_in_worker = solve_in_worker
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )
        return self._pool

    async def solve(
        self,
        spec: ScalingPolicySpec,
        observation: Observation,
        state: GuardState | None,
        *,
        want_reference: bool,
    ) -> Solved:
        loop = asyncio.get_running_loop()
        wait = 2 * spec.optimizer.time_budget_seconds + self.margin_seconds
        pool = self._executor()
        try:
            future = loop.run_in_executor(
                pool, self._solve_in_worker, spec, observation, state, want_reference
            )
            return await asyncio.wait_for(future, timeout=wait)
        except BrokenProcessPool:
            self._drop(pool)  # a worker died (killed, out of memory): start afresh next time
            raise
        except TimeoutError:
            self._drop(pool, terminate=True)
            raise TimeoutError(
                f"the solver did not answer within {wait:g}s; its worker was replaced"
            ) from None

    def _drop(self, pool: ProcessPoolExecutor, *, terminate: bool = False) -> None:
        """Forget `pool` (unless a newer one replaced it already) and shut it down. Other
        policies' solves still queued or running on it fail with BrokenProcessPool, one
        decision each, and are retried on their next tick."""
        if self._pool is pool:
            self._pool = None
        # The executor keeps its workers in a private map; there is no public way to stop
        # a worker in the middle of a job.
        workers = list((pool._processes or {}).values()) if terminate else []
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()

    def close(self) -> None:
        if self._pool is not None:
            self._drop(self._pool)


def default_workers() -> int:
    """One worker per core, keeping one core for the event loop, at least one, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 2) - 1))
