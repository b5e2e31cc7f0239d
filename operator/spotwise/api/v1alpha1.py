"""ScalingPolicy v1alpha1 (group spotwise.dev) as pydantic v2 models.

These models are the one source of the policy schema: `spotwise.api.crd` generates the
CustomResourceDefinition from them, `spotwise.api.loading` validates files and cluster
objects with them, and every description here becomes CRD documentation.

Wire names are camelCase (``intervalSeconds``); Python attributes are snake_case
(``interval_seconds``). Models are strict (no "5" for 5, no 1 for "1"), like the
Kubernetes API server, and reject unknown fields.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "spotwise.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "spotwise.dev/v1alpha1"
KIND: Final = "ScalingPolicy"
PLURAL = "scalingpolicies"
SINGULAR = "scalingpolicy"
KNATIVE_SERVING_API_VERSION = "serving.knative.dev/v1"

# --------------------------------------------------------------------------------------
# Names, quantities, timestamps
# --------------------------------------------------------------------------------------

DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The pattern Kubernetes itself publishes for resource.Quantity.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
HTTP_URL_PATTERN = r"^https?://[^\s/?#]+([/?#]\S*)?$"

_DNS1123_LABEL = re.compile(DNS1123_LABEL_PATTERN)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_PATTERN)
_HTTP_URL = re.compile(HTTP_URL_PATTERN)
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE](?P<exponent>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?$"
)
_SUFFIX_FACTORS: dict[str, float] = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(quantity: str | int) -> float:
    """The value of a Kubernetes quantity ("250m", "1Gi", "1G", "0.5", "1e3", 2) as a float.

    Raises ValueError for anything that is not a quantity. Negative quantities parse.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, str | int):
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    text = str(quantity)
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 0.5, 512Mi, 1Gi, 1G)"
        )
    value = float(match["number"])
    try:
        if match["exponent"] is not None:
            value *= 10.0 ** float(match["exponent"])
        else:
            value *= _SUFFIX_FACTORS[match["suffix"] or ""]
    except OverflowError:  # 10.0 ** 400 raises instead of giving inf
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is out of range")
    return -value if match["sign"] == "-" else value


def parse_cpu(quantity: str | int) -> float:
    """CPU cores of a quantity: "250m" -> 0.25, "2" -> 2.0. Negative values raise ValueError."""
    value = parse_quantity(quantity)
    if value < 0:
        raise ValueError(f"{quantity!r} is negative")
    return value


def parse_memory_gib(quantity: str | int) -> float:
    """GiB of a memory quantity: "512Mi" -> 0.5, "1G" -> 0.931. Negative values raise ValueError."""
    value = parse_quantity(quantity)
    if value < 0:
        raise ValueError(f"{quantity!r} is negative")
    return value / 2.0**30


def _quantity_input(value: Any) -> Any:
    # Kubernetes quantities are int-or-string: `cpu: 2` is as good as `cpu: "2"`.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise ValueError(f'must be quoted when fractional: write "{value}"')
    return value


def _check_quantity(value: str) -> str:
    try:
        parse_quantity(value)
    except ValueError:
        raise ValueError(
            f"must be a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi, got {value!r}"
        ) from None
    return value


def _check_positive_cpu(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"must be more than 0 CPU, got {value!r}")
    return value


def _check_positive_memory(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"must be more than 0 bytes, got {value!r}")
    return value


def _check_non_negative_quantity(value: str) -> str:
    if parse_quantity(value) < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return value


# What controller-gen emits for resource.Quantity.
_QUANTITY_FIELD = WithJsonSchema(
    {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }
)
Quantity = Annotated[
    str, BeforeValidator(_quantity_input), AfterValidator(_check_quantity), _QUANTITY_FIELD
]
CpuQuantity = Annotated[
    str,
    BeforeValidator(_quantity_input),
    AfterValidator(_check_quantity),
    AfterValidator(_check_positive_cpu),
    _QUANTITY_FIELD,
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_quantity_input),
    AfterValidator(_check_quantity),
    AfterValidator(_check_positive_memory),
    _QUANTITY_FIELD,
]
ReserveQuantity = Annotated[
    str,
    BeforeValidator(_quantity_input),
    AfterValidator(_check_quantity),
    AfterValidator(_check_non_negative_quantity),
    _QUANTITY_FIELD,
]


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit), got {value!r}"
        )
    return value


