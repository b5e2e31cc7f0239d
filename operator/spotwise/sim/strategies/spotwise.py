"""`spotwise:<engine>`: the same `decide()` the operator runs, on simulated metrics.

It sees what Prometheus would show (per-step request rates, current replicas), decides
every `intervalSeconds` of the policy, and re-plans at once when a spot interruption
notice arrives, with that pool shunned. Its plan sets replicas, concurrency, pods per
pool (what the placement spread realizes) and nodes per pool.
"""

from __future__ import annotations

from spotwise.decide import GuardState, Observation, WorkloadObservation, decide, engine_for
from spotwise.engines.base import Engine
from spotwise.sim.strategies.base import (
    Action,
    Provisioner,
    StrategyContext,
    View,
    action_from_plan,
    register,
)


class SpotwiseStrategy:
    reacts_to_notices: bool = True
    provisioner: Provisioner | None = None

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.spec = context.spec
        self.name = f"spotwise:{context.engine or self.spec.optimizer.engine}"
        self.interval_seconds = float(self.spec.interval_seconds)
        self.engine: Engine = engine_for(self.spec, context.engine, agent=context.agent)
        self.state = GuardState()
        self.ticks = 0

    def decide(self, view: View) -> Action:
        observation = Observation(
            at=view.now,
            step_seconds=view.step_seconds,
            workloads=tuple(
                WorkloadObservation(
                    w.name,
                    tuple(float(x) for x in view.rates[i]),
                    current_replicas=int(view.pods[i].sum()),
                )
                for i, w in enumerate(view.workloads)
            ),
            interrupted_pools=frozenset(view.pools[p].name for p in view.noticed_pools),
        )
        # Learned engines see the time of day: simulated time, not the wall clock.
        observe_time = getattr(self.engine, "observe_time", None)
        if observe_time is not None:
            observe_time(view.now)
        decision = decide(
            self.spec,
            observation,
            self.state,
            engine=self.engine,
            seed=self.context.seed + self.ticks,
        )
        self.ticks += 1
        self.state = decision.state
        plan = decision.plan
        if plan is None:
            return Action(view.pods.sum(axis=1), view.concurrency, view.pods, view.nodes)
        return action_from_plan(plan, view)


@register("spotwise")
def _factory(context: StrategyContext) -> SpotwiseStrategy:
    return SpotwiseStrategy(context)
