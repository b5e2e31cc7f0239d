"""Strategies the simulator compares, one module each; importing this package
registers them. `create_strategy("spotwise:genetic", context)` builds one by name."""

from spotwise.sim.strategies import spotwise
from spotwise.sim.strategies.base import create_strategy, register, strategy_names

__all__ = ["create_strategy", "register", "spotwise", "strategy_names"]
