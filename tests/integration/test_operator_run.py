"""`spotwise run` end to end: the operator as a subprocess against a real kube-apiserver
(envtest binaries) and a real Prometheus serving backfilled traffic.

The traffic is written from an hour ago to three hours ahead, so "now" always has fresh
samples while the tests run. Nothing runs pods here (no controller-manager, no kubelet):
the API server stores what the operator writes, which is what these tests check — the
plan in status, the Deployment's replicas and placement, the kwok Nodes, the events, the
finalizer. Skipped with the reason when etcd/kube-apiserver or prometheus are missing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from controlplane import ControlPlane, free_port
from kubernetes import client
from kubernetes.client.rest import ApiException
from promserver import PrometheusFactory, Server

# the operator's log line when the Node watch wakes a policy (controller/handlers.py)
REPLANNING = "spot interruption of pool {pool}: re-planning policy {namespace}/{name} now"

pytestmark = pytest.mark.integration

NAMESPACE = "spotwise-it"
INTERVAL = 10  # the CRD's minimum intervalSeconds: ticks come fast
# The interrupted policy's interval: no regular tick can come while the test waits for the
# re-plan, so only the Node watch can make it.
QUIET_INTERVAL = 600
FIRST_TICK_LIMIT = 30.0  # a new policy's first tick runs when its daemon starts
RPS = 120.0  # requests/second the backfilled traffic shows for every workload
LATENCY_S = 0.05
STARTUP_LIMIT = 120.0  # seconds for the operator process to start serving (imports, login)
REPLAN_LIMIT = 10.0  # an interruption must be re-planned within this
T = TypeVar("T")


# -- the traffic ----------------------------------------------------------------------------


def live_openmetrics(
    workloads: list[str], start: int, end: int, step: int = 15, namespace: str = NAMESPACE
) -> str:
    """OpenTelemetry-style HTTP server histograms (the `generic` profile) for one pod of
    each Deployment in `workloads` of `namespace`: RPS requests/second, each taking
    LATENCY_S."""
    lines = ["# TYPE http_server_request_duration_seconds histogram"]
    times = range(start, end + 1, step)
    for name in workloads:
        labels = f'namespace="{namespace}",pod="{name}-6d4cf56db6-x7k2p"'
        for le in ("0.1", "+Inf"):
            lines += [
                f'http_server_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                f"{RPS * (t - start):.3f} {t}"
                for t in times
            ]
        lines += [
            f"http_server_request_duration_seconds_sum{{{labels}}} "
            f"{RPS * LATENCY_S * (t - start):.3f} {t}"
            for t in times
        ]
        lines += [
            f"http_server_request_duration_seconds_count{{{labels}}} {RPS * (t - start):.3f} {t}"
            for t in times
        ]
    return "\n".join([*lines, "# EOF"]) + "\n"


WORKLOADS = ["web", "dry", "spot", "gone", "blind", "bad", "lost"]


@pytest.fixture(scope="module")
def live_blocks(prometheus_factory: PrometheusFactory) -> Path:
    now = int(time.time())
    text = live_openmetrics(WORKLOADS, now - 3600, now + 3 * 3600)
    return prometheus_factory.blocks("operator-live", text)


@pytest.fixture(scope="module")
def live_prometheus(prometheus_factory: PrometheusFactory, live_blocks: Path) -> Server:
    return prometheus_factory.start(live_blocks, name="operator-live")


@pytest.fixture
def doomed_prometheus(prometheus_factory: PrometheusFactory, live_blocks: Path) -> Server:
    """A Prometheus of one test's own, serving the same traffic, for that test to stop."""
    return prometheus_factory.start(live_blocks, name="operator-doomed")


# -- objects --------------------------------------------------------------------------------


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]},
            },
        },
    }


