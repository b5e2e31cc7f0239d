"""Solving off the event loop: a real worker process gives the same decision as solving
inline, the all-on-demand reference is computed only when needed, and a dead or stuck
worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import pytest
from test_controller_tick import policy_body

from spotwise.api import parse_policy
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.controller.solver import (
    InlineSolver,
    ProcessSolver,
    Solved,
    default_workers,
    solve_tick,
)
from spotwise.decide import GuardState, Observation, WorkloadObservation

STUCK_AT = -1.0  # an observation time that makes the fake below hang


def fake_decide_stuck_on_cue(
    spec: ScalingPolicySpec,
    observation: Observation,
    state: GuardState | None,
    want_reference: bool,
) -> Solved:
    """A FAKE solve for the worker: hangs far past any wait when the observation is at
    STUCK_AT (a solver that stopped answering), else the real `solve_tick`."""
    if observation.at == STUCK_AT:
        time.sleep(3600)
    return solve_tick(spec, observation, state, want_reference)


def observation(rps: float, at: float = 0.0) -> Observation:
    return Observation(
        at=at, step_seconds=30.0, workloads=(WorkloadObservation("api", (rps,) * 30),)
    )


def test_a_worker_process_decides_like_the_inline_solver():
    spec = parse_policy(policy_body()).spec

    async def both() -> tuple:
        pool = ProcessSolver(workers=1)
        try:
            far = await pool.solve(spec, observation(300.0), None, want_reference=True)
            near = await InlineSolver().solve(spec, observation(300.0), None, want_reference=True)
            return far, near
        finally:
            pool.close()

    far, near = asyncio.run(both())
    assert replace(far.decision.plan, solve_seconds=0) == replace(
        near.decision.plan, solve_seconds=0
    )
    assert far.decision.conditions == near.decision.conditions
    assert far.on_demand_hourly_cost == pytest.approx(near.on_demand_hourly_cost)
    assert far.on_demand_hourly_cost > far.decision.plan.hourly_cost
    assert far.seconds >= 0


def test_the_reference_cost_is_computed_only_when_needed():
    spec = parse_policy(policy_body()).spec

    async def ticks() -> tuple:
        solver = InlineSolver()
        first = await solver.solve(spec, observation(300.0, 0), None, want_reference=False)
        kept = await solver.solve(
            spec, observation(300.0, 60), first.decision.state, want_reference=False
        )
        asked = await solver.solve(
            spec, observation(300.0, 120), kept.decision.state, want_reference=True
        )
        return first, kept, asked

    first, kept, asked = asyncio.run(ticks())
    assert first.on_demand_hourly_cost is not None  # a new solve: savings need a new reference
    assert kept.on_demand_hourly_cost is None  # the same plan kept: the old one stands
    assert asked.on_demand_hourly_cost == pytest.approx(first.on_demand_hourly_cost)


def test_a_dead_worker_fails_one_solve_and_is_replaced():
    spec = parse_policy(policy_body()).spec

    async def scenario() -> tuple:
        pool = ProcessSolver(workers=1)
        try:
            await pool.solve(spec, observation(300.0), None, want_reference=False)
            executor = pool._executor()
            for pid in list(executor._processes):  # test-only peek: kill the worker
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):
                for _ in range(3):  # the pool notices the death on the next submit or result
                    await pool.solve(spec, observation(300.0), None, want_reference=False)
                    await asyncio.sleep(0.5)
            again = await pool.solve(spec, observation(300.0), None, want_reference=False)
            return again
        finally:
            pool.close()

    again = asyncio.run(scenario())
    assert again.decision.plan is not None


def test_a_stuck_solve_times_out_and_its_worker_is_replaced():
    spec = parse_policy(policy_body()).spec
    spec = spec.model_copy(
        update={"optimizer": spec.optimizer.model_copy(update={"time_budget_seconds": 0.5})}
    )

    async def scenario() -> tuple:
        # Waits are 2 x 0.5 s + 20 s (room for spawning a worker on a busy machine): the
        # stuck fake sleeps an hour. Were the stuck job left in the single worker, the next
        # solve would queue behind it and time out as well.
        pool = ProcessSolver(
            workers=1, margin_seconds=20.0, solve_in_worker=fake_decide_stuck_on_cue
        )
        try:
            await pool.solve(spec, observation(300.0), None, want_reference=False)
            stuck_workers = list(pool._executor()._processes.values())  # test-only peek
            with pytest.raises(TimeoutError) as timed_out:
                await pool.solve(spec, observation(300.0, STUCK_AT), None, want_reference=False)
            after = await pool.solve(spec, observation(300.0, 60.0), None, want_reference=False)
            fresh_workers = list(pool._executor()._processes.values())
            return stuck_workers, fresh_workers, str(timed_out.value), after
        finally:
            pool.close()

    stuck_workers, fresh_workers, error, after = asyncio.run(scenario())
    assert error == "the solver did not answer within 21s; its worker was replaced"
    for process in stuck_workers:
        process.join(timeout=30)
        assert process.exitcode is not None  # terminated, not left sleeping
    assert {p.pid for p in fresh_workers}.isdisjoint(p.pid for p in stuck_workers)
    assert after.decision.plan is not None


def test_default_workers_leave_a_core_for_the_loop():
    assert 1 <= default_workers() <= 4
