"""The production shell's composition: connect, read metrics, read the cluster, build the
observation, act. The observe/actuate functions are replaced by named fakes here (their
network code is tested against real servers); `observation` is the real one."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from test_controller_tick import policy_body

from spotwise.actuate import Actuation
from spotwise.api import parse_policy
from spotwise.controller.shell import CLIENT_TTL_SECONDS, Calls, KubeShell
from spotwise.controller.tick import LOOKBACK_SECONDS, STEP_SECONDS
from spotwise.observe import ClusterState, Metrics, WorkloadMetrics, observation

API = object()  # stands for the kubernetes ApiClient: the fakes below never use it


class FakeObserveCalls:
    """Named fakes of spotwise.observe's connect/read_metrics/read_cluster and of
    spotwise.actuate.actuate/release, recording their calls."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, str]] = []
        self.reads: list[dict[str, Any]] = []
        self.metrics: Metrics | Exception = Metrics(
            (WorkloadMetrics("api", (100.0, 110.0, 120.0), 80.0, 4.0),), True, ""
        )
        self.cluster = ClusterState(
            replicas={"api": 3},
            nodes_by_pool={"cheap.large/spot": 2},
            interrupted_pools=frozenset({"cheap.large/spot"}),
            problems=("Deployment team/api: forbidden",),
        )
        self.acted: list[Any] = []
        self.released: list[Any] = []

    def connect(self, spec: Any, *, secrets: Any, namespace: str) -> str:
        self.connects.append((namespace, spec.url))
        return f"client-{len(self.connects)}"

    def read_metrics(self, spec: Any, client: Any, **kw: Any) -> Metrics:
        self.reads.append({"client": client, **kw})
        if isinstance(self.metrics, Exception):
            raise self.metrics
        return self.metrics

    def read_cluster(self, api: Any, policy: Any) -> ClusterState:
        assert api is API
        return self.cluster

    def actuate(self, api: Any, policy: Any, plan: Any) -> Actuation:
        self.acted.append(plan)
        return Actuation(changes=("Deployment team/api: replicas",), errors=())

    def release(self, api: Any, policy: Any) -> Actuation:
        assert api is API
        self.released.append(policy)
        return Actuation(
            changes=("Node kwok-team-shop-spot-0-cheap-large-0: cordoned, deleted",),
            errors=("Node kwok-team-shop-spot-0-cheap-large-1: 500 Internal Server Error",),
        )

    def calls(self) -> Calls:
        return Calls(
            connect=self.connect,
            read_metrics=self.read_metrics,
            read_cluster=self.read_cluster,
            observation=observation,
            actuate=self.actuate,
            release=self.release,
        )


def policy(**spec: Any) -> Any:
    body = policy_body(prometheus={"url": "http://prometheus.monitoring:9090"}, **spec)
    return parse_policy(copy.deepcopy(body))


@pytest.fixture
def fakes() -> FakeObserveCalls:
    return FakeObserveCalls()


def test_observe_joins_metrics_and_cluster_state(fakes):
    now = [1_700_000_000.0]
    shell = KubeShell(API, calls=fakes.calls(), clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        obs = asyncio.run(shell.observe(policy(), now[0]))
    finally:
        shell.close()
    assert obs.metrics_available and obs.at == now[0] and obs.step_seconds == STEP_SECONDS
    (w,) = obs.workloads
    assert (w.name, w.request_rates, w.current_replicas) == ("api", (100.0, 110.0, 120.0), 3)
    assert obs.interrupted_pools == {"cheap.large/spot"}
    assert fakes.reads == [
        {
            "client": "client-1",
            "namespace": "team",
            "now": now[0],
            "lookback_seconds": LOOKBACK_SECONDS,
            "step_seconds": STEP_SECONDS,
        }
    ]


def test_prometheus_clients_are_reused_then_renewed(fakes):
    now = [1_700_000_000.0]
    shell = KubeShell(API, calls=fakes.calls(), clock=lambda: now[0])  # type: ignore[arg-type]
    p = policy()
    for _ in range(3):
        shell.observe_now(p, now[0])
        now[0] += 60
    assert len(fakes.connects) == 1
    now[0] += CLIENT_TTL_SECONDS  # rotated Secrets are picked up
    shell.observe_now(p, now[0])
    other = policy()
    other.spec.prometheus.url = "http://other:9090"  # another server: another client
    shell.observe_now(other, now[0])
    shell.close()
    assert fakes.connects == [
        ("team", "http://prometheus.monitoring:9090"),
        ("team", "http://prometheus.monitoring:9090"),
        ("team", "http://other:9090"),
    ]


def test_unavailable_metrics_pass_through(fakes):
    fakes.metrics = Metrics.unavailable("http://prometheus.monitoring:9090: connection refused")
    shell = KubeShell(API, calls=fakes.calls())  # type: ignore[arg-type]
    obs = shell.observe_now(policy(), 1.0)
    shell.close()
    assert not obs.metrics_available
    assert "connection refused" in obs.metrics_message
    assert obs.workloads[0].current_replicas == 3  # cluster state still read


def test_an_observe_layer_that_raises_still_yields_an_observation(fakes):
    fakes.metrics = RuntimeError("boom")
    shell = KubeShell(API, calls=fakes.calls())  # type: ignore[arg-type]
    obs = shell.observe_now(policy(), 1.0)
    shell.close()
    assert not obs.metrics_available
    assert obs.metrics_message == "observation failed: RuntimeError: boom"


def test_no_prometheus_means_no_demand(fakes):
    p = parse_policy(policy_body())  # spec.prometheus unset
    shell = KubeShell(API, calls=fakes.calls())  # type: ignore[arg-type]
    obs = shell.observe_now(p, 1.0)
    shell.close()
    assert not obs.metrics_available and "spec.prometheus is not set" in obs.metrics_message
    assert fakes.connects == [] and fakes.reads == []


def test_actuation_is_reported_as_lines(fakes):
    shell = KubeShell(API, calls=fakes.calls())  # type: ignore[arg-type]
    acted = asyncio.run(shell.actuate(policy(), "the-plan"))  # type: ignore[arg-type]
    shell.close()
    assert acted.changes == ("Deployment team/api: replicas",) and acted.errors == ()
    assert fakes.acted == ["the-plan"]


def test_a_release_is_reported_as_lines(fakes):
    shell = KubeShell(API, calls=fakes.calls())  # type: ignore[arg-type]
    p = policy()
    acted = asyncio.run(shell.release(p))
    shell.close()
    assert acted.changes == ("Node kwok-team-shop-spot-0-cheap-large-0: cordoned, deleted",)
    assert acted.errors == ("Node kwok-team-shop-spot-0-cheap-large-1: 500 Internal Server Error",)
    assert fakes.released == [p]


def test_observe_passes_the_spec_so_written_capacity_is_never_refitted(fakes):
    seen: list[Any] = []

    def recording_observation(*args: Any, **kw: Any) -> Any:
        seen.append(kw.get("spec"))
        return observation(*args, **kw)

    calls = fakes.calls()
    calls = Calls(**{**calls.__dict__, "observation": recording_observation})
    shell = KubeShell(API, calls=calls, clock=lambda: 1_700_000_000.0)  # type: ignore[arg-type]
    p = policy()
    try:
        shell.observe_now(p, 1_700_000_000.0)
    finally:
        shell.close()
    assert seen == [p.spec]
