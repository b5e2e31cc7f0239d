"""Placement: how a workload's pods land on the policy's nodes in the planned
spot:on-demand split.

**Slots.** Every node a provider makes for a policy carries ``spotwise.dev/slot``, and each
slot holds one capacity type: ``spot-0``, ``spot-1``, ... and ``on-demand-0``, ... A
workload whose pods may use S slots, k of them spot, and which spreads its pods evenly
over those slots (``topologySpreadConstraints``, maxSkew 1, DoNotSchedule) runs k/S of
them on spot. That is Karpenter's documented capacity-spread pattern (a label with
disjoint values per NodePool plus a spread over it; aws-samples karpenter-blueprints
"od-spot-split"), with S and k computed per workload from the plan instead of fixed.

**The rule for (S, k).** For r planned replicas, s of them on spot: over all 1 <= S <=
`MAX_SLOTS` and 0 <= k <= S, an even spread gives each slot r // S pods and puts the
r % S left over anywhere, so the spot pods end up between ``k*(r//S) + max(0, r%S -
(S-k))`` and ``k*(r//S) + min(k, r%S)``. Pick the (S, k) whose worst case is closest to
s, among those whose most spot pods stay within the policy's limit (``spot.maxShare``
and ``onDemand.minShare`` of r) and that need no more slots of a type than the plan has
nodes of it (an empty slot is no topology domain for the scheduler). Ties go to the
smaller S, then smaller k. All-spot is (1, 1), all-on-demand (1, 0); with enough nodes
r=10, s=7 gives (10, 7), r=6, s=4 gives (3, 2) and r=4, s=3 gives (4, 3).

**Keeping the slots.** A new (S, k) is a new pod template, which rolls every pod (a
Deployment rollout, a Knative Revision). So the (S, k) the workload's template already
has (`current_spread`) is kept while it still realizes the plan acceptably: it passes
both bounds above and its worst case is within `KEEP_TOLERANCE` pods of s, or no further
from s than the best choice's. Only otherwise is (S, k) chosen afresh.

**Nodes per slot.** The policy has as many spot slots as its most spot-spread workload
needs (likewise on-demand). The planned nodes of a capacity type are dealt to its slots:
each slot first gets one node (largest first, to the slot with the most demand), then
every further node goes to the slot whose CPU falls furthest short of its share of the
pods' CPU requests.

**The pod template** gets (1) required node affinity to ``spotwise.dev/policy`` and the
workload's slots, ANDed into each of its existing node selector terms; (2) one
``topologySpreadConstraints`` entry over ``spotwise.dev/slot``; (3) with the kwok
provider, a toleration of KWOK's ``kwok.x-k8s.io/node=fake:NoSchedule`` taint; when it adds
that, the workload itself gets the annotation ``spotwise.dev/kwok-toleration: added`` (a
user may have written the same toleration, and then it is theirs to keep). A change rolls
the pods, so the patch is built only when one of these differs.

**Unplacing** (the policy is deleted) takes out exactly those again and nothing of the
user's: see `unplacement_patch`.

Not here: creating the nodes (`spotwise.actuate.providers`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spotwise.actuate.kube import Obj, ObjectRef
from spotwise.actuate.labels import POLICY_LABEL, SLOT_LABEL
from spotwise.actuate.patches import Patch, dig, guarded
from spotwise.api.v1alpha1 import ScalingPolicySpec, WorkloadSpec
from spotwise.domain import CapacityType, Catalog, InstanceType, Plan, WorkloadPlan

MAX_SLOTS = 10
# How far (in pods, worst case) the current slots may miss the planned spot pods and still
# be kept. One pod, not a share: an even spread can always be off by one, and a share of a
# large workload would let the split drift by many pods.
KEEP_TOLERANCE = 1
KWOK_TOLERATION = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Equal",
    "value": "fake",
    "effect": "NoSchedule",
}
# On the workload (not its pod template, so it rolls nothing): placement added the
# toleration, so unplacing removes it. Without it the toleration is the user's.
KWOK_TOLERATION_ANNOTATION = "spotwise.dev/kwok-toleration"
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Spread:
    """S slots, k of them spot."""

    slots: int
    spot: int

    @property
    def on_demand(self) -> int:
        return self.slots - self.spot

    def slot_names(self) -> tuple[str, ...]:
        return tuple(slot_name(CapacityType.SPOT, j) for j in range(self.spot)) + tuple(
            slot_name(CapacityType.ON_DEMAND, j) for j in range(self.on_demand)
        )

    def spot_pods(self, replicas: int) -> tuple[int, int]:
        """(fewest, most) spot pods an even spread of `replicas` over these slots gives."""
        q, rem = divmod(replicas, self.slots)
        return self.spot * q + max(0, rem - self.on_demand), self.spot * q + min(self.spot, rem)


@dataclass(frozen=True, slots=True)
class Slot:
    """One value of ``spotwise.dev/slot`` and the planned nodes that carry it."""

    name: str
    capacity_type: CapacityType
    nodes: tuple[tuple[InstanceType, int], ...]  # (instance type, count), by type name

    @property
    def count(self) -> int:
        return sum(n for _, n in self.nodes)


@dataclass(frozen=True, slots=True)
class SlotLayout:
    spreads: tuple[tuple[str, Spread], ...]  # per workload name
    slots: tuple[Slot, ...]

    def spread(self, workload: str) -> Spread:
        for name, spread in self.spreads:
            if name == workload:
                return spread
        raise KeyError(workload)


def slot_name(capacity_type: CapacityType, index: int) -> str:
    return f"{capacity_type.value}-{index}"


def spot_pod_limit(spec: ScalingPolicySpec, replicas: int) -> int:
    """Most spot pods the policy allows for a workload of `replicas`."""
    if not spec.nodes.spot.enabled:
        return 0
    by_share = math.floor(spec.nodes.spot.max_share * replicas + _EPS)
    by_floor = replicas - math.ceil(spec.nodes.on_demand.min_share * replicas - _EPS)
    return max(0, min(by_share, by_floor))


def choose_spread(
    replicas: int,
    spot_replicas: int,
    *,
    spot_limit: int,
    spot_nodes: int,
    on_demand_nodes: int,
    max_slots: int = MAX_SLOTS,
    current: Spread | None = None,
) -> Spread:
    """The (S, k) of the module docstring's rule; `current`, the workload's slots now, is
    kept while it is acceptable (see "Keeping the slots")."""
    spot_limit = max(spot_limit, spot_replicas)  # the plan is within limits by construction

    def error(spread: Spread) -> int | None:
        """Worst-case miss of the planned spot pods; None when a bound rules it out."""
        if spread.spot > spot_nodes or spread.on_demand > on_demand_nodes:
            return None
        low, high = spread.spot_pods(replicas)
        if high > spot_limit:
            return None
        return max(abs(high - spot_replicas), abs(spot_replicas - low))

    best: tuple[int, int, int] | None = None
    for slots in range(1, max_slots + 1):
        for spot in range(slots + 1):
            miss = error(Spread(slots, spot))
            if miss is not None and (best is None or (miss, slots, spot) < best):
                best = (miss, slots, spot)
    if best is None:  # no nodes where the plan's pods belong: they wait, on-demand only
        return Spread(1, 0)
    if current is not None and 1 <= current.slots <= max_slots:
        miss = error(current)
        if miss is not None and miss <= max(KEEP_TOLERANCE, best[0]):
            return current
    return Spread(best[1], best[2])


def current_spread(workload: Obj, policy: str) -> Spread | None:
    """The (S, k) a workload's pod template has from `placement_patch` for `policy`, or None
    when it has none or its slots are not ``spot-0..k-1`` and ``on-demand-0..S-k-1``."""
    pod = dig(workload, "spec", "template", "spec") or {}
    for term in _terms(pod):
        expressions = term.get("matchExpressions") or []
        if not any(_our_policy(e, policy) for e in expressions):
            continue
        for e in expressions:
            if e.get("key") == SLOT_LABEL and e.get("operator") == "In":
                values = list(e.get("values") or [])
                spot = sum(v.startswith(f"{CapacityType.SPOT.value}-") for v in values)
                spread = Spread(len(values), spot)
                if values and spread.slot_names() == tuple(values):
                    return spread
        return None
    return None


def slot_layout(
    spec: ScalingPolicySpec,
    plan: Plan,
    catalog: Catalog,
    *,
    max_slots: int = MAX_SLOTS,
    current: Mapping[str, Spread] | None = None,
) -> SlotLayout:
    """Spreads per workload and nodes per slot for a plan (pure). `current` holds the
    workloads' spreads now (`current_spread`), by workload name, to keep where acceptable."""
    nodes_of = {
        c: [n for n in plan.nodes if n.capacity_type is c and n.count > 0] for c in CapacityType
    }
    count_of = {c: sum(n.count for n in nodes_of[c]) for c in CapacityType}
    spreads: list[tuple[str, Spread]] = []
    plans: list[tuple[WorkloadSpec, WorkloadPlan, Spread]] = []
    for ws in spec.workloads:
        try:
            wp = plan.workload(ws.name)
        except KeyError:
            continue
        spread = choose_spread(
            wp.replicas,
            wp.spot_replicas,
            spot_limit=spot_pod_limit(spec, wp.replicas),
            spot_nodes=count_of[CapacityType.SPOT],
            on_demand_nodes=count_of[CapacityType.ON_DEMAND],
            max_slots=max_slots,
            current=(current or {}).get(ws.name),
        )
        spreads.append((ws.name, spread))
        plans.append((ws, wp, spread))
    slots: list[Slot] = []
    for capacity_type in (CapacityType.SPOT, CapacityType.ON_DEMAND):
        spot = capacity_type is CapacityType.SPOT
        needed = max((s.spot if spot else s.on_demand for _, _, s in plans), default=0)
        total = count_of[capacity_type]
        n_slots = min(max(needed, 1 if total else 0), total)
        demand = [0.0] * n_slots
        for ws, wp, s in plans:
            used = s.spot if spot else s.on_demand
            pods = wp.spot_replicas if spot else wp.replicas - wp.spot_replicas
            for j in range(min(used, n_slots)):
                demand[j] += pods / used * ws.resources.cpu_cores
        machines = [
            _instance_type(catalog, n.instance_type)
            for n in nodes_of[capacity_type]
            for _ in range(n.count)
        ]
        for j, dealt in enumerate(deal(machines, demand)):
            slots.append(Slot(slot_name(capacity_type, j), capacity_type, _tally(dealt)))
    return SlotLayout(tuple(spreads), tuple(slots))


