"""The decision: a policy plus what was observed, turned into a plan to apply.

Pure: no I/O, no clock. The operator, the simulator, the RL environment and the tests all
call the same functions:

- `compile_problem` turns a policy and a demand per workload into an engine `Problem`;
- `recommend` is one offline solve plus the all-on-demand reference cost;
- `decide` is one tick of the control loop: forecast, guard bounds, solve, conditions.
  Its memory between ticks is an explicit `GuardState` that it returns.

Not here: reading metrics or talking to Kubernetes (`observe`, `actuate`, `controller`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from spotwise.api.v1alpha1 import ScalingPolicySpec, WorkloadSpec, parse_cpu, parse_memory_gib
from spotwise.catalog import CatalogError, builtin_catalog, merge_catalog
from spotwise.domain import (
    CapacityType,
    Catalog,
    Constraints,
    NodeReserve,
    Plan,
    Problem,
    Resources,
    Usl,
    Workload,
)
from spotwise.engines import create_engine, engine_names
from spotwise.engines.base import (
    Engine,
    Remembering,
    build_tables,
    check_plan,
    refresh_predictions,
    workload_tables,
)
from spotwise.engines.exact import ExactEngine
from spotwise.engines.rl import AgentError
from spotwise.models.demand import forecast
from spotwise.models.risk import pools_for

DEFAULT_LEAD_SECONDS = 120.0  # a spot node's typical time to Ready: demand must be met then
DEFAULT_SHUN_SECONDS = 600.0  # how long a pool that was interrupted gets no new capacity


class DecisionError(ValueError):
    """A policy or input the decision cannot work with; the message is one line."""


# -- compiling ------------------------------------------------------------------------


def build_catalog(spec: ScalingPolicySpec) -> Catalog:
    """The policy's instance types: a built-in catalog, overridden and extended by its
    custom entries, restricted to `instanceTypes` when given."""
    c = spec.nodes.catalog
    try:
        base = (
            builtin_catalog(c.builtin) if c.builtin else Catalog(name="custom", instance_types=())
        )
        overrides = [x.to_k8s() for x in c.custom]
        return merge_catalog(base, overrides, c.instance_types)
    except CatalogError as err:
        raise DecisionError(f"spec.nodes.catalog: {err}") from None


def workload_capacity(ws: WorkloadSpec, fitted: Usl | None = None) -> tuple[Usl, float]:
    """USL parameters and tail factor: fitted from metrics when there are any, else the
    policy's `capacity`."""
    tail = ws.capacity.tail_factor if ws.capacity else 2.0
    if fitted is not None:
        return fitted, tail
    if ws.capacity is None:
        raise DecisionError(
            f"workload {ws.name}: no metrics to fit its capacity from; give "
            "spec.workloads[].capacity.serviceRateRps (and optionally contention, coherency)"
        )
    cap = ws.capacity
    return Usl(cap.service_rate_rps, cap.contention, cap.coherency), tail


