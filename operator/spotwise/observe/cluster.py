"""What the cluster runs now, for one policy: replicas per workload, nodes per pool, and
the pools whose nodes are being interrupted.

Replicas come from the target's scale subresource (Deployment, StatefulSet) or, for a
Knative Service, from its latest ready Revision. The policy's nodes are those labelled
`spotwise.dev/policy=<namespace>.<name>`, as the providers label them. A node's pool is
`<instance type>/<capacity type>` from its well-known labels, the same name as
`domain.Pool.name`. A spot node carrying one of `INTERRUPTION_TAINTS` marks its pool as
interrupted, with one narrowing for Karpenter's ``karpenter.sh/disrupted``: Karpenter sets
that taint on every node it takes away, for a spot interruption (its interruption controller
deletes the NodeClaim) and as well for its own consolidation, drift and emptiness (its
disruption queue first sets the NodeClaim's ``DisruptionReason`` condition) and when a
NodePool Spotwise deleted is drained. So that taint counts only with `KarpenterState`
evidence: the node's NodePool is one of the policy's and not being deleted, and its
NodeClaim has no ``DisruptionReason``.

`read_cluster` never raises for API errors: what it could not read is left out and
listed in `ClusterState.problems`. Not here: changing anything (`actuate`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s

from spotwise.api.v1alpha1 import KNATIVE_SERVING_API_VERSION, ScalingPolicy, TargetRef
from spotwise.domain import CapacityType

POLICY_LABEL = "spotwise.dev/policy"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INTERRUPTION_TAINTS: frozenset[str] = frozenset(
    {
        "aws-node-termination-handler/spot-itn",  # AWS Node Termination Handler: 2-min notice
        "karpenter.sh/disrupted",  # Karpenter is draining the node: see KarpenterState
        "spotwise.dev/interruption",  # a rehearsal: taint a node by hand
    }
)
KARPENTER_DISRUPTED_TAINT = "karpenter.sh/disrupted"
# Set on a NodeClaim by Karpenter's disruption queue (Underutilized, Empty, Drifted, ...)
# and its repair and garbage collection, never by its interruption controller.
DISRUPTION_REASON_CONDITION = "DisruptionReason"
KARPENTER_API = ("karpenter.sh", "v1")
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds per API call
_MAX_LABEL_VALUE = 63


def policy_key(policy: ScalingPolicy) -> str:
    """The `spotwise.dev/policy` label value of the policy's nodes: `<namespace>.<name>`,
    cut to 63 characters with a hash suffix. The same as `spotwise.actuate.labels.
    policy_key` (observe may not import actuate; a unit test keeps the two equal)."""
    text = f"{policy.metadata.namespace or 'default'}.{policy.metadata.name}"
    if len(text) <= _MAX_LABEL_VALUE:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return text[: _MAX_LABEL_VALUE - len(digest) - 1].rstrip("-.") + "-" + digest


def node_pool(node: Mapping[str, Any]) -> str | None:
    """`<instance type>/<capacity type>` of a Node (API JSON form), or None when its
    labels do not say both."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    instance_type = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), None)
    capacity = labels.get(CAPACITY_TYPE_LABEL)
    if instance_type is None or capacity not in {c.value for c in CapacityType}:
        return None
    return f"{instance_type}/{capacity}"


@dataclass(frozen=True)
class KarpenterState:
    """What tells a spot interruption from Karpenter's own disruption of a policy's nodes."""

    nodepools: frozenset[str]  # the policy's NodePools that are not being deleted
    disrupting: frozenset[str]  # Nodes whose NodeClaim has DisruptionReason True


