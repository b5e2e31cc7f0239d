"""Each concurrency actuator writes exactly the field its system reads, as that system
spells it, and nothing when the value is already there."""

from __future__ import annotations

import copy

import pytest
from kubefake import FakeKubeApi

from spotwise.actuate.concurrency import UnknownActuatorError, actuator_names, create_actuator
from spotwise.actuate.concurrency.env import env_patch
from spotwise.actuate.concurrency.hpa import hpa_target_patch
from spotwise.actuate.concurrency.keda import keda_threshold_patch, pick_trigger
from spotwise.actuate.concurrency.knative import knative_concurrency_patch
from spotwise.actuate.kube import (
    DEPLOYMENTS,
    HPAS,
    KNATIVE_SERVICES,
    SCALED_OBJECTS,
    Kube,
    ObjectRef,
)
from spotwise.actuate.patches import Patch
from spotwise.actuate.workloads import ActuationError, Lookups, WorkloadView
from spotwise.api.v1alpha1 import WorkloadSpec

NS = "shop"
SERVICE = ObjectRef(KNATIVE_SERVICES, "web", NS)
DEPLOYMENT = ObjectRef(DEPLOYMENTS, "web", NS)


def workload_spec(kind: str, concurrency: dict) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "web",
            "targetRef": {"kind": kind, "name": "web"},
            "slo": {"latencyP95Ms": 200},
            "concurrency": concurrency,
        }
    )


def knative_service(annotations: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "3"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"containers": [{"image": "web:1"}], **spec},
            }
        },
    }


def deployment(env: list | None = None, containers: list | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "9"},
        "spec": {
            "template": {
                "spec": {
                    "containers": containers
                    or [
                        {
                            "name": "app",
                            "image": "web:1",
                            **({"env": env} if env is not None else {}),
                        }
                    ]
                }
            }
        },
    }


def scaled_object(triggers: list) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "12"},
        "spec": {"scaleTargetRef": {"name": "web"}, "triggers": triggers},
    }


PROMETHEUS_TRIGGER = {
    "type": "prometheus",
    "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090",
        "query": 'sum(http_requests_in_flight{app="web"})',
        "threshold": "100",
    },
}
CPU_TRIGGER = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}


def hpa(metrics: list) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "21"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": metrics,
        },
    }


CPU_METRIC = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
}
PODS_METRIC = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "http_requests_in_flight"},
        "target": {"type": "AverageValue", "averageValue": "10"},
    },
}


# -- knative --------------------------------------------------------------------------


def test_knative_soft_target_annotation():
    assert knative_concurrency_patch(SERVICE, knative_service(), 24, hard=False) == Patch(
        SERVICE,
        {
            "spec": {
                "template": {"metadata": {"annotations": {"autoscaling.knative.dev/target": "24"}}}
            }
        },
        "target 24",
    )


def test_knative_hard_limit_adds_container_concurrency():
    assert knative_concurrency_patch(SERVICE, knative_service(), 24, hard=True) == Patch(
        SERVICE,
        {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"autoscaling.knative.dev/target": "24"}},
                    "spec": {"containerConcurrency": 24},
                }
            }
        },
        "target 24, containerConcurrency 24",
    )


def test_knative_writes_only_what_differs():
    current = knative_service({"autoscaling.knative.dev/target": "24"}, containerConcurrency=10)
    assert knative_concurrency_patch(SERVICE, current, 24, hard=True) == Patch(
        SERVICE,
        {"spec": {"template": {"spec": {"containerConcurrency": 24}}}},
        "containerConcurrency 24",
    )
    current = knative_service({"autoscaling.knative.dev/target": "24"}, containerConcurrency=24)
    assert knative_concurrency_patch(SERVICE, current, 24, hard=True) is None


def test_knative_actuator_refuses_a_deployment():
    fake = FakeKubeApi()
    fake.add(deployment())
    kube = Kube(fake)
    spec = workload_spec("Service", {"actuator": "knative"})
    wrong = WorkloadView(spec, DEPLOYMENT, kube.get(DEPLOYMENT), Lookups(kube))
    with pytest.raises(ActuationError, match="needs a Knative Service"):
        create_actuator("knative").patches(wrong, 8)


# -- keda -----------------------------------------------------------------------------


def test_keda_threshold_is_a_string_on_the_matching_trigger_with_all_triggers_resent():
    so = scaled_object([CPU_TRIGGER, PROMETHEUS_TRIGGER])
    patched_trigger = copy.deepcopy(PROMETHEUS_TRIGGER)
    patched_trigger["metadata"]["threshold"] = "12"
    assert keda_threshold_patch(so, "web", 12) == Patch(
        ObjectRef(SCALED_OBJECTS, "web", NS),
        {
            "spec": {"triggers": [CPU_TRIGGER, patched_trigger]},
            "metadata": {"resourceVersion": "12"},
        },
        "trigger prometheus threshold 12",
    )
    assert PROMETHEUS_TRIGGER["metadata"]["threshold"] == "100"  # input untouched


def test_keda_same_threshold_writes_nothing_even_spelled_differently():
    trigger = copy.deepcopy(PROMETHEUS_TRIGGER)
    trigger["metadata"]["threshold"] = "12.0"
    assert keda_threshold_patch(scaled_object([trigger]), "web", 12) is None


