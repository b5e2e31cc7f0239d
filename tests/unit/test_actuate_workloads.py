"""Replicas reach each kind of workload without fighting its autoscaler: exact bodies for
``/scale``, an HPA's band, a ScaledObject's band and Knative's scale bounds; nothing when
they already hold."""

from __future__ import annotations

import pytest
from kubefake import FakeKubeApi

from spotwise.actuate.kube import (
    DEPLOYMENTS,
    HPAS,
    KNATIVE_SERVICES,
    SCALED_OBJECTS,
    STATEFULSETS,
    Kube,
    ObjectRef,
)
from spotwise.actuate.patches import Patch
from spotwise.actuate.workloads import (
    ActuationError,
    Lookups,
    WorkloadView,
    keda_owner,
    replica_band,
    replica_patches,
)
from spotwise.api.v1alpha1 import WorkloadSpec

NS = "shop"


def workload_spec(
    kind: str = "Deployment", actuator: str = "none", max_replicas: int = 60
) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "web",
            "targetRef": {"kind": kind, "name": "web"},
            "slo": {"latencyP95Ms": 200},
            "replicas": {"min": 1, "max": max_replicas},
            "concurrency": {"actuator": actuator},
        }
    )


def deployment(replicas: int | None = 2, kind: str = "Deployment") -> dict:
    spec = {"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": []}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": NS},
        "spec": spec,
    }


def hpa(name: str = "web", low: int = 1, high: int = 10, owner: str | None = None) -> dict:
    meta: dict = {"name": name, "namespace": NS, "resourceVersion": "7"}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": owner, "uid": "u1"}
        ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": low,
            "maxReplicas": high,
        },
    }


def scaled_object(low: int = 1, high: int = 10) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "web-so", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "triggers": [],
        },
    }


def view(fake: FakeKubeApi, spec: WorkloadSpec, ref: ObjectRef) -> WorkloadView:
    kube = Kube(fake)
    return WorkloadView(spec, ref, kube.get(ref), Lookups(kube))


DEPLOYMENT = ObjectRef(DEPLOYMENTS, "web", NS)


def test_a_plain_deployment_is_scaled_on_its_scale_subresource():
    fake = FakeKubeApi()
    fake.add(deployment(2))
    assert replica_patches(view(fake, workload_spec(), DEPLOYMENT), 5, 10) == [
        Patch(DEPLOYMENT, {"spec": {"replicas": 5}}, "replicas 2 → 5", scale=True)
    ]


def test_a_statefulset_too_and_a_missing_replicas_field_counts_as_one():
    fake = FakeKubeApi()
    fake.add(deployment(None, kind="StatefulSet"))
    ref = ObjectRef(STATEFULSETS, "web", NS)
    assert replica_patches(view(fake, workload_spec("StatefulSet"), ref), 3, 10) == [
        Patch(ref, {"spec": {"replicas": 3}}, "replicas 1 → 3", scale=True)
    ]
    assert replica_patches(view(fake, workload_spec("StatefulSet"), ref), 1, 10) == []


def test_the_same_count_writes_nothing():
    fake = FakeKubeApi()
    fake.add(deployment(5))
    assert replica_patches(view(fake, workload_spec(), DEPLOYMENT), 5, 10) == []


def test_an_hpa_gets_its_band_moved_instead_of_the_scale():
    fake = FakeKubeApi()
    fake.add(deployment(2), hpa(low=1, high=10))
    assert replica_patches(view(fake, workload_spec(max_replicas=60), DEPLOYMENT), 5, 10) == [
        Patch(
            ObjectRef(HPAS, "web", NS),
            {"spec": {"minReplicas": 5, "maxReplicas": 15}},
            "minReplicas 5, maxReplicas 15",
        )
    ]


def test_the_band_stops_at_the_workload_max_and_an_hpa_min_is_at_least_one():
    assert replica_band(58, workload_spec(max_replicas=60), 10) == (58, 60)
    assert replica_band(0, workload_spec(max_replicas=60), 10) == (0, 10)
    fake = FakeKubeApi()
    fake.add(deployment(0), hpa(low=3, high=10))
    (patch,) = replica_patches(view(fake, workload_spec(), DEPLOYMENT), 0, 10)
    assert patch.body == {"spec": {"minReplicas": 1, "maxReplicas": 10}}


def test_an_hpa_already_on_the_band_writes_nothing():
    fake = FakeKubeApi()
    fake.add(deployment(5), hpa(low=5, high=15))
    assert replica_patches(view(fake, workload_spec(), DEPLOYMENT), 5, 10) == []


def test_an_hpa_of_another_workload_is_ignored():
    fake = FakeKubeApi()
    other = hpa("other")
    other["spec"]["scaleTargetRef"]["name"] = "other"
    fake.add(deployment(2), other)
    assert replica_patches(view(fake, workload_spec(), DEPLOYMENT), 4, 10)[0].scale


def test_two_hpas_on_one_workload_are_an_error_not_a_guess():
    fake = FakeKubeApi()
    fake.add(deployment(2), hpa("a"), hpa("b"))
    with pytest.raises(
        ActuationError, match="2 HorizontalPodAutoscalers target Deployment shop/web: a, b"
    ):
        replica_patches(view(fake, workload_spec(), DEPLOYMENT), 4, 10)


def test_a_keda_scaled_workload_gets_the_band_on_its_scaled_object_not_on_kedas_hpa():
    fake = FakeKubeApi()
    fake.add(deployment(2), hpa("keda-hpa-web-so", owner="web-so"), scaled_object(1, 10))
    assert replica_patches(view(fake, workload_spec(), DEPLOYMENT), 6, 10) == [
        Patch(
            ObjectRef(SCALED_OBJECTS, "web-so", NS),
            {"spec": {"minReplicaCount": 6, "maxReplicaCount": 16}},
            "minReplicaCount 6, maxReplicaCount 16",
        )
    ]


def test_actuator_keda_finds_the_scaled_object_before_keda_made_its_hpa():
    fake = FakeKubeApi()
    fake.add(deployment(2), scaled_object(6, 16))
    assert replica_patches(view(fake, workload_spec(actuator="keda"), DEPLOYMENT), 6, 10) == []


def test_keda_owner_reads_the_owner_reference_or_kedas_labels():
    assert keda_owner(hpa(owner="so")) == "so"
    labelled = hpa()
    labelled["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "keda-operator",
        "app.kubernetes.io/part-of": "so2",
    }
    assert keda_owner(labelled) == "so2"
    assert keda_owner(hpa()) is None


def test_a_knative_service_gets_min_and_max_scale_annotations():
    fake = FakeKubeApi()
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "template": {"metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1"}}}
        },
    }
    fake.add(service)
    ref = ObjectRef(KNATIVE_SERVICES, "web", NS)
    knative = view(fake, workload_spec("Service"), ref)
    assert replica_patches(knative, 3, 10) == [
        Patch(
            ref,
            {
                "spec": {
                    "template": {
                        "metadata": {
                            "annotations": {
                                "autoscaling.knative.dev/min-scale": "3",
                                "autoscaling.knative.dev/max-scale": "13",
                            }
                        }
                    }
                }
            },
            "min-scale 3, max-scale 13",
        )
    ]
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    annotations.update(
        {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "13"}
    )
    fake.add(service)
    assert replica_patches(view(fake, workload_spec("Service"), ref), 3, 10) == []
    assert fake.writes() == []  # building patches only reads
