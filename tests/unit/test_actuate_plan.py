"""`actuate()` applies a whole plan: nodes, then one request per object; the same plan
twice writes nothing; a failing object costs one error line and nothing else. `release()`
takes a deleted policy's placement out of its workloads, then removes the provider's
objects; replicas and concurrency stay."""

from __future__ import annotations

import copy
import socket

import urllib3
from kubefake import FakeKubeApi
from kubernetes.client import ApiClient, Configuration

from spotwise.actuate import Actuation, actuate, release
from spotwise.actuate.kube import DEPLOYMENTS, Kube, ObjectRef
from spotwise.actuate.providers import provider_names
from spotwise.api import parse_policy
from spotwise.domain import CapacityType, NodeCount, Plan, WorkloadPlan

NS = "shop"


def policy(provider: str = "kwok", instance_types: tuple[str, ...] = ("m6i.large", "c6i.xlarge")):
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {
                "workloads": [
                    {
                        "name": "checkout",
                        "targetRef": {"kind": "Deployment", "name": "checkout"},
                        "slo": {"latencyP95Ms": 250},
                        "concurrency": {"actuator": "env", "envVar": "MAX_INFLIGHT"},
                    },
                    {
                        "name": "search",
                        "targetRef": {"kind": "Deployment", "name": "search"},
                        "slo": {"latencyP95Ms": 250},
                        "concurrency": {"actuator": "hpa"},
                    },
                    {
                        "name": "web",
                        "targetRef": {"kind": "Service", "name": "web"},
                        "slo": {"latencyP95Ms": 250},
                        "concurrency": {"actuator": "knative", "hard": True},
                    },
                ],
                "nodes": {"provider": provider, "catalog": {"instanceTypes": list(instance_types)}},
                "stabilization": {"maxReplicaStep": 5},
            },
        }
    )


def plan(checkout: int = 6, search: int = 3, web: int = 2) -> Plan:
    return Plan(
        "exact",
        True,
        False,
        0.5,
        (
            WorkloadPlan(
                "checkout",
                checkout,
                8,
                120.0,
                (
                    ("m6i.large/spot", checkout * 2 // 3),
                    ("m6i.large/on-demand", checkout - checkout * 2 // 3),
                ),
            ),
            WorkloadPlan("search", search, 16, 90.0, (("m6i.large/on-demand", search),)),
            WorkloadPlan("web", web, 32, 80.0, (("m6i.large/spot", web),)),
        ),
        (
            NodeCount("m6i.large", CapacityType.SPOT, 2),
            NodeCount("m6i.large", CapacityType.ON_DEMAND, 2),
        ),
        0.5,
    )


def deployment(name: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": f"{name}:1"}]},
            },
        },
    }


SEARCH_HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "search", "namespace": NS},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "search"},
        "minReplicas": 1,
        "maxReplicas": 20,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "inflight"},
                    "target": {"type": "AverageValue", "averageValue": "10"},
                },
            }
        ],
    },
}
WEB = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {"template": {"spec": {"containers": [{"image": "web:1"}]}}},
}


def cluster(**fake_options) -> FakeKubeApi:
    fake = FakeKubeApi(**fake_options)
    fake.add(
        deployment("checkout"), deployment("search"), copy.deepcopy(SEARCH_HPA), copy.deepcopy(WEB)
    )
    return fake


