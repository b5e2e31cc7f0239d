"""Every way metrics go missing, against a real Prometheus (or a closed port): nothing
raises, `available` is False, the message names the workload and the query — and the
decision then holds its plan instead of scaling down."""

from __future__ import annotations

from typing import Any

import pytest
from promserver import (
    END,
    FLAKY_NAN_EVERY,
    FLAKY_VALUE,
    NAMESPACE,
    T0,
    DelayingProxy,
    Server,
    free_port,
)

from spotwise.api.loading import parse_spec
from spotwise.api.v1alpha1 import PrometheusSpec, ScalingPolicySpec
from spotwise.decide import decide
from spotwise.engines.exact import ExactEngine
from spotwise.observe import ClusterState, Metrics, connect, observation, read_metrics

pytestmark = pytest.mark.integration

STEP = 60.0


def workload(name: str, **metrics: Any) -> dict[str, Any]:
    return {
        "name": name,
        "targetRef": {"kind": "StatefulSet", "name": name},
        "slo": {"latencyP95Ms": 300},
        "capacity": {"serviceRateRps": 20},
        "metrics": metrics or {"profile": "generic"},
    }


def read(
    url: str,
    *workloads: dict[str, Any],
    timeout: float = 10.0,
    stale_seconds: float = 180.0,
    step: float = STEP,
    lookback: float = 900.0,
) -> Metrics:
    spec = parse_spec({"prometheus": {"url": url}, "workloads": list(workloads)})
    client = connect(PrometheusSpec(url=url, timeout_seconds=timeout), namespace=NAMESPACE)
    return read_metrics(
        spec,
        client,
        namespace=NAMESPACE,
        now=END,
        lookback_seconds=lookback,
        step_seconds=step,
        stale_seconds=stale_seconds,
    )


def test_server_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    metrics = read(url, workload("search"), workload("idle"))
    assert not metrics.available
    assert metrics.message.startswith("search: request rate: cannot connect to " + url)
    assert "Connection refused" in metrics.message
    assert "(query: sum by (pod) (rate(http_server_request_duration_seconds_count{" in (
        metrics.message
    )
    assert "idle" not in metrics.message  # the rest is skipped, not waited for
    assert "\n" not in metrics.message


def test_slower_than_the_timeout(prometheus: Server) -> None:
    proxy = DelayingProxy(prometheus.url, delay=3.0)
    try:
        metrics = read(proxy.url, workload("search"), workload("idle"), timeout=0.3)
    finally:
        proxy.close()
    assert not metrics.available
    assert metrics.message.startswith(
        f"search: request rate: no answer from {proxy.url} within 0.3s"
    )
    assert "idle" not in metrics.message


def test_slow_but_within_the_timeout(prometheus: Server) -> None:
    """The same proxy with a timeout longer than its delay: the answer gets through."""
    proxy = DelayingProxy(prometheus.url, delay=0.3)
    try:
        metrics = read(proxy.url, workload("search"), timeout=10.0)
    finally:
        proxy.close()
    assert metrics.available, metrics.message
    assert metrics.workloads[0].request_rates[-1] == pytest.approx(4.0)


def test_only_nan_values(prometheus: Server) -> None:
    query = 'spotwise_test_requests_per_second{workload="broken"}'
    metrics = read(prometheus.url, workload("broken", requestRate=query))
    assert not metrics.available
    assert metrics.message == f"broken: request rate: only NaN values (query: {query})"


