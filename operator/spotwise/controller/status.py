"""ScalingPolicy status as data: conditions with transition times, the plan as written to
`status.plan`, the plan read back after a restart, and the merge patch between two statuses.

Pure: no Kubernetes client, no kopf, no clock (times are passed in). The tick computes the
status it wants; this module says what to patch so that an unchanged status is never
written.

Not here: deciding which conditions hold (`spotwise.decide` and the tick do that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from spotwise.api.v1alpha1 import (
    NodePlanStatus,
    PlanStatus,
    RiskStatus,
    WorkloadPlanStatus,
)
from spotwise.decide import ConditionUpdate, GuardState
from spotwise.domain import CapacityType, NodeCount, Plan, WorkloadPlan

CONDITION_TYPES = ("Ready", "MetricsAvailable", "Actuated", "Degraded")
MESSAGE_LIMIT = 1024  # condition messages stay readable in `kubectl describe`
# JSON has no infinity, and the status schema wants a number: a saturated prediction is
# written as one hour.
P95_CAP_MS = 3_600_000.0


def rfc3339(epoch_seconds: float) -> str:
    """`2024-05-01T12:00:00Z` for seconds since the epoch (whole seconds, UTC)."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(timestamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


# -- conditions -------------------------------------------------------------------------


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type `kind` in a status mapping, if any."""
    for c in status.get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return None


def merge_conditions(
    current: Iterable[Mapping[str, Any]],
    updates: Iterable[ConditionUpdate],
    *,
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`current` conditions with `updates` applied, in a stable order.

    `lastTransitionTime` moves only when a condition's status flips; a new reason or
    message alone keeps it. Condition types not in `updates` are kept as they were; the
    four standard types are always present (Unknown until first evaluated)."""
    by_type: dict[str, dict[str, Any]] = {
        str(c["type"]): dict(c) for c in current if isinstance(c, Mapping) and c.get("type")
    }
    for u in updates:
        old = by_type.get(u.type)
        flipped = old is None or old.get("status") != u.status
        new: dict[str, Any] = {
            "type": u.type,
            "status": u.status,
            "reason": u.reason,
            "message": u.message[:MESSAGE_LIMIT],
            "lastTransitionTime": rfc3339(now)
            if flipped or not old or not old.get("lastTransitionTime")
            else old["lastTransitionTime"],
        }
        if generation is not None:
            new["observedGeneration"] = generation
        by_type[u.type] = new
    for kind in CONDITION_TYPES:
        if kind not in by_type:
            by_type[kind] = {
                "type": kind,
                "status": "Unknown",
                "reason": "NotEvaluated",
                "message": "not evaluated yet",
                "lastTransitionTime": rfc3339(now),
            }
    order = {kind: i for i, kind in enumerate(CONDITION_TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


# -- the plan ---------------------------------------------------------------------------


def _finite(value: float, cap: float) -> float:
    return value if math.isfinite(value) and value < cap else cap


def plan_status(
    plan: Plan, *, decided_at: float, on_demand_hourly_cost: float | None
) -> dict[str, Any]:
    """`status.plan` for `plan`, rounded so that float noise never causes a patch."""
    od = on_demand_hourly_cost if on_demand_hourly_cost is not None else plan.hourly_cost
    savings = 1.0 - plan.hourly_cost / od if od > 0 else 0.0
    model = PlanStatus(
        engine=plan.engine,
        decided_at=rfc3339(decided_at),
        feasible=plan.feasible,
        over_budget=plan.over_budget,
        hourly_cost=round(plan.hourly_cost, 6),
        on_demand_hourly_cost=round(od, 6),
        savings_ratio=round(savings, 4),
        workloads=[
            WorkloadPlanStatus(
                name=w.name,
                replicas=w.replicas,
                concurrency=w.concurrency,
                predicted_p95_ms=round(_finite(w.predicted_p95_ms, P95_CAP_MS), 1),
                spot_replicas=w.spot_replicas,
            )
            for w in plan.workloads
        ],
        nodes=[
            NodePlanStatus(
                instance_type=n.instance_type,
                capacity_type=n.capacity_type.value,
                count=n.count,
            )
            for n in plan.nodes
            if n.count > 0
        ],
        risk=RiskStatus(
            capacity_after_worst_pool_loss=round(
                _finite(plan.capacity_after_worst_pool_loss, 1e6), 4
            ),
            expected_interruptions_per_hour=round(
                _finite(plan.expected_interruptions_per_hour, 1e6), 4
            ),
        ),
        # Engines explain themselves at length; the last few reasons are the useful ones.
        reasons=[r[:200] for r in plan.reasons[-5:]],
    )
    return model.to_k8s()


@dataclass(frozen=True)
class Restored:
    """What a restarted operator knows from `status.plan`."""

    plan: Plan
    decided_at: float
    on_demand_hourly_cost: float

    def guard_state(self) -> GuardState:
        """A guard that resumes from the written plan: the step limit counts from it, and
        its replicas hold as the stabilized floor until the scale-down window has passed
        since it was decided (a restart never scales down early)."""
        floor = tuple(sorted((w.name, w.replicas) for w in self.plan.workloads))
        return GuardState(
            needs=((self.decided_at, floor),),
            last_plan=self.plan,
            last_solved_at=self.decided_at,
            last_floors=floor,
        )


def restore(status: Mapping[str, Any] | None) -> Restored | None:
    """The plan last written to `status.plan`, or None when there is none (or it does not
    parse: then the operator starts afresh). Per-pool placement is not in the status, so
    the restored plan lists no pods per pool; `decide` re-solves before relying on it."""
    raw = (status or {}).get("plan")
    if not isinstance(raw, Mapping):
        return None
    try:
        ps = PlanStatus.model_validate(dict(raw), by_alias=True, by_name=False)
    except ValidationError:
        return None
    decided = epoch(ps.decided_at)
    if decided is None:
        return None
    plan = Plan(
        engine=ps.engine,
        feasible=ps.feasible,
        over_budget=ps.over_budget,
        hourly_cost=ps.hourly_cost,
        workloads=tuple(
            WorkloadPlan(
                name=w.name,
                replicas=w.replicas,
                concurrency=w.concurrency,
                predicted_p95_ms=w.predicted_p95_ms,
            )
            for w in ps.workloads
        ),
        nodes=tuple(
            NodeCount(n.instance_type, CapacityType(n.capacity_type), n.count) for n in ps.nodes
        ),
        capacity_after_worst_pool_loss=ps.risk.capacity_after_worst_pool_loss,
        expected_interruptions_per_hour=ps.risk.expected_interruptions_per_hour,
        reasons=tuple(ps.reasons),
    )
    return Restored(plan, decided, ps.on_demand_hourly_cost)


def same_plan(a: Plan | None, b: Plan | None) -> bool:
    """True when two plans ask for the same replicas, concurrency and nodes (predictions
    and costs aside)."""
    if a is None or b is None:
        return a is b

    def shape(p: Plan) -> tuple[object, ...]:
        return (
            tuple(sorted((w.name, w.replicas, w.concurrency) for w in p.workloads)),
            tuple(sorted((n.pool, n.count) for n in p.nodes if n.count > 0)),
        )

    return shape(a) == shape(b)


# -- patching ---------------------------------------------------------------------------


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) of `status` that turns `current` into `desired`:
    only the top-level fields that differ, each whole (lists cannot be merged). Empty when
    nothing changed."""
    current = current or {}
    return {
        key: value for key, value in desired.items() if _plain(current.get(key)) != _plain(value)
    }


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