def _check_dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            "must be a DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' and "
            f"'.', starting and ending with a letter or digit), got {value!r}"
        )
    return value


def _check_http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


DnsLabel = Annotated[
    str,
    AfterValidator(_check_dns_label),
    WithJsonSchema({"type": "string", "pattern": DNS1123_LABEL_PATTERN, "maxLength": 63}),
]
DnsSubdomain = Annotated[
    str,
    AfterValidator(_check_dns_subdomain),
    WithJsonSchema({"type": "string", "pattern": DNS1123_SUBDOMAIN_PATTERN, "maxLength": 253}),
]
HttpUrl = Annotated[
    str,
    AfterValidator(_check_http_url),
    WithJsonSchema({"type": "string", "pattern": HTTP_URL_PATTERN}),
]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def _timestamp_input(value: Any) -> Any:
    # YAML turns unquoted timestamps into datetimes; the API server always sends strings.
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


def _check_rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value.upper() or parsed.tzinfo is None:
        raise ValueError(f"must be an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got {value!r}")
    return value


Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp_input),
    AfterValidator(_check_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


# --------------------------------------------------------------------------------------
# Base model and cross-field errors
# --------------------------------------------------------------------------------------

_ALIASES = {"memory_gib": "memoryGiB"}


def _alias(name: str) -> str:
    return _ALIASES.get(name) or to_camel(name)


def field_error(loc: tuple[str | int, ...], reason: str) -> PydanticCustomError:
    """A validation error about a field *inside* the model that raises it.

    Model validators see the whole model, so pydantic reports their errors at the model's
    location; `spotwise.api.loading` appends `loc` (wire names) to point at the field.
    """
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return PydanticCustomError(
        "spotwise_field", "{where}: {reason}", {"where": where, "reason": reason, "loc": loc}
    )


class ApiModel(BaseModel):
    """Base of every v1alpha1 model: camelCase on the wire, strict, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=_alias,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form: camelCase keys, JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------


class ObjectMeta(ApiModel):
    """Standard Kubernetes object metadata. Keys set by the API server (uid,
    resourceVersion, generation, creationTimestamp, managedFields, ...) are kept as given."""

    model_config = ConfigDict(extra="allow")

    name: DnsSubdomain = Field(description="Name of the policy, unique in its namespace.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of the policy and of the workloads it scales."
    )
    labels: dict[str, str] | None = Field(default=None, description="Labels of the policy.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of the policy."
    )


# --------------------------------------------------------------------------------------
# spec.prometheus
# --------------------------------------------------------------------------------------


class SecretKeyRef(ApiModel):
    """Credentials for Prometheus in a Secret in the policy's namespace: either a bearer
    token (tokenKey) or basic auth (usernameKey and passwordKey)."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    token_key: NonEmptyStr | None = Field(
        default=None, description="Key in the Secret whose value is a bearer token."
    )
    username_key: NonEmptyStr | None = Field(
        default=None, description="Key in the Secret whose value is the basic-auth username."
    )
    password_key: NonEmptyStr | None = Field(
        default=None, description="Key in the Secret whose value is the basic-auth password."
    )

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> Self:
        basic = self.username_key is not None or self.password_key is not None
        if self.token_key is not None and basic:
            raise field_error(
                ("tokenKey",), "set either tokenKey or usernameKey and passwordKey, not both"
            )
        if self.token_key is None and not basic:
            raise field_error(("tokenKey",), "set tokenKey, or usernameKey and passwordKey")
        if basic and self.username_key is None:
            raise field_error(("usernameKey",), "required when passwordKey is set")
        if basic and self.password_key is None:
            raise field_error(("passwordKey",), "required when usernameKey is set")
        return self


