"""The Knative concurrency study, after Schuler, Jamil and Kühl (CCGrid 2021): can a
learned concurrency setting beat Knative's default?

One Knative-like service (`STUDY_POLICY`: a replica whose throughput peaks near 30
requests in flight, at most 20 replicas) is autoscaled by the KPA of the
`knative-default` baseline: desired pods = in-flight requests / (target x 70 %). Three
ways to set the per-pod concurrency target are compared on the same trace:

- `knative-default`: target 100 (Knative's `container-concurrency-target-default`);
- every fixed target of a sweep (`SWEEP`), the best of which (most throughput; the
  lowest p95 among those within 0.5 % of it) is "the best fixed concurrency";
- `LearnedConcurrency`: an agent that moves the target down, holds it, or moves it up
  one step of the engine's concurrency grid (about x0.8 / x1.25) at every autoscaler
  tick, from what the autoscaler sees (load, trend, pods, the target, p95 / SLO,
  utilization, shedding, time of day). It is trained in `ConcurrencyEnv` to serve
  everything within the SLO, with the reward per simulator step

      r = served / arrived - SLO_WEIGHT * [p95 > SLO]

  (a latency term below the SLO taught an earlier agent the wrong lesson: at low load a
  high target is a few milliseconds faster, and that outweighed the rare surges where it
  collapses).

Throughput is the mean of requests served per second; p95 is the simulator's summary
p95 (the served-weighted 95th percentile of per-step p95s, where a step that sheds counts
as 30 s), and `p95MedianMs` the served-weighted median of per-step p95s: the p95 of a
typical step. Nodes come from the
baselines' Karpenter-like provisioner; spot interruptions are off, so that only
concurrency differs.

Not here: the KPA itself (`spotwise.sim.strategies.knative_default`), training
(`train.py`, `spotwise train --task concurrency`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from spotwise.api import ScalingPolicy, load_policy_text
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.engines.base import IntArray, concurrency_grid
from spotwise.engines.rl import Agent, F32Array
from spotwise.models.capacity import peak_concurrency, throughput
from spotwise.models.latency import mean_response_seconds
from spotwise.rl.env import EpisodeSettings, ExternalPolicy, SimDriver
from spotwise.sim.simulator import (
    FloatArray,
    Series,
    SimConfig,
    SimResult,
    Simulation,
    setup_from_policy,
)
from spotwise.sim.strategies.base import Action, SimWorkload, StrategyContext, View
from spotwise.sim.strategies.knative_default import TARGET_UTILIZATION, KnativeDefault
from spotwise.stdio import native_stdout_to_stderr

STUDY_POLICY = """\
apiVersion: spotwise.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: knative-study
spec:
  workloads:
    - name: service
      targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: service}
      slo: {latencyP95Ms: 500}
      replicas: {min: 1, max: 20}
      concurrency: {min: 1, max: 200, actuator: knative}
      capacity: {serviceRateRps: 20, contention: 0.05, coherency: 0.001}
      resources: {cpu: "1", memory: 1Gi}
  nodes:
    catalog: {builtin: aws-us-east-1, instanceTypes: [m6i.large, m6i.xlarge, m6i.2xlarge]}
    spot: {enabled: false}