def test_a_plan_is_applied_nodes_first_then_one_request_per_object():
    fake = cluster()
    done = actuate(fake, policy(), plan())
    assert done.errors == ()
    assert done.ok
    assert list(done.changes) == [
        "Node kwok-shop-shop-spot-0-m6i-large-0: created (m6i.large spot, slot spot-0)",
        "Node kwok-shop-shop-spot-1-m6i-large-0: created (m6i.large spot, slot spot-1)",
        "Node kwok-shop-shop-on-demand-0-m6i-large-0: created "
        "(m6i.large on-demand, slot on-demand-0)",
        "Node kwok-shop-shop-on-demand-0-m6i-large-1: created "
        "(m6i.large on-demand, slot on-demand-0)",
        # 6 replicas, 4 on spot: 3 slots of 2 pods, 2 of them spot
        "Deployment shop/checkout: env MAX_INFLIGHT=8 on app (rolls the pods); "
        "placement 2 of 3 slots spot (spot-0, spot-1, on-demand-0)",
        "Deployment shop/checkout: replicas 1 → 6",
        "HorizontalPodAutoscaler shop/search: minReplicas 3, maxReplicas 8; "
        "Pods metric inflight averageValue 16",
        "Deployment shop/search: placement 0 of 1 slots spot (on-demand-0)",
        "Service shop/web: min-scale 2, max-scale 7; target 32, containerConcurrency 32; "
        "placement 1 of 1 slots spot (spot-0)",
    ]
    writes = [(r.method, r.path) for r in fake.writes()]
    assert writes[4:] == [
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout"),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout/scale"),
        ("PATCH", "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/search"),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/search"),
        ("PATCH", "/apis/serving.knative.dev/v1/namespaces/shop/services/web"),
    ]
    (web_patch,) = [r for r in fake.writes() if r.path.endswith("/services/web")]
    template = web_patch.body["spec"]["template"]
    assert template["metadata"] == {
        "annotations": {
            "autoscaling.knative.dev/min-scale": "2",
            "autoscaling.knative.dev/max-scale": "7",
            "autoscaling.knative.dev/target": "32",
        }
    }
    assert template["spec"]["containerConcurrency"] == 32
    assert fake.get("apps/v1", "Deployment", "checkout", NS)["spec"]["replicas"] == 6


def test_the_same_plan_again_writes_nothing():
    fake = cluster()
    actuate(fake, policy(), plan())
    fake.clear()
    again = actuate(fake, policy(), plan())
    assert again == Actuation(changes=(), errors=())
    assert fake.writes() == []


def test_a_new_plan_writes_only_what_changed():
    fake = cluster()
    actuate(fake, policy(), plan())
    fake.clear()
    done = actuate(fake, policy(), plan(checkout=6, search=5, web=2))
    assert list(done.changes) == [
        "HorizontalPodAutoscaler shop/search: minReplicas 5, maxReplicas 10"
    ]
    assert [(r.method, r.path, r.body) for r in fake.writes()] == [
        (
            "PATCH",
            "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/search",
            {"spec": {"minReplicas": 5, "maxReplicas": 10}},
        )
    ]


def test_one_failing_object_is_one_error_line_and_the_rest_is_applied():
    fake = cluster()
    fake.fail(
        "PATCH",
        "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/search",
        409,
        "the object has been modified",
    )
    done = actuate(fake, policy(), plan())
    assert done.errors == (
        "HorizontalPodAutoscaler shop/search: minReplicas 3, maxReplicas 8; Pods metric inflight "
        "averageValue 16: 409 Conflict: the object has been modified",
    )
    assert len(done.changes) == 8
    assert fake.get("apps/v1", "Deployment", "checkout", NS)["spec"]["replicas"] == 6
    assert (
        fake.get("serving.knative.dev/v1", "Service", "web", NS)["spec"]["template"]["spec"][
            "containerConcurrency"
        ]
        == 32
    )


def test_a_read_that_fails_spoils_only_what_needs_it():
    fake = cluster()
    fake.fail(
        "GET", "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers", 403, "forbidden"
    )
    done = actuate(fake, policy(), plan())
    # checkout and search need the HPA list for replicas; search's actuator needs it too
    assert done.errors == (
        "workload checkout: replicas: 403 Forbidden: forbidden",
        "workload search: replicas: 403 Forbidden: forbidden",
        "workload search: concurrency (hpa): 403 Forbidden: forbidden",
    )
    assert "Deployment shop/search: placement 0 of 1 slots spot (on-demand-0)" in done.changes
    assert fake.get("apps/v1", "Deployment", "checkout", NS)["spec"]["replicas"] == 1  # not guessed