def compile_problem(
    spec: ScalingPolicySpec,
    demands: Mapping[str, float],
    *,
    capacities: Mapping[str, Usl] | None = None,
    bounds: Mapping[str, tuple[int, int]] | None = None,
    shunned: frozenset[str] = frozenset(),
    catalog: Catalog | None = None,
    on_demand_only: bool = False,
) -> Problem:
    """The engine problem for `demands` (requests/second per workload name).

    `bounds` narrows replica bounds (the guard's step and stabilization limits);
    `on_demand_only` drops spot pools and the rules about them (the reference plan)."""
    names = [w.name for w in spec.workloads]
    unknown = sorted(set(demands) - set(names))
    if unknown:
        raise DecisionError(
            f"unknown workload {', '.join(unknown)}; the policy has {', '.join(names)}"
        )
    missing = [n for n in names if n not in demands]
    if missing:
        raise DecisionError(f"no demand given for workload {', '.join(missing)}")
    for name, rps in demands.items():
        if not math.isfinite(rps) or rps < 0:
            raise DecisionError(f"workload {name}: demand must be a finite number ≥ 0, got {rps}")
    catalog = catalog if catalog is not None else build_catalog(spec)
    if not len(catalog):
        raise DecisionError("spec.nodes.catalog: no instance types to choose from")
    spot_on = spec.nodes.spot.enabled and not on_demand_only
    pools = pools_for(catalog, spot=spot_on, on_demand=True)
    capacities = capacities or {}
    bounds = bounds or {}
    workloads = []
    for ws in spec.workloads:
        usl, tail = workload_capacity(ws, capacities.get(ws.name))
        lo, hi = bounds.get(ws.name, (ws.replicas.min, ws.replicas.max))
        workloads.append(
            Workload(
                name=ws.name,
                demand_rps=float(demands[ws.name]),
                slo_p95_ms=ws.slo.latency_p95_ms,
                usl=usl,
                pod=Resources(cpu=ws.resources.cpu_cores, memory_gib=ws.resources.memory_gib),
                min_replicas=lo,
                max_replicas=hi,
                min_concurrency=ws.concurrency.min,
                max_concurrency=ws.concurrency.max,
                tail_factor=tail,
            )
        )
    nodes = spec.nodes
    reserve = nodes.daemon_set_reserve
    constraints = Constraints(
        headroom=spec.objective.headroom,
        on_demand_min_share=0.0 if on_demand_only else nodes.on_demand.min_share,
        on_demand_min_nodes=nodes.on_demand.min_nodes,
        spot_max_share=nodes.spot.max_share if spot_on else 0.0,
        spot_max_pool_share=nodes.spot.max_pool_share,
        survive_pool_loss=nodes.survive_pool_loss and spot_on,
        max_hourly_cost=None if on_demand_only else spec.objective.max_hourly_cost,
    )
    return Problem(
        workloads=tuple(workloads),
        pools=pools,
        constraints=constraints,
        reserve=NodeReserve(
            cpu=parse_cpu(reserve.cpu),
            memory_gib=parse_memory_gib(reserve.memory),
            pods=reserve.pods,
        ),
        shunned_pools=frozenset(p.name for p in pools if p.name in shunned),
    )


# The scale-down window remembers the need of the point forecast plus this share of its
# volatility headroom, not of the whole upper bound: every tick already plans for the
# full upper bound, and the highest of five minutes of upper bounds is the highest of
# five draws of noise. Measured on the tuning traces only (docs/models.md): 1.0 (the
# whole bound) cost 3-13 % more at the same SLO; 0 let 0.95 % of the steps on a noisy
# trace break the SLO.
FLOOR_SPREAD_SHARE = 0.25

# Each node added or removed against the running plan is charged this many hours of its
# price: a new node is paid for minutes before it serves and its pods restart, and plans
# that tie on cost would otherwise flip between node types from one tick to the next.
CHURN_WEIGHT_HOURS = 0.25


def engine_for(
    spec: ScalingPolicySpec, name: str | None = None, *, agent: str | None = None
) -> Engine:
    """The engine the policy asks for (or `name`), with the policy's settings. `agent`
    overrides `spec.optimizer.rl.agent` for the rl and hybrid engines."""
    opt = spec.optimizer
    name = name or opt.engine
    options: dict[str, object] = {
        "time_budget_seconds": opt.time_budget_seconds,
        "churn_weight": CHURN_WEIGHT_HOURS,
    }
    # rl falls back to the genetic engine, so it takes the genetic settings too.
    if name in ("genetic", "hybrid", "rl"):
        options.update(
            population=opt.genetic.population,
            generations=opt.genetic.generations,
            objectives=opt.genetic.objectives,
            seed=opt.genetic.seed,
        )
    if name in ("rl", "hybrid") and (agent or opt.rl.agent):
        options["agent"] = agent or opt.rl.agent
    try:
        return create_engine(name, **options)
    except KeyError:
        raise DecisionError(
            f"engine {name!r} is not available in this version (available: "
            f"{', '.join(n for n in engine_names())})"
        ) from None
    except AgentError as e:
        raise DecisionError(str(e)) from None


def reference_cost(problem: Problem) -> float:
    """The cheapest all-on-demand plan for the same demand: what savings are measured
    against."""
    od = replace(
        problem,
        pools=tuple(p for p in problem.pools if p.capacity_type is CapacityType.ON_DEMAND),
        constraints=replace(
            problem.constraints,
            on_demand_min_share=0.0,
            spot_max_share=0.0,
            survive_pool_loss=False,
            max_hourly_cost=None,
        ),
        shunned_pools=frozenset(),
    )
    return ExactEngine(time_budget_seconds=10.0).solve(od).hourly_cost


