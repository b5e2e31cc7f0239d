"""Actuator ``knative``: the limit on a Knative Service (serving.knative.dev/v1).

Soft: the per-revision annotation ``autoscaling.knative.dev/target`` on
``spec.template.metadata.annotations``, the in-flight requests per replica the Knative
autoscaler aims for. Hard, when the policy sets ``concurrency.hard``: also
``spec.template.spec.containerConcurrency``, which the queue-proxy enforces by queueing
the excess (https://knative.dev/docs/serving/autoscaling/concurrency/). Both live in the
revision template, so a change creates a new Revision; nothing is written when the
values already match.

Not here: ``min-scale``/``max-scale`` (replicas, `spotwise.actuate.workloads`).
"""

from __future__ import annotations

from spotwise.actuate.concurrency.base import register
from spotwise.actuate.kube import Obj, ObjectRef
from spotwise.actuate.patches import Patch, dig, same_number
from spotwise.actuate.workloads import ActuationError, WorkloadView

TARGET = "autoscaling.knative.dev/target"


def knative_concurrency_patch(
    ref: ObjectRef, service: Obj, concurrency: int, *, hard: bool
) -> Patch | None:
    template = dig(service, "spec", "template") or {}
    body: Obj = {}
    what = []
    if not same_number(dig(template, "metadata", "annotations", TARGET), concurrency):
        body["metadata"] = {"annotations": {TARGET: str(concurrency)}}
        what.append(f"target {concurrency}")
    if hard and dig(template, "spec", "containerConcurrency") != concurrency:
        body["spec"] = {"containerConcurrency": concurrency}
        what.append(f"containerConcurrency {concurrency}")
    if not body:
        return None
    return Patch(ref, {"spec": {"template": body}}, ", ".join(what))


@register("knative")
class KnativeActuator:
    name = "knative"

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        if not view.knative:
            raise ActuationError(
                f"concurrency actuator knative needs a Knative Service, not {view.ref}"
            )
        patch = knative_concurrency_patch(
            view.ref, view.obj, concurrency, hard=view.spec.concurrency.hard
        )
        return [] if patch is None else [patch]
