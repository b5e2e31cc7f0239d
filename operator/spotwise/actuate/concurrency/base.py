"""The concurrency-actuator interface and its name -> factory registry.

An actuator turns the planned per-replica concurrency limit into patches of whatever
object carries that limit for a workload (a Knative annotation, a KEDA trigger threshold,
an HPA target, an env var). It reads only through the `WorkloadView` it is given and
returns patches; it sends nothing itself. `ScalingPolicy` names the actuator per workload
in ``spec.workloads[].concurrency.actuator``.

Not here: replicas (`spotwise.actuate.workloads`) and placement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from spotwise.actuate.patches import Patch
from spotwise.actuate.workloads import WorkloadView


class ConcurrencyActuator(Protocol):
    name: str

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        """The patches that set the limit, none when it is already set. A workload that
        cannot take the limit as configured raises `ActuationError`."""
        ...


ActuatorFactory = Callable[[], ConcurrencyActuator]
_REGISTRY: dict[str, ActuatorFactory] = {}


def register(name: str) -> Callable[[ActuatorFactory], ActuatorFactory]:
    def add(factory: ActuatorFactory) -> ActuatorFactory:
        _REGISTRY[name] = factory
        return factory

    return add


class UnknownActuatorError(KeyError):
    def __str__(self) -> str:
        return (
            f"unknown concurrency actuator {self.args[0]!r}; known: {', '.join(actuator_names())}"
        )


def actuator_names() -> list[str]:
    return sorted(_REGISTRY)


def create_actuator(name: str) -> ConcurrencyActuator:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownActuatorError(name) from None
    return factory()