def test_missing_workloads_and_plans_without_them_are_reported():
    fake = FakeKubeApi()
    fake.add(deployment("search"), copy.deepcopy(SEARCH_HPA))
    partial = Plan("exact", True, False, 0.5, plan().workloads[1:], plan().nodes, 0.5)
    done = actuate(fake, policy(provider="none"), partial)
    assert done.errors == (
        "workload checkout: not in the plan",
        "workload web: Service shop/web not found",
    )
    assert done.changes == (
        "HorizontalPodAutoscaler shop/search: minReplicas 3, maxReplicas 8; "
        "Pods metric inflight averageValue 16",
    )


def test_provider_none_creates_no_nodes_and_places_no_pods():
    fake = cluster()
    done = actuate(fake, policy(provider="none"), plan())
    assert not any("placement" in line or line.startswith("Node") for line in done.changes)
    assert fake.all("v1", "Node") == []


def test_a_plan_with_a_type_outside_the_catalog_reports_nodes_and_still_scales():
    fake = cluster()
    odd = Plan(
        "exact",
        True,
        False,
        0.5,
        plan().workloads,
        (NodeCount("r7i.large", CapacityType.SPOT, 1),),
        0.5,
    )
    done = actuate(fake, policy(), odd)
    assert done.errors == (
        "nodes of shop.shop: instance type 'r7i.large' of the plan is not in the policy's catalog",
    )
    assert "Deployment shop/checkout: replicas 1 → 6" in done.changes
    assert fake.all("v1", "Node") == []


def test_an_unreachable_api_server_is_error_lines_not_an_exception():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.retries = urllib3.Retry(total=0)
    done = actuate(ApiClient(config), policy(), plan())
    assert done.changes == ()
    assert len(done.errors) == 4  # the node listing, then each workload's read
    assert all("\n" not in line for line in done.errors)


NODES_RELEASED = [
    "Node kwok-shop-shop-on-demand-0-m6i-large-0: cordoned, deleted",
    "Node kwok-shop-shop-on-demand-0-m6i-large-1: cordoned, deleted",
    "Node kwok-shop-shop-spot-0-m6i-large-0: cordoned, deleted",
    "Node kwok-shop-shop-spot-1-m6i-large-0: cordoned, deleted",
]
UNPLACED = "placement removed (node affinity, slot spread, kwok toleration)"
UNPLACE_BODY = {
    "spec": {
        "template": {
            "spec": {"affinity": None, "topologySpreadConstraints": None, "tolerations": None}
        }
    }
}


def version(fake: FakeKubeApi, api_version: str, kind: str, name: str) -> dict:
    meta = fake.get(api_version, kind, name, NS)["metadata"]
    return {
        "resourceVersion": meta["resourceVersion"],
        "annotations": {"spotwise.dev/kwok-toleration": None},
    }


def test_release_unplaces_the_workloads_first_then_removes_the_nodes():
    fake = cluster()
    actuate(fake, policy(), plan())
    hpa = copy.deepcopy(fake.get("autoscaling/v2", "HorizontalPodAutoscaler", "search", NS))
    guards = [
        version(fake, "apps/v1", "Deployment", "checkout"),
        version(fake, "apps/v1", "Deployment", "search"),
        version(fake, "serving.knative.dev/v1", "Service", "web"),
    ]
    fake.clear()
    done = release(fake, policy())
    assert done.ok
    assert list(done.changes) == [
        f"Deployment shop/checkout: {UNPLACED}",
        f"Deployment shop/search: {UNPLACED}",
        f"Service shop/web: {UNPLACED}",
        *NODES_RELEASED,
    ]
    writes = fake.writes()
    assert [(r.method, r.path, r.content_type, r.body) for r in writes[:3]] == [
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/checkout",
            "application/strategic-merge-patch+json",
            {"metadata": guards[0], **UNPLACE_BODY},
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/search",
            "application/strategic-merge-patch+json",
            {"metadata": guards[1], **UNPLACE_BODY},
        ),
        (
            "PATCH",
            "/apis/serving.knative.dev/v1/namespaces/shop/services/web",
            "application/merge-patch+json",
            {"metadata": guards[2], **UNPLACE_BODY},
        ),
    ]
    assert {r.path.split("/")[3] for r in writes[3:]} == {"nodes"}
    assert fake.all("v1", "Node") == []
    # The pod templates are the user's again, plus what the plan set and release keeps:
    # the replicas, the env var, the HPA band and target, the Knative scale and target.
    checkout = fake.get("apps/v1", "Deployment", "checkout", NS)
    assert checkout["spec"]["replicas"] == 6
    assert checkout["spec"]["template"] == {
        "metadata": {"labels": {"app": "checkout"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "checkout:1",
                    "env": [{"name": "MAX_INFLIGHT", "value": "8"}],
                }
            ]
        },
    }
    assert (
        fake.get("apps/v1", "Deployment", "search", NS)["spec"]["template"]
        == (deployment("search")["spec"]["template"])
    )
    assert fake.get("autoscaling/v2", "HorizontalPodAutoscaler", "search", NS) == hpa
    web = fake.get("serving.knative.dev/v1", "Service", "web", NS)
    assert web["spec"]["template"]["spec"] == {
        "containers": [{"image": "web:1"}],
        "containerConcurrency": 32,
    }
    assert web["spec"]["template"]["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "2",
        "autoscaling.knative.dev/max-scale": "7",
        "autoscaling.knative.dev/target": "32",
    }

    fake.clear()
    assert release(fake, policy()) == Actuation(changes=(), errors=())
    assert fake.writes() == []


