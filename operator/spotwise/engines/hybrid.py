"""The hybrid engine: the RL agent's proposals seed the genetic engine's population.

Learned initial solutions, evolutionary refinement (the EARLI idea from vehicle
routing). Per decision the agent proposes its greedy plan and `samples - 1` plans from
actions drawn from its policy; each proposal is shielded and packed exactly as the `rl`
engine does, and enters the GA's first population next to the usual seeds. Because the
search starts from good plans, the GA runs half the generations and half the patience
the policy gives the genetic engine (`GENERATION_SHARE`); `bench/rl.py` measures whether
it still reaches the genetic engine's cost.

When the agent cannot be used for a decision (its training range, another policy's
workloads), the GA runs alone with its full settings and the plan says so.

Not here: the agent, the shield and the packer (`rl.py`), the GA (`genetic.py`).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

import numpy as np

from spotwise.domain import Plan, Problem
from spotwise.engines.base import build_tables, register
from spotwise.engines.genetic import GeneticEngine, Proposal
from spotwise.engines.rl import Agent, AgentCard, RlEngine, out_of_range

GENERATION_SHARE = 0.5  # of the genetic engine's generations (and patience)
DEFAULT_SAMPLES = 8  # proposals per decision: the greedy action and 7 sampled ones


class HybridEngine:
    name = "hybrid"

    def __init__(
        self,
        agent: str | None = None,
        *,
        policy: Agent | None = None,
        card: AgentCard | None = None,
        generations: int = 40,
        patience: int = 12,
        samples: int = DEFAULT_SAMPLES,
        time_budget_seconds: float = 2.0,
        **genetic_options: Any,
    ) -> None:
        self.rl = RlEngine(
            agent,
            policy=policy,
            card=card,
            time_budget_seconds=time_budget_seconds,
            generations=generations,
            patience=patience,
            **genetic_options,
        )
        self.samples = max(1, samples)
        self.genetic = GeneticEngine(
            generations=max(1, round(generations * GENERATION_SHARE)),
            patience=max(1, round(patience * GENERATION_SHARE)),
            time_budget_seconds=time_budget_seconds,
            **genetic_options,
        )
        self.last_generations = 0

    def observe_time(self, seconds: float) -> None:
        self.rl.observe_time(seconds)

    def memento(self) -> Hashable:
        return self.rl.memento()

    def restore(self, memento: Hashable) -> None:
        self.rl.restore(memento)

    def solve(
        self, problem: Problem, *, warm_start: Plan | None = None, seed: int | None = None
    ) -> Plan:
        started = time.perf_counter()
        proposals, why = self.proposals(problem, warm_start, seed)
        if why is not None:
            plan = self.rl.fallback.solve(problem, warm_start=warm_start, seed=seed)
            self.last_generations = self.rl.fallback.last_generations
            note = f"hybrid ran the genetic engine alone: {why}"
            return replace(plan, engine=self.name, reasons=(note, *plan.reasons))
        plan = self.genetic.solve(problem, warm_start=warm_start, seed=seed, proposals=proposals)
        self.last_generations = self.genetic.last_generations
        return replace(
            plan,
            engine=self.name,
            solve_seconds=time.perf_counter() - started,
            reasons=(f"hybrid: {len(proposals)} rl proposals", *plan.reasons),
        )

    def proposals(
        self, problem: Problem, warm_start: Plan | None, seed: int | None
    ) -> tuple[list[Proposal], str | None]:
        """The agent's plans as GA seeds, or why the agent cannot be used here."""
        tables = build_tables(problem)
        obs = self.rl.observation(tables, warm_start)
        if self.rl.card is not None:
            why = out_of_range(self.rl.card, problem, obs)
            if why is not None:
                return [], why
        actions = [self.rl.policy.act(obs)]
        if self.samples > 1:
            actions += self.rl.policy.sample(obs, self.samples - 1, seed or 0)
        out = []
        for i, action in enumerate(actions):
            # The greedy action is what the agent would do: its knobs are remembered.
            plan = self.rl.plan_for(tables, warm_start, action, remember=i == 0)
            index = {p.name: j for j, p in enumerate(problem.pools)}
            pods = np.zeros((len(problem.workloads), len(problem.pools)), dtype=np.int64)
            for w, wl in enumerate(problem.workloads):
                for pool, count in plan.workload(wl.name).pods_by_pool:
                    pods[w, index[pool]] = count
            out.append(
                Proposal([plan.workload(w.name).concurrency for w in problem.workloads], pods)
            )
        return out, None


@register("hybrid")
def _factory(**options: Any) -> HybridEngine:
    return HybridEngine(**options)
