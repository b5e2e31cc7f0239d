"""`spotkube`: a cost-only genetic algorithm over node counts, after SpotKube.

Every 5 minutes, and only then (it does not listen to interruption notices): replicas
per workload are the fewest that carry the load observed in the last sample at a fixed,
well-tuned concurrency limit within the SLO (no forecast, no headroom); then the
genetic engine picks the cheapest node mix for those pods, with none of the policy's
safety rules (no on-demand floor, no spot caps, no pool-loss survival). Its plan sets
pods per pool and nodes per pool.
"""

from __future__ import annotations

from dataclasses import replace

from spotwise.decide import build_catalog, compile_problem
from spotwise.domain import Plan, Problem
from spotwise.engines.genetic import GeneticEngine
from spotwise.models.latency import min_replicas
from spotwise.sim.strategies.base import (
    Action,
    Provisioner,
    StrategyContext,
    View,
    action_from_plan,
    register,
)
from spotwise.sim.strategies.hpa import fixed_concurrency

INTERVAL_SECONDS = 300.0


class SpotKube:
    name = "spotkube"
    interval_seconds = INTERVAL_SECONDS
    reacts_to_notices = False

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.spec = context.spec
        self.provisioner: Provisioner | None = None
        self.concurrency = [fixed_concurrency(w) for w in context.workloads]
        opt = self.spec.optimizer
        self.engine = GeneticEngine(
            population=opt.genetic.population,
            generations=opt.genetic.generations,
            time_budget_seconds=opt.time_budget_seconds,
            objectives="cost",
            churn_weight=0.0,
            seed=opt.genetic.seed,
        )
        self.catalog = build_catalog(self.spec)
        self.last_plan: Plan | None = None
        self.ticks = 0

    def replicas_for(self, view: View) -> list[int]:
        """Fewest replicas meeting the SLO at the last observed rate, within bounds."""
        out = []
        for i, w in enumerate(view.workloads):
            rates = view.rates[i]
            load = max(float(rates[-1]), 0.0) if len(rates) else 0.0
            n = int(
                min_replicas(
                    w.usl,
                    concurrency=self.concurrency[i],
                    load_rps=load,
                    slo_p95_ms=w.slo_p95_ms,
                    tail_factor=w.tail_factor,
                    limit=max(w.max_replicas, 1) * 4,
                )[0]
            )
            if n <= 0:
                n = w.max_replicas  # the SLO is out of reach: run all it may
            out.append(min(max(n, w.min_replicas), w.max_replicas))
        return out

    def problem(self, view: View, replicas: list[int]) -> Problem:
        demands = {
            w.name: max(float(view.rates[i][-1]), 0.0) if len(view.rates[i]) else 0.0
            for i, w in enumerate(view.workloads)
        }
        bounds = {w.name: (n, n) for w, n in zip(view.workloads, replicas, strict=True)}
        compiled = compile_problem(self.spec, demands, bounds=bounds, catalog=self.catalog)
        constraints = replace(
            compiled.constraints,
            headroom=0.0,
            on_demand_min_share=0.0,
            on_demand_min_nodes=0,
            spot_max_share=1.0,
            spot_max_pool_share=1.0,
            survive_pool_loss=False,
        )
        workloads = tuple(
            replace(w, min_concurrency=c, max_concurrency=c)
            for w, c in zip(compiled.workloads, self.concurrency, strict=True)
        )
        return replace(compiled, constraints=constraints, workloads=workloads)

    def decide(self, view: View) -> Action:
        replicas = self.replicas_for(view)
        plan = self.engine.solve(
            self.problem(view, replicas),
            warm_start=self.last_plan,
            seed=self.context.seed + self.ticks,
        )
        self.ticks += 1
        self.last_plan = plan
        return action_from_plan(plan, view)


@register("spotkube")
def _factory(context: StrategyContext) -> SpotKube:
    return SpotKube(context)
