"""Actuation: make the cluster run a plan (replicas, concurrency, placement, nodes).

`actuate(api, policy, plan)` reads what it needs, builds the exact patch bodies with pure
functions (`workloads`, `concurrency`, `placement`, `providers`), folds them into one
request per object and sends them. It never raises for an API error: a failed object
becomes one error line and everything else is still applied. Builders return nothing
for an object that already matches, so applying the same plan twice writes nothing the
second time.

Order: nodes first (capacity before the pods that need it), then per workload the
object patches, the ``/scale`` patch last (it changes the resourceVersion that the
list-replacing patches are conditional on).

`release(api, policy)` is the other end of a policy's life: it is being deleted. First each
workload loses the placement Spotwise wrote (one patch, one rollout, so its pods can move
to the user's other nodes), then the node provider removes every Node or NodePool it made
for the policy. Replicas and concurrency settings stay where the last plan put them: the
policy no longer decides them, and what they should be now is the user's call.

Not here: whether to act at all. DryRun and Paused are decided upstream
(`spotwise.decide.decide` returns ``act=False``); `actuate` always acts when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from spotwise.actuate.concurrency import create_actuator
from spotwise.actuate.kube import (
    TRANSPORT_ERRORS,
    WORKLOAD_RESOURCES,
    Kube,
    Obj,
    ObjectRef,
    describe_error,
)
from spotwise.actuate.labels import policy_key, policy_namespace
from spotwise.actuate.patches import Patch, Report, coalesce
from spotwise.actuate.placement import (
    SlotLayout,
    current_spread,
    placement_patch,
    slot_layout,
    unplacement_patch,
)
from spotwise.actuate.providers import NodeProvider, create_provider
from spotwise.actuate.workloads import ActuationError, Lookups, WorkloadView, replica_patches
from spotwise.api.v1alpha1 import ScalingPolicy, WorkloadSpec
from spotwise.decide import build_catalog
from spotwise.domain import Catalog, Plan, WorkloadPlan

# A builder meeting an object it cannot work with (a setup problem, or a malformed
# custom resource) reports it as one line instead of stopping the other workloads.
_BUILD_ERRORS = (ActuationError, ValueError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class Actuation:
    """One human line per object changed, and per object that could not be."""

    changes: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def actuate(
    api: ApiClient,
    policy: ScalingPolicy,
    plan: Plan,
    *,
    catalog: Catalog | None = None,
    provider: NodeProvider | None = None,
) -> Actuation:
    """Apply `plan` to the cluster for `policy`. `catalog` saves rebuilding the policy's
    instance catalog; `provider` replaces the one ``spec.nodes.provider`` names."""
    kube = Kube(api)
    report = Report()
    spec = policy.spec
    # Each workload is read once, before the layout: its slots now are kept where they
    # still fit the plan, so a small scale change rolls no pods.
    reads = {ws.name: _read(kube, policy, ws) for ws in spec.workloads}
    layout: SlotLayout | None = None
    if spec.nodes.provider != "none":
        current = {
            name: spread
            for name, (_, obj) in reads.items()
            if isinstance(obj, dict) and (spread := current_spread(obj, policy_key(policy)))
        }
        try:
            layout = slot_layout(spec, plan, catalog or build_catalog(spec), current=current)
        except ValueError as err:  # a DecisionError, or a plan type outside the catalog
            report.errors.append(f"nodes of {policy_key(policy)}: {err}")
    if layout is not None:
        nodes = provider or create_provider(spec.nodes.provider)
        report.extend(nodes.apply(kube, policy, layout))
    lookups = Lookups(kube)
    for ws in spec.workloads:
        report.extend(_workload(kube, lookups, policy, ws, plan, layout, reads[ws.name]))
    return Actuation(tuple(report.changes), tuple(report.errors))


def release(
    api: ApiClient, policy: ScalingPolicy, *, provider: NodeProvider | None = None
) -> Actuation:
    """Undo what Spotwise wrote for `policy`, which is being deleted: first take its
    placement out of every workload's pod template (`unplacement_patch`), then have the
    node provider remove its objects: kwok Nodes are cordoned, drained and deleted,
    Karpenter NodePools deleted (Karpenter drains their nodes). Whatever mode and provider
    the policy has now: one in DryRun may have placed pods and made nodes while it was
    Active, and one that never did has none to find. A workload that is gone has nothing
    to undo. `provider` replaces the one ``spec.nodes.provider`` names."""
    kube = Kube(api)
    report = Report()
    for ws in policy.spec.workloads:
        report.extend(_unplace(kube, policy, ws))
    nodes = provider or create_provider(policy.spec.nodes.provider)
    report.extend(nodes.release(kube, policy))
    return Actuation(tuple(report.changes), tuple(report.errors))


def _unplace(kube: Kube, policy: ScalingPolicy, ws: WorkloadSpec) -> Report:
    report = Report()
    ref = ObjectRef(
        WORKLOAD_RESOURCES[ws.target_ref.kind], ws.target_ref.name, policy_namespace(policy)
    )
    try:
        obj = kube.get(ref)
        patch = None if obj is None else unplacement_patch(ref, obj, policy_key(policy))
        if patch is not None:
            kube.patch(ref, patch.body)
            report.changes.append(f"{ref}: {patch.what}")
    except TRANSPORT_ERRORS as err:
        report.errors.append(f"{ref}: placement not removed: {describe_error(err)}")
    except _BUILD_ERRORS as err:
        report.errors.append(f"{ref}: placement not removed: {err}")
    return report


def _read(
    kube: Kube, policy: ScalingPolicy, ws: WorkloadSpec
) -> tuple[ObjectRef, Obj | Exception | None]:
    """The workload's target object: None when it is not there, the error when unreadable."""
    ref = ObjectRef(
        WORKLOAD_RESOURCES[ws.target_ref.kind], ws.target_ref.name, policy_namespace(policy)
    )
    try:
        return ref, kube.get(ref)
    except TRANSPORT_ERRORS as err:
        return ref, err


