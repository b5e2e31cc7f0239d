"""`spot-greedy`: Karpenter-like. HPA replicas at 70 % utilization and a fixed
(well-tuned) concurrency limit, as in `on-demand-hpa`; nodes from the cheapest spot pool
per pod that has no interruption notice, on-demand only as a fallback; empty or
underused capacity consolidated after 30 s; a replacement launched as soon as a node
gets its interruption notice.
"""

from __future__ import annotations

import numpy as np

from spotwise.sim.strategies.base import (
    Action,
    Provisioner,
    StrategyContext,
    View,
    pools_by_price_per_pod,
    register,
)
from spotwise.sim.strategies.hpa import Hpa, fixed_concurrency

CONSOLIDATE_AFTER_SECONDS = 30.0  # Karpenter's consolidation of empty/underused nodes


def spot_first_order(view: View, w: int) -> list[int]:
    """Cheapest spot pool per pod first (pools under notice skipped), then on-demand."""
    return pools_by_price_per_pod(
        view, w, spot=True, avoid=view.noticed_pools
    ) + pools_by_price_per_pod(view, w, spot=False)


def karpenter_provisioner() -> Provisioner:
    """Karpenter with spot and on-demand allowed, consolidation and interruption handling."""
    return Provisioner(
        spot_first_order,
        consolidate_after_seconds=CONSOLIDATE_AFTER_SECONDS,
        replace_on_notice=True,
    )


class SpotGreedy:
    name = "spot-greedy"
    interval_seconds = 15.0
    reacts_to_notices = False  # the HPA ignores notices; Karpenter (the provisioner) acts

    def __init__(self, context: StrategyContext) -> None:
        self.hpa = Hpa(context.workloads)
        self.concurrency = np.array(
            [fixed_concurrency(w) for w in context.workloads], dtype=np.int64
        )
        self.provisioner: Provisioner | None = karpenter_provisioner()

    def decide(self, view: View) -> Action:
        return Action(self.hpa.replicas(view), self.concurrency.copy())


@register("spot-greedy")
def _factory(context: StrategyContext) -> SpotGreedy:
    return SpotGreedy(context)
