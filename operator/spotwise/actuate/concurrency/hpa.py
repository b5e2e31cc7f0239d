"""Actuator ``hpa``: the limit as the target of an autoscaling/v2 HPA's ``Pods`` metric.

A ``Pods`` metric (``{"type": "Pods", "pods": {"metric": {"name": ...}, "target":
{"type": "AverageValue", "averageValue": ...}}}``) makes the HPA keep the metric's
per-pod average at the target (https://kubernetes.io/docs/tasks/run-application/
horizontal-pod-autoscale-walkthrough/); for an in-flight metric that is the per-replica
concurrency. The HPA must have exactly one ``Pods`` metric. ``spec.metrics`` is an atomic
list, so the patch resends it whole and is conditional on the HPA's resourceVersion.
Quantities are compared as numbers: the server stores 1000 as "1k".

Not here: the HPA's replica band (`spotwise.actuate.workloads`).
"""

from __future__ import annotations

from spotwise.actuate.concurrency.base import register
from spotwise.actuate.kube import HPAS, Obj, ref_of
from spotwise.actuate.patches import Patch, dig, guarded, same_number
from spotwise.actuate.workloads import ActuationError, WorkloadView, keda_owner


def hpa_target_patch(hpa: Obj, concurrency: int) -> Patch | None:
    metrics = list(dig(hpa, "spec", "metrics") or [])
    pods = [i for i, m in enumerate(metrics) if isinstance(m, dict) and m.get("type") == "Pods"]
    name = dig(hpa, "metadata", "name")
    if len(pods) != 1:
        raise ActuationError(
            f"HorizontalPodAutoscaler {name} has {len(pods)} Pods metrics; "
            "actuator hpa needs exactly one"
        )
    index = pods[0]
    target = dig(metrics[index], "pods", "target") or {}
    if target.get("type") == "AverageValue" and same_number(
        target.get("averageValue"), concurrency
    ):
        return None
    metric = dict(metrics[index])
    metric["pods"] = {
        **metric.get("pods", {}),
        "target": {"type": "AverageValue", "averageValue": str(concurrency)},
    }
    metrics[index] = metric
    metric_name = dig(metric, "pods", "metric", "name")
    return Patch(
        ref_of(HPAS, hpa),
        guarded(hpa, {"spec": {"metrics": metrics}}),
        f"Pods metric {metric_name} averageValue {concurrency}",
    )


@register("hpa")
class HpaActuator:
    name = "hpa"

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        own = [h for h in view.hpas() if keda_owner(h) is None]
        if not own:
            raise ActuationError(f"no HorizontalPodAutoscaler targets {view.ref}")
        if len(own) > 1:
            names = ", ".join(sorted(str(dig(h, "metadata", "name")) for h in own))
            raise ActuationError(f"{len(own)} HorizontalPodAutoscalers target {view.ref}: {names}")
        patch = hpa_target_patch(own[0], concurrency)
        return [] if patch is None else [patch]
