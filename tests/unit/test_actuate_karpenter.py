"""The karpenter provider keeps one karpenter.sh/v1 NodePool per slot, exactly as the
NodePool v1 schema spells it, and touches only its own policy's NodePools."""

from __future__ import annotations

from kubefake import FakeKubeApi

from spotwise.actuate.kube import Kube
from spotwise.actuate.placement import Slot, SlotLayout, Spread
from spotwise.actuate.providers import create_provider, provider_names
from spotwise.actuate.providers.karpenter import KarpenterProvider, nodepool, nodepool_name
from spotwise.api import parse_policy
from spotwise.domain import CapacityType, InstanceType

LARGE = InstanceType("m6i.large", 2, 8, 0.096, 0.04)
XLARGE = InstanceType("c6i.xlarge", 4, 8, 0.17, 0.07)
NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"


def policy(name: str = "shop", annotations: dict | None = None):
    meta = {
        "name": name,
        "namespace": "shop",
        **({"annotations": annotations} if annotations else {}),
    }
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": meta,
            "spec": {
                "workloads": [
                    {
                        "name": "web",
                        "targetRef": {"kind": "Deployment", "name": "web"},
                        "slo": {"latencyP95Ms": 200},
                    }
                ],
                "nodes": {"provider": "karpenter"},
            },
        }
    )


def layout(*slots: Slot) -> SlotLayout:
    return SlotLayout((("web", Spread(1, 0)),), slots)


SPOT_0 = Slot("spot-0", CapacityType.SPOT, ((XLARGE, 1), (LARGE, 2)))
ON_DEMAND_0 = Slot("on-demand-0", CapacityType.ON_DEMAND, ((LARGE, 1),))


def test_registry():
    assert provider_names() == ["karpenter", "kwok", "none"]
    assert isinstance(create_provider("karpenter", node_class="gpu"), KarpenterProvider)


def test_nodepool_exact_body():
    assert nodepool(policy(), SPOT_0, node_class_name="default") == {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {
            "name": "spotwise-shop-shop-spot-0",
            "labels": {
                "app.kubernetes.io/managed-by": "spotwise",
                "spotwise.dev/policy": "shop.shop",
                "spotwise.dev/slot": "spot-0",
            },
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"spotwise.dev/policy": "shop.shop", "spotwise.dev/slot": "spot-0"}
                },
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "default",
                    },
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": "In",
                            "values": ["c6i.xlarge", "m6i.large"],
                        },
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                    ],
                },
            },
            "limits": {"cpu": "8", "memory": "24Gi"},
        },
    }


def test_names_fit_the_nodepool_label_limit():
    long = policy("a" * 200)
    name = nodepool_name(long, "on-demand-9")
    assert len(name) <= 63 and name.startswith("spotwise-shop-aaaa")
    assert name != nodepool_name(policy("a" * 199), "on-demand-9")


def test_apply_creates_one_nodepool_per_slot_then_writes_nothing():
    fake = FakeKubeApi()
    report = KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    assert report.errors == []
    assert report.changes == [
        "NodePool spotwise-shop-shop-spot-0: created "
        "(spot c6i.xlarge, m6i.large, limits cpu 8 memory 24Gi)",
        "NodePool spotwise-shop-shop-on-demand-0: created "
        "(on-demand m6i.large, limits cpu 2 memory 8Gi)",
    ]
    assert [(r.method, r.path, r.body) for r in fake.writes()] == [
        ("POST", NODEPOOLS, nodepool(policy(), SPOT_0, node_class_name="default")),
        ("POST", NODEPOOLS, nodepool(policy(), ON_DEMAND_0, node_class_name="default")),
    ]
    # Karpenter's defaulting adds fields; they are not a difference.
    for pool in fake.all("karpenter.sh/v1", "NodePool"):
        pool["spec"]["disruption"] = {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "budgets": [{"nodes": "10%"}],
        }
        pool["spec"]["template"]["spec"]["expireAfter"] = "720h"
    fake.clear()
    again = KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    assert (again.changes, again.errors, fake.writes()) == ([], [], [])


def test_a_changed_slot_is_merge_patched_and_a_dropped_one_deleted():
    fake = FakeKubeApi()
    KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    fake.clear()
    bigger = Slot("on-demand-0", CapacityType.ON_DEMAND, ((LARGE, 3),))
    report = KarpenterProvider().apply(Kube(fake), policy(), layout(bigger))
    assert report.changes == [
        "NodePool spotwise-shop-shop-on-demand-0: updated "
        "(on-demand m6i.large, limits cpu 6 memory 24Gi)",
        "NodePool spotwise-shop-shop-spot-0: deleted (slot no longer planned)",
    ]
    desired = nodepool(policy(), bigger, node_class_name="default")
    assert [(r.method, r.path, r.content_type, r.body) for r in fake.writes()] == [
        (
            "PATCH",
            f"{NODEPOOLS}/spotwise-shop-shop-on-demand-0",
            "application/merge-patch+json",
            {"metadata": {"labels": desired["metadata"]["labels"]}, "spec": desired["spec"]},
        ),
        ("DELETE", f"{NODEPOOLS}/spotwise-shop-shop-spot-0", None, None),
    ]


