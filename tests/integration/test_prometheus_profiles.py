"""Each metrics profile against a real Prometheus: what read_metrics reads back is what the
exporters wrote (`promserver.TRUTH`), through the exact PromQL the profile renders."""

from __future__ import annotations

from typing import Any

import pytest
from promserver import CHANGE, END, NAMESPACE, TRUTH, Server, Truth

from spotwise.api.loading import parse_spec
from spotwise.api.v1alpha1 import PrometheusSpec, ScalingPolicySpec
from spotwise.observe import ClusterState, connect, fitted_capacity, observation, read_metrics

pytestmark = pytest.mark.integration

LOOKBACK = 3000.0
STEP = 60.0
WINDOW = 120  # the profiles' default rate window, 2m


def spec_for(*workloads: dict[str, Any], url: str) -> ScalingPolicySpec:
    return parse_spec(
        {
            "prometheus": {"url": url, "timeoutSeconds": 10},
            "workloads": [
                {"slo": {"latencyP95Ms": 500}, "capacity": {"serviceRateRps": 20}, **w}
                for w in workloads
            ],
        }
    )


def expected_rate(truth: Truth, t: float) -> float | None:
    """The request rate rate()[2m] must give at t, or None when the window spans a change
    of rate (then the answer is a blend)."""
    first, last = truth.rate(t - WINDOW), truth.rate(t - 15)
    return first if first == last else None


PROFILE_CASES = [
    pytest.param("checkout", "knative", {"kind": "Service", "name": "checkout"}, id="knative"),
    pytest.param("cart", "istio", {"kind": "Deployment", "name": "cart"}, id="istio"),
    pytest.param("search", "generic", {"kind": "StatefulSet", "name": "search"}, id="generic"),
]


@pytest.mark.parametrize(("name", "profile", "target"), PROFILE_CASES)
def test_profile_reads_back_what_was_written(
    prometheus: Server, name: str, profile: str, target: dict[str, str]
) -> None:
    spec = spec_for(
        {"name": name, "targetRef": target, "metrics": {"profile": profile}}, url=prometheus.url
    )
    client = connect(spec.prometheus or PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=LOOKBACK, step_seconds=STEP
    )

    assert metrics.available, metrics.message
    assert metrics.message == ""
    (got,) = metrics.workloads
    truth = TRUTH[name]
    times = range(int(END - LOOKBACK), END + 1, int(STEP))
    assert len(got.request_rates) == len(times)
    compared = 0
    for t, rate in zip(times, got.request_rates, strict=True):
        want = expected_rate(truth, t)
        if want is not None:
            assert rate == pytest.approx(want, rel=1e-6), f"rate at t0+{t - END + 3600}"
            compared += 1
    assert compared >= len(times) - 2  # only windows across a change are skipped
    assert got.latency_p95_ms == pytest.approx(truth.p95_ms(), rel=1e-6)
    assert got.in_flight == pytest.approx(truth.in_flight(END), rel=1e-6)
    # One (in flight, rate) pair per pod per step, from the pod-level series.
    for pod in truth.pods:
        rate = pod.rate(END - 15)
        pair = (rate * pod.mean_latency() * truth.unit_seconds, rate)
        assert any(got == pytest.approx(pair, rel=1e-6) for got in got.per_replica), pod.pod
    assert len(got.per_replica) == len(times) * len(truth.pods)


def test_knative_series_show_the_traffic_change(prometheus: Server) -> None:
    spec = spec_for(
        {
            "name": "checkout",
            "targetRef": {"kind": "Service", "name": "checkout"},
            "metrics": {"profile": "knative"},
        },
        url=prometheus.url,
    )
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=LOOKBACK, step_seconds=STEP
    )
    rates = metrics.workloads[0].request_rates
    # Oldest first: 10/s before the change, 20/s after it.
    assert rates[0] == pytest.approx(10.0) and rates[-1] == pytest.approx(20.0)
    assert END - LOOKBACK < CHANGE


def test_generic_matches_only_the_workloads_pods(prometheus: Server) -> None:
    """search-api (50/s) and search-0 in namespace `other` (100/s) are not search's."""
    spec = spec_for(
        {"name": "search", "targetRef": {"kind": "StatefulSet", "name": "search"}},
        url=prometheus.url,
    )
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=600, step_seconds=STEP
    )
    rates = metrics.workloads[0].request_rates
    assert rates == pytest.approx([4.0] * len(rates))


def test_istio_counts_each_request_once(prometheus: Server) -> None:
    """The client-side (reporter=source) copies of cart's requests are not counted."""
    spec = spec_for(
        {
            "name": "cart",
            "targetRef": {"kind": "Deployment", "name": "cart"},
            "metrics": {"profile": "istio"},
        },
        url=prometheus.url,
    )
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=600, step_seconds=STEP
    )
    assert metrics.workloads[0].request_rates[-1] == pytest.approx(6.0)


def test_explicit_query_wins_over_the_profile(prometheus: Server) -> None:
    one_pod = 'reporter="destination",destination_pod="cart-7d9f8b6c5-x2k4p"'
    query = f"sum(rate(istio_requests_total{{{one_pod}}}[2m]))"
    spec = spec_for(
        {
            "name": "cart",
            "targetRef": {"kind": "Deployment", "name": "cart"},
            "metrics": {"profile": "istio", "requestRate": query},
        },
        url=prometheus.url,
    )
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=600, step_seconds=STEP
    )
    got = metrics.workloads[0]
    assert got.request_rates[-1] == pytest.approx(3.5)  # one pod, as asked (all: 6.0)
    assert got.per_replica == ()  # one aggregated series: no per-pod samples
    assert got.latency_p95_ms == pytest.approx(TRUTH["cart"].p95_ms(), rel=1e-6)  # profile's


def test_several_workloads_and_the_observation(prometheus: Server) -> None:
    spec = spec_for(
        {
            "name": "checkout",
            "targetRef": {"kind": "Service", "name": "checkout"},
            "metrics": {"profile": "knative"},
        },
        {
            "name": "cart",
            "targetRef": {"kind": "Deployment", "name": "cart"},
            "metrics": {"profile": "istio"},
        },
        {"name": "search", "targetRef": {"kind": "StatefulSet", "name": "search"}},
        url=prometheus.url,
    )
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    metrics = read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=LOOKBACK, step_seconds=STEP
    )
    assert metrics.available, metrics.message
    assert [w.name for w in metrics.workloads] == ["checkout", "cart", "search"]
    cluster = ClusterState(
        replicas={"checkout": 2, "cart": 2, "search": 2},
        nodes_by_pool={},
        interrupted_pools=frozenset(),
    )
    obs = observation(metrics, cluster, at=END, step_seconds=STEP)
    assert obs.metrics_available
    assert [w.current_replicas for w in obs.workloads] == [2, 2, 2]
    assert obs.workloads[0].request_rates[-1] == pytest.approx(20.0)
    # Constant latency per pod is a straight line through the origin: a capacity fit can
    # not identify USL from it, so the spec's capacity stays in charge.
    assert fitted_capacity(metrics.workloads[1]) is None


def test_instant_query(prometheus: Server) -> None:
    client = connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE)
    result = client.query(
        'sum(rate(istio_requests_total{reporter="destination",destination_workload="cart"}[2m]))',
        at=END,
    )
    assert float(result[0]["value"][1]) == pytest.approx(6.0)