def deal(machines: Sequence[InstanceType], demand: Sequence[float]) -> list[list[InstanceType]]:
    """Nodes per slot: one each first, then to the slot furthest below its CPU share."""
    n = len(demand)
    out: list[list[InstanceType]] = [[] for _ in range(n)]
    if n == 0:
        return out
    order = sorted(machines, key=lambda t: (-t.vcpu, t.name))
    weights = list(demand) if sum(demand) > 0 else [1.0] * n
    total_cpu = sum(t.vcpu for t in order)
    target = [w / sum(weights) * total_cpu for w in weights]
    by_demand = sorted(range(n), key=lambda j: (-weights[j], j))
    for j, machine in zip(by_demand, order, strict=False):
        out[j].append(machine)
    for machine in order[n:]:
        j = max(range(n), key=lambda j: (target[j] - sum(t.vcpu for t in out[j]), -j))
        out[j].append(machine)
    return out


def _tally(machines: list[InstanceType]) -> tuple[tuple[InstanceType, int], ...]:
    counts: dict[str, list[Any]] = {}
    for t in machines:
        counts.setdefault(t.name, [t, 0])[1] += 1
    return tuple((t, n) for _, (t, n) in sorted(counts.items()))


def _instance_type(catalog: Catalog, name: str) -> InstanceType:
    found = catalog.get(name)
    if found is None:
        raise ValueError(f"instance type {name!r} of the plan is not in the policy's catalog")
    return found


