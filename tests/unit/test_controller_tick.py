"""The controller's tick over fake ports: status diffing, condition transitions, events,
invalid specs, Prometheus down, interruptions, modes, restarts.

Only the network is faked (`FakeCluster`: canned observations, recorded actuations, status
patches applied to an in-memory object). The decision is the real `decide()` with the
exact engine, the interruption check is the real `spotwise.observe.interrupted_pool`, the
metrics are a real prometheus-client registry. Time is a fake clock the tests move.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest

from spotwise.controller.interruptions import InterruptionWatch
from spotwise.controller.solver import InlineSolver, Solved
from spotwise.controller.status import restore
from spotwise.controller.telemetry import Telemetry
from spotwise.controller.tick import (
    STEP_SECONDS,
    Acted,
    Policies,
    PolicyRuntime,
    Shell,
    TickResult,
    check_spec,
    load,
    release,
    tick,
)
from spotwise.decide import Event, GuardState, Observation, WorkloadObservation
from spotwise.domain import Plan
from spotwise.observe import interrupted_pool

T0 = 1_700_000_000.0  # the fake clock's start, in epoch seconds


def policy_body(**spec: Any) -> dict[str, Any]:
    """One workload `api` on two custom instance types, exact engine (fast, deterministic):
    cheap.large is the cheapest pool on spot, dear.large the fallback."""
    body: dict[str, Any] = {
        "apiVersion": "spotwise.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "shop", "namespace": "team", "uid": "u-1", "generation": 1},
        "spec": {
            "mode": "Active",
            "intervalSeconds": 60,
            "workloads": [
                {
                    "name": "api",
                    "targetRef": {"kind": "Deployment", "name": "api"},
                    "slo": {"latencyP95Ms": 200},
                    "replicas": {"min": 1, "max": 60},
                    "concurrency": {"min": 1, "max": 64},
                    "capacity": {"serviceRateRps": 25, "contention": 0.03, "coherency": 0.0005},
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
                            "spotPrice": 0.06,
                            "interruptionBucket": 0,
                        },
                    ],
                },
            },
            "objective": {"headroom": 0.1},
            "optimizer": {"engine": "exact"},
            "stabilization": {"scaleDownSeconds": 300, "maxReplicaStep": 100},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


class FakeCluster:
    """A named fake of everything a tick reaches over the network. `rps` is the request
    rate Prometheus would report (None: Prometheus is down); `tainted` the pools whose
    nodes carry an interruption taint; status patches are merged into `body`."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.now = T0
        self.rps: float | None = 300.0
        self.tainted: frozenset[str] = frozenset()
        self.actuation: Acted = Acted(changes=("Deployment team/api: replicas 1 -> N",))
        self.release_result: Acted | Exception = Acted(
            changes=("Node kwok-team-shop-spot-0-cheap-large-0: cordoned, deleted",)
        )
        self.observed: list[float] = []
        self.actuated: list[Plan] = []
        self.released: list[Any] = []  # the policies whose nodes were released
        self.patches: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.fail_patches = False

    async def observe(self, policy: Any, at: float) -> Observation:
        self.observed.append(at)
        if self.rps is None:
            return Observation(
                at=at,
                step_seconds=STEP_SECONDS,
                workloads=(),
                metrics_available=False,
                metrics_message="http://prometheus:9090: connection refused",
                interrupted_pools=self.tainted,
            )
        return Observation(
            at=at,
            step_seconds=STEP_SECONDS,
            workloads=(WorkloadObservation("api", (self.rps,) * 30, None),),
            interrupted_pools=self.tainted,
        )

    async def actuate(self, policy: Any, plan: Plan) -> Acted:
        self.actuated.append(plan)
        return self.actuation

    async def release(self, policy: Any) -> Acted:
        self.released.append(policy)
        if isinstance(self.release_result, Exception):
            raise self.release_result
        return self.release_result

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        assert (namespace, name) == ("team", "shop")
        if self.fail_patches:
            raise ConnectionError("API server unreachable")
        self.patches.append(copy.deepcopy(patch))
        status = self.body.setdefault("status", {})
        status.update(copy.deepcopy(patch["status"]))  # a merge patch of top-level fields

    def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        assert body["metadata"]["name"] == "shop"
        self.events.append(event)

    def shell(self, solver: Any = None) -> Shell:
        return Shell(
            observe=self.observe,
            actuate=self.actuate,
            release=self.release,
            patch_status=self.patch_status,
            post_event=self.post_event,
            solver=solver or InlineSolver(),
            telemetry=Telemetry(),
            clock=lambda: self.now,
        )


