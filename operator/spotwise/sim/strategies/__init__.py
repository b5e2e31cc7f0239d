"""Strategies the simulator compares, one module each; importing this package
registers them. `create_strategy("spotwise:genetic", context)` builds one by name."""

from spotwise.sim.strategies import knative_default, on_demand_hpa, spot_greedy, spotkube, spotwise
from spotwise.sim.strategies.base import create_strategy, register, strategy_names

__all__ = [
    "create_strategy",
    "knative_default",
    "on_demand_hpa",
    "register",
    "spot_greedy",
    "spotkube",
    "spotwise",
    "strategy_names",
]