def interrupted_pool(
    node: Mapping[str, Any], karpenter: KarpenterState | None = None
) -> str | None:
    """The pool of a spot Node (API JSON form) that is being interrupted, else None.

    Tainted ``aws-node-termination-handler/spot-itn`` or ``spotwise.dev/interruption``: yes.
    Tainted ``karpenter.sh/disrupted``: only when `karpenter` shows that its NodePool
    (label ``karpenter.sh/nodepool``) is one of the policy's and not being deleted, and
    that its NodeClaim has no ``DisruptionReason``; without that evidence, no (a false
    interruption shuns a pool and posts an event, a missed one waits for the next tick).
    On-demand nodes are never interrupted."""
    taints = {
        t.get("key") for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, Mapping)
    }
    pool = node_pool(node)
    if pool is None or not pool.endswith(f"/{CapacityType.SPOT.value}"):
        return None
    if taints & (INTERRUPTION_TAINTS - {KARPENTER_DISRUPTED_TAINT}):
        return pool
    if KARPENTER_DISRUPTED_TAINT in taints and karpenter is not None:
        meta = node.get("metadata") or {}
        nodepool = (meta.get("labels") or {}).get(NODEPOOL_LABEL)
        if nodepool in karpenter.nodepools and meta.get("name") not in karpenter.disrupting:
            return pool
    return None


def read_karpenter(
    api: k8s.ApiClient, policy: ScalingPolicy, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
) -> KarpenterState | None:
    """The policy's live NodePools and the Nodes Karpenter is disrupting on its own accord,
    or None when Karpenter's CRDs are not installed. Raises `k8s.ApiException` and
    transport errors."""
    custom = k8s.CustomObjectsApi(api)
    group, version = KARPENTER_API
    selector = f"{MANAGED_BY_LABEL}=spotwise,{POLICY_LABEL}={policy_key(policy)}"
    try:
        pools: Any = custom.list_cluster_custom_object(
            group, version, "nodepools", label_selector=selector, _request_timeout=request_timeout
        )
    except k8s.ApiException as err:
        if err.status == 404:
            return None
        raise
    live = sorted(
        str(p["metadata"]["name"])
        for p in pools.get("items") or []
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    )
    if not live:
        return KarpenterState(frozenset(), frozenset())
    claims: Any = custom.list_cluster_custom_object(
        group,
        version,
        "nodeclaims",
        label_selector=f"{NODEPOOL_LABEL} in ({','.join(live)})",
        _request_timeout=request_timeout,
    )
    disrupting = {
        str((c.get("status") or {}).get("nodeName"))
        for c in claims.get("items") or []
        if any(
            cond.get("type") == DISRUPTION_REASON_CONDITION and cond.get("status") == "True"
            for cond in (c.get("status") or {}).get("conditions") or []
        )
    }
    return KarpenterState(frozenset(live), frozenset(disrupting))


@dataclass(frozen=True)
class ClusterState:
    replicas: Mapping[str, int]  # workload name -> replicas its target asks for now
    nodes_by_pool: Mapping[str, int]  # pool name -> nodes of the policy (not being deleted)
    interrupted_pools: frozenset[str]
    problems: tuple[str, ...] = field(default=())  # what could not be read, one line each


