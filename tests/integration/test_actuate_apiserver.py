"""Actuation against a real kube-apiserver (envtest binaries): the patches are accepted as
built, read back as intended after the server's own defaulting and normalization, and a
second apply writes nothing. KWOK Nodes are created, cordoned, drained through the real
Eviction API (which honours a PodDisruptionBudget) and deleted. Releasing a deleted policy
takes its placement out of the pod template (the server applies the strategic merge's
nulls and ``$patch: delete`` directive) and leaves the user's own rules as stored.

Nothing runs pods here (no scheduler, controller-manager or kubelet): pods are bound to
Nodes by ``spec.nodeName`` and an evicted pod only gets a deletionTimestamp. Karpenter
NodePools need Karpenter's CRD and are covered by the unit tests' exact bodies only.
Skipped with the reason when etcd/kube-apiserver are missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from controlplane import ControlPlane
from kubernetes import client
from kubernetes.client.rest import ApiException

from spotwise.actuate import Actuation, actuate, release
from spotwise.api import parse_policy
from spotwise.api.v1alpha1 import ScalingPolicy, parse_quantity
from spotwise.domain import CapacityType, NodeCount, Plan, WorkloadPlan

pytestmark = pytest.mark.integration

NAMESPACE = "spotwise-actuate"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        try:
            core.create_namespace({"metadata": {"name": NAMESPACE}})
        except ApiException as err:
            if err.status != 409:
                raise
        yield api_client


def policy(name: str, *, provider: str, actuator: dict[str, Any]) -> ScalingPolicy:
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "workloads": [
                    {
                        "name": name,
                        "targetRef": {"kind": "Deployment", "name": name},
                        "slo": {"latencyP95Ms": 250},
                        "replicas": {"min": 1, "max": 40},
                        "concurrency": {"max": 2000, **actuator},
                    }
                ],
                "nodes": {"provider": provider, "catalog": {"instanceTypes": ["m6i.large"]}},
                "stabilization": {"maxReplicaStep": 5},
            },
        }
    )


def plan(
    name: str, replicas: int, spot: int, concurrency: int, spot_nodes: int, od_nodes: int
) -> Plan:
    pods = (("m6i.large/spot", spot), ("m6i.large/on-demand", replicas - spot))
    return Plan(
        "exact",
        True,
        False,
        0.4,
        (WorkloadPlan(name, replicas, concurrency, 100.0, tuple(p for p in pods if p[1])),),
        (
            NodeCount("m6i.large", CapacityType.SPOT, spot_nodes),
            NodeCount("m6i.large", CapacityType.ON_DEMAND, od_nodes),
        ),
        0.5,
    )


def create_deployment(
    api: client.ApiClient, name: str, pod_spec: dict[str, Any] | None = None
) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                        **(pod_spec or {}),
                    },
                },
            },
        },
    )


def read_deployment(api: client.ApiClient, name: str) -> dict[str, Any]:
    return raw(api, client.AppsV1Api(api).read_namespaced_deployment(name, NAMESPACE))


def raw(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = api.sanitize_for_serialization(obj)
    return out


def nodes_of(api: client.ApiClient, key: str) -> list[dict[str, Any]]:
    found = client.CoreV1Api(api).list_node(label_selector=f"spotwise.dev/policy={key}")
    return sorted((raw(api, n) for n in found.items), key=lambda n: n["metadata"]["name"])


def test_replicas_env_placement_and_kwok_nodes_land_and_a_second_apply_writes_nothing(api):
    name = "placed"
    create_deployment(api, name)
    pol = policy(name, provider="kwok", actuator={"actuator": "env", "envVar": "MAX_INFLIGHT"})
    target = plan(name, replicas=6, spot=4, concurrency=12, spot_nodes=2, od_nodes=1)

    done = actuate(api, pol, target)
    assert done.errors == ()

    deployment = raw(api, client.AppsV1Api(api).read_namespaced_deployment(name, NAMESPACE))
    assert deployment["spec"]["replicas"] == 6
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["env"] == [{"name": "MAX_INFLIGHT", "value": "12"}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "spotwise.dev/policy", "operator": "In", "values": [f"{NAMESPACE}.{name}"]},
                {
                    "key": "spotwise.dev/slot",
                    "operator": "In",
                    "values": ["spot-0", "spot-1", "on-demand-0"],
                },
            ]
        }
    ]
    assert pod["topologySpreadConstraints"] == [
        {
            "labelSelector": {"matchLabels": {"app": name}},
            "maxSkew": 1,
            "topologyKey": "spotwise.dev/slot",
            "whenUnsatisfiable": "DoNotSchedule",
        }
    ]
    assert {
        "effect": "NoSchedule",
        "key": "kwok.x-k8s.io/node",
        "operator": "Equal",
        "value": "fake",
    } in pod["tolerations"]

    nodes = nodes_of(api, f"{NAMESPACE}.{name}")
    assert [
        (
            n["metadata"]["labels"]["spotwise.dev/slot"],
            n["metadata"]["labels"]["karpenter.sh/capacity-type"],
        )
        for n in nodes
    ] == [
        ("on-demand-0", "on-demand"),
        ("spot-0", "spot"),
        ("spot-1", "spot"),
    ]
    for node in nodes:
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "m6i.large"
        # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready.
        assert {"effect": "NoSchedule", "key": "kwok.x-k8s.io/node", "value": "fake"} in node[
            "spec"
        ]["taints"]
        assert node["status"]["capacity"] == {"cpu": "2", "memory": "8Gi", "pods": "29"}

    # What the server stored, defaulted and normalized compares equal to the plan.
    assert actuate(api, pol, target) == Actuation(changes=(), errors=())

    # Released: the template is as it was before placement, the plan's replicas and env
    # var stay, the Nodes go; a second release writes nothing.
    done = release(api, pol)
    assert done.errors == ()
    assert done.changes[0] == (
        f"Deployment {NAMESPACE}/{name}: "
        "placement removed (node affinity, slot spread, kwok toleration)"
    )
    after = read_deployment(api, name)
    assert not {"affinity", "topologySpreadConstraints", "tolerations"} & set(
        after["spec"]["template"]["spec"]
    )
    assert "spotwise.dev/kwok-toleration" not in (after["metadata"].get("annotations") or {})
    assert after["spec"]["replicas"] == 6
    assert after["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "MAX_INFLIGHT", "value": "12"}
    ]
    assert nodes_of(api, f"{NAMESPACE}.{name}") == []
    assert release(api, pol) == Actuation(changes=(), errors=())


def test_release_takes_out_the_placement_and_leaves_the_users_rules_as_stored(api):
    name = "unplaced"
    arch = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
    create_deployment(
        api,
        name,
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [arch]}]
                    },
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "preference": {"matchExpressions": [arch]}}
                    ],
                },
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": {"app": name}},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }
                    ]
                },
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 2,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": name}},
                }
            ],
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        },
    )
    user = read_deployment(api, name)["spec"]["template"]["spec"]
    pol = policy(name, provider="kwok", actuator={"actuator": "none"})
    assert actuate(api, pol, plan(name, 4, 2, 8, spot_nodes=1, od_nodes=1)).errors == ()

    placed = read_deployment(api, name)["spec"]["template"]["spec"]
    terms = placed["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                arch,
                {"key": "spotwise.dev/policy", "operator": "In", "values": [f"{NAMESPACE}.{name}"]},
                {"key": "spotwise.dev/slot", "operator": "In", "values": ["spot-0", "on-demand-0"]},
            ]
        }
    ]
    assert [c["topologyKey"] for c in placed["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone",
        "spotwise.dev/slot",
    ]
    assert len(placed["tolerations"]) == 2

    done = release(api, pol)
    assert done.errors == ()
    assert done.changes[0] == (
        f"Deployment {NAMESPACE}/{name}: "
        "placement removed (node affinity, slot spread, kwok toleration)"
    )
    after = read_deployment(api, name)
    pod = after["spec"]["template"]["spec"]
    for field in ("affinity", "topologySpreadConstraints", "tolerations"):
        assert pod[field] == user[field]
    assert "spotwise.dev/kwok-toleration" not in (after["metadata"].get("annotations") or {})
    assert after["spec"]["replicas"] == 4
    assert nodes_of(api, f"{NAMESPACE}.{name}") == []
    assert release(api, pol) == Actuation(changes=(), errors=())


def test_an_hpa_band_and_pods_target_survive_quantity_normalization(api):
    name = "banded"
    create_deployment(api, name)
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "http_requests_in_flight"},
                            "target": {"type": "AverageValue", "averageValue": "10"},
                        },
                    }
                ],
            },
        },
    )
    pol = policy(name, provider="none", actuator={"actuator": "hpa"})
    target = plan(name, replicas=3, spot=0, concurrency=1000, spot_nodes=0, od_nodes=1)

    done = actuate(api, pol, target)
    assert done.errors == ()
    hpa = raw(
        api, client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(name, NAMESPACE)
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    stored = hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
    assert parse_quantity(stored) == 1000
    # the HPA owns replicas: the Deployment's own count is not touched
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, NAMESPACE)
    assert deployment.spec.replicas == 1

    assert actuate(api, pol, target) == Actuation(changes=(), errors=())


def test_a_surplus_kwok_node_waits_for_its_disruption_budget_then_goes(api):
    name = "drained"
    create_deployment(api, name)
    pol = policy(name, provider="kwok", actuator={"actuator": "none"})
    key = f"{NAMESPACE}.{name}"
    assert actuate(api, pol, plan(name, 2, 2, 8, spot_nodes=2, od_nodes=0)).errors == ()
    doomed = nodes_of(api, key)[1]["metadata"]["name"]
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        NAMESPACE,
        {
            "metadata": {"name": "guarded", "labels": {"app": "guarded"}},
            "spec": {
                "nodeName": doomed,
                "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            },
        },
    )
    # A Pending pod may be evicted whatever its budget says; only a running one is guarded.
    core.patch_namespaced_pod_status(
        "guarded",
        NAMESPACE,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        NAMESPACE,
        {
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )

    refused = actuate(api, pol, plan(name, 1, 1, 8, spot_nodes=1, od_nodes=0))
    assert len(refused.errors) == 1
    assert refused.errors[0].startswith(
        f"Node {doomed}: cordoned, evicted 0 pods; eviction of {NAMESPACE}/guarded"
    )
    assert "429" in refused.errors[0]
    node = raw(api, core.read_node(doomed))
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"]["spotwise.dev/draining"] == "true"

    client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget("guarded", NAMESPACE)
    done = actuate(api, pol, plan(name, 1, 1, 8, spot_nodes=1, od_nodes=0))
    assert done.errors == ()
    assert done.changes == (f"Node {doomed}: evicted 1 pods, deleted",)
    assert [n["metadata"]["name"] for n in nodes_of(api, key)] == [doomed.removesuffix("1") + "0"]
    try:
        evicted = core.read_namespaced_pod("guarded", NAMESPACE)
    except ApiException as err:
        assert err.status == 404
    else:  # no kubelet confirms the graceful deletion, so the pod only starts terminating
        assert evicted.metadata.deletion_timestamp is not None
