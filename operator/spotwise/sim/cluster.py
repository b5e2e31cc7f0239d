"""The simulated cluster: nodes that take time to come up, spot nodes that get interrupted,
pods that take time to start, and a bill by the second.

Nodes are tracked one by one (launch, ready, notice and termination times); pods are
counted per (workload, pool) and take 1/pods_per_node of a node each, the same packing
model the engines plan with. Draining a node evicts the pods that no longer fit; they
go back to pending and start again wherever there is room.

Not here: how load is served (`simulator.py`) or what anyone decides (`strategies/`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from spotwise.domain import NodeReserve, Pool, Resources
from spotwise.models.packing import pods_per_node

NOTICE_SECONDS = 120.0  # the spot interruption notice AWS gives


@dataclass(frozen=True)
class Timings:
    on_demand_ready_seconds: float = 90.0
    spot_ready_seconds: float = 120.0
    pod_start_seconds: float = 20.0
    notice_seconds: float = NOTICE_SECONDS


@dataclass
class Node:
    pool: int
    launched_at: float
    ready_at: float
    interrupt_at: float  # inf for on-demand
    notice_at: float  # when the interruption notice arrives; inf for on-demand


@dataclass
class StepEvents:
    launched: int = 0
    terminated: int = 0
    interrupted: int = 0
    noticed_pools: set[int] = field(default_factory=set)
    evicted: int = 0


class Cluster:
    """Nodes and pods of one simulated policy. Times are seconds from the start."""

    def __init__(
        self,
        pools: tuple[Pool, ...],
        pods: list[Resources],
        reserve: NodeReserve,
        *,
        timings: Timings,
        rng: np.random.Generator,
        interruption_scale: float = 1.0,
    ) -> None:
        self.pools = pools
        self.timings = timings
        self.rng = rng
        self.interruption_scale = interruption_scale
        self.n_w = len(pods)
        self.ppn = np.array(
            [[pods_per_node(pod, p.instance_type, reserve) for p in pools] for pod in pods],
            dtype=np.int64,
        ).reshape(self.n_w, len(pools))
        self.frac = np.where(self.ppn > 0, 1.0 / np.maximum(self.ppn, 1), np.inf)
        self.nodes: list[Node] = []
        self.running = np.zeros((self.n_w, len(pools)), dtype=np.int64)  # ready pods
        self.starting: list[tuple[float, int, int]] = []  # (ready_at, workload, pool)
        self.billed_dollars = 0.0

    # -- queries ------------------------------------------------------------------------

    def ready_nodes(self, now: float) -> NDArray[np.int64]:
        out = np.zeros(len(self.pools), dtype=np.int64)
        for n in self.nodes:
            if n.ready_at <= now:
                out[n.pool] += 1
        return out

    def all_nodes(self) -> NDArray[np.int64]:
        """Nodes launched and not yet gone, ready or not."""
        out = np.zeros(len(self.pools), dtype=np.int64)
        for n in self.nodes:
            out[n.pool] += 1
        return out

    def starting_pods(self) -> NDArray[np.int64]:
        out = np.zeros((self.n_w, len(self.pools)), dtype=np.int64)
        for _, w, p in self.starting:
            out[w, p] += 1
        return out

    def used(self) -> NDArray[np.float64]:
        """Node fractions taken per pool by running and starting pods."""
        pods = self.running + self.starting_pods()
        share: NDArray[np.float64] = (pods * np.where(np.isfinite(self.frac), self.frac, 0)).sum(0)
        return share

    def room(self, w: int, now: float) -> NDArray[np.int64]:
        """Pods of workload w that fit now on ready nodes, per pool."""
        free = self.ready_nodes(now) - self.used()
        return np.where(self.ppn[w] > 0, np.floor(free * self.ppn[w] + 1e-6), 0).astype(np.int64)

    def noticed_pools(self, now: float) -> set[int]:
        return {n.pool for n in self.nodes if n.notice_at <= now < n.interrupt_at}

    # -- actions ------------------------------------------------------------------------

    def launch(self, pool: int, count: int, now: float) -> int:
        p = self.pools[pool]
        delay = (
            self.timings.spot_ready_seconds if p.is_spot else self.timings.on_demand_ready_seconds
        )
        rate = p.interruptions_per_hour * self.interruption_scale / 3600.0
        for _ in range(count):
            interrupt = now + self.rng.exponential(1.0 / rate) if rate > 0 else math.inf
            notice = interrupt - self.timings.notice_seconds
            self.nodes.append(Node(pool, now, now + delay, interrupt, notice))
        return count

    def start_pods(self, w: int, pool: int, count: int, now: float) -> int:
        """Start up to `count` pods of w in `pool` where ready nodes have room."""
        n = int(min(count, self.room(w, now)[pool]))
        for _ in range(n):
            self.starting.append((now + self.timings.pod_start_seconds, w, pool))
        return n

    def stop_pods(self, w: int, pool: int, count: int) -> int:
        """Stop pods: starting ones first, then running ones."""
        left = count
        keep = []
        for item in self.starting:
            if left > 0 and item[1] == w and item[2] == pool:
                left -= 1
                continue
            keep.append(item)
        self.starting = keep
        take = min(left, int(self.running[w, pool]))
        self.running[w, pool] -= take
        left -= take
        return count - left

    # -- time ---------------------------------------------------------------------------

    def advance(self, now: float, dt: float, price_multiplier: float = 1.0) -> StepEvents:
        """Bill `dt` seconds, finish pod starts, interrupt spot nodes whose time came, and
        evict pods that lost their node."""
        ev = StepEvents()
        for n in self.nodes:
            price = self.pools[n.pool].hourly_price
            if self.pools[n.pool].is_spot:
                price *= price_multiplier
            start = max(n.launched_at, now)
            end = min(now + dt, n.interrupt_at)
            if end > start:
                self.billed_dollars += price * (end - start) / 3600.0
        end = now + dt
        gone = [n for n in self.nodes if n.interrupt_at <= end]
        for n in gone:
            self.nodes.remove(n)
            ev.interrupted += 1
            ev.terminated += 1
        ev.noticed_pools = self.noticed_pools(end)
        done = [s for s in self.starting if s[0] <= end]
        self.starting = [s for s in self.starting if s[0] > end]
        for _, w, p in done:
            self.running[w, p] += 1
        if gone:
            ev.evicted = self.evict_overflow(end)
        return ev

    def evict_overflow(self, now: float) -> int:
        """Pods beyond what a pool's remaining nodes hold stop (largest share first)."""
        evicted = 0
        have = self.all_nodes()
        for p in range(len(self.pools)):
            while True:
                pods = self.running[:, p] + np.array(
                    [
                        sum(1 for s in self.starting if s[1] == w and s[2] == p)
                        for w in range(self.n_w)
                    ]
                )
                used = float(
                    (pods * np.where(np.isfinite(self.frac[:, p]), self.frac[:, p], 0)).sum()
                )
                if used <= have[p] + 1e-6 or pods.sum() == 0:
                    break
                w = int(
                    np.argmax(pods * np.where(np.isfinite(self.frac[:, p]), self.frac[:, p], 0))
                )
                evicted += self.stop_pods(w, p, 1)
        return evicted
