"""One control-loop tick for one ScalingPolicy, and its release when it is deleted, over
injected ports.

A tick validates the spec, observes, decides (through a `Solver`), acts when the mode
allows, then writes the status it computed (only the fields that changed) and the events
worth telling. Everything that touches the network is a port of `Shell`: the production
ports live in `spotwise.controller.shell`, the unit tests pass named fakes. Nothing a tick
meets — a bad spec, an unreachable Prometheus, an API error, a solver crash — escapes it:
it ends up in a condition, an event and the log, and the next tick tries again.

`release` is one attempt at removing what a deleted policy's node provider made; it says
whether to try again, and the caller (kopf's delete handler) decides when.

Not here: kopf (`handlers`), Kubernetes or Prometheus clients (`shell`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from spotwise.actuate.labels import POLICY_LABEL, bounded
from spotwise.api.loading import PolicyError, parse_spec
from spotwise.api.v1alpha1 import ObjectMeta, ScalingPolicy
from spotwise.controller.solver import Solved, Solver
from spotwise.controller.status import (
    condition,
    merge_conditions,
    plan_status,
    restore,
    same_plan,
    status_patch,
)
from spotwise.controller.telemetry import Telemetry
from spotwise.decide import (
    DEFAULT_SHUN_SECONDS,
    ConditionUpdate,
    DecisionError,
    Event,
    GuardState,
    Observation,
    build_catalog,
)
from spotwise.domain import Plan

log = logging.getLogger("spotwise.controller")

STEP_SECONDS = 30.0  # spacing of the request-rate history a tick reads
LOOKBACK_SECONDS = 900.0  # how much history the demand forecast sees


@dataclass(frozen=True)
class Acted:
    """What applying a plan did: one line per change made, one line per error."""

    changes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shell:
    """The ports a tick talks to the world through."""

    # Metrics and cluster state turned into a decide.Observation (never raises for an
    # unreachable Prometheus: metrics_available=False says so).
    observe: Callable[[ScalingPolicy, float], Awaitable[Observation]]
    # Apply a plan to workloads, placement and nodes.
    actuate: Callable[[ScalingPolicy, Plan], Awaitable[Acted]]
    # Remove what the node provider made for a policy that is being deleted.
    release: Callable[[ScalingPolicy], Awaitable[Acted]]
    # JSON merge patch of the status subresource: (namespace, name, {"status": ...}).
    patch_status: Callable[[str, str, dict[str, Any]], Awaitable[None]]
    # A Kubernetes Event about the policy object.
    post_event: Callable[[Mapping[str, Any], Event], None]
    solver: Solver
    telemetry: Telemetry = field(default_factory=Telemetry)
    clock: Callable[[], float] = time.time  # wall clock: status times and decide's `at`


# -- per-policy memory --------------------------------------------------------------------


@dataclass
class PolicyRuntime:
    """What the operator remembers about one policy between ticks (in memory; the last
    plan is also in its status, so a restart resumes from it)."""

    namespace: str
    name: str
    state: GuardState | None = None
    on_demand_hourly_cost: float | None = None
    pending_pools: set[str] = field(default_factory=set)  # interrupted, not yet decided on
    announced_pools: frozenset[str] = frozenset()  # SpotInterruption already posted
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def interrupt(self, pool: str) -> None:
        """A node of `pool` is being interrupted: re-plan without it, now."""
        self.pending_pools.add(pool)
        self.wake.set()

    def take_interruptions(self) -> frozenset[str]:
        pools = frozenset(self.pending_pools)
        self.pending_pools.clear()
        return pools

    async def nap(self, seconds: float, stop: Awaitable[object]) -> Literal["stop", "wake", "due"]:
        """Wait until the next tick is due, the policy is woken, or `stop` completes."""
        waits = {
            asyncio.ensure_future(stop): "stop",
            asyncio.ensure_future(self.wake.wait()): "wake",
        }
        try:
            done, _ = await asyncio.wait(
                waits, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waits:
                if not task.done():
                    task.cancel()
        if any(waits[t] == "stop" for t in done):
            return "stop"
        return "wake" if done else "due"


class Policies:
    """The runtimes of the policies this operator serves, by (namespace, name)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], PolicyRuntime] = {}

    def ensure(self, namespace: str, name: str) -> PolicyRuntime:
        key = (namespace, name)
        if key not in self._by_key:
            self._by_key[key] = PolicyRuntime(namespace, name)
        return self._by_key[key]

    def get(self, namespace: str, name: str) -> PolicyRuntime | None:
        return self._by_key.get((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        self._by_key.pop((namespace, name), None)

    def __iter__(self) -> Iterator[PolicyRuntime]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)


# -- the spec -----------------------------------------------------------------------------


def load(body: Mapping[str, Any]) -> ScalingPolicy | str:
    """The policy in a cluster object, or a one-line reason why it cannot be used.

    Only metadata and spec are validated: a status written by another version never makes
    a good spec invalid. Instance types unknown to the catalog are caught here too."""
    policy = _parse(body)
    if isinstance(policy, str):
        return policy
    try:
        if not len(build_catalog(policy.spec)):
            return "spec.nodes.catalog: no instance types to choose from"
    except DecisionError as err:
        return str(err)
    return policy


def _parse(body: Mapping[str, Any]) -> ScalingPolicy | str:
    """Metadata and spec as a ScalingPolicy, the catalog unchecked, or why not."""
    try:
        spec = parse_spec(body.get("spec"))
    except PolicyError as err:
        return "; ".join(err.lines())
    meta = body.get("metadata") or {}
    metadata = ObjectMeta.model_validate(
        {
            k: meta[k]
            for k in ("name", "namespace", "labels", "annotations", "uid", "generation")
            if meta.get(k) is not None
        }
    )
    return ScalingPolicy(metadata=metadata, spec=spec)


# -- the tick -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """What one tick did (for logs, tests and the benchmark)."""

    outcome: Literal["invalid", "failed", "paused", "held", "kept", "solved"]
    patch: dict[str, Any]
    events: tuple[Event, ...]
    acted: Acted | None = None
    plan: Plan | None = None


async def tick(body: Mapping[str, Any], rt: PolicyRuntime, shell: Shell) -> TickResult:
    """One tick for the policy in `body` (its latest known state). Never raises."""
    async with rt.lock:
        try:
            return await _tick(body, rt, shell)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug or a port that broke its promise: report, go on
            log.exception("policy %s/%s: tick failed", rt.namespace, rt.name)
            return await _report(
                body,
                rt,
                shell,
                [ConditionUpdate("Ready", "False", "TickFailed", _one_line(err))],
                (),
                outcome="failed",
            )


async def check_spec(body: Mapping[str, Any], rt: PolicyRuntime, shell: Shell) -> bool:
    """What create/update/resume handlers run: report an invalid spec at once (the tick
    would, one interval later). True when the spec is valid."""
    async with rt.lock:
        loaded = load(body)
        if isinstance(loaded, str):
            await _invalid(body, rt, shell, loaded)
            return False
        return True


async def _tick(body: Mapping[str, Any], rt: PolicyRuntime, shell: Shell) -> TickResult:
    # Whatever woke this tick is being handled now; a wake-up during it starts the next
    # one. Cleared first, so that no early return leaves the daemon a hot loop.
    rt.wake.clear()
    now = shell.clock()
    status: Mapping[str, Any] = body.get("status") or {}
    loaded = load(body)
    if isinstance(loaded, str):
        return await _invalid(body, rt, shell, loaded)
    policy, spec = loaded, loaded.spec
    if rt.state is None:
        restored = restore(status)
        if restored is not None:
            rt.state = restored.guard_state()
            rt.on_demand_hourly_cost = restored.on_demand_hourly_cost
    pools = rt.take_interruptions()
    if spec.mode == "Paused":
        observation = Observation(
            at=now, step_seconds=STEP_SECONDS, workloads=(), interrupted_pools=pools
        )
    else:
        observation = await shell.observe(policy, now)
        observation = replace(
            observation,
            at=now,
            interrupted_pools=observation.interrupted_pools | pools,
        )
    previous = rt.state.last_plan if rt.state is not None else None

    started = time.perf_counter()
    try:
        solved: Solved = await shell.solver.solve(
            spec, observation, rt.state, want_reference=rt.on_demand_hourly_cost is None
        )
    except DecisionError as err:
        return await _invalid(body, rt, shell, str(err))
    except asyncio.CancelledError:
        raise
    except Exception as err:
        log.exception("policy %s/%s: decision failed", rt.namespace, rt.name)
        return await _report(
            body,
            rt,
            shell,
            [ConditionUpdate("Ready", "False", "DecisionFailed", _one_line(err))],
            (),
            outcome="failed",
        )
    seconds = time.perf_counter() - started
    decision = solved.decision
    before = rt.state
    rt.state = decision.state
    if solved.on_demand_hourly_cost is not None:
        rt.on_demand_hourly_cost = solved.on_demand_hourly_cost

    acted: Acted | None = None
    updates = list(decision.conditions)
    if decision.act and decision.plan is not None:
        try:
            acted = await shell.actuate(policy, decision.plan)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("policy %s/%s: actuation failed", rt.namespace, rt.name)
            acted = Acted(errors=(_one_line(err),))
        updates.append(_actuated(acted))
    elif spec.mode == "DryRun":
        updates.append(
            ConditionUpdate(
                "Actuated", "False", "DryRun", "mode is DryRun: the plan is written to status only"
            )
        )
    elif spec.mode == "Paused":
        updates.append(
            ConditionUpdate("Actuated", "False", "Paused", "policy is paused; nothing is changed")
        )

    events = _events(decision.events, decision.plan, previous, decision.held, status, rt, acted)
    events = (*_interruption_events(observation.interrupted_pools, rt), *events)
    if spec.mode == "Paused":
        outcome: Literal["paused", "held", "kept", "solved"] = "paused"
    elif decision.held:
        outcome = "held"
    elif decision.state.last_solved_at == now and (before is None or before.last_solved_at != now):
        outcome = "solved"
    else:
        outcome = "kept"
    shell.telemetry.decided(
        rt.namespace,
        rt.name,
        seconds=seconds,
        outcome=outcome,
        plan=decision.plan,
        on_demand_hourly_cost=rt.on_demand_hourly_cost,
    )
    if acted is not None:
        shell.telemetry.actuation_failed(rt.namespace, rt.name, len(acted.errors))
    plan = None
    # A held plan is the one already in the status (or restored from it): left as written.
    if decision.plan is not None and not decision.held:
        decided_at = decision.state.last_solved_at
        plan = plan_status(
            decision.plan,
            decided_at=decided_at if math.isfinite(decided_at) else now,
            on_demand_hourly_cost=rt.on_demand_hourly_cost,
        )
    return await _report(
        body,
        rt,
        shell,
        updates,
        events,
        outcome=outcome,
        plan=plan,
        acted=acted,
        decided=decision.plan,
    )


async def _invalid(
    body: Mapping[str, Any], rt: PolicyRuntime, shell: Shell, reason: str
) -> TickResult:
    shown = condition(body.get("status") or {}, "Ready")
    new = shown is None or shown.get("reason") != "InvalidSpec" or shown.get("message") != reason
    events = (Event("Warning", "InvalidSpec", reason),) if new else ()
    shell.telemetry.spec_invalid(rt.namespace, rt.name)
    return await _report(
        body,
        rt,
        shell,
        [ConditionUpdate("Ready", "False", "InvalidSpec", reason)],
        events,
        outcome="invalid",
    )


async def _report(
    body: Mapping[str, Any],
    rt: PolicyRuntime,
    shell: Shell,
    updates: list[ConditionUpdate],
    events: tuple[Event, ...],
    *,
    outcome: Literal["invalid", "failed", "paused", "held", "kept", "solved"],
    plan: dict[str, Any] | None = None,
    acted: Acted | None = None,
    decided: Plan | None = None,
) -> TickResult:
    """Patch the status fields that changed, then post the events."""
    if outcome in ("invalid", "failed"):
        shell.telemetry.ended(rt.namespace, rt.name, outcome)
    status: Mapping[str, Any] = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    desired: dict[str, Any] = {
        "conditions": merge_conditions(
            status.get("conditions") or (),
            updates,
            now=shell.clock(),
            generation=generation,
        )
    }
    if isinstance(generation, int):
        desired["observedGeneration"] = generation
    if plan is not None:
        desired["plan"] = plan
    patch = status_patch(status, desired)
    if patch:
        try:
            await shell.patch_status(rt.namespace, rt.name, {"status": patch})
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # The next tick computes the same patch against the unchanged status.
            log.warning("policy %s/%s: status not written: %s", rt.namespace, rt.name, err)
    for event in events:
        try:
            shell.post_event(body, event)
        except Exception as err:  # events are best effort
            log.warning("policy %s/%s: event not posted: %s", rt.namespace, rt.name, err)
    return TickResult(outcome, patch, events, acted, decided)


# -- the release ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Released:
    """What one attempt at releasing a deleted policy's nodes did. `retry`: some objects
    are left, try again later; `released` and `abandoned` are final (the finalizer may go)."""

    outcome: Literal["released", "retry", "abandoned"]
    message: str
    events: tuple[Event, ...] = ()


async def release(
    body: Mapping[str, Any], rt: PolicyRuntime | None, shell: Shell, *, last_attempt: bool
) -> Released:
    """Attempt to remove what the node provider made for the policy in `body`, which is
    being deleted. On the last attempt a failure is final: a Warning event names what is
    left behind. Never raises."""
    namespace = (body.get("metadata") or {}).get("namespace") or ""
    name = (body.get("metadata") or {}).get("name") or ""
    label = f"{POLICY_LABEL}={bounded(f'{namespace}.{name}')}"
    # The nodes were made under some earlier spec, so a catalog that no longer checks
    # out does not matter; but a spec that does not parse names no provider to ask, and
    # no retry will change that.
    policy = _parse(body)
    if isinstance(policy, str):
        message = (
            f"the spec is invalid ({policy}), so the node provider that made its nodes is "
            f"unknown and nothing was removed: delete the Nodes or NodePools labelled "
            f"{label} by hand"
        )
        return await _released(body, shell, Released("abandoned", message))
    # The daemon is told to stop before kopf calls the delete handler, but a tick in
    # flight may still be creating nodes: it finishes first, and no tick starts after.
    lock = rt.lock if rt is not None else asyncio.Lock()
    async with lock:
        try:
            acted = await shell.release(policy)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the port promises not to raise; if it does, try again
            log.exception("policy %s/%s: release failed", namespace, name)
            acted = Acted(errors=(_one_line(err),))
    if not acted.errors:
        if not acted.changes:  # e.g. provider none, or a policy that only ever ran DryRun
            return Released("released", "nothing to release")
        changes = _lines(acted.changes, 5)
        done = Released("released", changes, (Event("Normal", "Released", changes),))
        return await _released(body, shell, done)
    left = _lines(acted.errors, 3)
    if not last_attempt:
        return Released("retry", f"release incomplete: {left}")
    message = f"gave up; left behind (labelled {label}): {left}"
    return await _released(body, shell, Released("abandoned", message))


async def _released(body: Mapping[str, Any], shell: Shell, done: Released) -> Released:
    """Post the events of a final release outcome (a Warning when abandoned)."""
    events = done.events
    if done.outcome == "abandoned":
        events = (*events, Event("Warning", "ReleaseFailed", done.message))
    for event in events:
        try:
            shell.post_event(body, event)
        except Exception as err:  # events are best effort
            log.warning("release event not posted: %s", err)
    return replace(done, events=events)


def _lines(lines: tuple[str, ...], most: int) -> str:
    more = f" (and {len(lines) - most} more)" if len(lines) > most else ""
    return "; ".join(lines[:most]) + more


def _actuated(acted: Acted) -> ConditionUpdate:
    if acted.errors:
        return ConditionUpdate("Actuated", "False", "ActuationFailed", _lines(acted.errors, 3))
    # The same message whether or not this tick changed anything: changes go to events,
    # and the status stays put while the cluster matches the plan.
    return ConditionUpdate(
        "Actuated", "True", "Applied", "workloads, placement and nodes follow the plan"
    )


def _events(
    decided: tuple[Event, ...],
    plan: Plan | None,
    previous: Plan | None,
    held: bool,
    status: Mapping[str, Any],
    rt: PolicyRuntime,
    acted: Acted | None,
) -> tuple[Event, ...]:
    """The events worth posting: news, not a repeat of what the status already says."""
    out: list[Event] = []
    for event in decided:
        if event.reason == "Decided" and (held or same_plan(plan, previous)):
            continue  # the plan did not change: nothing to tell
        if event.reason == "MetricsUnavailable":
            shown = condition(status, "MetricsAvailable")
            if shown is not None and shown.get("status") == "False":
                continue  # already unavailable (and said so) last tick
        if event.reason == "SpotInterruption":
            continue  # posted per newly interrupted pool, see _interruption_events
        out.append(event)
    if acted is not None and acted.changes:
        out.append(Event("Normal", "Actuated", _lines(acted.changes, 5)))
    if acted is not None and acted.errors:
        shown = condition(status, "Actuated")
        message = _actuated(acted).message
        if shown is None or shown.get("status") != "False" or shown.get("message") != message:
            out.append(Event("Warning", "ActuationFailed", message))
    return tuple(out)


def _interruption_events(pools: frozenset[str], rt: PolicyRuntime) -> tuple[Event, ...]:
    fresh = sorted(pools - rt.announced_pools)
    rt.announced_pools = pools
    return tuple(
        Event(
            "Warning",
            "SpotInterruption",
            f"pool {pool} is being interrupted: re-planned without it; no new capacity "
            f"there for {DEFAULT_SHUN_SECONDS:.0f}s",
        )
        for pool in fresh
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:1000]
