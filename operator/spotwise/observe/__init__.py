"""What the operator measures before each decision: workload metrics from Prometheus
(`prometheus`, with PromQL per profile in `profiles`) and cluster state from the
Kubernetes API (`cluster`), joined by `observation` into the `decide.Observation` that
`decide()` takes. Reading never raises for a bad server or bad data; it reports them.

Not here: deciding (`decide`) or changing anything (`actuate`).
"""

from __future__ import annotations

from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import Observation, WorkloadObservation
from spotwise.domain import Usl
from spotwise.models.fitting import fit_usl
from spotwise.observe.cluster import (
    INTERRUPTION_TAINTS,
    ClusterState,
    interrupted_pool,
    node_pool,
    read_cluster,
)
from spotwise.observe.profiles import PROFILES, Queries, queries_for
from spotwise.observe.prometheus import (
    Metrics,
    MetricsClient,
    MetricsError,
    WorkloadMetrics,
    connect,
    read_metrics,
)


def fitted_capacity(metrics: WorkloadMetrics) -> Usl | None:
    """USL parameters of one replica fitted from the workload's per-pod samples, or None
    when the samples cannot identify them (too few, too few in-flight levels, poor fit)."""
    if not metrics.per_replica:
        return None
    in_flight, throughput = zip(*metrics.per_replica, strict=True)
    try:
        fit = fit_usl(in_flight, throughput)
    except ValueError:  # not identifiable from these samples; the spec's capacity applies
        return None
    return fit.usl if fit.fitted else None


def observation(
    metrics: Metrics,
    cluster: ClusterState,
    *,
    at: float,
    step_seconds: float,
    spec: ScalingPolicySpec | None = None,
) -> Observation:
    """The decision's input: request rates and fitted capacity per workload from
    `metrics`, current replicas and interrupted pools from `cluster`. Workloads the
    metrics lack still appear (with no rates), so `decide` names them.

    Capacity is fitted only for workloads whose `spec` gives none ("fitted from metrics
    when omitted"): `decide` prefers a fitted capacity, and a fit from light-load samples
    must not replace numbers the user wrote. Without `spec`, every workload is fitted."""
    measured = {m.name: m for m in metrics.workloads}
    names = [*measured, *sorted(set(cluster.replicas) - set(measured))]
    given = {w.name for w in spec.workloads if w.capacity is not None} if spec else set()
    return Observation(
        at=at,
        step_seconds=step_seconds,
        workloads=tuple(
            WorkloadObservation(
                name=name,
                request_rates=measured[name].request_rates if name in measured else (),
                current_replicas=cluster.replicas.get(name),
                capacity=(
                    fitted_capacity(measured[name])
                    if name in measured and name not in given
                    else None
                ),
            )
            for name in names
        ),
        metrics_available=metrics.available,
        metrics_message=metrics.message,
        interrupted_pools=cluster.interrupted_pools,
    )


__all__ = [
    "INTERRUPTION_TAINTS",
    "PROFILES",
    "ClusterState",
    "Metrics",
    "MetricsClient",
    "MetricsError",
    "Queries",
    "WorkloadMetrics",
    "connect",
    "fitted_capacity",
    "interrupted_pool",
    "node_pool",
    "observation",
    "queries_for",
    "read_cluster",
    "read_metrics",
]
