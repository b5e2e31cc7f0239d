"""The operator's own Prometheus metrics (prometheus-client), labelled by policy.

Each `Telemetry` has its own registry, so tests read real samples from a fresh one and the
operator serves exactly these series on `--metrics-port`. A deleted policy's series are
removed, not left at their last value.

Not here: the metrics the operator *reads* (`spotwise.observe`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from spotwise.domain import Plan

POLICY = ("namespace", "policy")
# Decisions take milliseconds when a plan is kept and up to the engine's time budget.
DECISION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Telemetry:
    """Per-policy gauges, counters and the decision-time histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decision_seconds = Histogram(
            "spotwise_decision_seconds",
            "Wall-clock seconds of one decision (queueing for a solver worker included).",
            POLICY,
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "spotwise_decisions_total",
            "Ticks that reached a decision, by outcome (solved, kept, held, paused).",
            (*POLICY, "outcome"),
            registry=r,
        )
        self.hourly_cost = Gauge(
            "spotwise_hourly_cost_dollars",
            "Cost of the current plan in $/hour.",
            POLICY,
            registry=r,
        )
        self.on_demand_cost = Gauge(
            "spotwise_on_demand_hourly_cost_dollars",
            "Cost of the same demand all on-demand in $/hour.",
            POLICY,
            registry=r,
        )
        self.savings = Gauge(
            "spotwise_savings_ratio",
            "1 - hourly cost / all-on-demand cost of the current plan.",
            POLICY,
            registry=r,
        )
        self.replicas = Gauge(
            "spotwise_replicas", "Planned replicas.", (*POLICY, "workload"), registry=r
        )
        self.concurrency = Gauge(
            "spotwise_concurrency",
            "Planned concurrency limit per replica.",
            (*POLICY, "workload"),
            registry=r,
        )
        self.nodes = Gauge(
            "spotwise_nodes",
            "Planned nodes per pool.",
            (*POLICY, "instance_type", "capacity_type"),
            registry=r,
        )
        self.actuation_errors = Counter(
            "spotwise_actuation_errors_total",
            "Errors while applying plans to workloads, placement and nodes.",
            POLICY,
            registry=r,
        )
        self.invalid = Gauge(
            "spotwise_policy_invalid",
            "1 while the policy's spec cannot be used (Ready=False, InvalidSpec).",
            POLICY,
            registry=r,
        )
        self._series: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def decided(
        self,
        namespace: str,
        name: str,
        *,
        seconds: float,
        outcome: str,
        plan: Plan | None,
        on_demand_hourly_cost: float | None,
    ) -> None:
        """Record one decision and the plan it leaves in place."""
        key = (namespace, name)
        self.invalid.labels(*key).set(0)
        self.decision_seconds.labels(*key).observe(seconds)
        self.decisions.labels(*key, outcome).inc()
        if plan is None:
            return
        self.hourly_cost.labels(*key).set(plan.hourly_cost)
        if on_demand_hourly_cost is not None and on_demand_hourly_cost > 0:
            self.on_demand_cost.labels(*key).set(on_demand_hourly_cost)
            self.savings.labels(*key).set(1.0 - plan.hourly_cost / on_demand_hourly_cost)
        for w in plan.workloads:
            self.replicas.labels(*key, w.name).set(w.replicas)
            self.concurrency.labels(*key, w.name).set(w.concurrency)
        pools = {(n.instance_type, n.capacity_type.value): n.count for n in plan.nodes}
        # Pools the plan left since the last tick drop to zero rather than keep a count.
        for gone in self._series.get(key, set()) - set(pools):
            pools[(gone[0], gone[1])] = 0
        for (itype, ctype), count in pools.items():
            self.nodes.labels(*key, itype, ctype).set(count)
        self._series[key] = {p for p, c in pools.items() if c > 0}

    def ended(self, namespace: str, name: str, outcome: str) -> None:
        """Count a tick that reached no decision (`invalid`, `failed`)."""
        self.decisions.labels(namespace, name, outcome).inc()

    def actuation_failed(self, namespace: str, name: str, errors: int) -> None:
        if errors:
            self.actuation_errors.labels(namespace, name).inc(errors)

    def spec_invalid(self, namespace: str, name: str) -> None:
        self.invalid.labels(namespace, name).set(1)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted policy."""
        key = (namespace, name)
        self._series.pop(key, None)
        for metric, names in self._labelled():
            # Collect first: removing while iterating a metric's children is not safe.
            stale = [labels for labels in _label_sets(metric, names) if labels[:2] == key]
            for labels in stale:
                metric.remove(*labels)

    def _labelled(self) -> list[tuple[Histogram | Counter | Gauge, tuple[str, ...]]]:
        workload = (*POLICY, "workload")
        return [
            (self.decision_seconds, POLICY),
            (self.decisions, (*POLICY, "outcome")),
            (self.hourly_cost, POLICY),
            (self.on_demand_cost, POLICY),
            (self.savings, POLICY),
            (self.replicas, workload),
            (self.concurrency, workload),
            (self.nodes, (*POLICY, "instance_type", "capacity_type")),
            (self.actuation_errors, POLICY),
            (self.invalid, POLICY),
        ]

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve /metrics on `port` from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)


def _label_sets(
    metric: Histogram | Counter | Gauge, names: tuple[str, ...]
) -> list[tuple[str, ...]]:
    seen: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            labels = tuple(sample.labels.get(n, "") for n in names)
            if all(labels):
                seen.add(labels)
    return sorted(seen)