def read_cluster(
    api: k8s.ApiClient,
    policy: ScalingPolicy,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> ClusterState:
    """Replicas of every workload of `policy` and the policy's nodes by pool."""
    namespace = policy.metadata.namespace or "default"
    replicas: dict[str, int] = {}
    problems: list[str] = []
    for ws in policy.spec.workloads:
        target = ws.target_ref
        try:
            count = _replicas(api, target, namespace, request_timeout)
        except k8s.ApiException as err:
            problems.append(f"{ws.name}: {_what(target, namespace)}: {_api_reason(err)}")
            continue
        except (urllib3.exceptions.HTTPError, OSError) as err:
            problems.append(f"{ws.name}: {_what(target, namespace)}: {err}")
            continue
        if count is None:
            problems.append(f"{ws.name}: {_what(target, namespace)} reports no replicas yet")
        else:
            replicas[ws.name] = count

    pools: Counter[str] = Counter()
    interrupted: set[str] = set()
    selector = f"{POLICY_LABEL}={policy_key(policy)}"
    try:
        listed = k8s.CoreV1Api(api).list_node(
            label_selector=selector, _request_timeout=request_timeout
        )
        nodes = [n.to_dict(serialize=True) for n in listed.items]
    except k8s.ApiException as err:
        problems.append(f"nodes {selector}: {_api_reason(err)}")
        nodes = []
    except (urllib3.exceptions.HTTPError, OSError) as err:
        problems.append(f"nodes {selector}: {err}")
        nodes = []
    karpenter: KarpenterState | None = None
    if any(_karpenter_disrupted_spot(n) for n in nodes):
        try:
            karpenter = read_karpenter(api, policy, request_timeout=request_timeout)
        except k8s.ApiException as err:
            problems.append(f"Karpenter NodePools and NodeClaims: {_api_reason(err)}")
        except (urllib3.exceptions.HTTPError, OSError) as err:
            problems.append(f"Karpenter NodePools and NodeClaims: {err}")
    for node in nodes:
        deleting = bool((node.get("metadata") or {}).get("deletionTimestamp"))
        # Karpenter deletes a Node before it taints and drains it, so its taint is read
        # on deleting Nodes too; the other taints only on Nodes that stay.
        if not deleting or _karpenter_disrupted_spot(node):
            hit = interrupted_pool(node, karpenter)
            if hit is not None:
                interrupted.add(hit)
        if deleting:
            continue
        pool = node_pool(node)
        if pool is not None:
            pools[pool] += 1
    return ClusterState(
        replicas=replicas,
        nodes_by_pool=dict(sorted(pools.items())),
        interrupted_pools=frozenset(interrupted),
        problems=tuple(problems),
    )


def _karpenter_disrupted_spot(node: Mapping[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    pool = node_pool(node) or ""
    return pool.endswith(f"/{CapacityType.SPOT.value}") and any(
        isinstance(t, Mapping) and t.get("key") == KARPENTER_DISRUPTED_TAINT for t in taints
    )


def _replicas(api: k8s.ApiClient, target: TargetRef, namespace: str, timeout: float) -> int | None:
    if target.kind == "Service":
        return _knative_replicas(api, target, namespace, timeout)
    apps = k8s.AppsV1Api(api)
    read = (
        apps.read_namespaced_deployment_scale
        if target.kind == "Deployment"
        else apps.read_namespaced_stateful_set_scale
    )
    scale = read(target.name, namespace, _request_timeout=timeout)
    wanted = scale.spec.replicas if scale.spec is not None else None
    if wanted is None and scale.status is not None:
        wanted = scale.status.replicas
    return None if wanted is None else int(wanted)


def _knative_replicas(
    api: k8s.ApiClient, target: TargetRef, namespace: str, timeout: float
) -> int | None:
    group, _, version = (target.api_version or KNATIVE_SERVING_API_VERSION).partition("/")
    custom = k8s.CustomObjectsApi(api)
    service: Any = custom.get_namespaced_custom_object(
        group, version, namespace, "services", target.name, _request_timeout=timeout
    )
    status = service.get("status") or {}
    revision_name = status.get("latestReadyRevisionName")
    if not revision_name:
        return None
    revision: Any = custom.get_namespaced_custom_object(
        group, version, namespace, "revisions", revision_name, _request_timeout=timeout
    )
    rev_status = revision.get("status") or {}
    # desiredReplicas is the autoscaler's target, actualReplicas the ready pods.
    for key in ("desiredReplicas", "actualReplicas"):
        value = rev_status.get(key)
        if isinstance(value, int):
            return value
    return None


def _what(target: TargetRef, namespace: str) -> str:
    return f"{target.kind} {namespace}/{target.name}"


def _api_reason(err: k8s.ApiException) -> str:
    if err.status == 404:
        return "not found"
    if err.status in (401, 403):
        return f"forbidden (HTTP {err.status}): check the operator's RBAC"
    return f"HTTP {err.status} {err.reason or ''}".strip()


__all__ = [
    "CAPACITY_TYPE_LABEL",
    "INSTANCE_TYPE_LABELS",
    "INTERRUPTION_TAINTS",
    "KARPENTER_DISRUPTED_TAINT",
    "POLICY_LABEL",
    "ClusterState",
    "KarpenterState",
    "interrupted_pool",
    "node_pool",
    "policy_key",
    "read_cluster",
    "read_karpenter",
]
