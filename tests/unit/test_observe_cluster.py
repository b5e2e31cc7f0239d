"""Cluster state: pool names and interruptions from Node objects, and read_cluster through
the real kubernetes client against a FakeApiServer (no kube-apiserver on these machines;
the control-plane tests run the same code against a real one when it is available)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from spotwise.api.loading import parse_policy
from spotwise.api.v1alpha1 import ScalingPolicy
from spotwise.domain import CapacityType, InstanceType, Pool
from spotwise.observe.cluster import (
    INTERRUPTION_TAINTS,
    KARPENTER_DISRUPTED_TAINT,
    POLICY_LABEL,
    KarpenterState,
    interrupted_pool,
    node_pool,
    policy_key,
    read_cluster,
)


def node(
    name: str,
    instance_type: str | None = "m6i.large",
    capacity: str | None = "spot",
    *,
    policy: str = "shop.shop",
    taints: tuple[str, ...] = (),
    deleting: bool = False,
    nodepool: str | None = None,
) -> dict[str, Any]:
    labels = {POLICY_LABEL: policy, "kubernetes.io/os": "linux"}
    if nodepool:
        labels["karpenter.sh/nodepool"] = nodepool
    if instance_type:
        labels["node.kubernetes.io/instance-type"] = instance_type
    if capacity:
        labels["karpenter.sh/capacity-type"] = capacity
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T12:00:00Z"
        metadata["finalizers"] = ["karpenter.sh/termination"]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": {"taints": [{"key": t, "effect": "NoSchedule"} for t in taints]},
    }


# -- pools and interruptions ------------------------------------------------------------------


def test_pool_name_is_the_domain_pool_name() -> None:
    pool = Pool(InstanceType("m6i.large", 2, 8, 0.096, 0.04), CapacityType.SPOT, 0.04)
    assert node_pool(node("n", "m6i.large", "spot")) == pool.name == "m6i.large/spot"
    assert node_pool(node("n", "c6i.xlarge", "on-demand")) == "c6i.xlarge/on-demand"


def test_pool_needs_both_labels() -> None:
    assert node_pool(node("n", None, "spot")) is None
    assert node_pool(node("n", "m6i.large", None)) is None
    assert node_pool(node("n", "m6i.large", "reserved")) is None
    legacy = node("n", None, "spot")
    legacy["metadata"]["labels"]["beta.kubernetes.io/instance-type"] = "m5.large"
    assert node_pool(legacy) == "m5.large/spot"


@pytest.mark.parametrize("taint", sorted(INTERRUPTION_TAINTS - {KARPENTER_DISRUPTED_TAINT}))
def test_each_notice_taint_marks_a_spot_pool(taint: str) -> None:
    assert interrupted_pool(node("n", taints=(taint,))) == "m6i.large/spot"


def test_what_is_not_an_interruption() -> None:
    assert {
        "aws-node-termination-handler/spot-itn",
        "karpenter.sh/disrupted",
        "spotwise.dev/interruption",
    } == INTERRUPTION_TAINTS
    assert interrupted_pool(node("n")) is None
    assert interrupted_pool(node("n", taints=("node.kubernetes.io/unreachable",))) is None
    # Karpenter consolidating an on-demand node is not lost capacity.
    assert (
        interrupted_pool(node("n", capacity="on-demand", taints=("karpenter.sh/disrupted",)))
        is None
    )
    assert interrupted_pool(node("n", None, taints=("spotwise.dev/interruption",))) is None
    assert interrupted_pool({"metadata": {}, "spec": None}) is None
    assert interrupted_pool({}) is None


LIVE = KarpenterState(nodepools=frozenset({"spotwise-shop-shop-spot-0"}), disrupting=frozenset())


def karpenter_node(name: str = "n", nodepool: str = "spotwise-shop-shop-spot-0", **kw: Any):
    return node(name, taints=(KARPENTER_DISRUPTED_TAINT,), nodepool=nodepool, **kw)


def test_karpenter_disrupted_is_an_interruption_only_with_evidence() -> None:
    # Its interruption controller deletes the NodeClaim: the pool is live, no DisruptionReason.
    assert interrupted_pool(karpenter_node(), LIVE) == "m6i.large/spot"
    # No evidence read (the Node watch, Karpenter's API unreadable): not an interruption.
    assert interrupted_pool(karpenter_node()) is None


def test_karpenter_disrupting_on_its_own_accord_is_not_an_interruption() -> None:
    # Consolidation, drift, emptiness: the disruption queue set the NodeClaim's DisruptionReason.
    voluntary = KarpenterState(nodepools=LIVE.nodepools, disrupting=frozenset({"n"}))
    assert interrupted_pool(karpenter_node(), voluntary) is None
    assert interrupted_pool(karpenter_node("other-node"), voluntary) == "m6i.large/spot"


def test_draining_a_nodepool_spotwise_deleted_is_not_an_interruption() -> None:
    assert interrupted_pool(karpenter_node(nodepool="spotwise-shop-shop-spot-1"), LIVE) is None
    assert interrupted_pool(node("n", taints=(KARPENTER_DISRUPTED_TAINT,)), LIVE) is None
    on_demand = karpenter_node(capacity="on-demand", nodepool="spotwise-shop-shop-spot-0")
    assert interrupted_pool(on_demand, LIVE) is None


def test_notice_taints_need_no_evidence() -> None:
    gone = KarpenterState(nodepools=frozenset(), disrupting=frozenset({"n"}))
    itn = node("n", taints=("aws-node-termination-handler/spot-itn",), nodepool="gone")
    assert interrupted_pool(itn, gone) == "m6i.large/spot"


def test_policy_key_is_what_the_providers_write() -> None:
    labels = pytest.importorskip("spotwise.actuate.labels")
    for name, namespace in (("shop", "shop"), ("a" * 63, "b" * 63), ("web", None)):
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        policy = policy_of(metadata)
        assert policy_key(policy) == labels.policy_key(policy)
        assert len(policy_key(policy)) <= 63


# -- read_cluster against a fake API server -------------------------------------------------------


def policy_of(metadata: dict[str, Any] | None = None) -> ScalingPolicy:
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": metadata or {"name": "shop", "namespace": "shop"},
            "spec": {
                "workloads": [
                    {
                        "name": name,
                        "targetRef": target,
                        "slo": {"latencyP95Ms": 200},
                    }
                    for name, target in (
                        ("checkout", {"kind": "Deployment", "name": "checkout"}),
                        ("db", {"kind": "StatefulSet", "name": "db"}),
                        ("web", {"kind": "Service", "name": "web"}),
                        ("gone", {"kind": "Deployment", "name": "gone"}),
                    )
                ]
            },
        }
    )


NOT_FOUND = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "not found",
    "reason": "NotFound",
    "code": 404,
}


class FakeApiServer:
    """A FAKE Kubernetes API server: canned objects at their real paths (an int there is the
    error status to answer), label selectors on the node list, a Status object with 404 for
    anything else. Records request paths."""

    def __init__(self, objects: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
        self.paths: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.paths.append(self.path)
                if url.path == "/api/v1/nodes":
                    wanted = parse_qs(url.query).get("labelSelector", [""])[0]
                    key, _, value = wanted.partition("=")
                    items = [n for n in nodes if n["metadata"]["labels"].get(key) == value]
                    body = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}
                    self.reply(200, body)
                elif isinstance(objects.get(url.path), int):  # an error status to answer
                    code = objects[url.path]
                    self.reply(code, {**NOT_FOUND, "code": code, "reason": "", "message": "no"})
                elif url.path in objects:
                    self.reply(200, objects[url.path])
                else:
                    self.reply(404, NOT_FOUND)

            def reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def scale(name: str, spec_replicas: int | None, status_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {} if spec_replicas is None else {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": f"app={name}"},
    }


OBJECTS = {
    "/apis/apps/v1/namespaces/shop/deployments/checkout/scale": scale("checkout", 4, 3),
    "/apis/apps/v1/namespaces/shop/statefulsets/db/scale": scale("db", None, 2),
    "/apis/serving.knative.dev/v1/namespaces/shop/services/web": {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "status": {
            "latestReadyRevisionName": "web-00002",
            "latestCreatedRevisionName": "web-00003",
        },
    },
    "/apis/serving.knative.dev/v1/namespaces/shop/revisions/web-00002": {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {"name": "web-00002", "namespace": "shop"},
        "status": {"actualReplicas": 3, "desiredReplicas": 5},
    },
}


def nodeclaim(name: str, node_name: str, *, disruption: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "Initialized", "status": "True"}]
    if disruption:
        conditions.append({"type": "DisruptionReason", "status": "True", "reason": disruption})
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {"karpenter.sh/nodepool": "spotwise-shop-shop-spot-0"},
        },
        "status": {"nodeName": node_name, "conditions": conditions},
    }


def nodepool(name: str, *, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": metadata}


NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"
NODECLAIMS = "/apis/karpenter.sh/v1/nodeclaims"
KARPENTER = {
    NODEPOOLS: {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePoolList",
        "metadata": {},
        "items": [
            nodepool("spotwise-shop-shop-spot-0"),
            nodepool("spotwise-shop-shop-spot-1", deleting=True),
        ],
    },
    NODECLAIMS: {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaimList",
        "metadata": {},
        "items": [
            nodeclaim("spot-0-a", "karp-interrupted"),
            nodeclaim("spot-0-b", "karp-consolidated", disruption="Underutilized"),
        ],
    },
}
KARPENTER_NODES = [
    # Interrupted: its NodeClaim deleted by the interruption controller, the Node deleted
    # and then tainted by the termination controller.
    node(
        "karp-interrupted",
        "r6i.large",
        "spot",
        taints=(KARPENTER_DISRUPTED_TAINT,),
        nodepool="spotwise-shop-shop-spot-0",
        deleting=True,
    ),
    node(
        "karp-consolidated",
        "c6a.large",
        "spot",
        taints=(KARPENTER_DISRUPTED_TAINT,),
        nodepool="spotwise-shop-shop-spot-0",
    ),
    node(
        "karp-retired",
        "m7i.large",
        "spot",
        taints=(KARPENTER_DISRUPTED_TAINT,),
        nodepool="spotwise-shop-shop-spot-1",
        deleting=True,
    ),
]
NODES = [
    node("spot-a", "m6i.large", "spot", taints=("aws-node-termination-handler/spot-itn",)),
    node("spot-b", "m6i.large", "spot"),
    node("od-a", "c6i.xlarge", "on-demand", taints=("karpenter.sh/disrupted",)),
    node("od-b", "c6i.xlarge", "on-demand"),
    node("leaving", "c6i.xlarge", "spot", taints=("spotwise.dev/interruption",), deleting=True),
    node("unlabelled", None, None),
    node("other", "m6i.large", "spot", policy="other.shop", taints=("spotwise.dev/interruption",)),
]


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, k8s.ApiClient]]:
    server = FakeApiServer(OBJECTS, NODES)
    client = k8s.ApiClient(k8s.Configuration(host=server.url))
    yield server, client
    client.close()
    server.close()


def test_read_cluster(api: tuple[FakeApiServer, k8s.ApiClient]) -> None:
    server, client = api
    state = read_cluster(client, policy_of())
    # spec.replicas of the scale, falling back to status; Knative: the revision's desired.
    assert dict(state.replicas) == {"checkout": 4, "db": 2, "web": 5}
    assert dict(state.nodes_by_pool) == {"c6i.xlarge/on-demand": 2, "m6i.large/spot": 2}
    assert state.interrupted_pools == {"m6i.large/spot"}
    assert state.problems == ("gone: Deployment shop/gone: not found",)
    listed = [urlparse(p) for p in server.paths if p.startswith("/api/v1/nodes")]
    assert [parse_qs(u.query)["labelSelector"] for u in listed] == [
        ["spotwise.dev/policy=shop.shop"]
    ]


def test_read_cluster_tells_karpenters_interruptions_from_its_own_disruption() -> None:
    server = FakeApiServer({**OBJECTS, **KARPENTER}, NODES + KARPENTER_NODES)
    try:
        with k8s.ApiClient(k8s.Configuration(host=server.url)) as client:
            state = read_cluster(client, policy_of())
    finally:
        server.close()
    # r6i.large: interrupted. c6a.large: consolidation. m7i.large: its NodePool is going.
    assert state.interrupted_pools == {"m6i.large/spot", "r6i.large/spot"}
    assert dict(state.nodes_by_pool) == {
        "c6a.large/spot": 1,
        "c6i.xlarge/on-demand": 2,
        "m6i.large/spot": 2,
    }
    selectors = {
        urlparse(p).path: parse_qs(urlparse(p).query)["labelSelector"]
        for p in server.paths
        if p.startswith("/apis/karpenter.sh/")
    }
    assert selectors == {
        NODEPOOLS: ["app.kubernetes.io/managed-by=spotwise,spotwise.dev/policy=shop.shop"],
        NODECLAIMS: ["karpenter.sh/nodepool in (spotwise-shop-shop-spot-0)"],
    }


def test_karpenter_is_read_only_when_a_spot_node_carries_its_taint(
    api: tuple[FakeApiServer, k8s.ApiClient],
) -> None:
    server, client = api
    read_cluster(client, policy_of())
    assert not [p for p in server.paths if p.startswith("/apis/karpenter.sh/")]


def test_karpenter_not_installed_or_unreadable_gives_no_interruption() -> None:
    for karpenter, problem in (
        ({}, None),  # both lists answer 404: no Karpenter, nothing to report
        ({**KARPENTER, NODECLAIMS: 403}, "Karpenter NodePools and NodeClaims: forbidden"),
    ):
        server = FakeApiServer({**OBJECTS, **karpenter}, NODES + KARPENTER_NODES)
        try:
            with k8s.ApiClient(k8s.Configuration(host=server.url)) as client:
                state = read_cluster(client, policy_of())
        finally:
            server.close()
        assert state.interrupted_pools == {"m6i.large/spot"}  # the notice taint only
        found = [p for p in state.problems if p.startswith("Karpenter")]
        assert [p.partition(" (")[0] for p in found] == ([problem] if problem else [])


def test_knative_service_without_a_ready_revision(api: tuple[FakeApiServer, k8s.ApiClient]) -> None:
    _, client = api
    before = dict(OBJECTS)
    try:
        OBJECTS["/apis/serving.knative.dev/v1/namespaces/shop/services/web"] = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "status": {},
        }
        state = read_cluster(client, policy_of())
    finally:
        OBJECTS.clear()
        OBJECTS.update(before)
    assert "web" not in state.replicas
    assert "web: Service shop/web reports no replicas yet" in state.problems


def test_unreachable_api_server_is_a_problem_not_a_crash() -> None:
    server = FakeApiServer({}, [])
    url = server.url
    server.close()  # nothing listens there now
    config = k8s.Configuration(host=url)
    config.retries = 0
    with k8s.ApiClient(config) as client:
        state = read_cluster(client, policy_of(), request_timeout=2.0)
    assert state.replicas == {} and state.nodes_by_pool == {}
    assert state.interrupted_pools == frozenset()
    assert len(state.problems) == 5  # four workloads and the node list
    assert all("Connection refused" in p or "Errno" in p for p in state.problems)
