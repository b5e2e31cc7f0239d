"""PromQL templates: what each profile renders for a workload, and what overrides it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from spotwise.api.v1alpha1 import TargetRef, WorkloadSpec
from spotwise.observe.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    ProfileError,
    Queries,
    pod_regex,
    profile,
    queries_for,
    selector,
)


def workload(kind: str = "Deployment", name: str = "checkout", **metrics: Any) -> WorkloadSpec:
    data: dict[str, Any] = {
        "name": "w",
        "targetRef": {"kind": kind, "name": name},
        "slo": {"latencyP95Ms": 200},
    }
    if metrics:
        data["metrics"] = metrics
    return WorkloadSpec.model_validate(data)


def test_knative_queries() -> None:
    q = queries_for(workload("Service", "checkout", profile="knative"), "shop")
    sel = '{namespace_name="shop",service_name="checkout"}'
    assert q == Queries(
        request_rate=f"sum by (pod_name) (rate(revision_request_count{sel}[2m]))",
        latency_p95=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(revision_request_latencies_bucket{sel}[2m]))) / 1000"
        ),
        in_flight=f"sum by (pod_name) (rate(revision_request_latencies_sum{sel}[2m])) / 1000",
    )


def test_istio_queries_keep_only_the_destination_report() -> None:
    q = queries_for(workload("Deployment", "cart", profile="istio"), "shop")
    sel = (
        '{reporter="destination",destination_workload_namespace="shop",destination_workload="cart"}'
    )
    assert q.request_rate == f"sum by (pod) (rate(istio_requests_total{sel}[2m]))"
    assert q.latency_p95 == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(istio_request_duration_milliseconds_bucket{sel}[2m]))) / 1000"
    )
    assert q.in_flight == (
        f"sum by (pod) (rate(istio_request_duration_milliseconds_sum{sel}[2m])) / 1000"
    )


def test_istio_on_a_knative_service_matches_its_revision_deployments() -> None:
    q = queries_for(workload("Service", "web", profile="istio"), "shop")
    assert 'destination_workload=~"web-[0-9]+-deployment"' in q.request_rate


def test_generic_is_the_default() -> None:
    assert DEFAULT_PROFILE == "generic"
    explicit = queries_for(workload("StatefulSet", "search", profile="generic"), "shop")
    assert queries_for(workload("StatefulSet", "search"), "shop") == explicit
    sel = '{namespace="shop",pod=~"search-[0-9]+"}'
    assert explicit == Queries(
        request_rate=f"sum by (pod) (rate(http_server_request_duration_seconds_count{sel}[2m]))",
        latency_p95=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(http_server_request_duration_seconds_bucket{sel}[2m])))"
        ),
        in_flight=f"sum by (pod) (rate(http_server_request_duration_seconds_sum{sel}[2m]))",
    )


@pytest.mark.parametrize(
    ("kind", "name", "pods", "not_pods"),
    [
        (
            "Deployment",
            "search",
            ["search-7d9f8b6c5-x2k4p", "search-5c7d8-abcde"],
            ["search-api-6b8c9d7f5-k2m4n", "search-0", "xsearch-7d9f8b6c5-x2k4p"],
        ),
        ("StatefulSet", "db", ["db-0", "db-12"], ["db-api-0", "db-x", "db-0-1"]),
        (
            "Service",
            "web",
            ["web-00001-deployment-5d4f8b7c9-abcde"],
            ["web-api-00001-deployment-5d4f8b7c9-abcde", "web-7d9f8b6c5-x2k4p"],
        ),
        ("Deployment", "a.b", ["a.b-7d9f8b6c5-x2k4p"], ["axb-7d9f8b6c5-x2k4p"]),
    ],
)
def test_pod_regex_matches_the_targets_pods_only(
    kind: str, name: str, pods: list[str], not_pods: list[str]
) -> None:
    # Prometheus anchors label regexes at both ends, like fullmatch.
    target = TargetRef.model_validate({"kind": kind, "name": name})
    pattern = re.compile(pod_regex(target))
    assert all(pattern.fullmatch(p) for p in pods)
    assert not any(pattern.fullmatch(p) for p in not_pods)


def test_explicit_queries_win_one_by_one() -> None:
    q = queries_for(
        workload("Service", "checkout", profile="knative", requestRate="sum(rate(x[1m]))"),
        "shop",
    )
    assert q.request_rate == "sum(rate(x[1m]))"
    assert q.latency_p95.startswith("histogram_quantile(0.95, sum by (le) (rate(revision_")
    q = queries_for(
        workload(latencyP95="my_p95_seconds", inFlight='sum(my_in_flight{app="a"})'), "shop"
    )
    assert q.latency_p95 == "my_p95_seconds"
    assert q.in_flight == 'sum(my_in_flight{app="a"})'
    assert "http_server_request_duration_seconds_count" in q.request_rate  # generic fills in


def test_labels_narrow_the_profile_queries_not_the_explicit_ones() -> None:
    q = queries_for(
        workload(
            "StatefulSet",
            "search",
            labels={"cluster": "eu-1", "job": 'we"ird\\'},
            requestRate="sum(rate(x[1m]))",
        ),
        "shop",
    )
    assert q.request_rate == "sum(rate(x[1m]))"
    assert '{namespace="shop",pod=~"search-[0-9]+",cluster="eu-1",job="we\\"ird\\\\"}' in (
        q.latency_p95
    )


def test_window_is_a_parameter() -> None:
    q = queries_for(workload(), "shop", window="5m")
    assert "[5m]" in q.request_rate and "[2m]" not in q.request_rate
    with pytest.raises(ProfileError, match="not a Prometheus duration"):
        queries_for(workload(), "shop", window="5 minutes")


def test_bad_label_name_is_one_line_error() -> None:
    with pytest.raises(ProfileError, match=r"^metrics.labels: 'my-label' is not a Prometheus"):
        queries_for(workload(labels={"my-label": "x"}), "shop")


def test_profile_registry() -> None:
    assert sorted(PROFILES) == ["generic", "istio", "knative"]
    assert profile("istio").name == "istio"
    with pytest.raises(ProfileError, match="unknown metrics profile 'nope'; known: generic"):
        profile("nope")


def test_selector_quotes_values() -> None:
    assert selector([("a", "=", "x"), ("b", "=~", 'q"\n')]) == '{a="x",b=~"q\\"\\n"}'


@pytest.mark.parametrize(
    ("profile_name", "kind", "name"),
    [
        ("knative", "Service", "checkout"),
        ("istio", "Deployment", "cart"),
        ("generic", "Deployment", "search"),
    ],
)
def test_docs_show_the_queries_the_code_renders(profile_name: str, kind: str, name: str) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    q = queries_for(workload(kind, name, profile=profile_name), "shop")
    for query in (q.request_rate, q.latency_p95, q.in_flight):
        assert f"```promql\n{query}\n```" in docs