# -- offline recommendation ----------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    plan: Plan
    on_demand_hourly_cost: float

    @property
    def savings_ratio(self) -> float:
        if self.on_demand_hourly_cost <= 0:
            return 0.0
        return 1.0 - self.plan.hourly_cost / self.on_demand_hourly_cost


def recommend(
    spec: ScalingPolicySpec,
    demands: Mapping[str, float],
    *,
    engine: str | None = None,
    seed: int | None = None,
) -> Recommendation:
    """One solve for fixed demands, no cluster: what `spotwise recommend` prints."""
    problem = compile_problem(spec, demands)
    plan = engine_for(spec, engine).solve(problem, seed=seed)
    return Recommendation(plan, reference_cost(problem))


# -- the control loop ----------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadObservation:
    name: str
    request_rates: tuple[float, ...]  # requests/second, oldest first, `step_seconds` apart
    current_replicas: int | None = None
    capacity: Usl | None = None  # fitted from metrics, when there were enough


@dataclass(frozen=True)
class Observation:
    at: float  # seconds on any monotonic clock
    step_seconds: float
    workloads: tuple[WorkloadObservation, ...]
    metrics_available: bool = True
    metrics_message: str = ""
    interrupted_pools: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GuardState:
    """What `decide` remembers between ticks."""

    # (at, SLO need per workload at the remembered demand): the scale-down window
    needs: tuple[tuple[float, tuple[tuple[str, int], ...]], ...] = ()
    last_plan: Plan | None = None
    shunned_until: tuple[tuple[str, float], ...] = ()
    last_key: object = None  # what the engine saw last time: same key, same plan
    last_solved_at: float = -math.inf
    last_floors: tuple[tuple[str, int], ...] = ()  # stabilized SLO floors at the last solve
    engine_memory: Hashable = None  # what a Remembering engine carries between decisions


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    plan: Plan | None  # what should run; None before any plan exists
    act: bool  # False: write status only (Paused, DryRun, held)
    held: bool  # the previous plan was kept, no new solve
    state: GuardState
    demands: tuple[tuple[str, float], ...] = ()
    conditions: tuple[ConditionUpdate, ...] = ()
    events: tuple[Event, ...] = field(default_factory=tuple)


