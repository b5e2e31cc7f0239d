"""The demo's embedded defaults: the built-in WorldCup98 trace and the demo policy
shipped inside the package, so `spotwise demo` needs nothing but an install.

The demo policy is `policies/shop-spot.yaml` (a test keeps the two identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from spotwise.api import ScalingPolicy, load_policy_text
from spotwise.sim.run import BASELINES, weights_split
from spotwise.sim.simulator import FloatArray
from spotwise.sim.traces import load_builtin_trace


@dataclass(frozen=True)
class DemoSettings:
    trace: str = "worldcup98-2day"
    # 1998-06-25 from 10:00 to 22:00: the trace's biggest surge (fivefold in two hours)
    # and the evening after it; the quiet night is left out to keep the demo under a minute.
    start_day: float = 1.0 + 10.0 / 24.0
    days: float = 0.5
    peak_rps: float = 2000.0
    weights: tuple[float, ...] = (0.5, 0.2, 0.3)  # frontend, checkout, catalog
    step_seconds: float = 10.0
    # Real spot interruptions are rare (a few % of nodes a month): scaled up so two days
    # show what each strategy does when they happen.
    interruption_scale: float = 100.0
    strategies: tuple[str, ...] = (*BASELINES, "spotwise:genetic", "oracle")
    title: str = "demo: shop (3 Knative services), WorldCup98 match day 1998-06-25, 10:00-22:00"


DEMO = DemoSettings()


def demo_policy_text() -> str:
    return (resources.files("spotwise.sim") / "data" / "demo-policy.yaml").read_text("utf-8")


def demo_policy() -> ScalingPolicy:
    return load_policy_text(demo_policy_text(), "demo-policy.yaml")


def demo_arrivals() -> FloatArray:
    trace = load_builtin_trace(DEMO.trace).window(DEMO.start_day * 86400, DEMO.days * 86400)
    trace = trace.resampled(DEMO.step_seconds).rescaled(DEMO.peak_rps)
    return weights_split(trace.rps, DEMO.weights)