def test_release_unplaces_whatever_provider_the_policy_names_now():
    fake = cluster()
    actuate(fake, policy(), plan())
    fake.clear()
    # Provider none made no nodes and removes none, even where kwok Nodes exist; the
    # placement the policy wrote while it was kwok goes all the same.
    done = release(fake, policy(provider="none"))
    assert done == Actuation(
        changes=(
            f"Deployment shop/checkout: {UNPLACED}",
            f"Deployment shop/search: {UNPLACED}",
            f"Service shop/web: {UNPLACED}",
        ),
        errors=(),
    )
    assert len(fake.all("v1", "Node")) == 4


def test_a_workload_that_fails_is_one_error_line_and_the_rest_is_released():
    fake = cluster()
    actuate(fake, policy(), plan())
    Kube(fake).delete(ObjectRef(DEPLOYMENTS, "search", NS))  # gone: nothing to undo
    fake.fail("GET", "/apis/apps/v1/namespaces/shop/deployments/checkout", 403, "forbidden")
    fake.fail(
        "PATCH",
        "/apis/serving.knative.dev/v1/namespaces/shop/services/web",
        400,
        "admission webhook denied the request",
    )
    fake.clear()
    done = release(fake, policy())
    assert done.errors == (
        "Deployment shop/checkout: placement not removed: 403 Forbidden: forbidden",
        "Service shop/web: placement not removed: 400 Bad Request: "
        "admission webhook denied the request",
    )
    assert list(done.changes) == NODES_RELEASED
    assert fake.all("v1", "Node") == []


def test_every_provider_can_release_a_policy_that_never_acted():
    for name in provider_names():
        fake = cluster()  # the workloads exist, untouched: e.g. a policy only ever in DryRun
        assert release(fake, policy(provider=name)) == Actuation(changes=(), errors=())
        assert fake.writes() == []
        assert release(FakeKubeApi(), policy(provider=name)) == Actuation(changes=(), errors=())


def test_one_more_replica_rolls_no_pods():
    """The slots the template has are kept while they fit the plan: only /scale is sent."""
    fake = cluster()
    actuate(fake, policy(), plan(checkout=6))
    fake.clear()
    done = actuate(fake, policy(), plan(checkout=7))
    assert [c for c in done.changes if "checkout" in c] == [
        "Deployment shop/checkout: replicas 6 → 7"
    ]
    checkout = [r for r in fake.writes() if "/deployments/checkout" in r.path]
    assert [(r.method, r.path, r.body) for r in checkout] == [
        (
            "PATCH",
            f"/apis/apps/v1/namespaces/{NS}/deployments/checkout/scale",
            {"spec": {"replicas": 7}},
        )
    ]
