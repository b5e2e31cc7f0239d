"""Spot interruptions seen on Nodes, turned into immediate re-plans.

A Node labelled `spotwise.dev/policy=<namespace>.<name>` (the value `spotwise.actuate`
writes, bounded to 63 characters) that gains an interruption taint (see
`spotwise.observe.INTERRUPTION_TAINTS`) wakes that policy with the Node's pool marked
interrupted: their daemon ticks at once, and `decide` shuns the pool for a
cooldown. Each Node is reported once per pool, not on every later update of the Node.

Not here: reading the taint (`spotwise.observe`), re-planning (`tick`), kopf (`handlers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spotwise.actuate.labels import bounded
from spotwise.controller.tick import Policies, PolicyRuntime

POLICY_LABEL = "spotwise.dev/policy"


class InterruptionWatch:
    """Remembers which Nodes are already reported, and wakes the affected policies."""

    def __init__(
        self, policies: Policies, pool_of: Callable[[Mapping[str, Any]], str | None]
    ) -> None:
        self.policies = policies
        self.pool_of = pool_of  # the pool of an interrupted Node, None when not interrupted
        self._reported: dict[str, str] = {}  # Node name -> pool already reported

    def node_event(self, kind: str, node: Mapping[str, Any]) -> list[tuple[PolicyRuntime, str]]:
        """Handle one watch event (`ADDED`, `MODIFIED`, `DELETED`, or None for the initial
        listing) of a Node; returns the policies woken, with the pool."""
        meta = node.get("metadata") or {}
        name = str(meta.get("name") or "")
        pool = None if kind == "DELETED" else self.pool_of(node)
        if pool is None:
            self._reported.pop(name, None)
            return []
        if self._reported.get(name) == pool:
            return []
        labels = meta.get("labels") or {}
        policy = labels.get(POLICY_LABEL)
        if not policy:
            return []
        self._reported[name] = pool
        woken = [rt for rt in self.policies if bounded(f"{rt.namespace}.{rt.name}") == policy]
        for rt in woken:
            rt.interrupt(pool)
        return [(rt, pool) for rt in woken]
