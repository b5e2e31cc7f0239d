"""A gymnasium environment over the simulator, in which the rl engine's agent learns.

The agent is trained inside the loop it is deployed in: the simulated cluster, the
`spotwise:<engine>` strategy, `decide()` with its guard, and the rl engine's observation,
shield and packer. One environment step is one engine call: `decide()` keeps a valid
plan between re-optimizations without asking the engine, so the simulator runs on until
the next time the engine is asked (every one to five simulated minutes, or at once on a
spot interruption notice). Because `decide()` is pure, the environment finds that moment
by running the tick with a policy that stops it (`NeedAction`) and, once the agent has
answered, runs the same tick again with the answer.

Observation: `spotwise.engines.rl.observe` (per workload: load, trend, SLO need,
replicas, margin, concurrency, spot share and target, p95 / SLO, utilization; then cost
rate and time of day), float32 in a fixed box. Action: MultiDiscrete, per workload three
knobs (replica margin, concurrency, spot share) with down/hold/up each. Reward:
`RewardWeights`. Episodes are windows of the training traces, at whole hours, with the
load scaled by a random factor; spot interruption times are seeded.

Not here: training (`train.py`), the observation, shield and packer themselves
(`spotwise.engines.rl`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import CHURN_WEIGHT_HOURS, compile_problem, reference_cost
from spotwise.engines.base import IntArray
from spotwise.engines.rl import CHOICES, KNOBS, F32Array, RlEngine, observation_bounds
from spotwise.sim.simulator import FloatArray, Series, SimConfig, Simulation, setup_from_policy
from spotwise.sim.strategies.base import StrategyContext, View
from spotwise.sim.strategies.spotwise import SpotwiseStrategy
from spotwise.stdio import native_stdout_to_stderr


@dataclass(frozen=True)
class RewardWeights:
    """The reward of one decision, summed over the simulator steps until the next one:

        r = - sum over steps of (dt / 60 s) * cost_rate / reference
            - slo   * sum over steps of (dt / 60 s) * [the step violates the SLO]
            - churn * nodes launched or removed by the strategy

    `cost_rate` is the $/h of the nodes alive in the step and `reference` the $/h of
    the cheapest all-on-demand plan for the episode's peak load, so a minute at that
    reference costs 1. A minute of SLO violation costs `slo` such minutes, and each node
    the strategy launches or removes (interruptions do not count) costs `churn`."""

    slo: float = 5.0
    churn: float = 0.05


REWARD_WEIGHTS = RewardWeights()


@dataclass(frozen=True)
class EpisodeSettings:
    hours: float = 12.0  # episode length; episodes start at a whole hour of a trace
    step_seconds: float = 10.0
    interruption_scale: float = 100.0  # as in the savings benchmark: some per episode
    scale: tuple[float, float] = (0.7, 1.3)  # the load is multiplied by a factor drawn here


class NeedAction(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a tick when the engine asks the agent; carries the observation."""

    def __init__(self, obs: F32Array) -> None:
        super().__init__("the engine needs an action")
        self.obs = obs


class ExternalPolicy:
    """The agent's seat in the engine: it stops the tick to ask the environment, then
    answers with what the environment was given."""

    def __init__(self) -> None:
        self.pending: IntArray | None = None

    def act(self, obs: F32Array) -> IntArray:
        if self.pending is None:
            raise NeedAction(obs)
        action, self.pending = self.pending, None
        return action

    def sample(self, obs: F32Array, count: int, seed: int) -> list[IntArray]:
        return [self.act(obs)]


class _TrainingEngine(RlEngine):
    """The rl engine with the environment's policy and the episode's time of day."""

    def __init__(self, policy: ExternalPolicy, offset_seconds: float, **options: Any) -> None:
        super().__init__(policy=policy, **options)
        self.offset_seconds = offset_seconds

    def observe_time(self, seconds: float) -> None:
        super().observe_time(self.offset_seconds + seconds)


