"""Replicas: how the planned count reaches a workload without fighting its autoscaler.

- A Deployment or StatefulSet nobody else scales gets the count on its apps/v1 ``/scale``
  subresource: ``{"spec": {"replicas": n}}`` (what `AppsV1Api.patch_namespaced_
  deployment_scale` sends; https://kubernetes.io/docs/reference/kubernetes-api/
  workload-resources/deployment-v1/ "replace scale of the specified Deployment").
- One with an autoscaling/v2 HorizontalPodAutoscaler gets that HPA's ``spec.minReplicas``
  and ``spec.maxReplicas`` moved to a band around the plan; the HPA keeps reacting inside
  it between two ticks. Setting ``/scale`` instead would be undone by the HPA within 15 s.
- One scaled by KEDA (a ScaledObject, or the ``keda-hpa-<name>`` HPA KEDA owns) gets the
  band on the ScaledObject's ``spec.minReplicaCount`` and ``spec.maxReplicaCount``: KEDA
  rewrites its HPA from those and owns it (kedacore/keda controllers/keda/hpa.go:
  getHPAMinReplicas, getHPAMaxReplicas, SetControllerReference).
- A Knative Service (serving.knative.dev/v1) gets the band as the per-revision
  annotations ``autoscaling.knative.dev/min-scale`` and ``max-scale`` on
  ``spec.template.metadata.annotations`` (https://knative.dev/docs/serving/autoscaling/
  scale-bounds/); the Knative autoscaler scales inside it.

The band is ``[plan, min(max, plan + maxReplicaStep)]``: never fewer than planned (the
guard already decided any scale-down), and room for one tick's worth of growth.

Not here: concurrency (`spotwise.actuate.concurrency`), placement, nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spotwise.actuate.kube import (
    HPAS,
    KNATIVE_SERVICES,
    SCALED_OBJECTS,
    Kube,
    Obj,
    ObjectRef,
    is_not_found,
    ref_of,
)
from spotwise.actuate.patches import Patch, dig, same_number
from spotwise.api.v1alpha1 import WorkloadSpec

MIN_SCALE = "autoscaling.knative.dev/min-scale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"


class ActuationError(Exception):
    """A workload cannot be actuated as configured (not an API failure); one line."""


@dataclass
class Lookups:
    """Per-namespace lists of autoscalers, read at most once per actuation."""

    kube: Kube
    _hpas: dict[str, list[Obj]] = field(default_factory=dict)
    _scaled_objects: dict[str, list[Obj]] = field(default_factory=dict)

    def hpas(self, namespace: str) -> list[Obj]:
        if namespace not in self._hpas:
            self._hpas[namespace] = self.kube.list(HPAS, namespace)
        return self._hpas[namespace]

    def scaled_objects(self, namespace: str) -> list[Obj]:
        if namespace not in self._scaled_objects:
            try:
                found = self.kube.list(SCALED_OBJECTS, namespace)
            except Exception as err:
                if not is_not_found(err):  # 404: KEDA is not installed, so nothing uses it
                    raise
                found = []
            self._scaled_objects[namespace] = found
        return self._scaled_objects[namespace]


@dataclass
class WorkloadView:
    """One workload as the cluster has it now, and the autoscalers that target it."""

    spec: WorkloadSpec
    ref: ObjectRef
    obj: Obj
    lookups: Lookups

    @property
    def namespace(self) -> str:
        return self.ref.namespace or "default"

    @property
    def knative(self) -> bool:
        return self.ref.resource == KNATIVE_SERVICES

    def hpas(self) -> list[Obj]:
        """HorizontalPodAutoscalers whose scaleTargetRef is this workload."""
        return [h for h in self.lookups.hpas(self.namespace) if targets(h, self.ref)]

    def scaled_objects(self) -> list[Obj]:
        """KEDA ScaledObjects whose scaleTargetRef is this workload."""
        return [s for s in self.lookups.scaled_objects(self.namespace) if targets(s, self.ref)]


def targets(autoscaler: Obj, ref: ObjectRef) -> bool:
    """Whether an HPA's or ScaledObject's ``spec.scaleTargetRef`` names `ref` (KEDA's kind
    defaults to Deployment)."""
    target = dig(autoscaler, "spec", "scaleTargetRef") or {}
    kind = target.get("kind") or "Deployment"
    return bool(target.get("name") == ref.name and kind == ref.resource.kind)


def keda_owner(hpa: Obj) -> str | None:
    """The ScaledObject that owns an HPA KEDA created, or None for a user's own HPA."""
    for owner in dig(hpa, "metadata", "ownerReferences") or []:
        if owner.get("kind") == "ScaledObject" and str(owner.get("apiVersion", "")).startswith(
            "keda.sh/"
        ):
            return str(owner.get("name"))
    labels = dig(hpa, "metadata", "labels") or {}
    if labels.get("app.kubernetes.io/managed-by") == "keda-operator":
        return str(labels.get("app.kubernetes.io/part-of", "")) or None
    return None


