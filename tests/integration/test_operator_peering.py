"""Two `spotwise run` replicas peering (not standalone) against a real kube-apiserver: one
serves and the other waits; when the one serving is killed, the other takes over.

The peering is kopf's: the KopfPeering CRD of the chart and a `KopfPeering` named
`spotwise` in the served namespace, as `manifests/operator.yaml` and the chart make them.
Each operator picks a random priority; the lower one pauses ("Pausing operations in favour
of ..." in its log) and its daemons stop. A peer killed without a goodbye stays in the
peering object until its lifetime (kopf's default, 60 s) runs out; then the other resumes.
Which process serves is told by what only a serving process does: it counts decisions
on its own /metrics, and a spec change reaches `status.observedGeneration` only through
it. Skipped with the reason when etcd/kube-apiserver or prometheus are missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import REPO_ROOT, ControlPlane, apply_crd, free_port
from kubernetes import client
from kubernetes.client.rest import ApiException
from promserver import PrometheusFactory, Server
from test_operator_run import deployment, live_openmetrics, policy

pytestmark = pytest.mark.integration

NAMESPACE = "spotwise-peer"
NAME = "peer"
PEERING_CRD = REPO_ROOT / "charts" / "spotwise" / "crds" / "kopf.dev_kopfpeerings.yaml"
INTERVAL = 10
STARTUP_LIMIT = 120.0  # seconds for both operators to start and settle who serves
LIFETIME = 60  # kopf's peering lifetime: a peer silent this long is dead
TAKEOVER_LIMIT = LIFETIME + 45.0  # the lifetime, then resuming, a tick and a status write
PAUSING = "Pausing operations in favour of"
RESUMING = "Resuming operations after the pause"


class Replica:
    """One `spotwise run -n spotwise-peer` process (in a session of its own, so that
    killing it kills its solver worker too, as killing a pod would)."""

    def __init__(self, name: str, kubeconfig: Path, log: Path) -> None:
        self.name = name
        self.log = log
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBECONFIG", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spotwise", "run", "-n", NAMESPACE,
                 "--kubeconfig", str(kubeconfig), "--metrics-port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def decisions(self) -> float:
        """This process's `spotwise_decisions_total` for the policy, all outcomes."""
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:
            text = answer.read().decode()
        pattern = rf'^spotwise_decisions_total\{{[^}}]*policy="{NAME}"[^}}]*\}} (\S+)$'
        return sum(float(m[1]) for m in re.finditer(pattern, text, re.M))

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(check: Callable[[], Any], limit: float, what: str, replicas: list[Replica]) -> Any:
    deadline = time.monotonic() + limit
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (ApiException, OSError, KeyError, TypeError) as err:
            last, value = err, None
        if value:
            return value
        time.sleep(0.5)
    logs = "\n".join(f"--- {r.name}:\n{r.text()[-3000:]}" for r in replicas)
    pytest.fail(f"{what}: not within {limit:.0f}s (last error: {last})\n{logs}")


@pytest.fixture(scope="module")
def peer_prometheus(prometheus_factory: PrometheusFactory) -> Server:
    now = int(time.time())
    text = live_openmetrics([NAME], now - 3600, now + 3600, namespace=NAMESPACE)
    return prometheus_factory.start(
        prometheus_factory.blocks("operator-peer", text), name="operator-peer"
    )


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane, scalingpolicy_crd: dict[str, Any]) -> Iterator[Any]:
    with control_plane.api_client() as api:
        apply_crd(api, yaml.safe_load(PEERING_CRD.read_text()))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "kopf.dev",
            "v1",
            NAMESPACE,
            "kopfpeerings",
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "spotwise"}},
        )
        body = deployment(NAME)
        body["metadata"]["namespace"] = NAMESPACE
        client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, body)
        yield api


def get_policy(api: Any) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", NAME
    )
    return found


def change_spec(api: Any, step: int) -> int:
    """Change the spec (a new generation, which only a serving operator can observe);
    returns the new generation."""
    changed = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "spotwise.dev",
        "v1alpha1",
        NAMESPACE,
        "scalingpolicies",
        NAME,
        {"spec": {"stabilization": {"maxReplicaStep": step}}},
    )
    return int(changed["metadata"]["generation"])


def observed(api: Any, generation: int) -> bool:
    status = get_policy(api).get("status") or {}
    return bool(status.get("observedGeneration") == generation and status.get("plan"))


def test_one_replica_serves_and_the_other_takes_over_when_it_dies(
    api, control_plane, peer_prometheus, tmp_path
):
    body = policy(NAME, peer_prometheus.url, mode="DryRun")
    body["metadata"]["namespace"] = NAMESPACE
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", body
    )
    replicas = [Replica(n, control_plane.kubeconfig, tmp_path / f"{n}.log") for n in "ab"]
    try:
        # Exactly one pauses in favour of the other; the other serves: it plans the policy.
        paused = wait_for(
            lambda: [r for r in replicas if PAUSING in r.text()],
            STARTUP_LIMIT,
            "one operator pausing for its peer",
            replicas,
        )
        assert len(paused) == 1, [r.name for r in paused]
        (standby,) = paused
        (active,) = [r for r in replicas if r is not standby]
        assert PAUSING not in active.text()
        generation = change_spec(api, 19)
        wait_for(lambda: observed(api, generation), 3 * INTERVAL, "status of the change", replicas)

        # Over two intervals only the active one decides; the standby's counters stand still.
        before = {r.name: r.decisions() for r in replicas}
        time.sleep(2 * INTERVAL)
        after = {r.name: r.decisions() for r in replicas}
        assert after[active.name] > before[active.name]
        assert after[standby.name] == before[standby.name]
        assert active.process.poll() is None and standby.process.poll() is None

        # The active one dies without a goodbye; the standby resumes once its peering
        # record expires, and serves: the next change reaches the status through it.
        active.kill()
        generation = change_spec(api, 18)
        wait_for(
            lambda: RESUMING in standby.text() and observed(api, generation),
            TAKEOVER_LIMIT,
            "the standby taking over",
            replicas,
        )
        assert standby.decisions() > after[standby.name]
        assert f"serving policy {NAMESPACE}/{NAME}" in standby.text().split(RESUMING, 1)[1]
    finally:
        for r in replicas:
            r.stop()