def test_partial_nan_is_dropped(prometheus: Server) -> None:
    query = 'spotwise_test_requests_per_second{workload="flaky"}'
    metrics = read(prometheus.url, workload("flaky", requestRate=query), step=15, lookback=900)
    assert metrics.available, metrics.message
    rates = metrics.workloads[0].request_rates
    grid = range(END - 900, END + 1, 15)
    written_nan = [t for t in grid if ((t - T0) // 15) % FLAKY_NAN_EVERY == 0]
    assert len(rates) == len(grid) - len(written_nan)
    assert rates == pytest.approx([FLAKY_VALUE] * len(rates))


def test_empty_result(prometheus: Server) -> None:
    metrics = read(prometheus.url, workload("ghost"))
    assert not metrics.available
    assert metrics.message.startswith("ghost: request rate: no series (empty result) (query: ")
    assert 'pod=~"ghost-[0-9]+"' in metrics.message


@pytest.mark.parametrize(("stale_seconds", "available"), [(180.0, False), (3000.0, True)])
def test_stale(prometheus: Server, stale_seconds: float, available: bool) -> None:
    """`frozen` stopped being scraped 40 minutes before `now`: stale under the default
    limit, accepted under a generous one."""
    metrics = read(prometheus.url, workload("frozen"), stale_seconds=stale_seconds, lookback=3000)
    assert metrics.available is available
    if available:
        assert metrics.workloads[0].request_rates[0] == pytest.approx(5.0)
    else:
        assert metrics.message.startswith("frozen: request rate: stale: the newest point is ")
        assert f"(limit {stale_seconds:g}s)" in metrics.message


def test_no_traffic_is_not_a_failure(prometheus: Server) -> None:
    """Zero requests: rates are 0, p95 is undefined (NaN from histogram_quantile)."""
    metrics = read(prometheus.url, workload("idle"))
    assert metrics.available, metrics.message
    got = metrics.workloads[0]
    assert set(got.request_rates) == {0.0}
    assert got.latency_p95_ms is None
    assert got.in_flight == 0.0
    assert "idle: latency p95: no finite value" in metrics.message


def test_bad_query_is_reported(prometheus: Server) -> None:
    metrics = read(prometheus.url, workload("search", requestRate="sum(rate(oops[2m])"))
    assert not metrics.available
    assert metrics.message.startswith("search: request rate: HTTP 400 from ")
    assert "parse error" in metrics.message


def small_spec(url: str) -> ScalingPolicySpec:
    return parse_spec(
        {
            "prometheus": {"url": url, "timeoutSeconds": 2},
            "workloads": [
                {
                    "name": "search",
                    "targetRef": {"kind": "StatefulSet", "name": "search"},
                    "slo": {"latencyP95Ms": 300},
                    "replicas": {"min": 1, "max": 40},
                    "capacity": {"serviceRateRps": 1.0},
                }
            ],
            "nodes": {
                "catalog": {
                    "builtin": None,
                    "custom": [
                        {
                            "name": "small.large",
                            "vcpu": 2,
                            "memoryGiB": 8,
                            "onDemandPrice": 0.1,
                            "spotPrice": 0.03,
                            "interruptionBucket": 0,
                        }
                    ],
                }
            },
            "optimizer": {"engine": "exact"},
            "stabilization": {"scaleDownSeconds": 0, "maxReplicaStep": 100},
        }
    )


def test_unreachable_prometheus_never_scales_down(prometheus: Server) -> None:
    """A plan made from real metrics; then Prometheus goes away while demand (if anyone
    could see it) fell: the decision holds the plan and acts on nothing."""
    spec = small_spec(prometheus.url)
    cluster = ClusterState(replicas={"search": 1}, nodes_by_pool={}, interrupted_pools=frozenset())
    good = read_metrics(
        spec,
        connect(PrometheusSpec(url=prometheus.url), namespace=NAMESPACE),
        namespace=NAMESPACE,
        now=END,
        lookback_seconds=900,
        step_seconds=STEP,
    )
    first = decide(
        spec, observation(good, cluster, at=END, step_seconds=STEP), engine=ExactEngine()
    )
    assert first.plan is not None and first.act
    planned = first.plan.workload("search").replicas
    assert planned > 1  # 4 requests/s at 1 request/s per replica

    down = f"http://127.0.0.1:{free_port()}"
    spec_down = small_spec(down)
    missing = read_metrics(
        spec_down,
        connect(PrometheusSpec(url=down, timeout_seconds=2), namespace=NAMESPACE),
        namespace=NAMESPACE,
        now=END + 600,
        lookback_seconds=900,
        step_seconds=STEP,
    )
    assert not missing.available
    held = decide(
        spec_down,
        observation(missing, cluster, at=END + 600, step_seconds=STEP),
        first.state,
        engine=ExactEngine(),
    )
    assert held.held and not held.act
    assert held.plan == first.plan
    assert held.plan is not None and held.plan.workload("search").replicas == planned
    reasons = {c.type: c.reason for c in held.conditions}
    assert reasons["MetricsAvailable"] == "MetricsUnavailable"
    assert any(
        e.reason == "MetricsUnavailable" and "cannot connect" in e.message for e in held.events
    )
