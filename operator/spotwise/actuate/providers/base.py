"""The node-provider interface and its name -> factory registry.

A provider makes the cluster's nodes for a policy match the plan's slot layout
(`spotwise.actuate.placement.SlotLayout`): which instance types, on which capacity type,
carrying which ``spotwise.dev/slot``. It owns only objects labelled
``app.kubernetes.io/managed-by=spotwise`` and ``spotwise.dev/policy=<namespace>.<name>``,
creates what is missing, changes what differs, removes what the plan no longer has, and
reports one line per object. When the policy is deleted, `release` removes all of them.
``spec.nodes.provider`` names it.

Not here: pod placement (`spotwise.actuate.placement`), workloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from spotwise.actuate.kube import Kube
from spotwise.actuate.patches import Report
from spotwise.actuate.placement import SlotLayout
from spotwise.api.v1alpha1 import ScalingPolicy


class NodeProvider(Protocol):
    name: str

    def apply(self, kube: Kube, policy: ScalingPolicy, layout: SlotLayout) -> Report:
        """Reconcile the policy's nodes with `layout`; never raises for an API error."""
        ...

    def release(self, kube: Kube, policy: ScalingPolicy) -> Report:
        """Remove every object made for the policy, which is being deleted; never raises
        for an API error. What could not be removed is an error line (the caller retries)."""
        ...


ProviderFactory = Callable[..., NodeProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    def add(factory: ProviderFactory) -> ProviderFactory:
        _REGISTRY[name] = factory
        return factory

    return add


class UnknownProviderError(KeyError):
    def __str__(self) -> str:
        return f"unknown node provider {self.args[0]!r}; known: {', '.join(provider_names())}"


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def create_provider(name: str, **options: Any) -> NodeProvider:
    """The provider registered as `name`, built with `options` (e.g. kwok's zones)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownProviderError(name) from None
    return factory(**options)


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: 4.0 -> "4", 1.5 -> "1500m"."""
    if abs(cores - round(cores)) < 1e-9:
        return str(round(cores))
    return f"{round(cores * 1000)}m"


def memory_quantity(gib: float) -> str:
    """GiB as a Kubernetes quantity: 16.0 -> "16Gi", 7.5 -> "7680Mi" (rounded down)."""
    if abs(gib - round(gib)) < 1e-9:
        return f"{round(gib)}Gi"
    return f"{math.floor(gib * 1024 + 1e-6)}Mi"
