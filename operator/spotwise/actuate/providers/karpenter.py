"""Provider ``karpenter``: one Karpenter NodePool (karpenter.sh/v1) per slot.

Each NodePool lets Karpenter launch only what the plan put in its slot:

- ``spec.template.spec.requirements``: ``node.kubernetes.io/instance-type`` In the slot's
  instance types and ``karpenter.sh/capacity-type`` In [the slot's capacity type];
- ``spec.template.metadata.labels``: ``spotwise.dev/policy`` and ``spotwise.dev/slot``,
  which Karpenter puts on its nodes and also reads as topology domains for pending pods'
  spread constraints (kubernetes-sigs/karpenter, provisioning: requirements are built
  from ``np.Spec.Template.Spec.Requirements`` plus ``NewLabelRequirements(np.Spec.
  Template.Labels)``), so the slot spread works before the first node exists;
- ``spec.template.spec.nodeClassRef``: ``{group: karpenter.k8s.aws, kind: EC2NodeClass,
  name}``, the name from the policy's ``spotwise.dev/node-class`` annotation, else
  ``default``;
- ``spec.limits.cpu`` and ``spec.limits.memory``: the vCPU and memory of the slot's
  planned nodes, so Karpenter stops at the plan (https://karpenter.sh/docs/concepts/
  nodepools/).

A missing NodePool is created; one that differs in those fields gets a JSON merge patch
of them (fields Karpenter defaults, like ``disruption``, are left alone); a NodePool of
the policy that no slot needs any more is deleted, and Karpenter drains its nodes.
`release` (the policy is being deleted) deletes all of the policy's NodePools the same
way; without the NodePool CRD there are none to delete. Names are
``spotwise-<namespace>-<policy>-<slot>``, at most 63 characters, because Karpenter
copies them into the ``karpenter.sh/nodepool`` label.
"""

from __future__ import annotations

from typing import Any

from spotwise.actuate.kube import (
    NODEPOOLS,
    TRANSPORT_ERRORS,
    Kube,
    Obj,
    ObjectRef,
    describe_error,
    is_not_found,
)
from spotwise.actuate.labels import (
    CAPACITY_TYPE_LABEL,
    INSTANCE_TYPE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    SLOT_LABEL,
    dns_name,
    policy_key,
    policy_namespace,
    policy_selector,
)
from spotwise.actuate.patches import Report, dig
from spotwise.actuate.placement import Slot, SlotLayout
from spotwise.actuate.providers.base import cpu_quantity, memory_quantity, register
from spotwise.api.v1alpha1 import ScalingPolicy

NODE_CLASS_ANNOTATION = "spotwise.dev/node-class"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
NODE_CLASS_KIND = "EC2NodeClass"


def nodepool_name(policy: ScalingPolicy, slot: str) -> str:
    return dns_name("spotwise", policy_namespace(policy), policy.metadata.name, slot)


def node_class(policy: ScalingPolicy) -> str:
    return (policy.metadata.annotations or {}).get(NODE_CLASS_ANNOTATION) or "default"


def nodepool(policy: ScalingPolicy, slot: Slot, *, node_class_name: str) -> Obj:
    """The whole NodePool for one slot."""
    key = policy_key(policy)
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {
            "name": nodepool_name(policy, slot.name),
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, POLICY_LABEL: key, SLOT_LABEL: slot.name},
        },
        "spec": {
            "template": {
                "metadata": {"labels": {POLICY_LABEL: key, SLOT_LABEL: slot.name}},
                "spec": {
                    "nodeClassRef": {
                        "group": NODE_CLASS_GROUP,
                        "kind": NODE_CLASS_KIND,
                        "name": node_class_name,
                    },
                    "requirements": [
                        {
                            "key": INSTANCE_TYPE_LABEL,
                            "operator": "In",
                            "values": [t.name for t, _ in slot.nodes],
                        },
                        {
                            "key": CAPACITY_TYPE_LABEL,
                            "operator": "In",
                            "values": [slot.capacity_type.value],
                        },
                    ],
                },
            },
            "limits": {
                "cpu": cpu_quantity(sum(t.vcpu * n for t, n in slot.nodes)),
                "memory": memory_quantity(sum(t.memory_gib * n for t, n in slot.nodes)),
            },
        },
    }