def test_other_policies_nodepools_are_left_alone_and_the_node_class_comes_from_the_annotation():
    fake = FakeKubeApi()
    KarpenterProvider().apply(Kube(fake), policy("other"), layout(SPOT_0))
    fake.clear()
    mine = policy(annotations={"spotwise.dev/node-class": "bottlerocket"})
    KarpenterProvider().apply(Kube(fake), mine, layout(ON_DEMAND_0))
    assert [r.method for r in fake.writes()] == ["POST"]
    created = fake.get("karpenter.sh/v1", "NodePool", "spotwise-shop-shop-on-demand-0")
    assert created["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "bottlerocket"
    assert fake.get("karpenter.sh/v1", "NodePool", "spotwise-shop-other-spot-0")


def test_one_failing_nodepool_is_one_error_line_and_the_rest_is_applied():
    fake = FakeKubeApi()
    fake.fail(
        "POST",
        NODEPOOLS,
        422,
        'NodePool.karpenter.sh "x" is invalid',
        named="spotwise-shop-shop-spot-0",
    )
    report = KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    assert report.errors == [
        "NodePool spotwise-shop-shop-spot-0: 422 Unprocessable Entity: "
        'NodePool.karpenter.sh "x" is invalid'
    ]
    assert [p["metadata"]["name"] for p in fake.all("karpenter.sh/v1", "NodePool")] == [
        "spotwise-shop-shop-on-demand-0"
    ]


def test_without_the_karpenter_crd_the_provider_reports_and_stops():
    fake = FakeKubeApi(missing=("karpenter.sh/v1",))
    report = KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0))
    assert report.changes == []
    assert len(report.errors) == 1 and report.errors[0].startswith(
        "NodePools of shop.shop: 404 Not Found"
    )


def test_release_deletes_every_nodepool_of_the_policy_and_no_other():
    fake = FakeKubeApi()
    KarpenterProvider().apply(Kube(fake), policy("other"), layout(SPOT_0))
    KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    fake.clear()
    report = KarpenterProvider().release(Kube(fake), policy())
    assert report.errors == []
    assert report.changes == [
        "NodePool spotwise-shop-shop-on-demand-0: deleted (policy deleted)",
        "NodePool spotwise-shop-shop-spot-0: deleted (policy deleted)",
    ]
    assert [(r.method, r.path, r.body) for r in fake.writes()] == [
        ("DELETE", f"{NODEPOOLS}/spotwise-shop-shop-on-demand-0", None),
        ("DELETE", f"{NODEPOOLS}/spotwise-shop-shop-spot-0", None),
    ]
    assert [p["metadata"]["name"] for p in fake.all("karpenter.sh/v1", "NodePool")] == [
        "spotwise-shop-other-spot-0"
    ]


def test_a_nodepool_already_being_deleted_is_left_to_karpenter():
    fake = FakeKubeApi()
    KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    draining = fake.get("karpenter.sh/v1", "NodePool", "spotwise-shop-shop-spot-0")
    draining["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"  # its nodes drain
    fake.clear()
    report = KarpenterProvider().release(Kube(fake), policy())
    assert report.changes == ["NodePool spotwise-shop-shop-on-demand-0: deleted (policy deleted)"]
    assert [r.path for r in fake.writes()] == [f"{NODEPOOLS}/spotwise-shop-shop-on-demand-0"]


def test_a_failed_delete_is_one_error_line_and_the_others_are_deleted():
    fake = FakeKubeApi()
    KarpenterProvider().apply(Kube(fake), policy(), layout(SPOT_0, ON_DEMAND_0))
    fake.fail("DELETE", f"{NODEPOOLS}/spotwise-shop-shop-spot-0", 403, "forbidden")
    report = KarpenterProvider().release(Kube(fake), policy())
    assert report.changes == ["NodePool spotwise-shop-shop-on-demand-0: deleted (policy deleted)"]
    assert report.errors == ["NodePool spotwise-shop-shop-spot-0: 403 Forbidden: forbidden"]


def test_without_the_karpenter_crd_there_is_nothing_to_release():
    fake = FakeKubeApi(missing=("karpenter.sh/v1",))
    report = KarpenterProvider().release(Kube(fake), policy())
    assert (report.changes, report.errors) == ([], [])
    fake = FakeKubeApi()
    fake.fail("GET", NODEPOOLS, 500, "etcd timeout")  # but a failed listing is an error
    report = KarpenterProvider().release(Kube(fake), policy())
    assert report.errors == ["NodePools of shop.shop: 500 Internal Server Error: etcd timeout"]