# -- the pod template -----------------------------------------------------------------


def pod_selector(ref: ObjectRef, workload: Obj) -> Obj:
    """The label selector that picks this workload's pods, for the spread to count."""
    if ref.resource.kind == "Service":  # Knative labels every pod of a Service with its name
        return {"matchLabels": {KNATIVE_SERVICE_LABEL: ref.name}}
    selector = dig(workload, "spec", "selector")
    if not isinstance(selector, dict) or not selector:
        raise ValueError(f"{ref} has no spec.selector")
    return selector


def affinity_terms(current: Sequence[Obj], policy: str, slots: Sequence[str]) -> list[Obj]:
    """The node selector terms with our two requirements ANDed into each (terms are ORed,
    so adding ours to every term keeps the user's alternatives and narrows each)."""
    ours = [
        {"key": POLICY_LABEL, "operator": "In", "values": [policy]},
        {"key": SLOT_LABEL, "operator": "In", "values": list(slots)},
    ]
    out = []
    for term in current or [{}]:
        kept = [
            e
            for e in term.get("matchExpressions") or []
            if e.get("key") not in (POLICY_LABEL, SLOT_LABEL)
        ]
        out.append({**term, "matchExpressions": kept + ours})
    return out


def spread_constraints(current: Sequence[Obj], selector: Obj) -> list[Obj]:
    ours = {
        "maxSkew": 1,
        "topologyKey": SLOT_LABEL,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": selector,
    }
    return [c for c in current if c.get("topologyKey") != SLOT_LABEL] + [ours]


