"""PromQL per metrics profile, filled with a workload's labels.

A profile names the exporter that measures a workload's traffic and gives three queries:
request rate (requests/second), p95 latency (seconds) and requests in flight. `knative`
reads the queue-proxy of a Knative Service, `istio` the destination-side sidecar, and
`generic` the OpenTelemetry HTTP server histogram. Explicit queries in the workload's
`metrics` replace the profile's query of the same kind; the default profile is `generic`.

Rate and in-flight queries keep one series per pod: the reader sums them for the
workload and pairs them per pod to fit a replica's capacity. In flight comes from Little's
law (rate of the latency sum = arrivals x mean time in the system), so a profile needs one
histogram only.

Not here: running the queries (`prometheus.py`). docs/metrics.md prints every template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from string import Template
from types import MappingProxyType

from spotwise.api.v1alpha1 import TargetRef, WorkloadSpec

DEFAULT_PROFILE = "generic"
DEFAULT_WINDOW = "2m"  # rate() window: Prometheus advises at least 4 scrape intervals

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# Pod names: Deployments add a ReplicaSet hash and a 5-character suffix, StatefulSets an
# ordinal, Knative a revision number and "-deployment" before the Deployment's parts.
_POD_SUFFIX = {
    "Deployment": "-[a-z0-9]{1,10}-[a-z0-9]{5}",
    "StatefulSet": "-[0-9]+",
    "Service": "-[0-9]+-deployment-[a-z0-9]{1,10}-[a-z0-9]{5}",
}


class ProfileError(ValueError):
    """A workload's metrics settings cannot be turned into queries; one-line message."""


Matcher = tuple[str, str, str]  # (label, operator, value), e.g. ("namespace", "=", "shop")


@dataclass(frozen=True)
class Queries:
    """The PromQL that measures one workload. Latency is in seconds."""

    request_rate: str
    latency_p95: str
    in_flight: str


@dataclass(frozen=True)
class Profile:
    """Templates use `$selector` (a `{...}` label matcher) and `$window` (a duration)."""

    name: str
    matchers: Callable[[TargetRef, str], Sequence[Matcher]]
    request_rate: Template
    latency_p95: Template
    in_flight: Template

    def render(
        self,
        target: TargetRef,
        namespace: str,
        *,
        extra: Mapping[str, str] | None = None,
        window: str = DEFAULT_WINDOW,
    ) -> Queries:
        """The profile's queries for `target` in `namespace`; `extra` adds `label="value"`
        matchers."""
        extra = extra or {}
        if not _DURATION.match(window):
            raise ProfileError(f"rate window {window!r} is not a Prometheus duration like 2m")
        for label in extra:
            if not _LABEL_NAME.match(label):
                raise ProfileError(
                    f"metrics.labels: {label!r} is not a Prometheus label name "
                    "(letters, digits and _, not starting with a digit)"
                )
        matchers = [*self.matchers(target, namespace), *((k, "=", v) for k, v in extra.items())]
        fill = {"selector": selector(matchers), "window": window}
        return Queries(
            request_rate=self.request_rate.substitute(fill),
            latency_p95=self.latency_p95.substitute(fill),
            in_flight=self.in_flight.substitute(fill),
        )


def selector(matchers: Sequence[Matcher]) -> str:
    """`{a="x",b=~"y"}` with values quoted as PromQL strings."""
    return "{" + ",".join(f"{label}{op}{_quote(value)}" for label, op, value in matchers) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _regex_literal(name: str) -> str:
    # Kubernetes names hold [a-z0-9.-]; only the dot means something in a regex.
    return name.replace(".", "\\.")


def pod_regex(target: TargetRef) -> str:
    """A regex (RE2, fully anchored by Prometheus) for the names of the target's pods."""
    return _regex_literal(target.name) + _POD_SUFFIX[target.kind]


def _knative(target: TargetRef, namespace: str) -> Sequence[Matcher]:
    return (("namespace_name", "=", namespace), ("service_name", "=", target.name))


def _istio(target: TargetRef, namespace: str) -> Sequence[Matcher]:
    # Only the server-side report: the client side counts the same requests again.
    workload: Matcher = (
        ("destination_workload", "=~", _regex_literal(target.name) + "-[0-9]+-deployment")
        if target.kind == "Service"
        else ("destination_workload", "=", target.name)
    )
    return (
        ("reporter", "=", "destination"),
        ("destination_workload_namespace", "=", namespace),
        workload,
    )


def _generic(target: TargetRef, namespace: str) -> Sequence[Matcher]:
    return (("namespace", "=", namespace), ("pod", "=~", pod_regex(target)))


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "knative": Profile(
            name="knative",
            matchers=_knative,
            request_rate=Template(
                "sum by (pod_name) (rate(revision_request_count$selector[$window]))"
            ),
            latency_p95=Template(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(revision_request_latencies_bucket$selector[$window]))) / 1000"
            ),
            in_flight=Template(
                "sum by (pod_name) (rate(revision_request_latencies_sum$selector[$window])) / 1000"
            ),
        ),
        "istio": Profile(
            name="istio",
            matchers=_istio,
            request_rate=Template("sum by (pod) (rate(istio_requests_total$selector[$window]))"),
            latency_p95=Template(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(istio_request_duration_milliseconds_bucket$selector[$window]))) / 1000"
            ),
            in_flight=Template(
                "sum by (pod) "
                "(rate(istio_request_duration_milliseconds_sum$selector[$window])) / 1000"
            ),
        ),
        "generic": Profile(
            name="generic",
            matchers=_generic,
            request_rate=Template(
                "sum by (pod) (rate(http_server_request_duration_seconds_count$selector[$window]))"
            ),
            latency_p95=Template(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(http_server_request_duration_seconds_bucket$selector[$window])))"
            ),
            in_flight=Template(
                "sum by (pod) (rate(http_server_request_duration_seconds_sum$selector[$window]))"
            ),
        ),
    }
)


def profile(name: str) -> Profile:
    """The profile called `name`; ProfileError names the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(
            f"unknown metrics profile {name!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None


def queries_for(workload: WorkloadSpec, namespace: str, *, window: str = DEFAULT_WINDOW) -> Queries:
    """The queries that measure `workload`: its profile's (generic by default), each
    replaced by the explicit query of the same kind when `metrics` gives one. Explicit
    queries are sent as written; `metrics.labels` only narrows the profile's."""
    spec = workload.metrics
    chosen = profile((spec.profile if spec else None) or DEFAULT_PROFILE)
    rendered = chosen.render(
        workload.target_ref, namespace, extra=spec.labels if spec else {}, window=window
    )
    if spec is None:
        return rendered
    return Queries(
        request_rate=spec.request_rate or rendered.request_rate,
        latency_p95=spec.latency_p95 or rendered.latency_p95,
        in_flight=spec.in_flight or rendered.in_flight,
    )


__all__ = [
    "DEFAULT_PROFILE",
    "DEFAULT_WINDOW",
    "PROFILES",
    "Profile",
    "ProfileError",
    "Queries",
    "pod_regex",
    "profile",
    "queries_for",
    "selector",
]
