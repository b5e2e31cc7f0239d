"""The ScalingPolicy API (spotwise.dev/v1alpha1): pydantic models, CRD generation and loading.

The models in `spotwise.api.v1alpha1` are the one source of the schema; `crd` renders the
CustomResourceDefinition from them and `loading` turns files or cluster objects into
validated policies with one-line errors.
"""

from spotwise.api.loading import (
    PolicyError,
    load_policy_file,
    load_policy_text,
    parse_policy,
)
from spotwise.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ScalingPolicy,
    ScalingPolicySpec,
    ScalingPolicyStatus,
    WorkloadSpec,
    parse_cpu,
    parse_memory_gib,
    parse_quantity,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "PolicyError",
    "ScalingPolicy",
    "ScalingPolicySpec",
    "ScalingPolicyStatus",
    "WorkloadSpec",
    "load_policy_file",
    "load_policy_text",
    "parse_cpu",
    "parse_memory_gib",
    "parse_policy",
    "parse_quantity",
]
