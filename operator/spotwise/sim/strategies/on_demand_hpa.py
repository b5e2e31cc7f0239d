"""`on-demand-hpa`: what most clusters run. An HPA at 70 % utilization with default
behaviour sets replicas, a fixed (well-tuned) concurrency limit, and a
cluster-autoscaler with one on-demand node group buys nodes for pending pods and
removes a node after it has been unneeded for 10 minutes. No spot, so no notices.
"""

from __future__ import annotations

import numpy as np

from spotwise.sim.strategies.base import (
    Action,
    Provisioner,
    StrategyContext,
    View,
    register,
)
from spotwise.sim.strategies.hpa import Hpa, fixed_concurrency

SCALE_DOWN_UNNEEDED_SECONDS = 600.0  # cluster-autoscaler --scale-down-unneeded-time


def cheapest_on_demand_pool(view: View) -> int:
    """The on-demand pool that hosts one pod of every workload for the least (a node
    group every workload fits in), or the cheapest that hosts the most workloads."""
    best: tuple[int, float, int] | None = None
    for p, pool in enumerate(view.pools):
        if pool.is_spot:
            continue
        ppn = view.ppn[:, p]
        fits = int((ppn > 0).sum())
        if not fits:
            continue
        per_pod = float(sum(pool.hourly_price / n for n in ppn if n > 0))
        key = (-fits, per_pod, p)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError("no on-demand pool hosts any workload")
    return best[2]


class OnDemandHpa:
    name = "on-demand-hpa"
    interval_seconds = 15.0
    reacts_to_notices = False

    def __init__(self, context: StrategyContext) -> None:
        self.hpa = Hpa(context.workloads)
        self.concurrency = np.array(
            [fixed_concurrency(w) for w in context.workloads], dtype=np.int64
        )
        self.pool: int | None = None
        self.provisioner: Provisioner | None = Provisioner(
            self.pool_order,
            consolidate_after_seconds=SCALE_DOWN_UNNEEDED_SECONDS,
            replace_on_notice=False,
        )

    def pool_order(self, view: View, w: int) -> list[int]:
        if self.pool is None:
            self.pool = cheapest_on_demand_pool(view)  # the node group, chosen once
        return [self.pool] if view.ppn[w, self.pool] > 0 else []

    def decide(self, view: View) -> Action:
        return Action(self.hpa.replicas(view), self.concurrency.copy())


@register("on-demand-hpa")
def _factory(context: StrategyContext) -> OnDemandHpa:
    return OnDemandHpa(context)