def test_keda_picks_the_trigger_named_like_the_workload_among_several():
    a = {**copy.deepcopy(PROMETHEUS_TRIGGER), "name": "rps"}
    b = {**copy.deepcopy(PROMETHEUS_TRIGGER), "name": "web"}
    assert pick_trigger(scaled_object([a, b]), "web") == 1
    with pytest.raises(ActuationError, match="2 triggers with a threshold"):
        pick_trigger(scaled_object([a, {**b, "name": "other"}]), "web")
    with pytest.raises(ActuationError, match="no trigger with a threshold"):
        pick_trigger(scaled_object([CPU_TRIGGER]), "web")


def test_keda_actuator_needs_exactly_one_scaled_object():
    fake = FakeKubeApi()
    fake.add(deployment())
    kube = Kube(fake)
    spec = workload_spec("Deployment", {"actuator": "keda"})
    with pytest.raises(ActuationError, match="no ScaledObject in shop targets Deployment shop/web"):
        create_actuator("keda").patches(
            WorkloadView(spec, DEPLOYMENT, kube.get(DEPLOYMENT), Lookups(kube)), 8
        )


def test_keda_actuator_without_keda_installed_says_so():
    fake = FakeKubeApi(missing=("keda.sh/v1alpha1",))
    fake.add(deployment())
    kube = Kube(fake)
    spec = workload_spec("Deployment", {"actuator": "keda"})
    with pytest.raises(ActuationError, match="no ScaledObject"):
        create_actuator("keda").patches(
            WorkloadView(spec, DEPLOYMENT, kube.get(DEPLOYMENT), Lookups(kube)), 8
        )


# -- hpa ------------------------------------------------------------------------------


def test_hpa_pods_metric_target_with_all_metrics_resent():
    patched = copy.deepcopy(PODS_METRIC)
    patched["pods"]["target"] = {"type": "AverageValue", "averageValue": "16"}
    assert hpa_target_patch(hpa([CPU_METRIC, PODS_METRIC]), 16) == Patch(
        ObjectRef(HPAS, "web", NS),
        {"spec": {"metrics": [CPU_METRIC, patched]}, "metadata": {"resourceVersion": "21"}},
        "Pods metric http_requests_in_flight averageValue 16",
    )


def test_hpa_quantity_the_server_normalized_is_not_a_change():
    metric = copy.deepcopy(PODS_METRIC)
    metric["pods"]["target"]["averageValue"] = "1k"
    assert hpa_target_patch(hpa([metric]), 1000) is None


@pytest.mark.parametrize("metrics", [[CPU_METRIC], [PODS_METRIC, PODS_METRIC]])
def test_hpa_needs_exactly_one_pods_metric(metrics):
    with pytest.raises(ActuationError, match="Pods metrics; actuator hpa needs exactly one"):
        hpa_target_patch(hpa(metrics), 8)


# -- env ------------------------------------------------------------------------------


def test_env_on_a_deployment_is_a_strategic_patch_naming_container_and_variable():
    assert env_patch(DEPLOYMENT, deployment(), "MAX_INFLIGHT", 8, strategic=True) == Patch(
        DEPLOYMENT,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "MAX_INFLIGHT", "value": "8"}]}
                        ]
                    }
                }
            }
        },
        "env MAX_INFLIGHT=8 on app (rolls the pods)",
    )


def test_env_goes_to_every_container_that_has_the_variable_and_drops_value_from():
    containers = [
        {"name": "proxy", "image": "p", "env": [{"name": "LIMIT", "value": "4"}]},
        {
            "name": "app",
            "image": "a",
            "env": [{"name": "LIMIT", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
        },
        {"name": "log", "image": "l"},
    ]
    patch = env_patch(DEPLOYMENT, deployment(containers=containers), "LIMIT", 6, strategic=True)
    assert patch.body == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "proxy", "env": [{"name": "LIMIT", "value": "6"}]},
                        {
                            "name": "app",
                            "env": [{"name": "LIMIT", "value": "6", "valueFrom": None}],
                        },
                    ]
                }
            }
        }
    }


def test_env_unchanged_value_causes_no_rollout():
    assert (
        env_patch(
            DEPLOYMENT, deployment([{"name": "LIMIT", "value": "6"}]), "LIMIT", 6, strategic=True
        )
        is None
    )


def test_env_on_a_knative_service_resends_the_containers_conditionally():
    service = knative_service()
    assert env_patch(SERVICE, service, "LIMIT", 6, strategic=False) == Patch(
        SERVICE,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"image": "web:1", "env": [{"name": "LIMIT", "value": "6"}]}]
                    }
                }
            },
            "metadata": {"resourceVersion": "3"},
        },
        "env LIMIT=6 on containers[0] (rolls the pods)",
    )


# -- none and the registry ------------------------------------------------------------


def test_none_writes_nothing_and_the_registry_knows_every_actuator_the_api_allows():
    assert actuator_names() == ["env", "hpa", "keda", "knative", "none"]
    fake = FakeKubeApi()
    fake.add(deployment())
    kube = Kube(fake)
    spec = workload_spec("Deployment", {"actuator": "none"})
    assert (
        create_actuator("none").patches(
            WorkloadView(spec, DEPLOYMENT, kube.get(DEPLOYMENT), Lookups(kube)), 8
        )
        == []
    )
    with pytest.raises(
        UnknownActuatorError, match="unknown concurrency actuator 'vpa'; known: env, hpa"
    ):
        create_actuator("vpa")