class CaSecretRef(ApiModel):
    """A CA bundle in a Secret in the policy's namespace, to verify Prometheus' TLS certificate."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: NonEmptyStr = Field(
        default="ca.crt", description="Key in the Secret holding PEM certificates."
    )


class PrometheusSpec(ApiModel):
    """Where the operator reads request rate, latency and in-flight requests."""

    url: HttpUrl = Field(
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus-server.monitoring.svc."
    )
    timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of one Prometheus query, in seconds."
    )
    auth_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret with a bearer token or basic-auth credentials."
    )
    ca_secret_ref: CaSecretRef | None = Field(
        default=None, description="Secret with the CA bundle that signs Prometheus' certificate."
    )


# --------------------------------------------------------------------------------------
# spec.workloads
# --------------------------------------------------------------------------------------

TargetKind = Literal["Deployment", "StatefulSet", "Service"]
_API_GROUP_OF_KIND: dict[str, str] = {
    "Deployment": "apps",
    "StatefulSet": "apps",
    "Service": "serving.knative.dev",
}


def _no_default_in_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class TargetRef(ApiModel):
    """The object to scale, in the policy's namespace."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "!has(self.apiVersion) || self.apiVersion.startsWith("
                        "self.kind == 'Service' ? 'serving.knative.dev/' : 'apps/')"
                    ),
                    "message": (
                        "targetRef.apiVersion must be apps/v1 for a Deployment or StatefulSet "
                        "and serving.knative.dev/v1 for a (Knative) Service"
                    ),
                }
            ]
        }
    )

    api_version: str = Field(
        default="apps/v1",
        max_length=253,
        description=(
            "API version of the target: apps/v1 for a Deployment or StatefulSet (the "
            "default), serving.knative.dev/v1 for a Knative Service (the default when "
            "kind is Service)."
        ),
        json_schema_extra=_no_default_in_schema,
    )
    kind: TargetKind = Field(description="Deployment, StatefulSet, or Service (a Knative Service).")
    name: DnsSubdomain = Field(description="Name of the target.")

    @model_validator(mode="before")
    @classmethod
    def _knative_default(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("kind") == "Service"
            and "apiVersion" not in data
            and "api_version" not in data
        ):
            return {**data, "apiVersion": KNATIVE_SERVING_API_VERSION}
        return data

    @model_validator(mode="after")
    def _group_matches_kind(self) -> Self:
        group = _API_GROUP_OF_KIND[self.kind]
        if self.api_version.partition("/")[0] != group or "/" not in self.api_version:
            expected = KNATIVE_SERVING_API_VERSION if group != "apps" else "apps/v1"
            raise field_error(
                ("apiVersion",),
                f"kind {self.kind} needs apiVersion {expected}, got {self.api_version!r}",
            )
        return self


class SloSpec(ApiModel):
    """The latency objective of a workload."""

    latency_p95_ms: float = Field(
        gt=0, description="95th-percentile response time to stay under, in milliseconds."
    )


class ReplicasSpec(ApiModel):
    """Bounds on the replica count; the operator never goes outside them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.min <= self.max",
                    "message": "replicas.min must not exceed replicas.max",
                }
            ]
        }
    )

    min: int = Field(default=1, ge=0, description="Fewest replicas.")
    max: int = Field(default=100, ge=1, description="Most replicas.")

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.min > self.max:
            raise field_error(("min",), f"must be ≤ max ({self.max}), got {self.min}")
        return self


Actuator = Literal["knative", "keda", "hpa", "env", "none"]


class ConcurrencySpec(ApiModel):
    """Bounds on the per-replica concurrency limit (requests in flight per pod), and how
    the chosen limit is applied."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.min <= self.max",
                    "message": "concurrency.min must not exceed concurrency.max",
                },
                {
                    "rule": "self.actuator != 'env' || has(self.envVar)",
                    "message": "concurrency.envVar is required when actuator is env",
                },
            ]
        }
    )

    min: int = Field(default=1, ge=1, description="Lowest concurrency limit.")
    max: int = Field(default=256, ge=1, le=10000, description="Highest concurrency limit.")
    actuator: Actuator = Field(
        default="none",
        description=(
            "How the limit is applied: knative (autoscaling.knative.dev/target annotation), "
            "keda (ScaledObject trigger threshold), hpa (pods-metric target), env (a "
            "container environment variable; rolls the pods), or none (planned, not applied)."
        ),
    )
    env_var: str | None = Field(
        default=None,
        min_length=1,
        description="Environment variable that carries the limit; required for actuator env.",
    )
    hard: bool = Field(
        default=False,
        description=(
            "Knative only: also set containerConcurrency, a hard limit, not just the target."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min > self.max:
            raise field_error(("min",), f"must be ≤ max ({self.max}), got {self.min}")
        if self.actuator == "env" and self.env_var is None:
            raise field_error(("envVar",), "required when actuator is env")
        if self.actuator != "env" and self.env_var is not None:
            raise field_error(
                ("envVar",), f"only used with actuator env, but actuator is {self.actuator}"
            )
        return self


class MetricsSpec(ApiModel):
    """Which PromQL reads this workload's request rate, p95 latency and in-flight requests."""

    profile: Literal["knative", "istio", "generic"] | None = Field(
        default=None,
        description=(
            "A set of PromQL templates for the usual exporters (Knative queue-proxy, Istio "
            "sidecars, generic http_server_* histograms); explicit queries below override it."
        ),
    )
    request_rate: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL for requests per second across all replicas.",
    )
    latency_p95: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL for the 95th-percentile latency, in seconds.",
    )
    in_flight: str | None = Field(
        default=None, min_length=1, description="PromQL for requests in flight across all replicas."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra label matchers added to every query."
    )


