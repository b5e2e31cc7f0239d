"""The kwok provider creates the plan's fake Nodes as KWOK documents them, and removes
surplus ones the way ``kubectl drain`` would: cordon, evict, then delete."""

from __future__ import annotations

from kubefake import FakeKubeApi

from spotwise.actuate.kube import Kube
from spotwise.actuate.placement import Slot, SlotLayout, Spread
from spotwise.actuate.providers.kwok import KwokProvider, kwok_node, node_name, zones_for
from spotwise.api import parse_policy
from spotwise.domain import CapacityType, InstanceType

LARGE = InstanceType("m6i.large", 2, 8, 0.096, 0.04)
GRAVITON = InstanceType("c7g.xlarge", 4, 8, 0.145, 0.06, arch="arm64")
NODES = "/api/v1/nodes"


def policy(name: str = "shop", builtin: str | None = "aws-us-east-1"):
    catalog = (
        {"builtin": builtin}
        if builtin
        else {
            "builtin": None,
            "custom": [{"name": "m6i.large", "vcpu": 2, "memoryGiB": 8, "onDemandPrice": 0.1}],
        }
    )
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "workloads": [
                    {
                        "name": "web",
                        "targetRef": {"kind": "Deployment", "name": "web"},
                        "slo": {"latencyP95Ms": 200},
                    }
                ],
                "nodes": {"provider": "kwok", "catalog": catalog},
            },
        }
    )


def layout(spot: int, on_demand: int) -> SlotLayout:
    slots = []
    if spot:
        slots.append(Slot("spot-0", CapacityType.SPOT, ((LARGE, spot),)))
    if on_demand:
        slots.append(Slot("on-demand-0", CapacityType.ON_DEMAND, ((LARGE, on_demand),)))
    return SlotLayout((("web", Spread(2, 1)),), tuple(slots))


def names(fake: FakeKubeApi) -> list[str]:
    return [n["metadata"]["name"] for n in fake.all("v1", "Node")]


def pod(name: str, node: str, **extra) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"nodeName": node},
    }
    for key, value in extra.items():
        body.setdefault(key, {}).update(value)
    return body


def test_kwok_node_exact_body():
    slot = Slot("spot-1", CapacityType.SPOT, ((GRAVITON, 1),))
    assert kwok_node(
        "kwok-shop-shop-spot-1-c7g-xlarge-0", policy(), slot, GRAVITON, "us-east-1b"
    ) == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "kwok-shop-shop-spot-1-c7g-xlarge-0",
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "beta.kubernetes.io/arch": "arm64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "arm64",
                "kubernetes.io/hostname": "kwok-shop-shop-spot-1-c7g-xlarge-0",
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
                "node.kubernetes.io/instance-type": "c7g.xlarge",
                "karpenter.sh/capacity-type": "spot",
                "topology.kubernetes.io/zone": "us-east-1b",
                "spotwise.dev/policy": "shop.shop",
                "spotwise.dev/slot": "spot-1",
                "app.kubernetes.io/managed-by": "spotwise",
            },
        },
        "spec": {
            "taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
        },
        "status": {
            # 4 vCPU: the kubelet keeps 6% + 1% + 2 x 0.5% = 80m; 58 pods (14.5/vCPU); memory
            # keeps 255 + 11 x 58 + 100 MiB = 993 MiB of 8 GiB.
            "allocatable": {"cpu": "3920m", "memory": "7199Mi", "pods": "58"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "58"},
            "nodeInfo": {
                "architecture": "arm64",
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "kubeProxyVersion": "fake",
                "kubeletVersion": "fake",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "",
                "systemUUID": "",
            },
            "phase": "Running",
        },
    }


def test_zones_follow_the_catalog_region():
    assert zones_for(policy()) == ("us-east-1a", "us-east-1b", "us-east-1c")
    assert zones_for(policy(builtin=None)) == ("zone-a", "zone-b", "zone-c")


def test_apply_creates_the_planned_nodes_round_robin_over_zones_then_writes_nothing():
    fake = FakeKubeApi()
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=1))
    assert report.errors == []
    assert report.changes == [
        "Node kwok-shop-shop-spot-0-m6i-large-0: created (m6i.large spot, slot spot-0)",
        "Node kwok-shop-shop-spot-0-m6i-large-1: created (m6i.large spot, slot spot-0)",
        "Node kwok-shop-shop-on-demand-0-m6i-large-0: created "
        "(m6i.large on-demand, slot on-demand-0)",
    ]
    slot = Slot("spot-0", CapacityType.SPOT, ((LARGE, 2),))
    assert fake.writes()[1].body == kwok_node(
        "kwok-shop-shop-spot-0-m6i-large-1", policy(), slot, LARGE, "us-east-1b"
    )
    fake.clear()
    again = KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=1))
    assert (again.changes, again.errors, fake.writes()) == ([], [], [])


