"""Status as data: condition transitions, the plan written to and read back from
`status.plan`, and the merge patch between two statuses."""

from __future__ import annotations

import math

import pytest

from spotwise.controller.status import (
    CONDITION_TYPES,
    P95_CAP_MS,
    epoch,
    merge_conditions,
    plan_status,
    restore,
    rfc3339,
    same_plan,
    status_patch,
)
from spotwise.decide import ConditionUpdate
from spotwise.domain import CapacityType, NodeCount, Plan, WorkloadPlan

T = 1_700_000_000.0


def a_plan(replicas: int = 4, p95: float = 120.04, cost: float = 0.3) -> Plan:
    return Plan(
        engine="genetic",
        feasible=True,
        over_budget=False,
        hourly_cost=cost,
        workloads=(
            WorkloadPlan(
                "web", replicas, 8, p95, (("m6i.large/spot", 3), ("m6i.large/on-demand", 1))
            ),
        ),
        nodes=(
            NodeCount("m6i.large", CapacityType.SPOT, 2),
            NodeCount("m6i.large", CapacityType.ON_DEMAND, 1),
            NodeCount("c6i.large", CapacityType.SPOT, 0),
        ),
        capacity_after_worst_pool_loss=0.5,
        expected_interruptions_per_hour=0.0123456,
        reasons=tuple(f"reason {i}" for i in range(8)),
    )


def test_rfc3339_round_trips():
    assert rfc3339(T) == "2023-11-14T22:13:20Z"
    assert epoch("2023-11-14T22:13:20Z") == T
    assert epoch("2023-11-14T22:13:20") is None  # no zone: not RFC 3339
    assert epoch("yesterday") is None


def test_conditions_start_unknown_and_keep_a_stable_order():
    out = merge_conditions(
        [], [ConditionUpdate("Degraded", "False", "WithinPolicy", "ok")], now=T, generation=3
    )
    assert [c["type"] for c in out] == list(CONDITION_TYPES)
    by = {c["type"]: c for c in out}
    assert by["Degraded"] == {
        "type": "Degraded",
        "status": "False",
        "reason": "WithinPolicy",
        "message": "ok",
        "lastTransitionTime": "2023-11-14T22:13:20Z",
        "observedGeneration": 3,
    }
    assert by["Ready"]["status"] == "Unknown"


def test_transition_time_moves_only_when_status_flips():
    first = merge_conditions(
        [], [ConditionUpdate("Ready", "True", "Decided", "a")], now=T, generation=1
    )
    reworded = merge_conditions(
        first, [ConditionUpdate("Ready", "True", "HoldingLastPlan", "b")], now=T + 60, generation=1
    )
    ready = next(c for c in reworded if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("HoldingLastPlan", "b")
    assert ready["lastTransitionTime"] == rfc3339(T)
    flipped = merge_conditions(
        reworded, [ConditionUpdate("Ready", "False", "InvalidSpec", "c")], now=T + 120, generation=2
    )
    ready = next(c for c in flipped if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == rfc3339(T + 120)
    # Conditions not updated are kept as they were, including foreign types.
    foreign = [*flipped, {"type": "Custom", "status": "True", "reason": "X", "message": ""}]
    again = merge_conditions(foreign, [], now=T + 180, generation=2)
    assert again[:4] == flipped[:4] and again[4]["type"] == "Custom"


def test_long_messages_are_cut():
    out = merge_conditions(
        [], [ConditionUpdate("Ready", "False", "InvalidSpec", "x" * 5000)], now=T, generation=None
    )
    ready = next(c for c in out if c["type"] == "Ready")
    assert len(ready["message"]) == 1024
    assert "observedGeneration" not in ready


def test_plan_status_is_the_api_shape_rounded():
    ps = plan_status(a_plan(), decided_at=T, on_demand_hourly_cost=0.6)
    assert ps["engine"] == "genetic" and ps["decidedAt"] == "2023-11-14T22:13:20Z"
    assert ps["hourlyCost"] == 0.3 and ps["onDemandHourlyCost"] == 0.6
    assert ps["savingsRatio"] == 0.5
    assert ps["workloads"] == [
        {"name": "web", "replicas": 4, "concurrency": 8, "predictedP95Ms": 120.0, "spotReplicas": 3}
    ]
    assert ps["nodes"] == [  # empty pools left out
        {"instanceType": "m6i.large", "capacityType": "spot", "count": 2},
        {"instanceType": "m6i.large", "capacityType": "on-demand", "count": 1},
    ]
    assert ps["risk"] == {"capacityAfterWorstPoolLoss": 0.5, "expectedInterruptionsPerHour": 0.0123}
    assert ps["reasons"] == [f"reason {i}" for i in range(3, 8)]


def test_a_saturated_prediction_is_written_as_a_number():
    ps = plan_status(a_plan(p95=math.inf), decided_at=T, on_demand_hourly_cost=None)
    assert ps["workloads"][0]["predictedP95Ms"] == P95_CAP_MS
    assert ps["savingsRatio"] == 0.0  # no reference: no savings claimed


def test_restore_reads_back_what_was_written():
    plan = a_plan()
    restored = restore({"plan": plan_status(plan, decided_at=T, on_demand_hourly_cost=0.6)})
    assert restored is not None
    assert restored.decided_at == T and restored.on_demand_hourly_cost == 0.6
    assert same_plan(restored.plan, plan)
    state = restored.guard_state()
    assert state.last_plan == restored.plan and state.last_solved_at == T
    assert state.needs == ((T, (("web", 4),)),)  # the plan's replicas hold for the window


@pytest.mark.parametrize(
    "status",
    [None, {}, {"plan": "x"}, {"plan": {"engine": "exact"}}, {"plan": {"decidedAt": "never"}}],
)
def test_restore_gives_up_on_anything_else(status):
    assert restore(status) is None


def test_same_plan_ignores_predictions_and_empty_pools():
    assert same_plan(a_plan(p95=100.0, cost=0.3), a_plan(p95=180.0, cost=0.31))
    assert not same_plan(a_plan(replicas=4), a_plan(replicas=5))
    assert same_plan(None, None) and not same_plan(a_plan(), None)


def test_status_patch_is_the_changed_top_level_fields():
    current = {"observedGeneration": 2, "conditions": [{"type": "Ready"}], "plan": {"a": 1}}
    assert status_patch(current, dict(current)) == {}
    assert status_patch(current, {**current, "plan": {"a": 2}}) == {"plan": {"a": 2}}
    assert status_patch(None, {"observedGeneration": 1}) == {"observedGeneration": 1}
    # Tuples and lists, mapping types: compared as JSON would be.
    assert (
        status_patch({"conditions": [{"type": "Ready"}]}, {"conditions": ({"type": "Ready"},)})
        == {}
    )