class CapacitySpec(ApiModel):
    """Universal Scalability Law parameters of one replica. With them the operator can plan
    without history; without them it fits the parameters from metrics."""

    service_rate_rps: float = Field(
        gt=0,
        description=(
            "USL lambda: requests per second one replica serves with one request in flight."
        ),
    )
    contention: float = Field(
        default=0.0, ge=0, lt=1, description="USL sigma: the serialized fraction of the work."
    )
    coherency: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="USL kappa: the cost of crosstalk between requests in flight.",
    )
    tail_factor: float = Field(
        default=2.0, ge=1, le=20, description="p95 response time divided by the mean response time."
    )


class ResourcesSpec(ApiModel):
    """What one pod of the workload requests, for packing pods onto nodes."""

    cpu: CpuQuantity = Field(
        default="500m", description="CPU request per pod (a quantity, e.g. 500m)."
    )
    memory: MemoryQuantity = Field(
        default="512Mi", description="Memory request per pod (a quantity, e.g. 512Mi)."
    )

    @property
    def cpu_cores(self) -> float:
        return parse_cpu(self.cpu)

    @property
    def memory_gib(self) -> float:
        return parse_memory_gib(self.memory)


class WorkloadSpec(ApiModel):
    """One thing to scale: its target, SLO, bounds, metrics and capacity model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "!has(self.concurrency) || self.concurrency.actuator != 'knative' "
                        "|| self.targetRef.kind == 'Service'"
                    ),
                    "message": "concurrency.actuator knative needs targetRef.kind Service",
                }
            ]
        }
    )

    name: DnsLabel = Field(description="Name of the workload in plans and status; unique.")
    target_ref: TargetRef = Field(description="The Deployment, StatefulSet or Knative Service.")
    slo: SloSpec = Field(description="The latency objective.")
    replicas: ReplicasSpec = Field(default_factory=ReplicasSpec, description="Replica bounds.")
    concurrency: ConcurrencySpec = Field(
        default_factory=ConcurrencySpec, description="Concurrency bounds and actuator."
    )
    metrics: MetricsSpec | None = Field(
        default=None, description="Where this workload's metrics come from."
    )
    capacity: CapacitySpec | None = Field(
        default=None, description="Capacity model of one replica; fitted from metrics when omitted."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Requests of one pod."
    )

    @model_validator(mode="after")
    def _actuator_fits_target(self) -> Self:
        if self.concurrency.actuator == "knative" and self.target_ref.kind != "Service":
            raise field_error(
                ("concurrency", "actuator"),
                "knative needs targetRef.kind Service (a Knative Service), "
                f"got {self.target_ref.kind}",
            )
        return self


# --------------------------------------------------------------------------------------
# spec.nodes
# --------------------------------------------------------------------------------------


class InstanceTypeSpec(ApiModel):
    """An instance type with your own numbers. An entry named like a built-in type
    overrides the fields it sets; any other entry needs vcpu, memoryGiB and onDemandPrice."""

    name: NonEmptyStr = Field(description="Instance type name, e.g. c6i.2xlarge.")
    vcpu: float | None = Field(default=None, gt=0, description="Virtual CPUs.")
    memory_gib: float | None = Field(default=None, gt=0, description="Memory in GiB.")
    on_demand_price: float | None = Field(
        default=None, gt=0, description="On-demand price in $/hour."
    )
    spot_price: float | None = Field(
        default=None, gt=0, description="Spot price in $/hour; no spot pool when unknown."
    )
    interruption_bucket: int | None = Field(
        default=None,
        ge=0,
        le=4,
        description=(
            "AWS Spot Advisor interruption bucket: 0 <5%, 1 5-10%, 2 10-15%, 3 15-20%, 4 >20%."
        ),
    )
    arch: Literal["x86_64", "arm64"] | None = Field(default=None, description="CPU architecture.")

    @property
    def complete(self) -> bool:
        """True when the entry defines a type on its own (no built-in entry needed)."""
        return None not in (self.vcpu, self.memory_gib, self.on_demand_price)


class CatalogSpec(ApiModel):
    """The instance types the node mix may use, with prices."""

    builtin: str | None = Field(
        default="aws-us-east-1",
        min_length=1,
        description="Name of a catalog shipped with Spotwise; null for custom types only.",
    )
    instance_types: list[NonEmptyStr] | None = Field(
        default=None,
        min_length=1,
        description="Use only these instance types (from the built-in catalog or custom).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    custom: list[InstanceTypeSpec] = Field(
        default_factory=list,
        description="Types with your own prices; an entry named like a built-in type overrides it.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.custom):
            if entry.name in seen:
                raise field_error(
                    ("custom", i, "name"),
                    f"duplicate instance type {entry.name!r} (also custom[{seen[entry.name]}])",
                )
            seen[entry.name] = i
        if self.instance_types is not None:
            listed: set[str] = set()
            for i, name in enumerate(self.instance_types):
                if name in listed:
                    raise field_error(("instanceTypes", i), f"{name!r} is listed twice")
                listed.add(name)
        if self.builtin is None:
            if not self.custom:
                raise field_error(("custom",), "must list instance types when builtin is null")
            for i, entry in enumerate(self.custom):
                if not entry.complete:
                    raise field_error(
                        ("custom", i),
                        "needs vcpu, memoryGiB and onDemandPrice when builtin is null",
                    )
            for i, name in enumerate(self.instance_types or []):
                if name not in seen:
                    raise field_error(
                        ("instanceTypes", i), f"{name!r} is not a custom type (builtin is null)"
                    )
        return self


class OnDemandSpec(ApiModel):
    """The on-demand floor."""

    min_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Least fraction of each workload's replicas on on-demand nodes.",
    )
    min_nodes: int = Field(default=0, ge=0, description="Least number of on-demand nodes.")


class SpotSpec(ApiModel):
    """Limits on spot capacity."""

    enabled: bool = Field(default=True, description="Whether spot capacity may be used at all.")
    max_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Most fraction of each workload's replicas on spot nodes.",
    )
    max_pool_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Most fraction of each workload's replicas in any one spot pool.",
    )


class DaemonSetReserveSpec(ApiModel):
    """What every node keeps back for DaemonSets, beyond the kubelet's own reservation."""

    cpu: ReserveQuantity = Field(default="200m", description="CPU reserved per node.")
    memory: ReserveQuantity = Field(default="256Mi", description="Memory reserved per node.")
    pods: int = Field(default=3, ge=0, description="Pod slots reserved per node.")


