"""The discrete-time simulator: a trace drives arrivals, a strategy decides, the cluster
lags behind, and every step is served, billed and scored.

One run = one strategy on one set of traces with one seed. Every step: arrivals come from
the traces; a strategy whose time has come (or that listens to interruption notices and
just got one) decides; nodes and pods are reconciled toward its targets; the cluster
advances (billing by the second, pod starts, spot interruptions); each workload serves
what its ready pods can at the concurrency limit in force, sheds the rest, and gets a
p95 from the latency model. A step violates the SLO when any workload's p95 is over its
SLO or it shed requests.

Not here: the strategies (`strategies/`), traces (`traces.py`), plots (`report.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import build_catalog, workload_capacity
from spotwise.domain import NodeReserve, Pool, Resources
from spotwise.models.capacity import throughput
from spotwise.models.latency import mean_response_seconds
from spotwise.models.risk import pools_for
from spotwise.sim.cluster import Cluster, Timings
from spotwise.sim.strategies.base import (
    Action,
    SimWorkload,
    Strategy,
    View,
)
from spotwise.sim.traces import Trace

P95_CAP_MS = 30_000.0  # a request that waits longer has timed out; caps the statistics
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SimConfig:
    step_seconds: float = 10.0
    timings: Timings = field(default_factory=Timings)
    interruption_scale: float = 1.0  # multiplies every pool's interruption rate
    seed: int = 0
    history_steps: int = 90  # how much of the past a strategy sees
    spot_price_multiplier: Callable[[float], float] | None = None  # seconds -> factor


@dataclass(frozen=True)
class SimSetup:
    """A policy made ready to simulate: its workloads, pools and pod shapes."""

    spec: ScalingPolicySpec
    workloads: tuple[SimWorkload, ...]
    pools: tuple[Pool, ...]
    pods: tuple[Resources, ...]
    reserve: NodeReserve


def setup_from_policy(spec: ScalingPolicySpec) -> SimSetup:
    from spotwise.api.v1alpha1 import parse_cpu, parse_memory_gib

    workloads = []
    for ws in spec.workloads:
        usl, tail = workload_capacity(ws)
        workloads.append(
            SimWorkload(
                ws.name,
                usl,
                ws.slo.latency_p95_ms,
                tail,
                ws.replicas.min,
                ws.replicas.max,
                ws.concurrency.min,
                ws.concurrency.max,
            )
        )
    pools = pools_for(build_catalog(spec), spot=spec.nodes.spot.enabled)
    pods = tuple(
        Resources(ws.resources.cpu_cores, ws.resources.memory_gib) for ws in spec.workloads
    )
    r = spec.nodes.daemon_set_reserve
    reserve = NodeReserve(parse_cpu(r.cpu), parse_memory_gib(r.memory), r.pods)
    return SimSetup(spec, tuple(workloads), pools, pods, reserve)


@dataclass
class Series:
    """Per-step records of one run."""

    time: list[float] = field(default_factory=list)
    cost_rate: list[float] = field(default_factory=list)  # $/h of nodes alive this step
    spot_nodes: list[int] = field(default_factory=list)
    on_demand_nodes: list[int] = field(default_factory=list)
    replicas: list[list[int]] = field(default_factory=list)  # per workload, ready
    concurrency: list[list[int]] = field(default_factory=list)
    p95_ms: list[list[float]] = field(default_factory=list)
    arrived: list[list[float]] = field(default_factory=list)  # requests this step
    served: list[list[float]] = field(default_factory=list)
    shed: list[list[float]] = field(default_factory=list)
    capacity: list[list[float]] = field(default_factory=list)  # requests ready pods could serve
    violation: list[bool] = field(default_factory=list)
    interruptions: list[int] = field(default_factory=list)


@dataclass
class SimResult:
    strategy: str
    cost: float
    series: Series
    interruptions: int
    node_churn: int
    decisions: int
    wall_seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        s = self.series
        arrived = np.array(s.arrived) if s.arrived else np.zeros((0, 0))
        shed = np.array(s.shed) if s.shed else np.zeros((0, 0))
        served = np.array(s.served) if s.served else np.zeros((0, 0))
        p95 = np.array(s.p95_ms) if s.p95_ms else np.zeros((0, 0))
        total = float(arrived.sum())
        return {
            "cost": round(self.cost, 4),
            "sloViolationPct": round(
                100.0 * float(np.mean(s.violation)) if s.violation else 0.0, 3
            ),
            "p95Ms": round(_weighted_percentile(p95.ravel(), served.ravel(), 95.0), 1),
            "shedPct": round(100.0 * float(shed.sum()) / total, 4) if total else 0.0,
            "interruptions": self.interruptions,
            "nodeChurn": self.node_churn,
            "decisions": self.decisions,
            "wallSeconds": round(self.wall_seconds, 2),
        }


def _weighted_percentile(values: FloatArray, weights: FloatArray, q: float) -> float:
    if not values.size or weights.sum() <= 0:
        return float(np.percentile(values, q)) if values.size else 0.0
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum, q / 100.0 * cum[-1]))
    return float(values[order][min(i, len(order) - 1)])


def align_traces(
    setup: SimSetup, traces: Mapping[str, Trace], step_seconds: float, days: float | None = None
) -> FloatArray:
    """(steps, W) arrivals in requests/second, every workload on the same step grid."""
    columns = []
    for w in setup.workloads:
        t = traces[w.name]
        if t.step_seconds != step_seconds:
            t = t.resampled(step_seconds)
        columns.append(t.rps)
    steps = min(len(c) for c in columns)
    if days is not None:
        steps = min(steps, int(days * 86400 / step_seconds))
    return np.stack([c[:steps] for c in columns], axis=1).astype(np.float64)


class Simulation:
    def __init__(self, setup: SimSetup, strategy: Strategy, config: SimConfig) -> None:
        self.setup = setup
        self.strategy = strategy
        self.config = config
        self._dearest: dict[int, list[int]] = {}  # per workload: pools, dearest pod first
        rng = np.random.default_rng(config.seed)
        self.cluster = Cluster(
            setup.pools,
            list(setup.pods),
            setup.reserve,
            timings=config.timings,
            rng=rng,
            interruption_scale=config.interruption_scale,
        )
        self.n_w = len(setup.workloads)
        self.action = Action(
            replicas=np.array([max(w.min_replicas, 1) for w in setup.workloads], dtype=np.int64),
            concurrency=np.array([w.min_concurrency for w in setup.workloads], dtype=np.int64),
        )
        self.price = np.array([p.hourly_price for p in setup.pools])
        self.spot = np.array([p.is_spot for p in setup.pools])
        self.idle_since: dict[int, float] = {}
        self.noticed: set[int] = set()
        self.replaced: set[int] = set()  # id() of nodes a replacement was launched for

    def run(
        self, arrivals: FloatArray, *, on_step: Callable[[int], None] | None = None
    ) -> SimResult:
        started = time.perf_counter()
        dt = self.config.step_seconds
        series = Series()
        decisions = interruptions = churn = 0
        history = np.zeros((0, self.n_w))
        next_decision = 0.0
        notes: list[str] = []
        for i in range(len(arrivals)):
            now = i * dt
            load = arrivals[i]
            history = arrivals[max(0, i - self.config.history_steps + 1) : i + 1]
            noticed = self.cluster.noticed_pools(now)
            fresh = noticed - self.noticed
            self.noticed = noticed
            if now >= next_decision or (fresh and self.strategy.reacts_to_notices):
                view = self.view(now, history, load, frozenset(noticed))
                self.action = self.strategy.decide(view)
                notes.extend(self.action.notes)
                decisions += 1
                # Keep the cadence on average when it does not divide the step (15 s HPA
                # on 10 s steps decides at 0, 20, 30, 50, 60, ...).
                while next_decision <= now:
                    next_decision += self.strategy.interval_seconds
            churn += self.reconcile_nodes(now, history, load)
            self.reconcile_pods(now, history, load)
            mult = (
                self.config.spot_price_multiplier(now) if self.config.spot_price_multiplier else 1.0
            )
            nodes_now = self.cluster.all_nodes()
            cost_rate = float(nodes_now @ np.where(self.spot, self.price * mult, self.price))
            ev = self.cluster.advance(now, dt, mult)
            interruptions += ev.interrupted
            churn += ev.terminated
            self.record(series, now, load, cost_rate, ev.interrupted)
            if on_step is not None:
                on_step(i)
        return SimResult(
            self.strategy.name,
            self.cluster.billed_dollars,
            series,
            interruptions,
            churn,
            decisions,
            time.perf_counter() - started,
            notes[-20:],
        )

    # -- what strategies see ----------------------------------------------------------

    def view(
        self, now: float, history: FloatArray, load: FloatArray, noticed: frozenset[int]
    ) -> View:
        c = self.cluster
        pods = c.running + c.starting_pods()
        ready = c.running.sum(axis=1)
        util = np.zeros(self.n_w)
        in_flight = np.zeros(self.n_w)
        for w, wl in enumerate(self.setup.workloads):
            conc = int(self.action.concurrency[w])
            cap = ready[w] * float(throughput(wl.usl, conc))
            util[w] = load[w] / cap if cap > 0 else (math.inf if load[w] > 0 else 0.0)
            if ready[w] > 0:
                per = load[w] / ready[w]
                per_cap = cap / ready[w]
                if per >= per_cap:
                    # Saturated: the limit is full and the excess waits, growing with load.
                    in_flight[w] = conc * per / per_cap
                else:
                    in_flight[w] = per * float(mean_response_seconds(wl.usl, per, conc))
        return View(
            now=now,
            step_seconds=self.config.step_seconds,
            workloads=self.setup.workloads,
            pools=self.setup.pools,
            rates=tuple(history[:, w].copy() for w in range(self.n_w)),
            pods=pods,
            ready_pods=ready,
            nodes=c.all_nodes(),
            ready_nodes=c.ready_nodes(now),
            noticed_pools=noticed,
            concurrency=self.action.concurrency.copy(),
            utilization=util,
            in_flight=in_flight,
            ppn=c.ppn,
        )

    # -- reconciling toward the strategy's targets ------------------------------------

    def reconcile_nodes(self, now: float, history: FloatArray, load: FloatArray) -> int:
        c = self.cluster
        changed = 0
        if self.action.nodes is not None:
            have = c.all_nodes()
            # Make before break: a node leaves once no pod needs it. Pods stay on a node
            # the plan drops until their replacements run elsewhere (reconcile_pods).
            busy = np.ceil(c.used() - 1e-6).astype(np.int64)
            for p, want in enumerate(self.action.nodes):
                if want > have[p]:
                    changed += c.launch(p, int(want - have[p]), now)
                elif want < have[p]:
                    surplus = int(min(have[p] - want, have[p] - busy[p]))
                    if surplus > 0:
                        changed += self.remove_nodes(p, surplus, now)
            return changed
        prov = self.strategy.provisioner
        if prov is None:
            return 0
        view = None
        if prov.replace_on_notice:
            for node in list(c.nodes):
                if node.notice_at <= now and id(node) not in self.replaced:
                    self.replaced.add(id(node))
                    view = view or self.view(now, history, load, frozenset(self.noticed))
                    order = [p for p in prov.pool_order(view, 0) if p not in self.noticed]
                    if order:
                        changed += c.launch(order[0], 1, now)
        # Buy nodes for pods that will not fit in ready or pending capacity.
        pods = c.running + c.starting_pods()
        free = (c.all_nodes() - c.used()).astype(np.float64)
        for w in range(self.n_w):
            pending = int(self.action.replicas[w] - pods[w].sum())
            if pending <= 0:
                continue
            view = view or self.view(now, history, load, frozenset(self.noticed))
            order = prov.pool_order(view, w)
            for p in order:
                fits = math.floor(max(free[p], 0) * c.ppn[w, p] + 1e-6)
                take = min(fits, pending)
                free[p] -= take / c.ppn[w, p]
                pending -= take
                if pending <= 0:
                    break
            if pending > 0 and order:
                p = order[0]
                new = math.ceil(pending / c.ppn[w, p])
                changed += c.launch(p, new, now)
                free[p] += new - pending / c.ppn[w, p]
        # Consolidate: a pool with a whole idle *ready* node for long enough gives it back
        # (a node still starting is not idle: pods are waiting for it).
        used = c.used()
        ready = c.ready_nodes(now)
        for p in range(len(self.setup.pools)):
            idle = int(ready[p] - math.ceil(used[p] - 1e-6))
            if idle <= 0:
                self.idle_since.pop(p, None)
                continue
            since = self.idle_since.setdefault(p, now)
            if now - since >= prov.consolidate_after_seconds:
                changed += self.remove_nodes(p, idle, now, ready_only=True)
                self.idle_since.pop(p, None)
        return changed

    def remove_nodes(self, pool: int, count: int, now: float, *, ready_only: bool = False) -> int:
        c = self.cluster
        nodes = [n for n in c.nodes if n.pool == pool and (n.ready_at <= now or not ready_only)]
        # Nodes under notice go first, then ones not ready yet, then the newest.
        nodes.sort(key=lambda n: (n.notice_at > now, n.ready_at <= now, -n.launched_at))
        for n in nodes[:count]:
            c.nodes.remove(n)
        c.evict_overflow(now)
        return min(count, len(nodes))

    def _dearest_first(self, w: int) -> list[int]:
        order = self._dearest.get(w)
        if order is None:
            c = self.cluster
            order = self._dearest[w] = sorted(
                range(len(self.setup.pools)),
                key=lambda p: -self.setup.pools[p].hourly_price / max(c.ppn[w, p], 1),
            )
        return order

    def reconcile_pods(self, now: float, history: FloatArray, load: FloatArray) -> None:
        c = self.cluster
        pods = c.running + c.starting_pods()
        if self.action.pods is not None:
            starting = c.starting_pods()
            for w in range(self.n_w):
                want = self.action.pods[w]
                for short in np.flatnonzero(want > pods[w]).tolist():
                    c.start_pods(w, short, int(want[short] - pods[w, short]), now)
                # Make before break: pods not ready yet go at once; running ones only
                # while the workload still runs as many ready pods as the plan asks for.
                spare = max(int(c.running[w].sum()) - int(want.sum()), 0)
                for p in self._dearest_first(w):
                    excess = int(pods[w, p] - want[p])
                    if excess <= 0:
                        continue
                    not_ready = min(excess, int(starting[w, p]))
                    ready = min(excess - not_ready, spare)
                    c.stop_pods(w, p, not_ready + ready)
                    spare -= ready
            return
        prov = self.strategy.provisioner
        view = None
        for w in range(self.n_w):
            want, have = int(self.action.replicas[w]), int(pods[w].sum())
            if have > want:
                # Scale in from the dearest pods.
                left = have - want
                for p in self._dearest_first(w):
                    left -= c.stop_pods(w, p, min(left, int(pods[w, p])))
                    if left <= 0:
                        break
            elif want > have and prov is not None:
                view = view or self.view(now, history, load, frozenset(self.noticed))
                left = want - have
                # Starting pods in one pool leaves the others' room as it was.
                room = c.room(w, now)
                for p in prov.pool_order(view, w):
                    if room[p] <= 0:
                        continue
                    left -= c.start_pods(w, p, left, now)
                    if left <= 0:
                        break

    # -- serving and scoring ----------------------------------------------------------

    def record(
        self, s: Series, now: float, load: FloatArray, cost_rate: float, interrupted: int
    ) -> None:
        dt = self.config.step_seconds
        ready = self.cluster.running.sum(axis=1)
        p95s, arrived, served, shed, capacity = [], [], [], [], []
        violated = False
        for w, wl in enumerate(self.setup.workloads):
            conc = int(self.action.concurrency[w])
            lam = float(load[w])
            cap = float(ready[w]) * float(throughput(wl.usl, conc))
            done = min(lam, cap)
            dropped = lam - done
            if dropped > 1e-9 or ready[w] == 0:
                # Overloaded: requests queue until they time out (or are shed).
                p95 = P95_CAP_MS if lam > 0 else 0.0
            else:
                per = min(lam, cap * 0.999) / ready[w]
                mean = float(mean_response_seconds(wl.usl, per, conc))
                p95 = min(1000.0 * wl.tail_factor * mean, P95_CAP_MS)
            violated |= p95 > wl.slo_p95_ms or dropped > 1e-9
            p95s.append(p95)
            arrived.append(lam * dt)
            served.append(done * dt)
            shed.append(dropped * dt)
            capacity.append(cap * dt)
        nodes = self.cluster.all_nodes()
        spot = sum(int(nodes[p]) for p, pool in enumerate(self.setup.pools) if pool.is_spot)
        s.time.append(now)
        s.cost_rate.append(cost_rate)
        s.spot_nodes.append(spot)
        s.on_demand_nodes.append(int(nodes.sum()) - spot)
        s.replicas.append([int(x) for x in ready])
        s.concurrency.append([int(x) for x in self.action.concurrency])
        s.p95_ms.append(p95s)
        s.arrived.append(arrived)
        s.served.append(served)
        s.shed.append(shed)
        s.capacity.append(capacity)
        s.violation.append(violated)
        s.interruptions.append(interrupted)
