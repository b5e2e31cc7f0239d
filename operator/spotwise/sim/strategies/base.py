"""What a simulated strategy sees, what it may ask for, and the name -> factory registry.

A strategy is called at its own cadence (and, if it listens, as soon as a spot
interruption notice arrives) with a `View` of the cluster and answers with an `Action`:
replicas and a concurrency limit per workload and, if it manages them itself, pods per
pool and nodes per pool. Strategies that leave nodes to a provisioner name the pools it
should buy from, in order, like Karpenter or a cluster-autoscaler node group would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.domain import Plan, Pool, Usl

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SimWorkload:
    """One workload as the simulator serves it: its true capacity and its SLO."""

    name: str
    usl: Usl
    slo_p95_ms: float
    tail_factor: float
    min_replicas: int
    max_replicas: int
    min_concurrency: int
    max_concurrency: int


@dataclass(frozen=True)
class View:
    now: float
    step_seconds: float
    workloads: tuple[SimWorkload, ...]
    pools: tuple[Pool, ...]
    rates: tuple[FloatArray, ...]  # per workload: observed requests/second per step, oldest first
    pods: IntArray  # (W, P) running + starting pods
    ready_pods: IntArray  # (W,)
    nodes: IntArray  # (P,) launched and not gone (pending included)
    ready_nodes: IntArray  # (P,)
    noticed_pools: frozenset[int]  # pools with a node under interruption notice
    concurrency: IntArray  # (W,) limits in force
    utilization: FloatArray  # (W,) load over ready capacity, 0..1+
    in_flight: FloatArray  # (W,) requests in progress per ready pod, Little's law
    ppn: IntArray  # (W, P) pods per node


@dataclass
class Action:
    replicas: IntArray  # (W,)
    concurrency: IntArray  # (W,)
    pods: IntArray | None = None  # (W, P) target pods per pool; None: anywhere
    nodes: IntArray | None = None  # (P,) target nodes; None: the provisioner decides
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Provisioner:
    """How nodes follow pods for strategies that do not plan nodes."""

    pool_order: Callable[[View, int], list[int]]  # pools to buy for workload w, best first
    consolidate_after_seconds: float  # an idle node is removed after this long
    replace_on_notice: bool  # launch replacements when a notice arrives (Karpenter does)


class Strategy(Protocol):
    name: str
    interval_seconds: float
    reacts_to_notices: bool
    provisioner: Provisioner | None

    def decide(self, view: View) -> Action: ...


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy is built from: the policy, its workloads and pools, a seed."""

    spec: ScalingPolicySpec
    workloads: tuple[SimWorkload, ...]
    pools: tuple[Pool, ...]
    seed: int
    engine: str | None = None  # for spotwise:<engine>
    agent: str | None = None  # a trained RL agent, for spotwise:rl / spotwise:hybrid


StrategyFactory = Callable[[StrategyContext], Strategy]
_REGISTRY: dict[str, StrategyFactory] = {}


def register(name: str) -> Callable[[StrategyFactory], StrategyFactory]:
    def add(factory: StrategyFactory) -> StrategyFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def create_strategy(name: str, context: StrategyContext) -> Strategy:
    """`name` is a registered strategy, or `spotwise:<engine>`."""
    base_name, _, engine = name.partition(":")
    if base_name == "spotwise":
        context = StrategyContext(
            context.spec,
            context.workloads,
            context.pools,
            context.seed,
            engine or None,
            context.agent,
        )
        base_name = "spotwise"
    if base_name not in _REGISTRY:
        raise KeyError(
            f"unknown strategy {name!r}; known: "
            f"{', '.join(strategy_names())} (spotwise takes :ENGINE)"
        )
    return _REGISTRY[base_name](context)


def pools_by_price_per_pod(
    view: View, w: int, *, spot: bool | None = None, avoid: frozenset[int] = frozenset()
) -> list[int]:
    """Pools that hold workload w, cheapest pod first; `spot` restricts the capacity type."""
    price, is_spot = _pool_arrays(view.pools)
    ppn = view.ppn[w]
    ok = ppn > 0
    if spot is not None:
        ok &= is_spot == spot
    if avoid:
        ok[list(avoid)] = False
    idx = np.flatnonzero(ok)
    order = np.argsort(price[idx] / ppn[idx], kind="stable")
    return [int(p) for p in idx[order]]


# Strategies ask for pool orders every step over the same pools: their prices as arrays,
# by the identity of the pools tuple (kept alive beside its arrays).
_POOL_ARRAYS: dict[int, tuple[tuple[Pool, ...], FloatArray, NDArray[np.bool_]]] = {}


def _pool_arrays(pools: tuple[Pool, ...]) -> tuple[FloatArray, NDArray[np.bool_]]:
    hit = _POOL_ARRAYS.get(id(pools))
    if hit is None or hit[0] is not pools:
        if len(_POOL_ARRAYS) > 64:
            _POOL_ARRAYS.clear()
        price = np.array([p.hourly_price for p in pools], dtype=np.float64)
        hit = (pools, price, np.array([p.is_spot for p in pools], dtype=bool))
        _POOL_ARRAYS[id(pools)] = hit
    return hit[1], hit[2]


def action_from_plan(plan: Plan, view: View) -> Action:
    """A plan's replicas, concurrency, pods per pool and nodes per pool as an `Action`."""
    pool_index = {p.name: i for i, p in enumerate(view.pools)}
    pods = np.zeros((len(view.workloads), len(view.pools)), dtype=np.int64)
    for i, w in enumerate(view.workloads):
        for pool, count in plan.workload(w.name).pods_by_pool:
            pods[i, pool_index[pool]] = count
    nodes = np.zeros(len(view.pools), dtype=np.int64)
    for node in plan.nodes:
        nodes[pool_index[node.pool]] = node.count
    return Action(
        replicas=pods.sum(axis=1),
        concurrency=np.array(
            [plan.workload(w.name).concurrency for w in view.workloads], dtype=np.int64
        ),
        pods=pods,
        nodes=nodes,
        notes=tuple(r for r in plan.reasons if not r.startswith("evolved ")),
    )