class NodesSpec(ApiModel):
    """The node mix: which instance types, and how much spot."""

    provider: Literal["karpenter", "kwok", "none"] = Field(
        default="none",
        description=(
            "What creates nodes: karpenter (NodePools), kwok (fake nodes, for kind), or "
            "none (recommend only)."
        ),
    )
    catalog: CatalogSpec = Field(
        default_factory=CatalogSpec, description="Instance types and prices."
    )
    on_demand: OnDemandSpec = Field(default_factory=OnDemandSpec, description="On-demand floor.")
    spot: SpotSpec = Field(default_factory=SpotSpec, description="Spot limits.")
    survive_pool_loss: bool = Field(
        default=False,
        description="Losing the largest spot pool must still leave enough capacity for the SLO.",
    )
    daemon_set_reserve: DaemonSetReserveSpec = Field(
        default_factory=DaemonSetReserveSpec, description="Per-node reserve for DaemonSets."
    )


# --------------------------------------------------------------------------------------
# spec.objective, spec.optimizer, spec.stabilization
# --------------------------------------------------------------------------------------


class ObjectiveSpec(ApiModel):
    """What the optimizer minimizes against: a budget and a safety margin."""

    max_hourly_cost: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Budget in $/hour; exceeded only when the SLO floor needs it, and then the "
            "Degraded condition says so."
        ),
    )
    headroom: float = Field(
        default=0.15, ge=0, le=5, description="Plan for forecast demand times (1 + headroom)."
    )


