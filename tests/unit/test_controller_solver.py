"""Solving off the event loop: a real worker process gives the same decision as solving
inline, the all-on-demand reference is computed only when needed, and a dead worker is
replaced."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import pytest
from test_controller_tick import policy_body

from spotwise.api import parse_policy
from spotwise.controller.solver import InlineSolver, ProcessSolver, default_workers
from spotwise.decide import Observation, WorkloadObservation


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


def test_default_workers_leave_a_core_for_the_loop():
    assert 1 <= default_workers() <= 4