def run_tick(fake: FakeCluster, rt: PolicyRuntime, shell: Shell) -> TickResult:
    return asyncio.run(tick(fake.body, rt, shell))


def cond(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in body["status"]["conditions"] if c["type"] == kind]
    assert len(found) == 1, body["status"]["conditions"]
    return dict(found[0])


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events]


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster(policy_body())


@pytest.fixture
def rt() -> PolicyRuntime:
    return PolicyRuntime("team", "shop")


# -- the happy path and status diffing --------------------------------------------------------


def test_first_tick_writes_plan_conditions_and_events(fake, rt):
    shell = fake.shell()
    result = run_tick(fake, rt, shell)
    assert result.outcome == "solved"
    status = fake.body["status"]
    assert status["observedGeneration"] == 1
    plan = status["plan"]
    assert plan["engine"] == "exact" and plan["feasible"] is True
    assert plan["workloads"][0]["name"] == "api" and plan["workloads"][0]["replicas"] >= 1
    assert plan["nodes"] and all(n["count"] > 0 for n in plan["nodes"])
    assert 0 < plan["savingsRatio"] < 1  # spot is cheaper than the all-on-demand reference
    assert plan["onDemandHourlyCost"] > plan["hourlyCost"]
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "MetricsAvailable",
        "Actuated",
        "Degraded",
    ]
    assert (cond(fake.body, "Ready")["status"], cond(fake.body, "Ready")["reason"]) == (
        "True",
        "Decided",
    )
    assert cond(fake.body, "MetricsAvailable")["status"] == "True"
    assert cond(fake.body, "Actuated")["reason"] == "Applied"
    assert cond(fake.body, "Degraded")["status"] == "False"
    assert all(c["lastTransitionTime"] == "2023-11-14T22:13:20Z" for c in status["conditions"])
    assert len(fake.actuated) == 1
    assert fake.actuated[0].workload("api").replicas == plan["workloads"][0]["replicas"]
    assert reasons(fake.events) == ["Decided", "Actuated"]