def placement_patch(
    ref: ObjectRef, workload: Obj, policy: str, spread: Spread, *, tolerate_kwok: bool
) -> Patch | None:
    """Node affinity, slot spread and (kwok) toleration on the pod template; None when
    they are already there."""
    pod = dig(workload, "spec", "template", "spec") or {}
    current_terms = _terms(pod)
    terms = affinity_terms(current_terms, policy, spread.slot_names())
    current_spread = pod.get("topologySpreadConstraints") or []
    spreads = spread_constraints(current_spread, pod_selector(ref, workload))
    current_tolerations = pod.get("tolerations") or []
    tolerations = list(current_tolerations)
    if tolerate_kwok and KWOK_TOLERATION not in tolerations:
        tolerations.append(KWOK_TOLERATION)
    changes: Obj = {}
    if terms != current_terms:
        changes["affinity"] = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": terms}}}
    if spreads != current_spread:
        changes["topologySpreadConstraints"] = spreads
    body: Obj = {}
    if tolerations != current_tolerations:
        changes["tolerations"] = tolerations
        body["metadata"] = {"annotations": {KWOK_TOLERATION_ANNOTATION: "added"}}
    if not changes:
        return None
    body = guarded(workload, {**body, "spec": {"template": {"spec": changes}}})
    return Patch(
        ref,
        body,
        f"placement {spread.spot} of {spread.slots} slots spot ({', '.join(spread.slot_names())})",
    )


# -- unplacing ------------------------------------------------------------------------


