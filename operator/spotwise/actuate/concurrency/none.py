"""Actuator ``none``: the limit is planned and reported in status, and applied nowhere."""

from __future__ import annotations

from spotwise.actuate.concurrency.base import register
from spotwise.actuate.patches import Patch
from spotwise.actuate.workloads import WorkloadView


@register("none")
class NoActuator:
    name = "none"

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        return []