def test_surplus_nodes_are_cordoned_drained_and_deleted():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=1))
    doomed = "kwok-shop-shop-spot-0-m6i-large-1"
    fake.add(
        pod("web-1", doomed),
        pod(
            "ds",
            doomed,
            metadata={
                "ownerReferences": [
                    {"kind": "DaemonSet", "name": "ds", "apiVersion": "apps/v1", "uid": "u"}
                ]
            },
        ),
        pod("mirror", doomed, metadata={"annotations": {"kubernetes.io/config.mirror": "x"}}),
        pod("done", doomed, status={"phase": "Succeeded"}),
        pod("web-2", "kwok-shop-shop-spot-0-m6i-large-0"),
    )
    fake.clear()
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    assert report.errors == []
    assert report.changes == [f"Node {doomed}: cordoned, evicted 1 pods, deleted"]
    assert [(r.method, r.path, r.content_type, r.body) for r in fake.writes()] == [
        (
            "PATCH",
            f"{NODES}/{doomed}",
            "application/strategic-merge-patch+json",
            {
                "metadata": {"annotations": {"spotwise.dev/draining": "true"}},
                "spec": {"unschedulable": True},
            },
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-1/eviction",
            "application/json",
            {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": "web-1", "namespace": "shop"},
            },
        ),
        ("DELETE", f"{NODES}/{doomed}", None, None),
    ]
    assert doomed not in names(fake)


def test_a_refused_eviction_keeps_the_node_cordoned_and_the_next_tick_finishes():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=2))
    spot_1, od_1 = "kwok-shop-shop-spot-0-m6i-large-1", "kwok-shop-shop-on-demand-0-m6i-large-1"
    fake.add(pod("web-1", spot_1), pod("web-2", od_1))
    fake.fail(
        "POST",
        "/api/v1/namespaces/shop/pods/web-1/eviction",
        429,
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    assert report.changes == [f"Node {od_1}: cordoned, evicted 1 pods, deleted"]
    assert report.errors == [
        f"Node {spot_1}: cordoned, evicted 0 pods; eviction of shop/web-1 refused "
        "(429 Too Many Requests: Cannot evict pod as it would violate the pod's disruption "
        "budget.); left cordoned"
    ]
    assert fake.get("v1", "Node", spot_1)["spec"]["unschedulable"] is True
    fake._failures.clear()
    fake.clear()
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    assert report.changes == [f"Node {spot_1}: evicted 1 pods, deleted"]  # not cordoned twice
    assert spot_1 not in names(fake)


def test_a_cordoned_node_is_taken_back_before_a_new_one_is_made():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=0))
    spot_1 = "kwok-shop-shop-spot-0-m6i-large-1"
    fake.add(pod("web-1", spot_1))
    fake.fail("POST", "/api/v1/namespaces/shop/pods/web-1/eviction", 429, "budget")
    KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=0))
    fake.clear()
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=0))
    assert report.changes == [f"Node {spot_1}: uncordoned"]
    assert [(r.method, r.body) for r in fake.writes()] == [
        (
            "PATCH",
            {
                "metadata": {"annotations": {"spotwise.dev/draining": None}},
                "spec": {"unschedulable": False},
            },
        )
    ]
    assert len(names(fake)) == 2


def test_interrupted_nodes_go_first_and_other_policies_nodes_stay():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy("other"), layout(spot=1, on_demand=0))
    KwokProvider().apply(Kube(fake), policy(), layout(spot=2, on_demand=0))
    hit = fake.get("v1", "Node", "kwok-shop-shop-spot-0-m6i-large-0")
    hit["spec"]["taints"].append({"key": "spotwise.dev/interruption", "effect": "NoSchedule"})
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=0))
    assert report.changes == ["Node kwok-shop-shop-spot-0-m6i-large-0: cordoned, deleted"]
    assert names(fake) == [
        "kwok-shop-other-spot-0-m6i-large-0",
        "kwok-shop-shop-spot-0-m6i-large-1",
    ]