def test_an_unchanged_tick_patches_nothing_and_says_nothing(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    fake.patches.clear()
    fake.events.clear()
    fake.actuation = Acted()  # the cluster now matches the plan
    for _ in range(2):
        fake.now += 60
        result = run_tick(fake, rt, shell)
        assert result.outcome == "kept"
        assert result.patch == {}
    assert len(fake.actuated) == 3  # applied every tick (idempotent), written never
    assert fake.patches == []
    assert fake.events == []  # no Decided for the same plan, no Actuated without changes


def test_only_changed_fields_are_patched(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    times = [c["lastTransitionTime"] for c in fake.body["status"]["conditions"]]
    fake.now += 60
    fake.rps = 900.0  # more demand: a new plan; Ready's message names its cost
    result = run_tick(fake, rt, shell)
    assert result.outcome == "solved"
    assert set(fake.patches[-1]["status"]) == {"plan", "conditions"}  # not observedGeneration
    assert [c["lastTransitionTime"] for c in fake.body["status"]["conditions"]] == times
    assert reasons(fake.events)[-2:] == ["Decided", "Actuated"]


def test_a_new_generation_is_observed(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    fake.body["metadata"]["generation"] = 2
    fake.body["spec"]["objective"]["headroom"] = 0.12
    fake.now += 60
    run_tick(fake, rt, shell)
    assert fake.body["status"]["observedGeneration"] == 2
    assert all(
        c.get("observedGeneration") == 2
        for c in fake.body["status"]["conditions"]
        if c["reason"] != "NotEvaluated"
    )


# -- conditions ---------------------------------------------------------------------------------


def test_transition_time_moves_only_when_the_status_flips(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    first = {c["type"]: c["lastTransitionTime"] for c in fake.body["status"]["conditions"]}
    fake.now += 60
    fake.rps = None  # Prometheus goes away
    run_tick(fake, rt, shell)
    metrics = cond(fake.body, "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "MetricsUnavailable")
    assert "connection refused" in metrics["message"]
    assert metrics["lastTransitionTime"] == "2023-11-14T22:14:20Z"  # flipped: T0 + 60
    ready = cond(fake.body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "HoldingLastPlan")
    assert ready["lastTransitionTime"] == first["Ready"]  # new reason, same status
    fake.now += 60
    run_tick(fake, rt, shell)
    assert cond(fake.body, "MetricsAvailable")["lastTransitionTime"] == "2023-11-14T22:14:20Z"
    fake.now += 60
    fake.rps = 300.0  # back
    run_tick(fake, rt, shell)
    back = cond(fake.body, "MetricsAvailable")
    assert (back["status"], back["lastTransitionTime"]) == ("True", "2023-11-14T22:16:20Z")


def test_over_budget_is_degraded(fake, rt):
    fake.body["spec"]["objective"]["maxHourlyCost"] = 0.01
    run_tick(fake, rt, fake.shell())
    degraded = cond(fake.body, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "OverBudget")
    assert fake.body["status"]["plan"]["overBudget"] is True
    assert len(fake.actuated) == 1  # the SLO floor is still applied


# -- Prometheus down ----------------------------------------------------------------------------


def test_prometheus_down_holds_the_plan_and_never_scales_down(fake, rt):
    shell = fake.shell()
    fake.rps = 2000.0
    run_tick(fake, rt, shell)
    plan = copy.deepcopy(fake.body["status"]["plan"])
    fake.events.clear()
    for _ in range(3):
        fake.now += 600  # well past the scale-down window
        fake.rps = None
        result = run_tick(fake, rt, shell)
        assert result.outcome == "held"
    assert len(fake.actuated) == 1  # nothing applied while blind
    assert fake.body["status"]["plan"] == plan
    assert reasons(fake.events) == ["MetricsUnavailable"]  # said once, not every tick
    assert fake.events[0].type == "Warning"


def test_prometheus_down_before_any_plan_writes_no_plan(fake, rt):
    fake.rps = None
    result = run_tick(fake, rt, fake.shell())
    assert result.outcome == "held"
    assert "plan" not in fake.body["status"]
    assert cond(fake.body, "Ready")["reason"] == "NoPlanYet"
    assert fake.actuated == []


# -- invalid specs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"intervalSeconds": 5}, "spec.intervalSeconds"),
        (
            {"workloads": [{"name": "api", "targetRef": {"kind": "Deployment", "name": "api"}}]},
            "spec.workloads[0].slo: required",
        ),
        ({"nodes": {"catalog": {"instanceTypes": ["no-such.type"]}}}, "no-such.type"),
        ({"mode": "Sometimes"}, "spec.mode"),
    ],
)
def test_an_invalid_spec_becomes_a_condition_and_one_event(fake, rt, spec, needle):
    fake.body["spec"].update(spec)
    shell = fake.shell()
    result = run_tick(fake, rt, shell)
    assert result.outcome == "invalid"
    ready = cond(fake.body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert needle in ready["message"] and "\n" not in ready["message"]
    assert [(e.type, e.reason) for e in fake.events] == [("Warning", "InvalidSpec")]
    assert fake.observed == [] and fake.actuated == []
    fake.now += 60
    again = run_tick(fake, rt, shell)  # no retry storm: same status, no new event
    assert again.patch == {} and len(fake.events) == 1
    assert (
        shell.telemetry.registry.get_sample_value(
            "spotwise_policy_invalid", {"namespace": "team", "policy": "shop"}
        )
        == 1.0
    )


def test_a_fixed_spec_recovers(fake, rt):
    good = copy.deepcopy(fake.body["spec"])
    fake.body["spec"]["intervalSeconds"] = 5
    shell = fake.shell()
    assert asyncio.run(check_spec(fake.body, rt, shell)) is False
    assert cond(fake.body, "Ready")["reason"] == "InvalidSpec"
    fake.body["spec"] = good
    assert asyncio.run(check_spec(fake.body, rt, shell)) is True
    fake.now += 10
    run_tick(fake, rt, shell)
    assert cond(fake.body, "Ready")["reason"] == "Decided"
    assert "plan" in fake.body["status"]


def test_a_spec_that_is_not_a_mapping_is_invalid(fake, rt):
    fake.body["spec"] = "nonsense"
    assert run_tick(fake, rt, fake.shell()).outcome == "invalid"
    assert cond(fake.body, "Ready")["message"].startswith("spec: must be a mapping")


def test_a_status_from_elsewhere_never_makes_a_good_spec_invalid(fake, rt):
    fake.body["status"] = {"plan": {"engine": 3}, "kopf": {"progress": {}}}
    result = run_tick(fake, rt, fake.shell())
    assert result.outcome == "solved"
    assert fake.body["status"]["plan"]["engine"] == "exact"


# -- modes --------------------------------------------------------------------------------------


def test_dry_run_writes_status_only(fake, rt):
    fake.body["spec"]["mode"] = "DryRun"
    shell = fake.shell()
    for _ in range(2):
        run_tick(fake, rt, shell)
        fake.now += 60
        fake.rps = 900.0
    assert fake.actuated == []
    assert "plan" in fake.body["status"]
    actuated = cond(fake.body, "Actuated")
    assert (actuated["status"], actuated["reason"]) == ("False", "DryRun")
    assert "Actuated" not in reasons(fake.events)
    assert reasons(fake.events).count("Decided") == 2


def test_paused_reads_nothing_and_changes_nothing(fake, rt):
    fake.body["spec"]["mode"] = "Paused"
    result = run_tick(fake, rt, fake.shell())
    assert result.outcome == "paused"
    assert fake.observed == [] and fake.actuated == []
    assert cond(fake.body, "Ready")["reason"] == "Paused"
    assert cond(fake.body, "Actuated")["reason"] == "Paused"


# -- interruptions ------------------------------------------------------------------------------


def tainted_node(name: str, instance_type: str, label: str = "team.shop") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "spotwise.dev/policy": label,
                "node.kubernetes.io/instance-type": instance_type,
                "karpenter.sh/capacity-type": "spot",
            },
        },
        "spec": {"taints": [{"key": "spotwise.dev/interruption", "effect": "NoSchedule"}]},
    }


def spot_pools(plan: Mapping[str, Any]) -> set[str]:
    return {
        f"{n['instanceType']}/{n['capacityType']}"
        for n in plan["nodes"]
        if n["capacityType"] == "spot"
    }


def test_an_interruption_wakes_the_policy_and_replans_without_the_pool(fake):
    policies = Policies()
    rt = policies.ensure("team", "shop")
    other = policies.ensure("team", "other")
    watch = InterruptionWatch(policies, interrupted_pool)
    shell = fake.shell()
    run_tick(fake, rt, shell)
    assert spot_pools(fake.body["status"]["plan"]) == {"cheap.large/spot"}
    fake.events.clear()

    woken = watch.node_event("MODIFIED", tainted_node("n-1", "cheap.large"))
    assert [(w.name, pool) for w, pool in woken] == [("shop", "cheap.large/spot")]
    assert rt.wake.is_set() and not other.wake.is_set()
    # The same node updated again (a heartbeat) is not a new interruption.
    assert watch.node_event("MODIFIED", tainted_node("n-1", "cheap.large")) == []

    fake.now += 5  # woken early, not at the next interval
    result = run_tick(fake, rt, shell)
    assert result.outcome == "solved"
    assert not rt.wake.is_set()
    assert "cheap.large/spot" not in spot_pools(fake.body["status"]["plan"])
    assert fake.actuated[-1].nodes and all(
        n.pool != "cheap.large/spot" for n in fake.actuated[-1].nodes
    )
    assert [e for e in fake.events if e.reason == "SpotInterruption"] == [
        Event(
            "Warning",
            "SpotInterruption",
            "pool cheap.large/spot is being interrupted: re-planned without it; no new "
            "capacity there for 600s",
        )
    ]
    # The node stays tainted and the cluster keeps reporting it: announced once.
    fake.tainted = frozenset({"cheap.large/spot"})
    fake.now += 60
    run_tick(fake, rt, shell)
    assert reasons(fake.events).count("SpotInterruption") == 1
    assert "cheap.large/spot" not in spot_pools(fake.body["status"]["plan"])


def test_untainted_unlabelled_and_deleted_nodes_wake_nobody():
    policies = Policies()
    rt = policies.ensure("team", "shop")
    watch = InterruptionWatch(policies, interrupted_pool)
    clean = tainted_node("n-1", "cheap.large")
    clean["spec"]["taints"] = []
    assert watch.node_event("MODIFIED", clean) == []
    on_demand = tainted_node("n-2", "cheap.large")
    on_demand["metadata"]["labels"]["karpenter.sh/capacity-type"] = "on-demand"
    assert watch.node_event("MODIFIED", on_demand) == []
    assert watch.node_event("MODIFIED", tainted_node("n-3", "cheap.large", "team.else")) == []
    assert watch.node_event("DELETED", tainted_node("n-4", "cheap.large")) == []
    # The bare name is not the label: a policy "shop" in another namespace must not wake.
    assert watch.node_event("ADDED", tainted_node("n-5", "cheap.large", "shop")) == []
    assert not rt.wake.is_set()


def test_a_node_tainted_again_after_recovery_is_reported_again():
    policies = Policies()
    rt = policies.ensure("team", "shop")
    watch = InterruptionWatch(policies, interrupted_pool)
    node = tainted_node("n-1", "cheap.large")
    assert watch.node_event("ADDED", node)
    rt.take_interruptions()
    clean = copy.deepcopy(node)
    clean["spec"]["taints"] = []
    assert watch.node_event("MODIFIED", clean) == []
    assert watch.node_event("MODIFIED", node)
    assert rt.take_interruptions() == {"cheap.large/spot"}


# -- restarts and failures ----------------------------------------------------------------------


def test_a_restart_resumes_from_the_plan_in_status(fake, rt):
    shell = fake.shell()
    fake.rps = 2000.0
    run_tick(fake, rt, shell)
    written = fake.body["status"]["plan"]
    before = written["workloads"][0]["replicas"]
    assert restore(fake.body["status"]) is not None

    # A new process: fresh runtime, Prometheus down. The written plan is held, not dropped.
    fresh = PolicyRuntime("team", "shop")
    fake.now += 60
    fake.rps = None
    result = run_tick(fake, fresh, shell)
    assert result.outcome == "held"
    assert result.plan is not None and result.plan.workload("api").replicas == before
    assert fake.body["status"]["plan"] == written

    # Metrics return with far less demand: no scale-down inside the window it was decided in.
    newer = PolicyRuntime("team", "shop")
    fake.now += 60
    fake.rps = 10.0
    run_tick(fake, newer, shell)
    assert fake.actuated[-1].workload("api").replicas == before
    fake.now += 600  # past the scale-down window: now it may shrink
    run_tick(fake, newer, shell)
    assert fake.actuated[-1].workload("api").replicas < before


class BrokenSolver(InlineSolver):
    async def solve(self, *args: Any, **kwargs: Any) -> Solved:
        raise RuntimeError("solver process died")


def test_a_failing_solver_is_a_condition_not_a_crash(fake, rt):
    result = run_tick(fake, rt, fake.shell(BrokenSolver()))
    assert result.outcome == "failed"
    ready = cond(fake.body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DecisionFailed")
    assert "solver process died" in ready["message"]
    assert fake.actuated == []


def test_actuation_errors_are_reported_and_counted(fake, rt):
    fake.actuation = Acted(errors=("Deployment team/api: not found",))
    shell = fake.shell()
    run_tick(fake, rt, shell)
    actuated = cond(fake.body, "Actuated")
    assert (actuated["status"], actuated["reason"]) == ("False", "ActuationFailed")
    assert "not found" in actuated["message"]
    assert ("Warning", "ActuationFailed") in [(e.type, e.reason) for e in fake.events]
    fake.now += 60
    run_tick(fake, rt, shell)  # the same error again: counted, not re-announced
    assert reasons(fake.events).count("ActuationFailed") == 1
    assert (
        shell.telemetry.registry.get_sample_value(
            "spotwise_actuation_errors_total", {"namespace": "team", "policy": "shop"}
        )
        == 2.0
    )


def test_an_actuator_that_raises_is_an_error_not_a_crash(fake, rt):
    async def explode(policy: Any, plan: Plan) -> Acted:
        raise ValueError("bad patch")

    shell = fake.shell()
    shell = Shell(
        observe=shell.observe,
        actuate=explode,
        release=shell.release,
        patch_status=shell.patch_status,
        post_event=shell.post_event,
        solver=shell.solver,
        telemetry=shell.telemetry,
        clock=shell.clock,
    )
    run_tick(fake, rt, shell)
    assert cond(fake.body, "Actuated")["message"] == "ValueError: bad patch"


def test_an_unwritable_status_is_retried_next_tick(fake, rt):
    shell = fake.shell()
    fake.fail_patches = True
    result = run_tick(fake, rt, shell)
    assert result.patch  # computed, not written
    assert "status" not in fake.body
    fake.fail_patches = False
    fake.now += 60
    again = run_tick(fake, rt, shell)
    assert "plan" in again.patch and "conditions" in again.patch
    assert "plan" in fake.body["status"]


def test_telemetry_follows_the_plan(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    reg = shell.telemetry.registry
    labels = {"namespace": "team", "policy": "shop"}
    plan = fake.body["status"]["plan"]
    assert reg.get_sample_value("spotwise_hourly_cost_dollars", labels) == pytest.approx(
        plan["hourlyCost"], abs=1e-6
    )
    assert reg.get_sample_value("spotwise_savings_ratio", labels) == pytest.approx(
        plan["savingsRatio"], abs=1e-3
    )
    assert reg.get_sample_value("spotwise_replicas", {**labels, "workload": "api"}) == float(
        plan["workloads"][0]["replicas"]
    )
    for n in plan["nodes"]:
        assert reg.get_sample_value(
            "spotwise_nodes",
            {**labels, "instance_type": n["instanceType"], "capacity_type": n["capacityType"]},
        ) == float(n["count"])
    assert reg.get_sample_value("spotwise_decision_seconds_count", labels) == 1.0
    assert reg.get_sample_value("spotwise_decisions_total", {**labels, "outcome": "solved"}) == 1.0
    shell.telemetry.forget("team", "shop")
    assert reg.get_sample_value("spotwise_replicas", {**labels, "workload": "api"}) is None
    assert reg.get_sample_value("spotwise_decision_seconds_count", labels) is None


# -- the daemon's wait --------------------------------------------------------------------------


def test_nap_ends_on_wake_stop_or_time():
    async def scenario() -> list[str]:
        rt = PolicyRuntime("team", "shop")
        stop = asyncio.Event()
        out = []
        rt.interrupt("cheap.large/spot")
        out.append(await rt.nap(3600, stop.wait()))
        rt.wake.clear()  # what the next tick does first
        out.append(await rt.nap(0.01, stop.wait()))
        stop.set()
        out.append(await rt.nap(3600, stop.wait()))
        return out

    assert asyncio.run(scenario()) == ["wake", "due", "stop"]


def test_a_wake_during_a_tick_is_kept_for_the_next_one(fake, rt):
    class InterruptingSolver(InlineSolver):
        async def solve(self, spec: Any, observation: Any, state: Any, **kw: Any) -> Solved:
            rt.interrupt("dear.large/spot")  # a node event arrives mid-solve
            return await super().solve(spec, observation, state, **kw)

    run_tick(fake, rt, fake.shell(InterruptingSolver()))
    assert rt.wake.is_set()
    assert rt.take_interruptions() == {"dear.large/spot"}


@pytest.mark.parametrize("cause", ["spec change", "interruption"])
def test_a_woken_tick_on_an_invalid_spec_leaves_no_wake_behind(fake, rt, cause):
    # Otherwise the daemon's next wait would end at once: a hot loop on a bad spec.
    fake.body["spec"]["intervalSeconds"] = 5
    if cause == "interruption":
        rt.interrupt("cheap.large/spot")
    else:
        rt.wake.set()
    shell = fake.shell()
    assert run_tick(fake, rt, shell).outcome == "invalid"
    assert not rt.wake.is_set()
    assert (
        shell.telemetry.registry.get_sample_value(
            "spotwise_decisions_total",
            {"namespace": "team", "policy": "shop", "outcome": "invalid"},
        )
        == 1.0
    )


def test_guard_state_is_kept_per_policy(fake, rt):
    shell = fake.shell()
    run_tick(fake, rt, shell)
    assert isinstance(rt.state, GuardState) and rt.state.last_plan is not None
    assert rt.on_demand_hourly_cost is not None and rt.on_demand_hourly_cost > 0


def test_nodes_are_matched_by_the_label_actuation_writes():
    from spotwise.actuate.labels import policy_key
    from spotwise.api import parse_policy

    long_name = "checkout-" + "x" * 80  # label values stop at 63 characters
    body = policy_body()
    body["metadata"]["name"] = long_name
    label = policy_key(parse_policy(body))
    assert len(label) == 63
    policies = Policies()
    rt = policies.ensure("team", long_name)
    watch = InterruptionWatch(policies, interrupted_pool)
    assert [w for w, _ in watch.node_event("ADDED", tainted_node("n-1", "cheap.large", label))] == [
        rt
    ]


# -- releasing a deleted policy's nodes -------------------------------------------------------


def run_release(fake: FakeCluster, rt: PolicyRuntime | None, *, last_attempt: bool = False):
    return asyncio.run(release(fake.body, rt, fake.shell(), last_attempt=last_attempt))


def test_release_removes_the_providers_objects_and_says_so(fake, rt):
    done = run_release(fake, rt)
    assert done.outcome == "released"
    (policy,) = fake.released
    assert (policy.metadata.namespace, policy.metadata.name) == ("team", "shop")
    assert policy.spec.nodes.provider == "kwok"
    assert [(e.type, e.reason, e.message) for e in fake.events] == [
        ("Normal", "Released", "Node kwok-team-shop-spot-0-cheap-large-0: cordoned, deleted")
    ]
    assert fake.patches == []  # the status of an object on its way out is left alone


def test_nothing_to_release_posts_nothing(fake, rt):
    fake.release_result = Acted()  # provider none, or a policy that only ran in DryRun
    done = run_release(fake, rt)
    assert (done.outcome, done.message, fake.events) == ("released", "nothing to release", [])
    assert len(fake.released) == 1


def test_an_incomplete_release_asks_for_a_retry_and_the_last_attempt_gives_up(fake, rt):
    refused = (
        "Node kwok-team-shop-spot-0-cheap-large-0: cordoned, evicted 0 pods; eviction of "
        "team/api-1 refused (429 Too Many Requests: budget); left cordoned"
    )
    fake.release_result = Acted(changes=("Node b: cordoned, deleted",), errors=(refused,))
    again = run_release(fake, rt)
    assert (again.outcome, again.message) == ("retry", f"release incomplete: {refused}")
    assert fake.events == []  # kopf logs each failed attempt; the Warning comes at the end
    last = run_release(fake, rt, last_attempt=True)
    assert last.outcome == "abandoned"
    assert [(e.type, e.reason, e.message) for e in fake.events] == [
        (
            "Warning",
            "ReleaseFailed",
            f"gave up; left behind (labelled spotwise.dev/policy=team.shop): {refused}",
        )
    ]


def test_a_release_port_that_raises_is_retried_not_raised(fake, rt):
    fake.release_result = ConnectionError("API server unreachable")
    done = run_release(fake, rt)
    assert done.outcome == "retry"
    assert done.message == "release incomplete: ConnectionError: API server unreachable"


def test_a_catalog_that_no_longer_checks_out_does_not_stop_the_release(fake, rt):
    fake.body["spec"]["nodes"]["catalog"] = {
        "builtin": "aws-us-east-1",
        "instanceTypes": ["no-such.type"],
    }
    assert "no-such.type" in str(load(fake.body))  # a tick calls this spec invalid
    assert run_release(fake, rt).outcome == "released"
    assert len(fake.released) == 1


def test_an_invalid_spec_names_no_provider_so_the_release_gives_up_at_once(fake, rt):
    fake.body["spec"]["workloads"][0]["replicas"] = {"min": 10, "max": 2}
    done = run_release(fake, rt)
    assert done.outcome == "abandoned"
    assert fake.released == []
    (event,) = fake.events
    assert (event.type, event.reason) == ("Warning", "ReleaseFailed")
    assert event.message == (
        "the spec is invalid (spec.workloads[0].replicas.min: must be ≤ max (2), got 10), so "
        "the node provider that made its nodes is unknown and nothing was removed: delete "
        "the Nodes or NodePools labelled spotwise.dev/policy=team.shop by hand"
    )


def test_the_release_waits_for_a_tick_in_flight(fake, rt):
    async def scenario() -> list[int]:
        seen = []
        await rt.lock.acquire()  # a tick is applying a plan
        releasing = asyncio.create_task(release(fake.body, rt, fake.shell(), last_attempt=False))
        for _ in range(10):
            await asyncio.sleep(0)
        seen.append(len(fake.released))
        rt.lock.release()
        await releasing
        seen.append(len(fake.released))
        return seen

    assert asyncio.run(scenario()) == [0, 1]


def test_a_policy_without_a_runtime_is_released_too(fake):
    # e.g. deleted while the operator was down: kopf calls the delete handler on start-up
    assert run_release(fake, None).outcome == "released"