def decide(
    spec: ScalingPolicySpec,
    observation: Observation,
    state: GuardState | None = None,
    *,
    engine: Engine | None = None,
    seed: int | None = None,
    lead_seconds: float = DEFAULT_LEAD_SECONDS,
    shun_seconds: float = DEFAULT_SHUN_SECONDS,
) -> Decision:
    """One tick. Never raises for bad metrics: holds the last plan instead. A policy the
    decision cannot use raises `DecisionError` (the controller reports it)."""
    state = state or GuardState()
    now = observation.at
    shunned = {p: t for p, t in state.shunned_until if t > now}
    for pool in observation.interrupted_pools:
        shunned[pool] = now + shun_seconds
    state = replace(state, shunned_until=tuple(sorted(shunned.items())))
    events = tuple(
        Event(
            "Warning", "SpotInterruption", f"pool {p} interrupted; shunned for {shun_seconds:.0f}s"
        )
        for p in sorted(observation.interrupted_pools)
    )

    if spec.mode == "Paused":
        return Decision(
            state.last_plan,
            act=False,
            held=True,
            state=state,
            events=events,
            conditions=(
                ConditionUpdate("Ready", "True", "Paused", "policy is paused; nothing is changed"),
            ),
        )
    observed = {w.name: w for w in observation.workloads}
    silent = [
        w.name
        for w in spec.workloads
        if w.name not in observed or not _finite(observed[w.name].request_rates)
    ]
    if not observation.metrics_available or silent:
        why = observation.metrics_message or f"no request rate for {', '.join(silent)}"
        return Decision(
            state.last_plan,
            act=False,
            held=True,
            state=state,
            events=(*events, Event("Warning", "MetricsUnavailable", why)),
            conditions=(
                ConditionUpdate("MetricsAvailable", "False", "MetricsUnavailable", why),
                ConditionUpdate(
                    "Ready",
                    "True" if state.last_plan else "False",
                    "HoldingLastPlan" if state.last_plan else "NoPlanYet",
                    "holding the last plan until metrics return; no scale-down",
                ),
            ),
        )

    demands: dict[str, float] = {}
    remembered_demands: dict[str, float] = {}
    capacities: dict[str, Usl] = {}
    horizon = spec.interval_seconds + lead_seconds
    for ws in spec.workloads:
        obs = observed[ws.name]
        f = forecast(
            [r for r in obs.request_rates if math.isfinite(r)],
            step_seconds=observation.step_seconds,
            horizon_seconds=horizon,
        )
        demands[ws.name] = max(f.upper, 0.0)
        remembered_demands[ws.name] = max(f.point + FLOOR_SPREAD_SHARE * f.headroom, 0.0)
        if obs.capacity is not None:
            capacities[ws.name] = obs.capacity

    # Guard 1: what the SLO needs now, and what the scale-down window remembers of it.
    catalog = build_catalog(spec)  # once per tick: both compiles below use it
    free = compile_problem(
        spec, demands, capacities=capacities, shunned=frozenset(shunned), catalog=catalog
    )
    tables = build_tables(free)
    headroom = free.constraints.headroom
    need_now: dict[str, int] = {}
    remembered: dict[str, int] = {}
    for i, w in enumerate(free.workloads):
        need_now[w.name] = _least_need(tables.need[i], w.max_replicas)
        at_floor = replace(w, demand_rps=remembered_demands[w.name])
        remembered[w.name] = _least_need(workload_tables(at_floor, headroom)[1], w.max_replicas)
    window = spec.stabilization.scale_down_seconds
    needs = (
        *tuple((t, n) for t, n in state.needs if t > now - window),
        (now, tuple(sorted(remembered.items()))),
    )
    floor = {
        name: max(need, *(dict(n).get(name, 0) for _, n in needs))
        for name, need in need_now.items()
    }
    # Guard 2: bounds, the step limit, and the stabilized floor.
    step = spec.stabilization.max_replica_step
    bounds: dict[str, tuple[int, int]] = {}
    for ws in spec.workloads:
        lo, hi = ws.replicas.min, ws.replicas.max
        # The step limit is per tick, so it counts from the last plan: what is running lags
        # behind it while pods start, and bounds that moved with it would force a re-solve
        # every tick.
        current = (
            state.last_plan.workload(ws.name).replicas
            if state.last_plan is not None
            else observed[ws.name].current_replicas
        )
        # No scale-down below what the SLO needed at any time in the window.
        lo = max(lo, min(floor[ws.name], hi))
        if current is not None:
            hi = min(hi, current + step)
            lo = max(lo, current - step)
        hi = max(hi, ws.replicas.min)  # never below min, even when that is a bigger step
        bounds[ws.name] = (min(lo, hi), hi)
    problem = compile_problem(
        spec,
        demands,
        capacities=capacities,
        bounds=bounds,
        shunned=frozenset(shunned),
        catalog=catalog,
    )
    engine = engine or engine_for(spec)
    # Keep a plan that still meets every rule (bounds included) until it is due for
    # re-optimization; re-solve at once when demand outgrows it, a pool is interrupted, or
    # a stabilized floor dropped (a scale-down became allowed).
    solved_at = state.last_solved_at
    engine_memory = state.engine_memory
    floors = tuple(sorted(floor.items()))
    floor_dropped = any(f < dict(state.last_floors).get(name, f) for name, f in floors)
    if (
        state.last_plan is not None
        and not observation.interrupted_pools
        and not floor_dropped
        and now - state.last_solved_at < max(window, spec.interval_seconds)
        and still_valid(problem, state.last_plan)
    ):
        plan, key = refresh_predictions(problem, state.last_plan), state.last_key
        # Floors are remembered as they were at the last solve: a rise and a fall back
        # is not a drop.
        last_floors = state.last_floors
    else:
        last_floors = floors
        key = solve_key(problem)
        if key == state.last_key and state.last_plan is not None:
            plan = refresh_predictions(problem, state.last_plan)  # the engine would agree
        else:
            if isinstance(engine, Remembering):
                engine.restore(state.engine_memory)
            plan = engine.solve(problem, warm_start=state.last_plan, seed=seed)
            if isinstance(engine, Remembering):
                engine_memory = engine.memento()
            solved_at = now

    # Guard 3: a plan that breaks a workload's replica bounds (its pods fit no node type,
    # say) is never applied: the last plan holds and the policy says why.
    outside = [
        f"{ws.name}: {plan.workload(ws.name).replicas} replicas outside "
        f"[{ws.replicas.min}, {ws.replicas.max}]"
        for ws in spec.workloads
        if not ws.replicas.min <= plan.workload(ws.name).replicas <= ws.replicas.max
    ]
    if outside:
        why = "; ".join([*outside, *plan.reasons[-2:]])[:1000]
        return Decision(
            state.last_plan,
            act=False,
            held=True,
            state=replace(state, needs=needs),
            demands=tuple(sorted(demands.items())),
            events=(*events, Event("Warning", "Infeasible", f"plan not applied: {why}")),
            conditions=(
                ConditionUpdate(
                    "MetricsAvailable",
                    "True",
                    "MetricsRead",
                    "request rates read for every workload",
                ),
                ConditionUpdate("Degraded", "True", "Infeasible", f"plan not applied: {why}"),
                ConditionUpdate(
                    "Ready",
                    "True" if state.last_plan else "False",
                    "HoldingLastPlan" if state.last_plan else "NoPlanYet",
                    "no plan within the replica bounds; nothing is changed",
                ),
            ),
        )

    conditions = [
        ConditionUpdate(
            "MetricsAvailable", "True", "MetricsRead", "request rates read for every workload"
        )
    ]
    if plan.over_budget:
        conditions.append(
            ConditionUpdate(
                "Degraded",
                "True",
                "OverBudget",
                f"the SLO needs ${plan.hourly_cost:.2f}/h, over maxHourlyCost "
                f"${spec.objective.max_hourly_cost or 0:.2f}/h",
            )
        )
    elif not plan.feasible:
        conditions.append(
            ConditionUpdate("Degraded", "True", "Infeasible", "; ".join(plan.reasons[-3:])[:1000])
        )
    else:
        conditions.append(
            ConditionUpdate(
                "Degraded", "False", "WithinPolicy", "plan meets the SLO and every rule"
            )
        )
    conditions.append(
        ConditionUpdate(
            "Ready", "True", "Decided", f"{plan.engine} plan at ${plan.hourly_cost:.2f}/h"
        )
    )
    return Decision(
        plan,
        act=spec.mode == "Active",
        held=False,
        state=replace(
            state,
            needs=needs,
            last_plan=plan,
            last_key=key,
            last_solved_at=solved_at,
            last_floors=last_floors,
            engine_memory=engine_memory,
        ),
        demands=tuple(sorted(demands.items())),
        conditions=tuple(conditions),
        events=(
            *events,
            Event(
                "Normal",
                "Decided",
                f"{plan.engine}: ${plan.hourly_cost:.2f}/h, "
                + ", ".join(f"{w.name}={w.replicas}x{w.concurrency}" for w in plan.workloads),
            ),
        ),
    )