def replica_band(replicas: int, spec: WorkloadSpec, step: int) -> tuple[int, int]:
    """(lowest, highest) replicas an autoscaler may choose until the next tick."""
    high = max(replicas, 1, min(spec.replicas.max, replicas + step))
    return replicas, high


def scale_patch(ref: ObjectRef, obj: Obj, replicas: int) -> Patch | None:
    """Set the count on ``/scale``; None when ``spec.replicas`` already holds it."""
    current = dig(obj, "spec", "replicas")
    current = 1 if current is None else current  # the API server's default
    if current == replicas:
        return None
    return Patch(ref, {"spec": {"replicas": replicas}}, f"replicas {current} → {replicas}", True)


def hpa_band_patch(hpa: Obj, low: int, high: int) -> Patch | None:
    """Move an autoscaling/v2 HPA's band; its minReplicas is at least 1 (0 needs the
    HPAScaleToZero feature gate)."""
    low = max(low, 1)
    spec = hpa.get("spec") or {}
    if spec.get("minReplicas", 1) == low and spec.get("maxReplicas") == high:
        return None
    return Patch(
        ref_of(HPAS, hpa),
        {"spec": {"minReplicas": low, "maxReplicas": high}},
        f"minReplicas {low}, maxReplicas {high}",
    )


def scaled_object_band_patch(scaled_object: Obj, low: int, high: int) -> Patch | None:
    spec = scaled_object.get("spec") or {}
    if spec.get("minReplicaCount") == low and spec.get("maxReplicaCount") == high:
        return None
    return Patch(
        ref_of(SCALED_OBJECTS, scaled_object),
        {"spec": {"minReplicaCount": low, "maxReplicaCount": high}},
        f"minReplicaCount {low}, maxReplicaCount {high}",
    )


def knative_scale_patch(ref: ObjectRef, service: Obj, low: int, high: int) -> Patch | None:
    annotations = dig(service, "spec", "template", "metadata", "annotations") or {}
    if same_number(annotations.get(MIN_SCALE), low) and same_number(
        annotations.get(MAX_SCALE), high
    ):
        return None
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {MIN_SCALE: str(low), MAX_SCALE: str(high)}}}
        }
    }
    return Patch(ref, body, f"min-scale {low}, max-scale {high}")


def replica_patches(view: WorkloadView, replicas: int, step: int) -> list[Patch]:
    """The one patch (or none) that moves this workload to `replicas`."""
    low, high = replica_band(replicas, view.spec, step)
    if view.knative:
        return _some(knative_scale_patch(view.ref, view.obj, low, high))
    hpas = view.hpas()
    kedas = (
        view.scaled_objects()
        if view.spec.concurrency.actuator == "keda" or any(keda_owner(h) for h in hpas)
        else []
    )
    if len(kedas) > 1:
        raise ActuationError(f"{len(kedas)} ScaledObjects target {view.ref}: {_names(kedas)}")
    if kedas:
        return _some(scaled_object_band_patch(kedas[0], low, high))
    own = [h for h in hpas if keda_owner(h) is None]
    if len(own) > 1:
        raise ActuationError(
            f"{len(own)} HorizontalPodAutoscalers target {view.ref}: {_names(own)}; "
            "leaving replicas alone"
        )
    if own:
        return _some(hpa_band_patch(own[0], low, high))
    return _some(scale_patch(view.ref, view.obj, replicas))


def _some(patch: Patch | None) -> list[Patch]:
    return [] if patch is None else [patch]


def _names(objs: list[Obj]) -> str:
    return ", ".join(sorted(str(dig(o, "metadata", "name")) for o in objs))