def policy(name: str, prometheus: str, **spec: Any) -> dict[str, Any]:
    """One Deployment `name` on two custom instance types (cheap.large is the cheapest
    spot pool, dear.large the next), the kwok provider, the exact engine."""
    body: dict[str, Any] = {
        "apiVersion": "spotwise.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "mode": "Active",
            "intervalSeconds": INTERVAL,
            "prometheus": {"url": prometheus, "timeoutSeconds": 2},
            "workloads": [
                {
                    "name": name,
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    # Feasible: at 10 rps per replica the model's p95 is about 207 ms.
                    "slo": {"latencyP95Ms": 300},
                    "replicas": {"min": 1, "max": 40},
                    "concurrency": {"min": 1, "max": 16},
                    "metrics": {"profile": "generic"},
                    # Each replica serves 10 rps at one request in flight: 120 rps needs
                    # several replicas, so a scale-up is visible.
                    "capacity": {"serviceRateRps": 10, "contention": 0.05, "coherency": 0.001},
                    "resources": {"cpu": "500m", "memory": "512Mi"},
                }
            ],
            "nodes": {
                "provider": "kwok",
                "catalog": {
                    "builtin": None,
                    "custom": [
                        {
                            "name": "cheap.large",
                            "vcpu": 2,
                            "memoryGiB": 8,
                            "onDemandPrice": 0.10,
                            "spotPrice": 0.02,
                            "interruptionBucket": 0,
                        },
                        {
                            "name": "dear.large",
                            "vcpu": 2,
                            "memoryGiB": 8,
                            "onDemandPrice": 0.12,
                            "spotPrice": 0.05,
                            "interruptionBucket": 0,
                        },
                    ],
                },
            },
            "optimizer": {"engine": "exact"},
            "stabilization": {"scaleDownSeconds": 60, "maxReplicaStep": 20},
        },
    }
    body["spec"].update(spec)
    return body


@dataclass
class Cluster:
    """Clients for the test namespace."""

    api: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def create_policy(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", body
        )

    def get_policy(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, NAMESPACE).spec.replicas)

    def nodes(self, policy_name: str) -> list[Any]:
        selector = f"spotwise.dev/policy={NAMESPACE}.{policy_name}"
        return list(self.core.list_node(label_selector=selector).items)

    def events(self, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(NAMESPACE).items
            if e.involved_object.name == name and e.involved_object.kind == "ScalingPolicy"
        ]


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:
            return str(answer.read().decode())


def eventually(check: Callable[[], T | None], limit: float, what: str, op: Operator) -> T:
    """Poll `check` until it returns something truthy, for at most `limit` seconds."""
    deadline = time.monotonic() + limit
    last: Exception | None = None
    while time.monotonic() < deadline:
        if op.process.poll() is not None:
            pytest.fail(f"the operator exited ({op.process.returncode}):\n{op.tail()}")
        try:
            value = check()
        except (ApiException, AssertionError, KeyError, TypeError) as err:
            last, value = err, None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {limit:.0f}s (last error: {last})\n{op.tail()}")


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, scalingpolicy_crd: dict[str, Any]) -> Iterator[Cluster]:
    with control_plane.api_client() as api:
        c = Cluster(api)
        c.core.create_namespace({"metadata": {"name": NAMESPACE}})
        for name in WORKLOADS:
            c.apps.create_namespaced_deployment(NAMESPACE, deployment(name, 1))
        yield c


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    metrics_port, health_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KUBECONFIG", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spotwise",
                "run",
                "--standalone",
                "-n",
                NAMESPACE,
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--metrics-port",
                str(metrics_port),
                "--liveness",
                f"http://127.0.0.1:{health_port}/healthz",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    op = Operator(process, log, f"http://127.0.0.1:{metrics_port}/metrics")

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{health_port}/healthz", timeout=2
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        eventually(healthy, STARTUP_LIMIT, "the operator's liveness endpoint", op)
        yield op
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return None


def plan_of(cluster: Cluster, name: str) -> dict[str, Any] | None:
    body = cluster.get_policy(name) or {}
    plan = (body.get("status") or {}).get("plan")
    return dict(plan) if plan else None