class GeneticSpec(ApiModel):
    """Settings of the genetic engine."""

    population: int = Field(default=64, ge=8, le=2048, description="Individuals per generation.")
    generations: int = Field(
        default=40, ge=1, le=10000, description="Most generations per decision."
    )
    seed: int | None = Field(default=None, description="Random seed; fixed for reproducible plans.")
    objectives: Literal["cost", "cost-risk"] = Field(
        default="cost",
        description="cost: minimize $/hour; cost-risk: NSGA-II over cost and interruption risk.",
    )


class RlSpec(ApiModel):
    """Settings of the reinforcement-learning engine."""

    agent: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Trained agent to use (a name under policies/agents "
            "or a path); the shipped default when omitted."
        ),
    )


class OptimizerSpec(ApiModel):
    """Which engine decides, and its settings."""

    engine: Literal["exact", "genetic", "rl", "hybrid"] = Field(
        default="genetic",
        description="exact (MILP), genetic (DEAP), rl (trained agent), or hybrid (RL-seeded GA).",
    )
    time_budget_seconds: float = Field(
        default=2.0, gt=0, le=60, description="Wall-clock budget of one decision, in seconds."
    )
    genetic: GeneticSpec = Field(
        default_factory=GeneticSpec, description="Genetic engine settings."
    )
    rl: RlSpec = Field(default_factory=RlSpec, description="RL engine settings.")


class StabilizationSpec(ApiModel):
    """Limits on how fast plans change."""

    scale_down_seconds: int = Field(
        default=300,
        ge=0,
        description="Scale down only after lower plans held for this many seconds.",
    )
    max_replica_step: int = Field(
        default=10, ge=1, description="Most replicas added or removed per workload per tick."
    )


# --------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------


class ScalingPolicySpec(ApiModel):
    """Desired behaviour: what to scale, against which SLO and budget, on which nodes."""

    mode: Literal["Active", "DryRun", "Paused"] = Field(
        default="Active",
        description=(
            "Active: decide and act. DryRun: decide and write status only. Paused: do nothing."
        ),
    )
    interval_seconds: int = Field(
        default=60, ge=10, le=3600, description="Seconds between two decisions."
    )
    prometheus: PrometheusSpec | None = Field(
        default=None,
        description=(
            "Prometheus to read metrics from; without it the policy plans from capacity alone."
        ),
    )
    workloads: list[WorkloadSpec] = Field(
        min_length=1,
        description="Workloads scaled together on the policy's nodes; names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    nodes: NodesSpec = Field(default_factory=NodesSpec, description="The node mix.")
    objective: ObjectiveSpec = Field(
        default_factory=ObjectiveSpec, description="Budget and headroom."
    )
    optimizer: OptimizerSpec = Field(
        default_factory=OptimizerSpec, description="Engine and its settings."
    )
    stabilization: StabilizationSpec = Field(
        default_factory=StabilizationSpec, description="Limits on how fast plans change."
    )

    @model_validator(mode="after")
    def _unique_workload_names(self) -> Self:
        seen: dict[str, int] = {}
        for i, workload in enumerate(self.workloads):
            if workload.name in seen:
                raise field_error(
                    ("workloads", i, "name"),
                    f"duplicate workload name {workload.name!r} "
                    f"(also workloads[{seen[workload.name]}])",
                )
            seen[workload.name] = i
        return self

    def workload(self, name: str) -> WorkloadSpec:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)


# --------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------


