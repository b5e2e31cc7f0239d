"""What the cluster runs now, for one policy: replicas per workload, nodes per pool, and
the pools whose nodes are being interrupted.

Replicas come from the target's scale subresource (Deployment, StatefulSet) or, for a
Knative Service, from its latest ready Revision. The policy's nodes are those labelled
`spotwise.dev/policy=<namespace>.<name>`, as the providers label them. A node's pool is
`<instance type>/<capacity type>` from its well-known labels, the same name as
`domain.Pool.name`. A spot node carrying one of `INTERRUPTION_TAINTS` marks its pool as
interrupted.

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
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INTERRUPTION_TAINTS: frozenset[str] = frozenset(
    {
        "aws-node-termination-handler/spot-itn",  # AWS Node Termination Handler: 2-min notice
        "karpenter.sh/disrupted",  # Karpenter is draining the node
        "spotwise.dev/interruption",  # a rehearsal: taint a node by hand
    }
)
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


def interrupted_pool(node: Mapping[str, Any]) -> str | None:
    """The pool of a spot Node (API JSON form) tainted with one of `INTERRUPTION_TAINTS`,
    else None. On-demand nodes are never interrupted: Karpenter's `disrupted` taint on
    them means consolidation or drift, not lost capacity."""
    taints = (node.get("spec") or {}).get("taints") or []
    if not any(isinstance(t, Mapping) and t.get("key") in INTERRUPTION_TAINTS for t in taints):
        return None
    pool = node_pool(node)
    return pool if pool is not None and pool.endswith(f"/{CapacityType.SPOT.value}") else None


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
    for node in nodes:
        if (node.get("metadata") or {}).get("deletionTimestamp"):
            continue
        pool = node_pool(node)
        if pool is not None:
            pools[pool] += 1
        hit = interrupted_pool(node)
        if hit is not None:
            interrupted.add(hit)
    return ClusterState(
        replicas=replicas,
        nodes_by_pool=dict(sorted(pools.items())),
        interrupted_pools=frozenset(interrupted),
        problems=tuple(problems),
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
    "POLICY_LABEL",
    "ClusterState",
    "interrupted_pool",
    "node_pool",
    "policy_key",
    "read_cluster",
]
