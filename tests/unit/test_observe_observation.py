"""observation(): metrics and cluster state joined into the input of decide()."""

from __future__ import annotations

import pytest

from spotwise.api.loading import parse_spec
from spotwise.decide import Observation
from spotwise.observe import (
    ClusterState,
    Metrics,
    WorkloadMetrics,
    fitted_capacity,
    observation,
)


def usl_samples(
    lam: float, sigma: float, kappa: float, levels: list[float]
) -> tuple[tuple[float, float], ...]:
    return tuple((c, lam * c / (1 + sigma * (c - 1) + kappa * c * (c - 1))) for c in levels)


def test_joins_metrics_and_cluster() -> None:
    metrics = Metrics(
        workloads=(
            WorkloadMetrics("api", (1.0, 2.0), 120.0, 0.5),
            WorkloadMetrics("web", (3.0,), None, None),
        ),
        available=True,
        message="web: latency p95: no finite value (no requests?)",
    )
    cluster = ClusterState(
        replicas={"api": 3, "batch": 1},
        nodes_by_pool={"m6i.large/spot": 2},
        interrupted_pools=frozenset({"m6i.large/spot"}),
    )
    obs = observation(metrics, cluster, at=100.0, step_seconds=60.0)
    assert isinstance(obs, Observation)
    assert (obs.at, obs.step_seconds) == (100.0, 60.0)
    assert [(w.name, w.request_rates, w.current_replicas) for w in obs.workloads] == [
        ("api", (1.0, 2.0), 3),
        ("web", (3.0,), None),
        ("batch", (), 1),  # known to the cluster only: decide names it as silent
    ]
    assert obs.metrics_available and obs.metrics_message == metrics.message
    assert obs.interrupted_pools == {"m6i.large/spot"}


def test_unavailable_metrics_pass_through() -> None:
    metrics = Metrics.unavailable("api: request rate: cannot connect to http://p: refused")
    obs = observation(
        metrics,
        ClusterState(replicas={"api": 2}, nodes_by_pool={}, interrupted_pools=frozenset()),
        at=0.0,
        step_seconds=60.0,
    )
    assert not obs.metrics_available
    assert obs.metrics_message == metrics.message
    assert obs.workloads[0].request_rates == () and obs.workloads[0].current_replicas == 2


def test_capacity_is_fitted_from_per_pod_samples() -> None:
    samples = usl_samples(20.0, 0.05, 0.002, [1, 2, 4, 6, 8, 12, 16, 24, 32, 48])
    metrics = WorkloadMetrics("api", (1.0,), None, None, per_replica=samples)
    usl = fitted_capacity(metrics)
    assert usl is not None
    assert usl.lam == pytest.approx(20.0, rel=1e-3)
    assert usl.sigma == pytest.approx(0.05, rel=1e-2)
    assert usl.kappa == pytest.approx(0.002, rel=1e-2)
    obs = observation(
        Metrics((metrics,), True, ""),
        ClusterState(replicas={}, nodes_by_pool={}, interrupted_pools=frozenset()),
        at=0.0,
        step_seconds=60.0,
    )
    assert obs.workloads[0].capacity == usl


@pytest.mark.parametrize(
    "samples",
    [
        (),
        usl_samples(20.0, 0.05, 0.002, [1, 2, 4]),  # too few
        tuple((2.0, 30.0) for _ in range(20)),  # one in-flight level identifies nothing
    ],
)
def test_no_capacity_when_samples_cannot_identify_it(
    samples: tuple[tuple[float, float], ...],
) -> None:
    assert fitted_capacity(WorkloadMetrics("api", (1.0,), None, None, per_replica=samples)) is None


def test_capacity_in_the_spec_is_not_replaced_by_a_fit() -> None:
    samples = usl_samples(20.0, 0.05, 0.002, [1, 2, 4, 6, 8, 12, 16, 24, 32, 48])
    metrics = Metrics(
        (
            WorkloadMetrics("given", (1.0,), None, None, per_replica=samples),
            WorkloadMetrics("omitted", (1.0,), None, None, per_replica=samples),
        ),
        True,
        "",
    )
    spec = parse_spec(
        {
            "workloads": [
                {
                    "name": name,
                    "targetRef": {"kind": "Deployment", "name": name},
                    "slo": {"latencyP95Ms": 200},
                    **extra,
                }
                for name, extra in (("given", {"capacity": {"serviceRateRps": 5}}), ("omitted", {}))
            ]
        }
    )
    empty = ClusterState(replicas={}, nodes_by_pool={}, interrupted_pools=frozenset())
    obs = observation(metrics, empty, at=0.0, step_seconds=60.0, spec=spec)
    assert [w.capacity is not None for w in obs.workloads] == [False, True]