class Condition(ApiModel):
    """A Kubernetes-style condition: Ready, MetricsAvailable, Actuated, Degraded."""

    type: NonEmptyStr = Field(description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(description="Human-readable details.")
    last_transition_time: Timestamp = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


class WorkloadPlanStatus(ApiModel):
    """The plan for one workload."""

    name: str = Field(description="Workload name.")
    replicas: int = Field(ge=0, description="Planned replicas.")
    concurrency: int = Field(ge=0, description="Planned concurrency limit per replica.")
    predicted_p95_ms: float = Field(description="Predicted 95th-percentile latency, in ms.")
    spot_replicas: int = Field(default=0, ge=0, description="Planned replicas on spot nodes.")


class NodePlanStatus(ApiModel):
    """Planned nodes in one pool."""

    instance_type: str = Field(description="Instance type.")
    capacity_type: Literal["spot", "on-demand"] = Field(description="spot or on-demand.")
    count: int = Field(ge=0, description="Planned nodes.")


class RiskStatus(ApiModel):
    """Interruption risk of the plan."""

    capacity_after_worst_pool_loss: float = Field(
        description=(
            "Fraction of planned capacity left after losing the largest spot pool (worst workload)."
        )
    )
    expected_interruptions_per_hour: float = Field(
        default=0.0,
        ge=0,
        description="Expected spot interruptions per hour across the plan's nodes.",
    )


class PlanStatus(ApiModel):
    """The last decision and why it was made."""

    engine: str = Field(description="Engine that produced the plan.")
    decided_at: Timestamp = Field(description="When the plan was decided (RFC 3339).")
    feasible: bool = Field(description="False when some hard rule could not be met.")
    over_budget: bool = Field(
        description="True when meeting the SLO needs more than objective.maxHourlyCost."
    )
    hourly_cost: float = Field(ge=0, description="Cost of the planned nodes in $/hour.")
    on_demand_hourly_cost: float = Field(
        ge=0, description="Cost of the same capacity all on-demand, in $/hour."
    )
    savings_ratio: float = Field(
        description="1 - hourlyCost / onDemandHourlyCost: the fraction saved."
    )
    workloads: list[WorkloadPlanStatus] = Field(
        default_factory=list, description="Plan per workload."
    )
    nodes: list[NodePlanStatus] = Field(default_factory=list, description="Planned nodes per pool.")
    risk: RiskStatus = Field(description="Interruption risk.")
    reasons: list[str] = Field(
        default_factory=list, description="Why the plan looks the way it does."
    )


class ScalingPolicyStatus(ApiModel):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation of the spec last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, MetricsAvailable, Actuated, Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    plan: PlanStatus | None = Field(default=None, description="The last plan.")


# --------------------------------------------------------------------------------------
# the resource
# --------------------------------------------------------------------------------------


class ScalingPolicy(ApiModel):
    """ScalingPolicy decides replicas, per-replica concurrency and the spot/on-demand node
    mix for a set of workloads, against a latency SLO and a budget."""

    api_version: Literal["spotwise.dev/v1alpha1"] = Field(
        default=API_VERSION, description="spotwise.dev/v1alpha1."
    )
    kind: Literal["ScalingPolicy"] = Field(default=KIND, description="ScalingPolicy.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: ScalingPolicySpec = Field(description="Desired behaviour.")
    status: ScalingPolicyStatus | None = Field(default=None, description="Observed state.")


__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "KNATIVE_SERVING_API_VERSION",
    "PLURAL",
    "SINGULAR",
    "VERSION",
    "CaSecretRef",
    "CapacitySpec",
    "CatalogSpec",
    "ConcurrencySpec",
    "Condition",
    "DaemonSetReserveSpec",
    "GeneticSpec",
    "InstanceTypeSpec",
    "MetricsSpec",
    "NodePlanStatus",
    "NodesSpec",
    "ObjectMeta",
    "ObjectiveSpec",
    "OnDemandSpec",
    "OptimizerSpec",
    "PlanStatus",
    "PrometheusSpec",
    "ReplicasSpec",
    "ResourcesSpec",
    "RiskStatus",
    "RlSpec",
    "ScalingPolicy",
    "ScalingPolicySpec",
    "ScalingPolicyStatus",
    "SecretKeyRef",
    "SloSpec",
    "SpotSpec",
    "StabilizationSpec",
    "TargetRef",
    "WorkloadPlanStatus",
    "WorkloadSpec",
    "field_error",
    "parse_cpu",
    "parse_memory_gib",
    "parse_quantity",
]
