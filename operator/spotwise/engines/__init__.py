"""Engines turn a `Problem` into a `Plan`. Importing this package registers the
built-in ones; `create_engine(name)` builds one by name."""

from spotwise.engines import exact, genetic
from spotwise.engines.base import Engine, create_engine, engine_names, register

__all__ = ["Engine", "create_engine", "engine_names", "exact", "genetic", "register"]
