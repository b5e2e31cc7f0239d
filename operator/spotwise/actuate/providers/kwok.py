"""Provider ``kwok``: the plan's nodes as fake Nodes that KWOK keeps Ready (the kind path).

Each Node is what KWOK's docs create by hand (https://kwok.sigs.k8s.io/docs/user/
kwok-manage-nodes-and-pods/): annotations ``kwok.x-k8s.io/node: fake`` (what a
``--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake`` controller picks up)
and ``node.alpha.kubernetes.io/ttl: "0"``, label ``type: kwok``, the taint
``kwok.x-k8s.io/node=fake:NoSchedule`` so real pods never land there by accident, and
``status.capacity``/``allocatable`` (cpu, memory, pods) from the instance type: vCPU and
memory from the catalog, pods and the kubelet's reservation by the EKS formulas
(`spotwise.models.packing`). On top, the labels a real node of that pool would have
(``node.kubernetes.io/instance-type``, ``karpenter.sh/capacity-type``,
``topology.kubernetes.io/zone``) and Spotwise's own (``spotwise.dev/policy``,
``spotwise.dev/slot``, ``app.kubernetes.io/managed-by``).

Reconciling one (slot, instance type) group: keep as many nodes as planned (schedulable
ones first, then those without an interruption taint, then by name), uncordon a kept node
that Spotwise had cordoned, create the missing ones, and remove the rest. `release` (the
policy is being deleted) removes all of the policy's Nodes. Removing is what ``kubectl
drain`` does: cordon (``spec.unschedulable: true``) every node to remove first, so that a
pod evicted from one is not rescheduled onto the next, then for each node evict every pod
on it through the policy/v1 Eviction API (DaemonSet and mirror pods excepted) and delete
the Node only when every eviction was accepted; a refused one (429: a
PodDisruptionBudget) leaves the node cordoned for the next try.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from spotwise.actuate.kube import (
    NODES,
    PODS,
    TRANSPORT_ERRORS,
    Kube,
    Obj,
    ObjectRef,
    describe_error,
    ref_of,
)
from spotwise.actuate.labels import (
    CAPACITY_TYPE_LABEL,
    INSTANCE_TYPE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    SLOT_LABEL,
    ZONE_LABEL,
    dns_name,
    policy_key,
    policy_selector,
)
from spotwise.actuate.patches import Report, dig
from spotwise.actuate.placement import Slot, SlotLayout
from spotwise.actuate.providers.base import cpu_quantity, memory_quantity, register
from spotwise.api.v1alpha1 import ScalingPolicy
from spotwise.domain import InstanceType
from spotwise.models.packing import kubelet_reserved_cpu, kubelet_reserved_memory_gib, max_pods

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
DRAINING_ANNOTATION = "spotwise.dev/draining"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
INTERRUPTION_TAINTS = frozenset(
    {"aws-node-termination-handler/spot-itn", "karpenter.sh/disrupted", "spotwise.dev/interruption"}
)
DEFAULT_ZONES = ("zone-a", "zone-b", "zone-c")


def zones_for(policy: ScalingPolicy) -> tuple[str, ...]:
    """Three zones named after the built-in catalog's region (``aws-us-east-1`` ->
    us-east-1a, b, c), else zone-a, b, c."""
    builtin = policy.spec.nodes.catalog.builtin or ""
    if builtin.startswith("aws-"):
        region = builtin.removeprefix("aws-")
        return tuple(f"{region}{z}" for z in "abc")
    return DEFAULT_ZONES


def node_name(policy: ScalingPolicy, slot: str, instance_type: str, index: int) -> str:
    return dns_name("kwok", policy_key(policy), slot, instance_type, str(index))


def kwok_node(
    name: str, policy: ScalingPolicy, slot: Slot, instance_type: InstanceType, zone: str
) -> Obj:
    """The whole Node object for one fake node."""
    arch = "arm64" if instance_type.arch == "arm64" else "amd64"
    pods = str(max_pods(instance_type))
    capacity = {
        "cpu": cpu_quantity(instance_type.vcpu),
        "memory": memory_quantity(instance_type.memory_gib),
        "pods": pods,
    }
    allocatable = {
        "cpu": f"{_floor((instance_type.vcpu - kubelet_reserved_cpu(instance_type.vcpu)) * 1000)}m",
        "memory": memory_quantity(
            instance_type.memory_gib - kubelet_reserved_memory_gib(instance_type)
        ),
        "pods": pods,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", KWOK_ANNOTATION: "fake"},
            "labels": {
                "beta.kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
                INSTANCE_TYPE_LABEL: instance_type.name,
                CAPACITY_TYPE_LABEL: slot.capacity_type.value,
                ZONE_LABEL: zone,
                POLICY_LABEL: policy_key(policy),
                SLOT_LABEL: slot.name,
                MANAGED_BY_LABEL: MANAGED_BY,
            },
        },
        "spec": {"taints": [KWOK_TAINT]},
        "status": {
            "allocatable": allocatable,
            "capacity": capacity,
            "nodeInfo": {
                "architecture": arch,
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "kubeProxyVersion": "fake",
                "kubeletVersion": "fake",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "",
                "systemUUID": "",
            },
            "phase": "Running",
        },
    }


CORDON = {
    "metadata": {"annotations": {DRAINING_ANNOTATION: "true"}},
    "spec": {"unschedulable": True},
}
UNCORDON = {
    "metadata": {"annotations": {DRAINING_ANNOTATION: None}},
    "spec": {"unschedulable": False},
}


def draining(node: Obj) -> bool:
    return dig(node, "metadata", "annotations", DRAINING_ANNOTATION) is not None


def interrupted(node: Obj) -> bool:
    return any(t.get("key") in INTERRUPTION_TAINTS for t in dig(node, "spec", "taints") or [])


def keep_order(node: Obj) -> tuple[bool, bool, str]:
    return draining(node), interrupted(node), str(dig(node, "metadata", "name"))


def evictable(pod: Obj) -> bool:
    """What ``kubectl drain`` evicts: not DaemonSet pods, mirror pods, or pods that are
    already finished or terminating."""
    owners = dig(pod, "metadata", "ownerReferences") or []
    if any(o.get("kind") == "DaemonSet" for o in owners):
        return False
    if "kubernetes.io/config.mirror" in (dig(pod, "metadata", "annotations") or {}):
        return False
    if dig(pod, "metadata", "deletionTimestamp"):
        return False
    return dig(pod, "status", "phase") not in ("Succeeded", "Failed")


@register("kwok")
class KwokProvider:
    name = "kwok"

    def __init__(self, zones: Sequence[str] | None = None) -> None:
        self.zones = tuple(zones) if zones else None

    def apply(self, kube: Kube, policy: ScalingPolicy, layout: SlotLayout) -> Report:
        report = Report()
        nodes = _nodes(report, kube, policy)
        if nodes is None:
            return report
        groups: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        for node in nodes:
            labels = dig(node, "metadata", "labels") or {}
            groups[(labels.get(SLOT_LABEL, ""), labels.get(INSTANCE_TYPE_LABEL, ""))].append(node)
        taken = {str(dig(n, "metadata", "name")) for n in nodes}
        zones = self.zones or zones_for(policy)
        remove: list[Obj] = []
        for slot in layout.slots:
            for instance_type, count in slot.nodes:
                have = sorted(groups.pop((slot.name, instance_type.name), []), key=keep_order)
                remove += have[count:]
                for node in have[:count]:
                    if draining(node):
                        self._send(report, kube, ref_of(NODES, node), UNCORDON, "uncordoned")
                for index in _free_indexes(
                    policy, slot.name, instance_type.name, taken, count - len(have)
                ):
                    name = node_name(policy, slot.name, instance_type.name, index)
                    taken.add(name)
                    body = kwok_node(name, policy, slot, instance_type, zones[index % len(zones)])
                    ref = ObjectRef(NODES, name)
                    try:
                        kube.create(NODES, body)
                        report.changes.append(
                            f"{ref}: created ({instance_type.name} {slot.capacity_type.value}, "
                            f"slot {slot.name})"
                        )
                    except TRANSPORT_ERRORS as err:
                        report.errors.append(f"{ref}: {describe_error(err)}")
        for stale in groups.values():
            remove += stale
        _remove(report, kube, remove)
        return report

    def release(self, kube: Kube, policy: ScalingPolicy) -> Report:
        report = Report()
        nodes = _nodes(report, kube, policy)
        if nodes is not None:
            _remove(report, kube, nodes)
        return report

    @staticmethod
    def _send(report: Report, kube: Kube, ref: ObjectRef, body: Obj, what: str) -> bool:
        try:
            kube.patch(ref, body)
        except TRANSPORT_ERRORS as err:
            report.errors.append(f"{ref}: {describe_error(err)}")
            return False
        report.changes.append(f"{ref}: {what}")
        return True


def _nodes(report: Report, kube: Kube, policy: ScalingPolicy) -> list[Obj] | None:
    """The policy's Nodes, or None (and an error line) when they cannot be listed."""
    try:
        return kube.list(NODES, label_selector=policy_selector(policy))
    except TRANSPORT_ERRORS as err:
        report.errors.append(f"Nodes of {policy_key(policy)}: {describe_error(err)}")
        return None


