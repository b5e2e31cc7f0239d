"""Label keys and object names Spotwise writes, and how a policy's names are bounded.

Nodes and NodePools are cluster-scoped, so a policy is identified on them by its namespace
and name together (``shop.shop``), not by its name alone: two policies named ``web`` in
two namespaces must never share nodes. Label values and NodePool names (which Karpenter
copies into the ``karpenter.sh/nodepool`` label) are at most 63 characters; longer ones
keep a readable prefix and end in a hash of the whole, so they stay unique.

Not here: what is written under those labels (see `placement` and `providers`).
"""

from __future__ import annotations

import hashlib
import re

from spotwise.api.v1alpha1 import ScalingPolicy

POLICY_LABEL = "spotwise.dev/policy"
SLOT_LABEL = "spotwise.dev/slot"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "spotwise"
FIELD_MANAGER = "spotwise"

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
ZONE_LABEL = "topology.kubernetes.io/zone"

MAX_LABEL_VALUE = 63
_NOT_NAME = re.compile(r"[^a-z0-9.-]+")


def bounded(text: str, limit: int = MAX_LABEL_VALUE) -> str:
    """`text` when it fits in `limit` characters, else a prefix of it plus ``-`` and 8 hex
    digits of its SHA-1. Either way it starts and ends with a letter or digit."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return text[: limit - len(digest) - 1].rstrip("-.") + "-" + digest


def dns_name(*parts: str, limit: int = MAX_LABEL_VALUE) -> str:
    """A DNS-1123 name (lowercase letters, digits, '-') made of `parts` joined by '-'."""
    text = _NOT_NAME.sub("-", "-".join(parts).lower()).replace(".", "-").strip("-")
    return bounded(re.sub(r"-{2,}", "-", text), limit)


def policy_namespace(policy: ScalingPolicy) -> str:
    return policy.metadata.namespace or "default"


def policy_key(policy: ScalingPolicy) -> str:
    """The value of the `spotwise.dev/policy` label: ``<namespace>.<name>``, bounded.

    A namespace holds no dots, so the first dot separates the two unambiguously.
    """
    return bounded(f"{policy_namespace(policy)}.{policy.metadata.name}")


def policy_selector(policy: ScalingPolicy) -> str:
    """Label selector of the cluster-scoped objects Spotwise manages for `policy`."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{POLICY_LABEL}={policy_key(policy)}"