def test_a_new_node_takes_the_lowest_free_index():
    fake = FakeKubeApi()
    KwokProvider(zones=["z1"]).apply(Kube(fake), policy(), layout(spot=3, on_demand=0))
    fake.objects.pop(("v1", "nodes", "", "kwok-shop-shop-spot-0-m6i-large-1"))
    report = KwokProvider(zones=["z1"]).apply(Kube(fake), policy(), layout(spot=3, on_demand=0))
    assert report.changes == [
        "Node kwok-shop-shop-spot-0-m6i-large-1: created (m6i.large spot, slot spot-0)"
    ]
    assert node_name(policy(), "spot-0", "m6i.large", 1) == "kwok-shop-shop-spot-0-m6i-large-1"
    assert {
        n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in fake.all("v1", "Node")
    } == {"z1"}


def test_a_failed_create_is_one_line_and_the_others_are_created():
    fake = FakeKubeApi()
    fake.fail("POST", NODES, 500, "boom", named="kwok-shop-shop-spot-0-m6i-large-0")
    report = KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    assert report.errors == [
        "Node kwok-shop-shop-spot-0-m6i-large-0: 500 Internal Server Error: boom"
    ]
    assert names(fake) == ["kwok-shop-shop-on-demand-0-m6i-large-0"]


def test_release_cordons_every_node_then_drains_and_deletes_each():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy("other"), layout(spot=1, on_demand=0))
    KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    spot, od = "kwok-shop-shop-spot-0-m6i-large-0", "kwok-shop-shop-on-demand-0-m6i-large-0"
    fake.add(pod("web-1", spot), pod("web-2", od))
    fake.clear()
    report = KwokProvider().release(Kube(fake), policy())
    assert report.errors == []
    assert report.changes == [
        f"Node {od}: cordoned, evicted 1 pods, deleted",
        f"Node {spot}: cordoned, evicted 1 pods, deleted",
    ]
    cordon = {
        "metadata": {"annotations": {"spotwise.dev/draining": "true"}},
        "spec": {"unschedulable": True},
    }

    def eviction(name: str) -> dict:
        return {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": "shop"},
        }

    # Both cordoned before either is drained: an evicted pod cannot land on the next one.
    assert [(r.method, r.path, r.content_type, r.body) for r in fake.writes()] == [
        ("PATCH", f"{NODES}/{od}", "application/strategic-merge-patch+json", cordon),
        ("PATCH", f"{NODES}/{spot}", "application/strategic-merge-patch+json", cordon),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-2/eviction",
            "application/json",
            eviction("web-2"),
        ),
        ("DELETE", f"{NODES}/{od}", None, None),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-1/eviction",
            "application/json",
            eviction("web-1"),
        ),
        ("DELETE", f"{NODES}/{spot}", None, None),
    ]
    assert names(fake) == ["kwok-shop-other-spot-0-m6i-large-0"]
    fake.clear()
    again = KwokProvider().release(Kube(fake), policy())
    assert (again.changes, again.errors, fake.writes()) == ([], [], [])


def test_a_release_held_by_a_disruption_budget_is_finished_by_the_next_attempt():
    fake = FakeKubeApi()
    KwokProvider().apply(Kube(fake), policy(), layout(spot=1, on_demand=1))
    spot, od = "kwok-shop-shop-spot-0-m6i-large-0", "kwok-shop-shop-on-demand-0-m6i-large-0"
    fake.add(pod("web-1", spot))
    fake.fail("POST", "/api/v1/namespaces/shop/pods/web-1/eviction", 429, "budget")
    report = KwokProvider().release(Kube(fake), policy())
    assert report.changes == [f"Node {od}: cordoned, deleted"]
    assert report.errors == [
        f"Node {spot}: cordoned, evicted 0 pods; eviction of shop/web-1 refused "
        "(429 Too Many Requests: budget); left cordoned"
    ]
    assert fake.get("v1", "Node", spot)["spec"]["unschedulable"] is True
    fake._failures.clear()
    report = KwokProvider().release(Kube(fake), policy())
    assert (report.changes, report.errors) == ([f"Node {spot}: evicted 1 pods, deleted"], [])
    assert names(fake) == []


def test_a_release_that_cannot_list_nodes_is_one_error_line():
    fake = FakeKubeApi()
    fake.fail("GET", NODES, 403, "forbidden")
    report = KwokProvider().release(Kube(fake), policy())
    assert (report.changes, report.errors) == ([], ["Nodes of shop.shop: 403 Forbidden: forbidden"])
