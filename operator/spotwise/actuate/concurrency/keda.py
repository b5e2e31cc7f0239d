"""Actuator ``keda``: the limit as the ``threshold`` of a KEDA ScaledObject trigger.

KEDA (keda.sh/v1alpha1) scales a workload so that the trigger's metric per replica stays
at ``spec.triggers[i].metadata.threshold``; for an in-flight metric that is exactly the
per-replica concurrency. Trigger metadata values are strings (``threshold: '100'``,
https://keda.sh/docs/latest/scalers/prometheus/), so the limit is written as one.

Which trigger: the one named like the workload (``triggers[i].name``), else the only one
that has a threshold. A JSON merge patch replaces lists whole, so the patch resends all
triggers as read and is made conditional on the ScaledObject's resourceVersion.

Not here: the ScaledObject's replica band (`spotwise.actuate.workloads`).
"""

from __future__ import annotations

from spotwise.actuate.concurrency.base import register
from spotwise.actuate.kube import SCALED_OBJECTS, Obj, ref_of
from spotwise.actuate.patches import Patch, dig, guarded, same_number
from spotwise.actuate.workloads import ActuationError, WorkloadView


def pick_trigger(scaled_object: Obj, workload: str) -> int:
    """Index of the trigger that carries the workload's concurrency."""
    triggers = dig(scaled_object, "spec", "triggers") or []
    named = [i for i, t in enumerate(triggers) if isinstance(t, dict) and t.get("name") == workload]
    if len(named) == 1:
        return named[0]
    with_threshold = [
        i for i, t in enumerate(triggers) if dig(t, "metadata", "threshold") is not None
    ]
    if len(with_threshold) == 1:
        return with_threshold[0]
    name = dig(scaled_object, "metadata", "name")
    if not with_threshold:
        raise ActuationError(f"ScaledObject {name} has no trigger with a threshold")
    raise ActuationError(
        f"ScaledObject {name} has {len(with_threshold)} triggers with a threshold; "
        f"name the one that carries concurrency {workload!r}"
    )


def keda_threshold_patch(scaled_object: Obj, workload: str, concurrency: int) -> Patch | None:
    index = pick_trigger(scaled_object, workload)
    triggers = list(dig(scaled_object, "spec", "triggers"))
    if same_number(dig(triggers[index], "metadata", "threshold"), concurrency):
        return None
    trigger = dict(triggers[index])
    trigger["metadata"] = {**trigger["metadata"], "threshold": str(concurrency)}
    triggers[index] = trigger
    label = trigger.get("name") or trigger.get("type") or index
    return Patch(
        ref_of(SCALED_OBJECTS, scaled_object),
        guarded(scaled_object, {"spec": {"triggers": triggers}}),
        f"trigger {label} threshold {concurrency}",
    )


@register("keda")
class KedaActuator:
    name = "keda"

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        found = view.scaled_objects()
        if not found:
            raise ActuationError(f"no ScaledObject in {view.namespace} targets {view.ref}")
        if len(found) > 1:
            names = ", ".join(sorted(str(dig(s, "metadata", "name")) for s in found))
            raise ActuationError(f"{len(found)} ScaledObjects target {view.ref}: {names}")
        patch = keda_threshold_patch(found[0], view.spec.name, concurrency)
        return [] if patch is None else [patch]
