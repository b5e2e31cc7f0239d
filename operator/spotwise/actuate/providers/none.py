"""Provider ``none``: Spotwise recommends the node mix (status) and creates nothing."""

from __future__ import annotations

from spotwise.actuate.kube import Kube
from spotwise.actuate.patches import Report
from spotwise.actuate.placement import SlotLayout
from spotwise.actuate.providers.base import register
from spotwise.api.v1alpha1 import ScalingPolicy


@register("none")
class NoProvider:
    name = "none"

    def apply(self, kube: Kube, policy: ScalingPolicy, layout: SlotLayout) -> Report:
        return Report()

    def release(self, kube: Kube, policy: ScalingPolicy) -> Report:
        return Report()