def _remove(report: Report, kube: Kube, nodes: list[Obj]) -> None:
    """Cordon every node, then evict and delete each: one report line per node."""
    cordoned: list[tuple[ObjectRef, list[str]]] = []
    for node in sorted(nodes, key=lambda n: str(dig(n, "metadata", "name"))):
        ref = ref_of(NODES, node)
        if draining(node) and dig(node, "spec", "unschedulable"):
            cordoned.append((ref, []))
            continue
        try:
            kube.patch(ref, CORDON)
        except TRANSPORT_ERRORS as err:
            report.errors.append(f"{ref}: {describe_error(err)}")
            continue
        cordoned.append((ref, ["cordoned"]))
    for ref, done in cordoned:
        _drain(report, kube, ref, done)


def _drain(report: Report, kube: Kube, ref: ObjectRef, done: list[str]) -> None:
    """Evict the pods of a cordoned node, then delete it: one report line for the node."""
    try:
        pods = kube.list(PODS, field_selector=f"spec.nodeName={ref.name}")
        evicted = 0
        for pod in filter(evictable, pods):
            pod_ref = ref_of(PODS, pod)
            try:
                evicted += kube.evict(pod_ref)
            except TRANSPORT_ERRORS as err:
                done.append(f"evicted {evicted} pods")
                report.errors.append(
                    f"{ref}: {', '.join(done)}; eviction of {pod_ref.namespace}/"
                    f"{pod_ref.name} refused ({describe_error(err)}); left cordoned"
                )
                return
        if evicted:
            done.append(f"evicted {evicted} pods")
        kube.delete(ref)
        done.append("deleted")
    except TRANSPORT_ERRORS as err:
        report.errors.append(f"{ref}: {', '.join([*done, describe_error(err)])}")
        return
    report.changes.append(f"{ref}: {', '.join(done)}")


def _floor(x: float) -> int:
    return math.floor(x + 1e-6)  # 3919.9999999 is 3920m, not 3919m


def _free_indexes(
    policy: ScalingPolicy, slot: str, instance_type: str, taken: set[str], n: int
) -> list[int]:
    out: list[int] = []
    index = 0
    while len(out) < n:
        if node_name(policy, slot, instance_type, index) not in taken:
            out.append(index)
        index += 1
    return out