def unplacement_patch(ref: ObjectRef, workload: Obj, policy: str) -> Patch | None:
    """What `placement_patch` wrote for `policy`, taken out of the pod template again, as
    one patch (one rollout); None when none of it is left.

    Taken out: our two match expressions from each node selector term that holds our
    policy's (a term left empty goes, and with the last term the required node affinity,
    and then ``nodeAffinity`` and ``affinity`` when nothing of the user's is in them); the
    spread over ``spotwise.dev/slot``; the KWOK toleration and its annotation when the
    annotation says placement added it. Everything else stays as it is. A template that
    requires another policy's nodes is that policy's now (its spread and toleration
    too): None.

    A Deployment or StatefulSet gets a strategic merge patch, where a list with a merge key
    (``topologySpreadConstraints``) loses one item only through a ``$patch: delete``
    directive; a Knative Service gets a JSON merge patch, which replaces lists whole.
    """
    pod = dig(workload, "spec", "template", "spec") or {}
    terms = _terms(pod)
    expressions = [e for t in terms for e in t.get("matchExpressions") or []]
    if any(e.get("key") == POLICY_LABEL and not _our_policy(e, policy) for e in expressions):
        return None
    changes: Obj = {}
    removed: list[str] = []
    kept_terms = _without_ours(terms, policy)
    if kept_terms != terms:
        changes["affinity"] = (
            {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": kept_terms}}}
            if kept_terms
            else _without_required(pod.get("affinity") or {})
        )
        removed.append("node affinity")
    spreads = pod.get("topologySpreadConstraints") or []
    kept_spreads = [c for c in spreads if c.get("topologyKey") != SLOT_LABEL]
    if kept_spreads != spreads:
        if not kept_spreads:
            changes["topologySpreadConstraints"] = None
        elif ref.resource.builtin:
            changes["topologySpreadConstraints"] = [{"topologyKey": SLOT_LABEL, "$patch": "delete"}]
        else:
            changes["topologySpreadConstraints"] = kept_spreads
        removed.append("slot spread")
    body: Obj = {}
    if KWOK_TOLERATION_ANNOTATION in (dig(workload, "metadata", "annotations") or {}):
        body["metadata"] = {"annotations": {KWOK_TOLERATION_ANNOTATION: None}}
        tolerations = pod.get("tolerations") or []
        kept_tolerations = [t for t in tolerations if t != KWOK_TOLERATION]
        if kept_tolerations != tolerations:
            changes["tolerations"] = kept_tolerations or None
            removed.append("kwok toleration")
        else:
            removed.append(f"annotation {KWOK_TOLERATION_ANNOTATION}")
    if changes:  # node selector terms and tolerations are resent whole: guard them
        body = guarded(workload, {**body, "spec": {"template": {"spec": changes}}})
    if not body:
        return None
    return Patch(ref, body, f"placement removed ({', '.join(removed)})")


def _terms(pod: Obj) -> list[Obj]:
    terms = dig(pod, "affinity", "nodeAffinity", REQUIRED, "nodeSelectorTerms")
    return list(terms) if isinstance(terms, list) else []


def _our_policy(expression: Obj, policy: str) -> bool:
    return expression.get("key") == POLICY_LABEL and expression.get("values") == [policy]


def _without_ours(terms: Sequence[Obj], policy: str) -> list[Obj]:
    """The terms with our expressions taken out of each that holds our policy's."""
    out = []
    for term in terms:
        expressions = term.get("matchExpressions") or []
        if not any(_our_policy(e, policy) for e in expressions):
            out.append(term)
            continue
        kept = [e for e in expressions if e.get("key") not in (POLICY_LABEL, SLOT_LABEL)]
        rest = {k: v for k, v in term.items() if k != "matchExpressions"}
        if kept:
            rest["matchExpressions"] = kept
        # A term that held only ours was placement's stand-in for "no terms": it goes.
        if rest.get("matchExpressions") or rest.get("matchFields"):
            out.append(rest)
    return out


def _without_required(affinity: Obj) -> Obj | None:
    """The patch of ``affinity`` that removes its required node affinity and whatever is
    left empty by that (null deletes, in both patch types)."""
    node_affinity = affinity.get("nodeAffinity") or {}
    if any(v for k, v in node_affinity.items() if k != REQUIRED):
        return {"nodeAffinity": {REQUIRED: None}}
    if any(v for k, v in affinity.items() if k != "nodeAffinity"):
        return {"nodeAffinity": None}
    return None