def pools(nodes: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in nodes:
        labels = n.metadata.labels
        pool = (
            f"{labels['node.kubernetes.io/instance-type']}/{labels['karpenter.sh/capacity-type']}"
        )
        out[pool] = out.get(pool, 0) + 1
    return out


def plan_time(plan: dict[str, Any]) -> float:
    """`decidedAt` of a plan, in Unix seconds."""
    return datetime.fromisoformat(plan["decidedAt"].replace("Z", "+00:00")).timestamp()


def planned_pools(plan: dict[str, Any]) -> dict[str, int]:
    return {f"{n['instanceType']}/{n['capacityType']}": n["count"] for n in plan["nodes"]}


# -- the tests ------------------------------------------------------------------------------


def test_a_policy_is_planned_and_applied_within_two_intervals(cluster, operator, live_prometheus):
    cluster.create_policy(policy("web", live_prometheus.url))
    plan = eventually(lambda: plan_of(cluster, "web"), 2 * INTERVAL, "status.plan", operator)
    body = cluster.get_policy("web")
    assert body is not None
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    ready = condition(body, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Decided")
    assert condition(body, "MetricsAvailable")["status"] == "True"
    degraded = condition(body, "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("False", "WithinPolicy")
    assert "spotwise.dev/finalizer" in body["metadata"]["finalizers"]
    (wp,) = plan["workloads"]
    assert wp["name"] == "web" and wp["replicas"] > 1  # 120 rps needs more than one
    assert plan["nodes"]

    # The Deployment is scaled to the plan, and its pods are placed on the policy's slots.
    eventually(
        lambda: cluster.replicas("web") == wp["replicas"], 2 * INTERVAL, "replicas", operator
    )
    pod_spec = cluster.apps.read_namespaced_deployment("web", NAMESPACE).spec.template.spec
    terms = pod_spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    keys = {e.key for t in terms.node_selector_terms for e in t.match_expressions}
    assert {"spotwise.dev/policy", "spotwise.dev/slot"} <= keys
    assert [c.topology_key for c in pod_spec.topology_spread_constraints] == ["spotwise.dev/slot"]

    # Labelled kwok Nodes exist for every planned pool, as many as planned.
    nodes = eventually(
        lambda: (
            cluster.nodes("web")
            if pools(cluster.nodes("web")) == planned_pools(plan_of(cluster, "web") or {})
            else None
        ),
        2 * INTERVAL,
        "nodes matching the plan",
        operator,
    )
    assert all(n.metadata.annotations.get("kwok.x-k8s.io/node") == "fake" for n in nodes)
    reasons = {e.reason for e in cluster.events("web")}
    assert {"Decided", "Actuated"} <= reasons

    # The operator's own metrics follow the plan.
    text = operator.metrics()
    assert f'spotwise_replicas{{namespace="{NAMESPACE}",policy="web",workload="web"}}' in text


def test_tainting_a_spot_node_replans_within_ten_seconds(cluster, operator, live_prometheus):
    cluster.create_policy(policy("spot", live_prometheus.url, intervalSeconds=QUIET_INTERVAL))
    plan = eventually(
        lambda: (p := plan_of(cluster, "spot")) and "cheap.large/spot" in planned_pools(p) and p,
        FIRST_TICK_LIMIT,
        "a first plan on cheap.large/spot",
        operator,
    )
    node = eventually(
        lambda: next(
            (
                n
                for n in cluster.nodes("spot")
                if n.metadata.labels["node.kubernetes.io/instance-type"] == "cheap.large"
                and n.metadata.labels["karpenter.sh/capacity-type"] == "spot"
            ),
            None,
        ),
        FIRST_TICK_LIMIT,
        "a cheap.large spot node",
        operator,
    )
    tainted_at = time.time()
    assert tainted_at - plan_time(plan) < QUIET_INTERVAL - 2 * REPLAN_LIMIT  # no tick is due
    taints = [*(node.spec.taints or [])]
    taints.append({"key": "spotwise.dev/interruption", "effect": "NoSchedule"})
    cluster.core.patch_node(node.metadata.name, {"spec": {"taints": taints}})
    replanned = eventually(
        lambda: (
            (p := plan_of(cluster, "spot")) and "cheap.large/spot" not in planned_pools(p) and p
        ),
        REPLAN_LIMIT,
        "a plan without the interrupted pool",
        operator,
    )
    assert plan_time(replanned) >= plan_time(plan)  # decidedAt is in whole seconds
    assert any(p.endswith("/spot") or p.endswith("/on-demand") for p in planned_pools(replanned))
    # Woken by the Node watch, not by the interval.
    line = REPLANNING.format(pool="cheap.large/spot", namespace=NAMESPACE, name="spot")
    assert line in operator.tail(400)
    events = eventually(
        lambda: [e for e in cluster.events("spot") if e.reason == "SpotInterruption"],
        REPLAN_LIMIT,
        "a SpotInterruption event",
        operator,
    )
    assert "cheap.large/spot" in events[0].message and events[0].type == "Warning"


def test_dry_run_writes_status_only(cluster, operator, live_prometheus):
    cluster.create_policy(policy("dry", live_prometheus.url, mode="DryRun"))
    plan = eventually(lambda: plan_of(cluster, "dry"), 2 * INTERVAL, "status.plan", operator)
    assert plan["workloads"][0]["replicas"] > 1
    time.sleep(INTERVAL)  # another tick: still nothing applied
    body = cluster.get_policy("dry")
    assert body is not None
    actuated = condition(body, "Actuated")
    assert actuated is not None and (actuated["status"], actuated["reason"]) == ("False", "DryRun")
    assert cluster.replicas("dry") == 1
    assert cluster.nodes("dry") == []
    spec = cluster.apps.read_namespaced_deployment("dry", NAMESPACE).spec.template.spec
    assert spec.affinity is None and not spec.topology_spread_constraints


def test_prometheus_lost_after_a_plan_holds_the_plan(cluster, operator, doomed_prometheus):
    cluster.create_policy(policy("lost", doomed_prometheus.url))
    plan = eventually(lambda: plan_of(cluster, "lost"), 2 * INTERVAL, "status.plan", operator)
    replicas = plan["workloads"][0]["replicas"]
    assert replicas > 1
    eventually(lambda: cluster.replicas("lost") == replicas, 2 * INTERVAL, "replicas", operator)
    eventually(
        lambda: pools(cluster.nodes("lost")) == planned_pools(plan),
        2 * INTERVAL,
        "nodes matching the plan",
        operator,
    )
    nodes = sorted(n.metadata.name for n in cluster.nodes("lost"))

    doomed_prometheus.stop()
    body = eventually(
        lambda: (
            (b := cluster.get_policy("lost"))
            and (c := condition(b, "MetricsAvailable"))
            and c["status"] == "False"
            and b
        ),
        2 * INTERVAL,
        "MetricsAvailable=False",
        operator,
    )
    assert condition(body, "MetricsAvailable")["reason"] == "MetricsUnavailable"
    ready = condition(body, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "HoldingLastPlan")

    # Two more intervals without metrics: nothing moves, and the plan stays as it was.
    deadline = time.monotonic() + 2 * INTERVAL
    while time.monotonic() < deadline:
        assert cluster.replicas("lost") == replicas
        assert sorted(n.metadata.name for n in cluster.nodes("lost")) == nodes
        time.sleep(1.0)
    body = cluster.get_policy("lost")
    assert body is not None and body["status"]["plan"] == plan
    assert condition(body, "MetricsAvailable")["status"] == "False"
    assert condition(body, "Ready")["reason"] == "HoldingLastPlan"
    unavailable = [e for e in cluster.events("lost") if e.reason == "MetricsUnavailable"]
    assert len(unavailable) == 1 and unavailable[0].type == "Warning"  # said once, not per tick


def test_an_unreachable_prometheus_never_scales_down(cluster, operator):
    cluster.apps.patch_namespaced_deployment_scale("blind", NAMESPACE, {"spec": {"replicas": 7}})
    cluster.create_policy(policy("blind", f"http://127.0.0.1:{free_port()}"))
    body = eventually(
        lambda: (
            (b := cluster.get_policy("blind"))
            and (c := condition(b, "MetricsAvailable"))
            and c["status"] == "False"
            and b
        ),
        2 * INTERVAL,
        "MetricsAvailable=False",
        operator,
    )
    assert "plan" not in body["status"]
    time.sleep(INTERVAL)
    assert cluster.replicas("blind") == 7
    assert cluster.nodes("blind") == []
    assert "MetricsUnavailable" in {e.reason for e in cluster.events("blind")}


def test_an_invalid_spec_is_reported_and_the_operator_keeps_running(
    cluster, operator, live_prometheus
):
    bad = policy("bad", live_prometheus.url)
    bad["spec"]["nodes"]["catalog"]["instanceTypes"] = ["no-such.type"]  # passes the CRD schema
    cluster.create_policy(bad)
    body = eventually(
        lambda: (
            (b := cluster.get_policy("bad"))
            and (c := condition(b, "Ready"))
            and c["reason"] == "InvalidSpec"
            and b
        ),
        2 * INTERVAL,
        "Ready=False InvalidSpec",
        operator,
    )
    assert "no-such.type" in condition(body, "Ready")["message"]
    # kopf posts events from a queue, so one may land just after the status.
    eventually(
        lambda: "InvalidSpec" in {e.reason for e in cluster.events("bad")},
        INTERVAL,
        "an InvalidSpec event",
        operator,
    )
    assert operator.process.poll() is None
    assert cluster.replicas("bad") == 1


def test_deleting_a_policy_releases_its_nodes_stops_its_daemon_and_removes_the_finalizer(
    cluster, operator, live_prometheus
):
    cluster.create_policy(policy("gone", live_prometheus.url))
    plan = eventually(lambda: plan_of(cluster, "gone"), 2 * INTERVAL, "status.plan", operator)
    replicas = plan["workloads"][0]["replicas"]
    eventually(lambda: cluster.replicas("gone") == replicas, 2 * INTERVAL, "replicas", operator)
    nodes = eventually(
        lambda: (
            cluster.nodes("gone")
            if pools(cluster.nodes("gone")) == planned_pools(plan_of(cluster, "gone") or {})
            else None
        ),
        2 * INTERVAL,
        "the policy's nodes",
        operator,
    )
    body = cluster.get_policy("gone")
    assert body is not None and "spotwise.dev/finalizer" in body["metadata"]["finalizers"]
    cluster.custom.delete_namespaced_custom_object(
        "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", "gone"
    )
    eventually(
        lambda: cluster.get_policy("gone") is None,
        2 * INTERVAL,
        "the policy gone (finalizer removed)",
        operator,
    )
    # Released before the finalizer went: every kwok Node of the policy is deleted, and an
    # event lists them. The Deployment keeps the replicas it had.
    assert cluster.nodes("gone") == []
    (released,) = eventually(
        lambda: [e for e in cluster.events("gone") if e.reason == "Released"],
        INTERVAL,
        "a Released event",
        operator,
    )
    assert released.type == "Normal"
    names = sorted(n.metadata.name for n in nodes)
    # Workloads are un-placed first (their pods may reschedule), then the Nodes go.
    assert released.message.startswith(
        "; ".join(
            [
                "Deployment spotwise-it/gone: placement removed "
                "(node affinity, slot spread, kwok toleration)",
                *(f"Node {name}: cordoned, deleted" for name in names[:4]),
            ]
        )
    )
    assert cluster.replicas("gone") == replicas
    eventually(
        lambda: "policy spotwise-it/gone deleted: its daemon stopped" in operator.tail(400),
        INTERVAL,
        "the daemon's stop in the log",
        operator,
    )
    with contextlib.suppress(OSError):
        assert 'policy="gone"' not in operator.metrics()
