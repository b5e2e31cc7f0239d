"""The operator: kopf wiring around the pure decision.

`run` starts it (`spotwise run`). `tick` is one control-loop step over injected ports,
`status` the status as data, `solver` where `decide()` runs (worker processes),
`telemetry` the operator's own metrics, `interruptions` the Node watch, `shell` the
production ports, `handlers` the kopf handlers.

Not here: metrics and cluster reading (`spotwise.observe`), changing the cluster
(`spotwise.actuate`), deciding (`spotwise.decide`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spotwise.controller.app import RunError, RunOptions, UsageError, run

__all__ = ["RunError", "RunOptions", "UsageError", "run"]


def __getattr__(name: str) -> Any:
    # kopf and the kubernetes client load only when the operator is actually run.
    if name in __all__:
        from spotwise.controller import app

        return getattr(app, name)
    raise AttributeError(name)
