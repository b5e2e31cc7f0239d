"""`knative-default`: Knative Serving's KPA with its defaults, on Karpenter-like nodes.

Concurrency target 100 per pod at 70 % target utilization: the autoscaler aims at 70
requests in flight per pod, and the limit in force is the target, 100, whatever the
policy allows (Knative's own default, not tuned to the workload). Desired pods =
ceil(average in flight over the 60 s stable window / 70). Panic mode: when the in-flight
count of the 6 s panic window asks for at least twice the ready pods, scale to that at
once and do not scale down until 60 s without panic. Per decision at most x1000 up and
/2 down; scale to zero off. Knative ticks every 2 s: here that is every simulator step.

Nodes come from the same Karpenter-like provisioner as `spot-greedy`; the two loops
ignore each other, as they do in a cluster.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from spotwise.sim.strategies.base import (
    Action,
    Provisioner,
    StrategyContext,
    View,
    register,
)
from spotwise.sim.strategies.spot_greedy import karpenter_provisioner

CONTAINER_CONCURRENCY_TARGET = 100  # container-concurrency-target-default
TARGET_UTILIZATION = 0.70  # container-concurrency-target-percentage
STABLE_WINDOW_SECONDS = 60.0  # stable-window
PANIC_WINDOW_SECONDS = 6.0  # panic-window-percentage 10 % of the stable window
PANIC_THRESHOLD = 2.0  # panic-threshold-percentage 200 %
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
TICK_SECONDS = 2.0  # the autoscaler's tick: no faster than that, in practice every step


class KnativeDefault:
    name = "knative-default"
    interval_seconds = TICK_SECONDS
    reacts_to_notices = False

    def __init__(self, context: StrategyContext) -> None:
        self.workloads = context.workloads
        n = len(self.workloads)
        self.target = CONTAINER_CONCURRENCY_TARGET * TARGET_UTILIZATION
        self.limit = np.full(n, CONTAINER_CONCURRENCY_TARGET, dtype=np.int64)
        self.samples: list[deque[tuple[float, float]]] = [deque() for _ in range(n)]
        self.panic_since: list[float | None] = [None] * n
        self.max_panic_pods = [0] * n
        self.desired = [max(w.min_replicas, 1) for w in self.workloads]
        self.provisioner: Provisioner | None = karpenter_provisioner()

    def decide(self, view: View) -> Action:
        for w in range(len(self.workloads)):
            self.desired[w] = self._scale(w, view)
        return Action(np.array(self.desired, dtype=np.int64), self.limit.copy())

    def _scale(self, w: int, view: View) -> int:
        wl = self.workloads[w]
        now = view.now
        ready = int(view.ready_pods[w])
        if ready <= 0:
            return self.desired[w]  # no pod reports yet: keep what was asked for
        util = float(view.utilization[w])
        # Saturated pods have every slot busy and the excess waiting in the queue-proxy,
        # which counts it: the limit times the overload. (`View.in_flight` is the latency
        # model's value at 99.9 % of capacity whatever the overload: about a thousand
        # when the limit is below the USL peak, a handful when it is past it.)
        per_pod = float(self.limit[w]) * util if util >= 1.0 else float(view.in_flight[w])
        total = per_pod * ready
        samples = self.samples[w]
        samples.append((now, total))
        while samples and samples[0][0] <= now - STABLE_WINDOW_SECONDS:
            samples.popleft()
        stable = sum(v for _, v in samples) / len(samples)
        panic_values = [v for t, v in samples if t > now - PANIC_WINDOW_SECONDS]
        panic = sum(panic_values) / len(panic_values)
        pods = max(ready, 1)
        up_limit = math.ceil(MAX_SCALE_UP_RATE * pods)
        down_limit = math.floor(pods / MAX_SCALE_DOWN_RATE)
        stable_pods = min(max(math.ceil(stable / self.target), down_limit), up_limit)
        panic_pods = min(max(math.ceil(panic / self.target), down_limit), up_limit)
        over = math.ceil(panic / self.target) / pods >= PANIC_THRESHOLD
        since = self.panic_since[w]
        if over:
            self.panic_since[w] = now  # start or extend panic
        elif since is not None and since + STABLE_WINDOW_SECONDS < now:
            self.panic_since[w] = None
            self.max_panic_pods[w] = 0
        desired = stable_pods
        if self.panic_since[w] is not None:
            # In panic: the larger of both windows, and never a scale-down.
            self.max_panic_pods[w] = max(self.max_panic_pods[w], stable_pods, panic_pods)
            desired = self.max_panic_pods[w]
        return min(max(desired, wl.min_replicas, 1), wl.max_replicas)


@register("knative-default")
def _factory(context: StrategyContext) -> KnativeDefault:
    return KnativeDefault(context)