# A running plan is kept while it would still meet every rule with this much less demand
# than forecast: plans sized at the minimum sit on the SLO and pool-loss boundaries, and
# without hysteresis every upward wobble of the forecast would re-plan (HPA has a 10 %
# tolerance for the same reason). New plans are always sized for the full forecast.
KEEP_TOLERANCE = 0.1


def still_valid(problem: Problem, plan: Plan) -> bool:
    """The plan breaks no hard rule of `problem`, with demand `KEEP_TOLERANCE` lower
    (budget aside), and was feasible."""
    relaxed = replace(
        problem,
        workloads=tuple(
            replace(w, demand_rps=w.demand_rps * (1 - KEEP_TOLERANCE)) for w in problem.workloads
        ),
    )
    return plan.feasible and not [
        v for v in check_plan(relaxed, plan) if not v.startswith("budget:")
    ]


def solve_key(problem: Problem) -> object:
    """Everything an engine's answer depends on. Demand enters only through the replicas
    each concurrency limit needs, so two ticks whose needs agree get the same plan."""
    tables = build_tables(problem)
    without_demand = replace(
        problem, workloads=tuple(replace(w, demand_rps=0.0) for w in problem.workloads)
    )
    return (
        without_demand,
        tuple(n.tobytes() for n in tables.need),
        tuple(s.tobytes() for s in tables.survive),
    )


def _least_need(needs: Iterable[int | np.integer[Any]], max_replicas: int) -> int:
    ok = [int(n) for n in needs if n >= 0]
    return min(ok) if ok else max_replicas


def _finite(values: Sequence[float]) -> bool:
    return any(math.isfinite(v) for v in values)