"""
SWEEP: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200)
AGENT_INTERVAL_SECONDS = 10.0  # one move per simulator step (the KPA ticks every 2 s)
SLO_WEIGHT = 0.5
FEATURES: tuple[str, ...] = (
    "load",  # arrivals / (max replicas x peak throughput of one pod)
    "trend",  # change over the last minute, relative, in [-1, 1]
    "pods",  # ready pods / max replicas
    "concurrency",  # the target's position in [min, max] on a log scale
    "p95_vs_slo",  # the latency model's p95 now / SLO, capped at 3
    "utilization",  # load / ready capacity at the target, capped at 3
    "shed",  # share of this step's arrivals beyond ready capacity
    "time_sin",
    "time_cos",
)
CAP = 3.0
STUDY_EPISODES = EpisodeSettings(interruption_scale=0.0)


def study_policy() -> ScalingPolicy:
    return load_policy_text(STUDY_POLICY, "knative-study")


def observation(view: View, workload: SimWorkload, limit: int) -> F32Array:
    """What the concurrency agent sees of the single service."""
    rates = view.rates[0]
    load = float(rates[-1])
    before = float(rates[max(0, len(rates) - 1 - round(60 / view.step_seconds))])
    peak = float(throughput(workload.usl, _peak(workload)))
    ready = int(view.ready_pods[0])
    capacity = ready * float(throughput(workload.usl, limit))
    if ready > 0 and load < capacity:
        mean = float(mean_response_seconds(workload.usl, load / ready, limit))
        p95 = 1000.0 * workload.tail_factor * mean / workload.slo_p95_ms
    else:
        p95 = CAP if load > 0 else 0.0
    lo, hi = workload.min_concurrency, workload.max_concurrency
    angle = 2 * math.pi * (view.now % 86400) / 86400
    values = [
        load / (workload.max_replicas * peak),
        (load - before) / max(load, before, 1e-9),
        ready / workload.max_replicas,
        math.log(limit / lo) / math.log(hi / lo) if hi > lo else 0.0,
        p95,
        load / capacity if capacity > 0 else CAP,
        max(load - capacity, 0.0) / load if load > 0 else 0.0,
        math.sin(angle),
        math.cos(angle),
    ]
    low, high = bounds()
    return np.clip(np.array(values, dtype=np.float32), low, high)


def bounds() -> tuple[F32Array, F32Array]:
    low = np.array([0, -1, 0, 0, 0, 0, 0, -1, -1], dtype=np.float32)
    high = np.array([CAP, 1, 1, 1, CAP, CAP, 1, 1, 1], dtype=np.float32)
    return low, high


def _peak(workload: SimWorkload) -> float:
    c = peak_concurrency(workload.usl)
    return min(max(c, workload.min_concurrency), workload.max_concurrency)


class KnativeFixed(KnativeDefault):
    """The KPA with its concurrency target set to `limit` instead of 100."""

    def __init__(self, context: StrategyContext, limit: int) -> None:
        super().__init__(context)
        self.name = f"knative-c{limit}"
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        self.limit[:] = limit
        self.target = limit * TARGET_UTILIZATION


class LearnedConcurrency(KnativeFixed):
    """The KPA with an agent that moves its concurrency target every minute."""

    def __init__(self, context: StrategyContext, agent: Agent, start: int = 100) -> None:
        w = context.workloads[0]
        grid = concurrency_grid(w.min_concurrency, w.max_concurrency, _peak(w))
        # The start (Knative's default, 100) is a point of the grid, so the agent starts
        # exactly where Knative does.
        start = min(max(start, w.min_concurrency), w.max_concurrency)
        self.grid = np.union1d(grid, [start]).astype(np.int64)
        index = int(np.searchsorted(self.grid, start))
        super().__init__(context, int(self.grid[index]))
        self.name = "knative-learned"
        self.index = index
        self.agent = agent
        self.next_move = 0.0
        self.limits: list[int] = []  # the target in force at each decision

    def decide(self, view: View) -> Action:
        if view.now >= self.next_move:
            obs = observation(view, self.workloads[0], int(self.limit[0]))
            step = int(self.agent.act(obs).reshape(-1)[0]) - 1  # NeedAction in training
            self.index = int(np.clip(self.index + step, 0, len(self.grid) - 1))
            self.set_limit(int(self.grid[self.index]))
            while self.next_move <= view.now:
                self.next_move += AGENT_INTERVAL_SECONDS
        self.limits.append(int(self.limit[0]))
        return super().decide(view)


def step_reward(step: Series, slo_ms: float) -> float:
    arrived = step.arrived[0][0]
    served = step.served[0][0]
    ratio = served / arrived if arrived > 0 else 1.0
    return ratio - SLO_WEIGHT * float(step.p95_ms[0][0] > slo_ms)


class ConcurrencyEnv(gym.Env[F32Array, IntArray]):
    """The study's service on a simulated cluster; one step is one agent decision."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's API

    def __init__(
        self,
        spec: ScalingPolicySpec,
        traces: Sequence[FloatArray],
        *,
        settings: EpisodeSettings = STUDY_EPISODES,
    ) -> None:
        super().__init__()
        self.policy_spec = spec
        self.setup = setup_from_policy(spec)
        if len(self.setup.workloads) != 1:
            raise ValueError("the concurrency study needs a policy with exactly one workload")
        self.settings = settings
        self.episode_steps = max(1, round(settings.hours * 3600 / settings.step_seconds))
        self.traces = [np.asarray(t, dtype=np.float64).reshape(len(t), -1)[:, :1] for t in traces]
        self.traces = [t for t in self.traces if len(t) >= self.episode_steps]
        if not self.traces:
            raise ValueError(f"no trace is as long as one episode ({settings.hours:g} h)")
        low, high = bounds()
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([3])
        self._policy = ExternalPolicy()
        self._driver: SimDriver | None = None
        self._obs = np.zeros(low.shape, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[F32Array, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        lengths = np.array([len(t) for t in self.traces], dtype=np.float64)
        trace = self.traces[int(rng.choice(len(self.traces), p=lengths / lengths.sum()))]
        per_hour = round(3600 / self.settings.step_seconds)
        start = int(rng.integers((len(trace) - self.episode_steps) // per_hour + 1)) * per_hour
        arrivals = trace[start : start + self.episode_steps] * rng.uniform(*self.settings.scale)
        context = StrategyContext(
            self.policy_spec, self.setup.workloads, self.setup.pools, int(rng.integers(2**31 - 1))
        )
        self._policy = ExternalPolicy()
        strategy = LearnedConcurrency(context, self._policy, start=int(rng.choice(SWEEP)))
        # No spot interruptions in the study, whatever the settings say: only the
        # concurrency target should make a difference.
        config = SimConfig(
            step_seconds=self.settings.step_seconds, seed=context.seed, interruption_scale=0.0
        )
        self._driver = SimDriver(Simulation(self.setup, strategy, config), arrivals)
        asked, _ = self._driver.run(self._reward)
        if asked is not None:
            self._obs = asked
        return self._obs.copy(), {"start_step": start}

    def step(self, action: IntArray) -> tuple[F32Array, float, bool, bool, dict[str, Any]]:
        if self._driver is None:
            raise RuntimeError("call reset() before step()")
        self._policy.pending = np.asarray(action, dtype=np.int64)
        asked, reward = self._driver.run(self._reward)
        if asked is not None:
            self._obs = asked
        return self._obs.copy(), float(reward), False, asked is None, {}

    def _reward(self, step: Series, cost_rate: float, churn: int) -> float:
        steps_per_move = max(AGENT_INTERVAL_SECONDS / self.settings.step_seconds, 1.0)
        return step_reward(step, self.setup.workloads[0].slo_p95_ms) / steps_per_move


# -- the study ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    concurrency: float  # the target (its served-weighted mean for the agent)
    throughput_rps: float
    p95_ms: float
    p95_median_ms: float  # the median, over requests served, of their step's p95
    shed_pct: float
    mean_pods: float
    cost: float

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": round(self.concurrency, 1),
            "throughputRps": round(self.throughput_rps, 2),
            "p95Ms": round(self.p95_ms, 1),
            "p95MedianMs": round(self.p95_median_ms, 1),
            "shedPct": round(self.shed_pct, 3),
            "meanPods": round(self.mean_pods, 2),
            "cost": round(self.cost, 4),
        }


def _outcome(result: SimResult, step_seconds: float, concurrency: float) -> Outcome:
    s = result.series
    served = float(np.sum(s.served))
    arrived = float(np.sum(s.arrived))
    summary = result.summary()
    p95 = np.array(s.p95_ms)[:, 0]
    return Outcome(
        result.strategy,
        concurrency,
        served / (len(s.served) * step_seconds),
        float(summary["p95Ms"]),
        _weighted_quantile(p95, np.array(s.served)[:, 0], 0.5),
        100.0 * (arrived - served) / arrived if arrived else 0.0,
        float(np.mean(s.replicas)),
        result.cost,
    )


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """The q-quantile of `values`, each counted `weights` times (requests served)."""
    if not values.size or weights.sum() <= 0:
        return 0.0
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    i = int(np.searchsorted(cumulative, q * cumulative[-1]))
    return float(values[order][min(i, len(order) - 1)])


def run_study(
    spec: ScalingPolicySpec,
    arrivals: FloatArray,
    agent: Agent,
    *,
    seed: int = 1,
    step_seconds: float = 10.0,
    sweep: Sequence[int] = SWEEP,
) -> dict[str, Any]:
    """knative-default, every fixed target of `sweep` and the learned agent on the same
    arrivals; the best fixed target and how the agent compares with the others."""
    setup = setup_from_policy(spec)
    config = SimConfig(step_seconds=step_seconds, seed=seed, interruption_scale=0.0)
    context = StrategyContext(spec, setup.workloads, setup.pools, seed)
    arrivals = np.asarray(arrivals, dtype=np.float64).reshape(len(arrivals), -1)[:, :1]

    def run(strategy: Any) -> SimResult:
        with native_stdout_to_stderr():
            return Simulation(setup, strategy, config).run(arrivals)

    fixed = [_outcome(run(KnativeFixed(context, c)), step_seconds, c) for c in sweep]
    default = _outcome(run(KnativeDefault(context)), step_seconds, 100)
    learner = LearnedConcurrency(context, agent)
    learned_result = run(learner)
    served = np.array(learned_result.series.served)[:, 0]
    limits = np.array(learner.limits[: len(served)], dtype=np.float64)
    weights = served[: len(limits)]
    mean_limit = float(np.average(limits, weights=weights)) if weights.sum() > 0 else 0.0
    learned = _outcome(learned_result, step_seconds, mean_limit)
    top = max(f.throughput_rps for f in fixed)
    best = min((f for f in fixed if f.throughput_rps >= 0.995 * top), key=lambda f: f.p95_ms)
    return {
        "sweep": [f.as_json() for f in fixed],
        "knativeDefault": default.as_json(),
        "bestFixed": best.as_json(),
        "learned": learned.as_json(),
        "learnedLimits": {
            "min": int(limits.min()) if limits.size else None,
            "max": int(limits.max()) if limits.size else None,
        },
        "learnedVsDefault": {
            "p95Reduction": round(1.0 - learned.p95_ms / default.p95_ms, 4),
            "throughputRatio": round(learned.throughput_rps / default.throughput_rps, 4),
        },
        "learnedVsBestFixed": {
            "p95Reduction": round(1.0 - learned.p95_ms / best.p95_ms, 4),
            "throughputRatio": round(learned.throughput_rps / best.throughput_rps, 4),
        },
    }


def plot_study(study: dict[str, Any], path: Path, title: str) -> None:
    """Throughput and p95 against the concurrency target: the sweep as lines, Knative's
    default and the learned agent (at its mean target) as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = study["sweep"]
    c = [s["concurrency"] for s in sweep]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=100, sharex=True)
    top.plot(c, [s["throughputRps"] for s in sweep], "o-", label="fixed target (sweep)")
    bottom.plot(c, [s["p95Ms"] for s in sweep], "o-", label="fixed target (sweep)")
    marks = (
        ("knativeDefault", "s", "knative-default (100)"),
        ("bestFixed", "^", "best fixed"),
        ("learned", "*", "learned (mean target)"),
    )
    for key, marker, label in marks:
        point = study[key]
        top.plot(point["concurrency"], point["throughputRps"], marker, ms=11, label=label)
        bottom.plot(point["concurrency"], point["p95Ms"], marker, ms=11, label=label)
    top.set_ylabel("throughput (req/s served)")
    bottom.set_ylabel("p95 (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("per-pod concurrency target")
    bottom.set_xscale("log")
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3, which="both")
    top.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