class SpotwiseEnv(gym.Env[F32Array, IntArray]):
    """The rl engine's decisions on a simulated cluster driven by `traces`.

    `traces` are (steps, workloads) arrays of requests/second at `settings.step_seconds`,
    starting at midnight; each must be at least one episode long."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's API

    def __init__(
        self,
        spec: ScalingPolicySpec,
        traces: Sequence[FloatArray],
        *,
        settings: EpisodeSettings = EpisodeSettings(),
        weights: RewardWeights = REWARD_WEIGHTS,
    ) -> None:
        super().__init__()
        self.policy_spec = spec
        self.setup = setup_from_policy(spec)
        self.settings = settings
        self.weights = weights
        n_w = len(self.setup.workloads)
        self.episode_steps = max(1, round(settings.hours * 3600 / settings.step_seconds))
        usable = [np.asarray(t, dtype=np.float64) for t in traces]
        bad = [i for i, t in enumerate(usable) if t.ndim != 2 or t.shape[1] != n_w]
        if bad:
            raise ValueError(f"trace {bad[0]} is not a (steps, {n_w}) array")
        self.traces = [t for t in usable if len(t) >= self.episode_steps]
        if not self.traces:
            raise ValueError(
                f"no trace is as long as one episode ({settings.hours:g} h of "
                f"{settings.step_seconds:g} s steps)"
            )
        low, high = observation_bounds(n_w)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([CHOICES] * (len(KNOBS) * n_w))
        self._obs = np.zeros(low.shape, dtype=np.float32)
        self._driver: SimDriver | None = None
        self._policy = ExternalPolicy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[F32Array, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        lengths = np.array([len(t) for t in self.traces], dtype=np.float64)
        which = int(rng.choice(len(self.traces), p=lengths / lengths.sum()))
        trace = self.traces[which]
        per_hour = round(3600 / self.settings.step_seconds)
        hours = (len(trace) - self.episode_steps) // per_hour
        start = int(rng.integers(hours + 1)) * per_hour
        factor = float(rng.uniform(*self.settings.scale))
        arrivals = trace[start : start + self.episode_steps] * factor
        policy = ExternalPolicy()
        opt = self.policy_spec.optimizer
        # The options `decide.engine_for` gives the rl engine in the operator.
        engine = _TrainingEngine(
            policy,
            start * self.settings.step_seconds,
            time_budget_seconds=opt.time_budget_seconds,
            churn_weight=CHURN_WEIGHT_HOURS,
            population=opt.genetic.population,
            generations=opt.genetic.generations,
            objectives=opt.genetic.objectives,
            seed=opt.genetic.seed,
        )
        sim_seed = int(rng.integers(2**31 - 1))
        context = StrategyContext(
            self.policy_spec, self.setup.workloads, self.setup.pools, sim_seed, engine="genetic"
        )
        strategy = SpotwiseStrategy(context)
        strategy.engine = engine
        strategy.name = "spotwise:rl"
        config = SimConfig(
            step_seconds=self.settings.step_seconds,
            seed=sim_seed,
            interruption_scale=self.settings.interruption_scale,
        )
        peak = arrivals.max(axis=0)
        demands = {w.name: float(p) for w, p in zip(self.setup.workloads, peak, strict=True)}
        with native_stdout_to_stderr():
            reference = reference_cost(compile_problem(self.policy_spec, demands))
        self._policy = policy
        self._driver = SimDriver(Simulation(self.setup, strategy, config), arrivals)
        self._reference = max(reference, 1e-6)
        asked, _ = self._driver.run(self._reward)
        if asked is not None:
            self._obs = asked
        info = {"trace": which, "start_step": start, "scale": factor, "reference": reference}
        return self._obs.copy(), info

    def step(self, action: IntArray) -> tuple[F32Array, float, bool, bool, dict[str, Any]]:
        if self._driver is None:
            raise RuntimeError("call reset() before step()")
        self._policy.pending = np.asarray(action, dtype=np.int64)
        asked, reward = self._driver.run(self._reward)
        truncated = asked is None
        if asked is not None:
            self._obs = asked
        return self._obs.copy(), float(reward), False, truncated, {}

    def _reward(self, step: Series, cost_rate: float, churn: int) -> float:
        minutes = self.settings.step_seconds / 60.0
        return -(
            minutes * cost_rate / self._reference
            + self.weights.slo * minutes * float(step.violation[0])
            + self.weights.churn * churn
        )


StepReward = Callable[[Series, float, int], float]  # (the step's record, $/h, churn)


class SimDriver:
    """`Simulation.run`, one step at a time, that stops where the strategy asks the agent
    (it raises `NeedAction`) and resumes once the agent has answered.

    The loop body is `Simulation.run`'s (decide when due or on a fresh notice, reconcile
    nodes and pods, advance the cluster, record), kept in the same order so that the
    agent trains on the same dynamics it is evaluated on."""

    def __init__(self, sim: Simulation, arrivals: FloatArray) -> None:
        self.sim = sim
        self.arrivals = arrivals
        self.i = 0
        self.next_decision = 0.0
        self.view: View | None = None  # a tick waiting for the agent's answer

    def run(self, reward: StepReward) -> tuple[F32Array | None, float]:
        """Advance until the strategy asks for an action (its observation) or the episode
        ends (None); with the reward collected on the way."""
        sim = self.sim
        dt = sim.config.step_seconds
        total = 0.0
        while self.i < len(self.arrivals):
            now = self.i * dt
            load = self.arrivals[self.i]
            history = self.arrivals[max(0, self.i - sim.config.history_steps + 1) : self.i + 1]
            if self.view is None:
                noticed = sim.cluster.noticed_pools(now)
                fresh = noticed - sim.noticed
                sim.noticed = noticed
                if now >= self.next_decision or (fresh and sim.strategy.reacts_to_notices):
                    self.view = sim.view(now, history, load, frozenset(noticed))
            if self.view is not None:
                try:
                    sim.action = sim.strategy.decide(self.view)
                except NeedAction as ask:
                    return ask.obs, total
                self.view = None
                while self.next_decision <= now:
                    self.next_decision += sim.strategy.interval_seconds
            churn = sim.reconcile_nodes(now, history, load)
            sim.reconcile_pods(now, history, load)
            nodes = sim.cluster.all_nodes()
            cost_rate = float(nodes @ sim.price)
            events = sim.cluster.advance(now, dt)
            series = Series()
            sim.record(series, now, load, cost_rate, events.interrupted)
            total += reward(series, cost_rate, churn)
            self.i += 1
        return None, total