def contains(current: Any, wanted: Any) -> bool:
    """Whether `current` already holds everything in `wanted` (dicts may have more keys:
    the server adds defaults; lists must match item by item)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            contains(current.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(current) == len(wanted)
            and all(contains(c, w) for c, w in zip(current, wanted, strict=True))
        )
    return bool(current == wanted)


def nodepool_patch(current: Obj, desired: Obj) -> Obj | None:
    """A JSON merge patch that brings `current` to `desired`, or None when it is there."""
    labels = dig(desired, "metadata", "labels")
    if contains(current.get("spec"), desired["spec"]) and contains(
        dig(current, "metadata", "labels"), labels
    ):
        return None
    return {"metadata": {"labels": labels}, "spec": desired["spec"]}


@register("karpenter")
class KarpenterProvider:
    name = "karpenter"

    def __init__(self, node_class: str | None = None) -> None:
        self.node_class = node_class

    def apply(self, kube: Kube, policy: ScalingPolicy, layout: SlotLayout) -> Report:
        report = Report()
        try:
            existing = _nodepools(kube, policy)
        except TRANSPORT_ERRORS as err:
            report.errors.append(f"NodePools of {policy_key(policy)}: {describe_error(err)}")
            return report
        klass = self.node_class or node_class(policy)
        wanted = [nodepool(policy, slot, node_class_name=klass) for slot in layout.slots]
        for desired in wanted:
            name = desired["metadata"]["name"]
            ref = ObjectRef(NODEPOOLS, name)
            current = existing.get(name)
            try:
                if current is None:
                    kube.create(NODEPOOLS, desired)
                    report.changes.append(f"{ref}: created ({_summary(desired)})")
                elif (body := nodepool_patch(current, desired)) is not None:
                    kube.patch(ref, body)
                    report.changes.append(f"{ref}: updated ({_summary(desired)})")
            except TRANSPORT_ERRORS as err:
                report.errors.append(f"{ref}: {describe_error(err)}")
        keep = {d["metadata"]["name"] for d in wanted}
        for name in sorted(set(existing) - keep):
            _delete(report, kube, existing[name], "slot no longer planned")
        return report

    def release(self, kube: Kube, policy: ScalingPolicy) -> Report:
        report = Report()
        try:
            existing = _nodepools(kube, policy)
        except TRANSPORT_ERRORS as err:
            if not is_not_found(err):  # 404: the NodePool CRD is not installed, so none exist
                report.errors.append(f"NodePools of {policy_key(policy)}: {describe_error(err)}")
            return report
        for name in sorted(existing):
            _delete(report, kube, existing[name], "policy deleted")
        return report


def _nodepools(kube: Kube, policy: ScalingPolicy) -> dict[str, Obj]:
    """The policy's NodePools by name."""
    return {
        str(dig(p, "metadata", "name")): p
        for p in kube.list(NODEPOOLS, label_selector=policy_selector(policy))
    }


def _delete(report: Report, kube: Kube, pool: Obj, why: str) -> None:
    """Delete a NodePool; Karpenter then drains and removes its nodes. One already being
    deleted is left to Karpenter: asking again changes nothing."""
    if dig(pool, "metadata", "deletionTimestamp"):
        return
    ref = ObjectRef(NODEPOOLS, str(dig(pool, "metadata", "name")))
    try:
        if kube.delete(ref):
            report.changes.append(f"{ref}: deleted ({why})")
    except TRANSPORT_ERRORS as err:
        report.errors.append(f"{ref}: {describe_error(err)}")


def _summary(pool: Obj) -> str:
    requirements = dig(pool, "spec", "template", "spec", "requirements")
    types = ", ".join(requirements[0]["values"])
    limits = pool["spec"]["limits"]
    capacity = requirements[1]["values"][0]
    return f"{capacity} {types}, limits cpu {limits['cpu']} memory {limits['memory']}"
