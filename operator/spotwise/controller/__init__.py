"""The operator: kopf wiring around the pure decision.

`run` starts it (`spotwise run`). `tick` is one control-loop step over injected ports,
`status` the status as data, `solver` where `decide()` runs (worker processes),
`telemetry` the operator's own metrics, `interruptions` the Node watch, `shell` the
production ports, `handlers` the kopf handlers.

Not here: metrics and cluster reading (`spotwise.observe`), changing the cluster
(`spotwise.actuate`), deciding (`spotwise.decide`).
"""
