"""What the baseline strategies share: the Kubernetes HorizontalPodAutoscaler (v2, default
behaviour, one utilization metric) and a well-tuned fixed concurrency limit.

`Hpa` follows the controller's algorithm (pkg/controller/podautoscaler): every
evaluation, usage ratio = utilization / target; within the 10 % tolerance nothing
changes, otherwise desired = ceil(ready pods x ratio). Scale-up is not stabilized and is
limited per 15 s period to the larger of +100 % and +4 pods; scale-down takes the
highest recommendation of the last 300 s and may then drop up to 100 % per 15 s. The
result is clamped to the workload's replica bounds. "Current replicas" is the
Deployment's spec, i.e. what the HPA last asked for, not what is ready.

Utilization is `View.utilization`, load over the ready pods' capacity: like CPU
utilization against requests, except that it is not capped at the pods' limit, so an
overloaded workload shows how far over it is (generous to the baseline).

Not here: nodes (each strategy's provisioner), Knative's autoscaler (`knative_default.py`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from spotwise.models.capacity import throughput
from spotwise.models.latency import mean_response_seconds
from spotwise.sim.strategies.base import IntArray, SimWorkload, View

TARGET_UTILIZATION = 0.70
TOLERANCE = 0.10
SYNC_PERIOD_SECONDS = 15.0  # --horizontal-pod-autoscaler-sync-period
SCALE_DOWN_WINDOW_SECONDS = 300.0  # behavior.scaleDown.stabilizationWindowSeconds
SCALE_UP_PERCENT = 100.0  # behavior.scaleUp.policies: Percent 100 / 15 s ...
SCALE_UP_PODS = 4  # ... and Pods 4 / 15 s, selectPolicy Max
SCALE_DOWN_PERCENT = 100.0  # behavior.scaleDown.policies: Percent 100 / 15 s
POLICY_PERIOD_SECONDS = 15.0


def fixed_concurrency(workload: SimWorkload, utilization: float = TARGET_UTILIZATION) -> int:
    """A well-tuned fixed concurrency limit for a replica autoscaler holding each pod at
    `utilization` of its capacity: among the workload's allowed limits, the one with the
    most throughput per pod (fewest pods) whose predicted p95 at that utilization still
    meets the SLO; when none does, the one with the lowest p95 there."""
    limits = np.arange(workload.min_concurrency, workload.max_concurrency + 1, dtype=np.int64)
    capacity = throughput(workload.usl, limits.astype(np.float64))
    p95 = (
        1000.0
        * workload.tail_factor
        * mean_response_seconds(workload.usl, utilization * capacity, limits)
    )
    ok = p95 <= workload.slo_p95_ms
    if ok.any():
        return int(limits[ok][int(np.argmax(capacity[ok]))])
    return int(limits[int(np.argmin(p95))])


class Hpa:
    """One HorizontalPodAutoscaler per workload, with its memory (recommendations and
    scale events) kept here."""

    def __init__(
        self,
        workloads: Sequence[SimWorkload],
        *,
        target: float = TARGET_UTILIZATION,
        tolerance: float = TOLERANCE,
        scale_down_window_seconds: float = SCALE_DOWN_WINDOW_SECONDS,
    ) -> None:
        self.workloads = tuple(workloads)
        self.target = target
        self.tolerance = tolerance
        self.window = scale_down_window_seconds
        n = len(self.workloads)
        self.spec_replicas = [max(w.min_replicas, 1) for w in self.workloads]
        self.recommendations: list[deque[tuple[float, int]]] = [deque() for _ in range(n)]
        self.scale_ups: list[deque[tuple[float, int]]] = [deque() for _ in range(n)]
        self.scale_downs: list[deque[tuple[float, int]]] = [deque() for _ in range(n)]

    def replicas(self, view: View) -> IntArray:
        """Evaluate every workload once at `view.now`; returns the new spec replicas."""
        for w in range(len(self.workloads)):
            self.spec_replicas[w] = self._evaluate(w, view)
        return np.array(self.spec_replicas, dtype=np.int64)

    def raw_desired(self, w: int, view: View) -> int | None:
        """Replicas the metric asks for, before behaviour; None without metrics."""
        current = self.spec_replicas[w]
        ready = int(view.ready_pods[w])
        util = float(view.utilization[w])
        if ready <= 0 or not math.isfinite(util):
            return None  # no ready pod reports a metric: the HPA does not rescale
        ratio = util / self.target
        if abs(ratio - 1.0) <= self.tolerance:
            return current
        return math.ceil(ratio * ready)

    def _evaluate(self, w: int, view: View) -> int:
        wl = self.workloads[w]
        now = view.now
        current = self.spec_replicas[w]
        desired = self.raw_desired(w, view)
        if desired is None:
            return min(max(current, wl.min_replicas), wl.max_replicas)
        # Stabilization: scale-up window 0 (the recommendation itself), scale-down window
        # 300 s (the highest recommendation in it, this one included).
        recs = self.recommendations[w]
        while recs and recs[0][0] <= now - self.window:
            recs.popleft()
        down = max([desired, *(r for _, r in recs)])
        recs.append((now, desired))
        stabilized = current
        if stabilized < desired:
            stabilized = desired
        if stabilized > down:
            stabilized = down
        # Rate limits over the policy period, from the replicas at its start.
        added = self._changes(self.scale_ups[w], now)
        removed = self._changes(self.scale_downs[w], now)
        start = current - added + removed
        up_limit = max(math.ceil(start * (1 + SCALE_UP_PERCENT / 100.0)), start + SCALE_UP_PODS)
        up_limit = max(up_limit, current)
        down_limit = min(math.ceil(start * (1 - SCALE_DOWN_PERCENT / 100.0)), current)
        highest = min(wl.max_replicas, up_limit)
        lowest = max(wl.min_replicas, down_limit)
        new = stabilized
        if new > highest:
            new = highest
        elif new < lowest:
            new = lowest
        new = min(max(new, wl.min_replicas, 1), wl.max_replicas)
        if new > current:
            self.scale_ups[w].append((now, new - current))
        elif new < current:
            self.scale_downs[w].append((now, current - new))
        return new

    @staticmethod
    def _changes(events: deque[tuple[float, int]], now: float) -> int:
        while events and events[0][0] + POLICY_PERIOD_SECONDS <= now:
            events.popleft()
        return sum(n for _, n in events)


__all__ = ["TARGET_UTILIZATION", "Hpa", "fixed_concurrency"]
