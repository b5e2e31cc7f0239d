"""Concurrency actuators, one module each; importing this package registers them.
`create_actuator("keda")` builds one by name."""

from spotwise.actuate.concurrency import env, hpa, keda, knative, none
from spotwise.actuate.concurrency.base import (
    ConcurrencyActuator,
    UnknownActuatorError,
    actuator_names,
    create_actuator,
    register,
)

__all__ = [
    "ConcurrencyActuator",
    "UnknownActuatorError",
    "actuator_names",
    "create_actuator",
    "env",
    "hpa",
    "keda",
    "knative",
    "none",
    "register",
]
