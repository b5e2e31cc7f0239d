"""Plain types every layer shares: instance types, pools, workloads, problems and plans.

These are frozen values with no I/O and no parsing. The user-facing schema lives in
`spotwise.api`; `spotwise.decide` turns a policy plus observations into a `Problem`,
and an engine turns a `Problem` into a `Plan`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class CapacityType(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


# AWS Spot Advisor buckets: monthly interruption frequency <5%, 5-10%, 10-15%, 15-20%, >20%.
INTERRUPTION_BUCKETS: tuple[str, ...] = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One machine shape with its prices in $/hour."""

    name: str
    vcpu: float
    memory_gib: float
    on_demand_price: float
    spot_price: float | None = None
    interruption_bucket: int | None = None  # index into INTERRUPTION_BUCKETS
    arch: str = "x86_64"

    @property
    def spot_available(self) -> bool:
        return self.spot_price is not None and self.spot_price > 0


@dataclass(frozen=True, slots=True)
class Catalog:
    """A named set of instance types; names are unique."""

    name: str
    instance_types: tuple[InstanceType, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.instance_types]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"catalog {self.name!r} lists {', '.join(duplicates)} more than once")

    def __len__(self) -> int:
        return len(self.instance_types)

    def names(self) -> list[str]:
        return [t.name for t in self.instance_types]

    def get(self, name: str) -> InstanceType | None:
        for t in self.instance_types:
            if t.name == name:
                return t
        return None

    def select(self, names: Iterable[str]) -> Catalog:
        """The sub-catalog of `names`, in the order given; unknown names raise KeyError."""
        wanted = list(names)
        by_name = {t.name: t for t in self.instance_types}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise KeyError(", ".join(missing))
        return Catalog(self.name, tuple(by_name[n] for n in wanted))


@dataclass(frozen=True, slots=True)
class Pool:
    """One (instance type, capacity type) pair: the unit of the node mix."""

    instance_type: InstanceType
    capacity_type: CapacityType
    hourly_price: float
    interruptions_per_hour: float = 0.0  # expected per node; 0 for on-demand

    @property
    def name(self) -> str:
        return f"{self.instance_type.name}/{self.capacity_type.value}"

    @property
    def is_spot(self) -> bool:
        return self.capacity_type is CapacityType.SPOT


@dataclass(frozen=True, slots=True)
class Usl:
    """Universal Scalability Law parameters of one replica.

    X(c) = lam*c / (1 + sigma*(c-1) + kappa*c*(c-1)) requests/second at c in flight.
    """

    lam: float  # requests/second one request in flight achieves (1 / service time)
    sigma: float = 0.0  # contention
    kappa: float = 0.0  # coherency (crosstalk)


@dataclass(frozen=True, slots=True)
class Resources:
    """What one pod requests."""

    cpu: float  # cores
    memory_gib: float


@dataclass(frozen=True, slots=True)
class Workload:
    """One scaling target as an engine sees it."""

    name: str
    demand_rps: float  # forecast arrivals to plan for, before headroom
    slo_p95_ms: float
    usl: Usl
    pod: Resources
    min_replicas: int = 1
    max_replicas: int = 100
    min_concurrency: int = 1
    max_concurrency: int = 256
    tail_factor: float = 2.0  # p95 / mean response time


@dataclass(frozen=True, slots=True)
class NodeReserve:
    """What every node keeps back for DaemonSets, on top of the kubelet's own reserve."""

    cpu: float = 0.2
    memory_gib: float = 0.25
    pods: int = 3


@dataclass(frozen=True, slots=True)
class Constraints:
    """Hard rules a plan must respect, beyond each workload's own bounds."""

    headroom: float = 0.15  # plan for demand * (1 + headroom)
    on_demand_min_share: float = 0.0  # per workload, of its replicas
    on_demand_min_nodes: int = 0
    spot_max_share: float = 1.0  # per workload, of its replicas
    spot_max_pool_share: float = 1.0  # per workload, of its replicas in any one spot pool
    survive_pool_loss: bool = False  # losing any one spot pool leaves enough for the SLO
    max_hourly_cost: float | None = None
    max_nodes_per_pool: int = 500


@dataclass(frozen=True, slots=True)
class Problem:
    workloads: tuple[Workload, ...]
    pools: tuple[Pool, ...]
    constraints: Constraints = field(default_factory=Constraints)
    reserve: NodeReserve = field(default_factory=NodeReserve)
    shunned_pools: frozenset[str] = frozenset()  # pool names not to place new capacity in


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    name: str
    replicas: int
    concurrency: int
    predicted_p95_ms: float
    pods_by_pool: tuple[tuple[str, int], ...] = ()  # (pool name, pods), pods > 0

    @property
    def spot_replicas(self) -> int:
        return sum(n for pool, n in self.pods_by_pool if pool.endswith("/" + CapacityType.SPOT))


@dataclass(frozen=True, slots=True)
class NodeCount:
    instance_type: str
    capacity_type: CapacityType
    count: int

    @property
    def pool(self) -> str:
        return f"{self.instance_type}/{self.capacity_type.value}"


@dataclass(frozen=True, slots=True)
class Plan:
    """An engine's answer. `feasible` is False when some hard rule could not be met;
    `reasons` then says which. `over_budget` is True when the plan costs more than
    `max_hourly_cost`: engines return such a plan when nothing they found meets both the
    SLO and the budget (the exact engine proves none exists)."""

    engine: str
    feasible: bool
    over_budget: bool
    hourly_cost: float
    workloads: tuple[WorkloadPlan, ...]
    nodes: tuple[NodeCount, ...]
    capacity_after_worst_pool_loss: float  # min over workloads, fraction of planned capacity
    expected_interruptions_per_hour: float = 0.0
    solve_seconds: float = 0.0
    reasons: tuple[str, ...] = ()

    def workload(self, name: str) -> WorkloadPlan:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)
