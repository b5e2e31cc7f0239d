"""Engines turn a `Problem` into a `Plan`. Importing this package registers the
built-in ones; `create_engine(name)` builds one by name. The rl and hybrid engines
import stable-baselines3 only when an agent is loaded."""

from spotwise.engines import exact, genetic, hybrid, rl
from spotwise.engines.base import Engine, create_engine, engine_names, register

__all__ = [
    "Engine",
    "create_engine",
    "engine_names",
    "exact",
    "genetic",
    "hybrid",
    "register",
    "rl",
]