def _workload(
    kube: Kube,
    lookups: Lookups,
    policy: ScalingPolicy,
    ws: WorkloadSpec,
    plan: Plan,
    layout: SlotLayout | None,
    read: tuple[ObjectRef, Obj | Exception | None],
) -> Report:
    report = Report()
    where = f"workload {ws.name}"
    try:
        wp = plan.workload(ws.name)
    except KeyError:
        report.errors.append(f"{where}: not in the plan")
        return report
    ref, obj = read
    if isinstance(obj, Exception):
        report.errors.append(f"{ref}: {describe_error(obj)}")
        return report
    if obj is None:
        report.errors.append(f"{where}: {ref} not found")
        return report
    view = WorkloadView(ws, ref, obj, lookups)
    step = policy.spec.stabilization.max_replica_step
    builders: list[tuple[str, Callable[[], list[Patch]]]] = [
        ("replicas", lambda: replica_patches(view, wp.replicas, step)),
        (
            f"concurrency ({ws.concurrency.actuator})",
            lambda: create_actuator(ws.concurrency.actuator).patches(view, wp.concurrency),
        ),
        ("placement", lambda: _placement(view, policy, wp, layout)),
    ]
    patches: list[Patch] = []
    for what, build in builders:
        try:
            patches += build()
        except TRANSPORT_ERRORS as err:
            report.errors.append(f"{where}: {what}: {describe_error(err)}")
        except _BUILD_ERRORS as err:
            report.errors.append(f"{where}: {what}: {err}")
    for patch in sorted(coalesce(patches), key=lambda p: p.scale):
        try:
            if patch.scale:
                kube.scale(patch.ref, patch.body["spec"]["replicas"])
            else:
                kube.patch(patch.ref, patch.body)
        except TRANSPORT_ERRORS as err:
            report.errors.append(f"{patch.ref}: {patch.what}: {describe_error(err)}")
        else:
            report.changes.append(f"{patch.ref}: {patch.what}")
    return report


def _placement(
    view: WorkloadView, policy: ScalingPolicy, wp: WorkloadPlan, layout: SlotLayout | None
) -> list[Patch]:
    if layout is None:  # provider none: no labelled nodes to place pods on
        return []
    patch = placement_patch(
        view.ref,
        view.obj,
        policy_key(policy),
        layout.spread(wp.name),
        tolerate_kwok=policy.spec.nodes.provider == "kwok",
    )
    return [] if patch is None else [patch]


__all__ = ["Actuation", "ActuationError", "actuate", "release"]
