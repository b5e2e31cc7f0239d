"""The RL benchmark: the shipped agents measured against the issue's targets.

Sections (all by default; `only` picks some):

- `heldOut`: `spotwise:rl`, `spotwise:genetic` and `spotwise:hybrid` simulated on the
  three held-out two-day WorldCup98 windows (06-10/11, 06-29/30, 07-07/08, none used in
  training), rescaled to a 2,000 rps peak and split 0.5 / 0.2 / 0.3 over the shop's
  services, spot interruptions x100, per seed. Per run: cost, SLO violation, rl / genetic
  cost and how often rl fell back to the genetic engine (and why).
- `hybrid`: single solves of problems taken from those windows (the load when the
  window's total sits at its 25th ... 100th percentile), cold (no warm start) and with a
  time budget that never binds:
  the genetic engine with the policy's settings (40 generations, patience 12), the
  hybrid engine (rl proposals, half of both), and the genetic engine with that half
  budget but no proposals (what the proposals add). Cost and generations run.
- `inference`: milliseconds per decision on those problems: the agent alone
  (observation to action), the rl engine's solve with the model tables already built
  (as inside `decide`, which builds them first), and from scratch.
- `concurrency`: the Knative concurrency study (`spotwise.rl.concurrency`) with the
  shipped concurrency agent on the held-out day 1998-06-29 (and a plot with `out_dir`).
- `ablation`: the shop agent against fixed rules in its own action space on the held-out
  windows (the start settings; keep a replica margin; a margin only while the load rises;
  less spot; a concurrency limit one grid step off the fewest-replicas one), and how
  often its greedy action is "hold". What the agent could have gained by acting.
- `training`: what the agents' model cards say about their training.

Not a test: it prints numbers. Times depend on the machine and its load.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from spotwise.api import ScalingPolicy, load_policy_file
from spotwise.decide import CHURN_WEIGHT_HOURS, compile_problem, engine_for
from spotwise.engines.base import IntArray, build_tables
from spotwise.engines.genetic import GeneticEngine
from spotwise.engines.hybrid import HybridEngine
from spotwise.engines.rl import (
    GLOBAL_FEATURES,
    KNOBS,
    MAX_MARGIN,
    SPOT_STEP,
    WORKLOAD_FEATURES,
    Agent,
    F32Array,
    RlEngine,
    load_agent,
    resolve_agent,
)
from spotwise.rl.concurrency import plot_study, run_study, study_policy
from spotwise.rl.train import load_arrivals, run_learned
from spotwise.sim.run import summarize
from spotwise.sim.simulator import FloatArray, SimConfig, SimResult, Simulation, setup_from_policy
from spotwise.sim.strategies import create_strategy
from spotwise.sim.strategies.base import StrategyContext
from spotwise.stdio import native_stdout_to_stderr

HELD_OUT = ("1998-06-10", "1998-06-29", "1998-07-07")
WEIGHTS = (0.5, 0.2, 0.3)
SECTIONS = ("heldOut", "hybrid", "inference", "concurrency", "ablation", "training")
WORLDCUP_CSV = "worldcup98-requests-per-minute.csv"


@dataclass(frozen=True)
class RlBenchSettings:
    policy: Path = Path("policies/shop-knative.yaml")
    agent: str = "shop-ppo"
    concurrency_agent: str = "knative-concurrency"
    days: float = 2.0
    peak_rps: float = 2000.0
    seeds: tuple[int, ...] = (1,)
    interruption_scale: float = 100.0
    step_seconds: float = 10.0
    concurrency_day: str = "1998-06-29"


def _window(data_dir: Path, day: str, days: float) -> str:
    end = date.fromisoformat(day) + timedelta(days=max(1, round(days)))
    return f"{data_dir / WORLDCUP_CSV}@{day}..{end.isoformat()}"


def run_rl_benchmark(
    *,
    data_dir: Path,
    settings: RlBenchSettings | None = None,
    only: Sequence[str] = SECTIONS,
    out_dir: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    settings = settings or RlBenchSettings()
    say = say or (lambda _: None)
    policy = load_policy_file(settings.policy)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "policy": str(settings.policy),
            "agent": str(resolve_agent(settings.agent)),
            "days": settings.days,
            "peakRps": settings.peak_rps,
            "weights": list(WEIGHTS),
            "seeds": list(settings.seeds),
            "interruptionScale": settings.interruption_scale,
            "stepSeconds": settings.step_seconds,
            "heldOut": list(HELD_OUT),
        },
    }
    traces = {day: _window(data_dir, day, settings.days) for day in HELD_OUT}
    if "heldOut" in only:
        result["heldOut"] = held_out(policy, traces, settings, say)
    if "hybrid" in only or "inference" in only:
        problems = sample_problems(policy, traces, settings)
        if "hybrid" in only:
            result["hybrid"] = hybrid_generations(policy, problems, settings, say)
        if "inference" in only:
            result["inference"] = inference(problems, settings, say)
    if "concurrency" in only:
        result["concurrency"] = concurrency(data_dir, settings, out_dir, say)
    if "ablation" in only:
        result["ablation"] = ablation(policy, traces, settings, say)
    if "training" in only:
        result["training"] = training(settings)
    result["targets"] = targets(result)
    result["wallSeconds"] = round(time.perf_counter() - started, 1)
    return result


# -- held-out simulations -------------------------------------------------------------


def window_arrivals(spec: str, policy: ScalingPolicy, settings: RlBenchSettings) -> FloatArray:
    """The first `settings.days` of a held-out trace, split over the policy's workloads."""
    arrivals = load_arrivals(
        spec,
        policy,
        peak_rps=settings.peak_rps,
        weights=WEIGHTS,
        step_seconds=settings.step_seconds,
    )
    return arrivals[: round(settings.days * 86400 / settings.step_seconds)]


def sim_config(settings: RlBenchSettings, seed: int) -> SimConfig:
    return SimConfig(
        step_seconds=settings.step_seconds,
        seed=seed,
        interruption_scale=settings.interruption_scale,
    )


def held_out(
    policy: ScalingPolicy,
    traces: dict[str, str],
    settings: RlBenchSettings,
    say: Callable[[str], None],
) -> dict[str, Any]:
    runs = []
    for day, spec in traces.items():
        arrivals = window_arrivals(spec, policy, settings)
        for seed in settings.seeds:
            config = sim_config(settings, seed)
            results, counts = {}, {}
            for name in ("spotwise:rl", "spotwise:genetic", "spotwise:hybrid"):
                say(f"held-out {day} seed {seed}: {name}")
                results[name], counts[name] = run_learned(
                    policy.spec, arrivals, name, config, settings.agent
                )
            summary = summarize(results)["strategies"]
            rl, ga, hy = (summary[f"spotwise:{e}"] for e in ("rl", "genetic", "hybrid"))
            runs.append(
                {
                    "window": day,
                    "seed": seed,
                    "rlCostVsGenetic": round(rl["cost"] / ga["cost"], 4),
                    "hybridCostVsGenetic": round(hy["cost"] / ga["cost"], 4),
                    "strategies": summary,
                    "rlEngine": counts["spotwise:rl"],
                    "hybridEngine": counts["spotwise:hybrid"],
                }
            )
    return {
        "runs": runs,
        "rlCostVsGeneticMax": max(r["rlCostVsGenetic"] for r in runs),
        "rlCostVsGeneticMean": round(statistics.fmean(r["rlCostVsGenetic"] for r in runs), 4),
        "rlSloViolationPctMax": max(
            r["strategies"]["spotwise:rl"]["sloViolationPct"] for r in runs
        ),
        "geneticSloViolationPctMax": max(
            r["strategies"]["spotwise:genetic"]["sloViolationPct"] for r in runs
        ),
        "hybridCostVsGeneticMax": max(r["hybridCostVsGenetic"] for r in runs),
    }


# -- single solves --------------------------------------------------------------------


@dataclass(frozen=True)
class Sampled:
    name: str
    demands: dict[str, float]


LOAD_QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def sample_problems(
    policy: ScalingPolicy, traces: dict[str, str], settings: RlBenchSettings
) -> list[Sampled]:
    """Per held-out window, the load at the moments its total sits at `LOAD_QUANTILES`:
    mostly busy moments, where plans have many pods and choices matter."""
    out = []
    names = [w.name for w in policy.spec.workloads]
    for day, spec in traces.items():
        arrivals = window_arrivals(spec, policy, settings)
        total = arrivals.sum(axis=1)
        for q in LOAD_QUANTILES:
            i = int(np.argmin(np.abs(total - np.quantile(total, q))))
            hour = i * settings.step_seconds / 3600
            out.append(
                Sampled(
                    f"{day}+{hour:04.1f}h",
                    {n: float(x) for n, x in zip(names, arrivals[i], strict=True)},
                )
            )
    return out


def hybrid_generations(
    policy: ScalingPolicy,
    problems: Sequence[Sampled],
    settings: RlBenchSettings,
    say: Callable[[str], None],
) -> dict[str, Any]:
    opt = policy.spec.optimizer
    common: dict[str, Any] = {
        "population": opt.genetic.population,
        "objectives": opt.genetic.objectives,
        "churn_weight": CHURN_WEIGHT_HOURS,
        "time_budget_seconds": 60.0,  # never binds: generations and patience decide
    }
    full = GeneticEngine(generations=opt.genetic.generations, patience=12, **common)
    half_g, half_p = opt.genetic.generations // 2, 6
    half = GeneticEngine(generations=half_g, patience=half_p, **common)
    rows: list[dict[str, Any]] = []
    for i, sampled in enumerate(problems):
        say(f"hybrid vs genetic: problem {i + 1}/{len(problems)}")
        problem = compile_problem(policy.spec, sampled.demands)
        seed = 1000 + i
        hybrid = HybridEngine(
            settings.agent, generations=opt.genetic.generations, patience=12, **common
        )
        hybrid.rl.observe_time(_time_of_day(sampled.name))
        with native_stdout_to_stderr():
            g = full.solve(problem, seed=seed)
            g_gen = full.last_generations
            h = hybrid.solve(problem, seed=seed)
            h_gen = hybrid.last_generations
            q = half.solve(problem, seed=seed)
            q_gen = half.last_generations
        rows.append(
            {
                "problem": sampled.name,
                "demands": {k: round(v, 1) for k, v in sampled.demands.items()},
                "genetic": {"cost": g.hourly_cost, "generations": g_gen},
                "hybrid": {
                    "cost": h.hourly_cost,
                    "generations": h_gen,
                    "usedProposals": h.reasons[0].startswith("hybrid: "),
                },
                "geneticHalf": {"cost": q.hourly_cost, "generations": q_gen},
            }
        )
    eps = 1e-9
    n = len(rows)
    return {
        "settings": {
            "population": opt.genetic.population,
            "genetic": {"generations": opt.genetic.generations, "patience": 12},
            "hybrid": {"generations": half_g, "patience": half_p, "proposals": 8},
            "warmStart": None,
        },
        "problems": rows,
        "hybridAtMostGeneticCost": sum(
            r["hybrid"]["cost"] <= r["genetic"]["cost"] + eps for r in rows
        ),
        "geneticHalfAtMostGeneticCost": sum(
            r["geneticHalf"]["cost"] <= r["genetic"]["cost"] + eps for r in rows
        ),
        "count": n,
        "hybridCostVsGeneticMax": round(
            max(r["hybrid"]["cost"] / r["genetic"]["cost"] for r in rows), 4
        ),
        "geneticHalfCostVsGeneticMax": round(
            max(r["geneticHalf"]["cost"] / r["genetic"]["cost"] for r in rows), 4
        ),
        "generationsMedian": {
            "genetic": statistics.median(r["genetic"]["generations"] for r in rows),
            "hybrid": statistics.median(r["hybrid"]["generations"] for r in rows),
        },
        "hybridGenerationsAtMostHalf": sum(
            r["hybrid"]["generations"] * 2 <= max(r["genetic"]["generations"], 1) for r in rows
        ),
        "proposalsUsed": sum(r["hybrid"]["usedProposals"] for r in rows),
    }


def _time_of_day(name: str) -> float:
    hours = float(name.split("+")[1].rstrip("h"))
    return (hours % 24) * 3600


def inference(
    problems: Sequence[Sampled], settings: RlBenchSettings, say: Callable[[str], None]
) -> dict[str, Any]:
    say("inference timing")
    policy = load_policy_file(settings.policy)
    agent, card = load_agent(settings.agent)
    engine = RlEngine(policy=agent, card=card, churn_weight=CHURN_WEIGHT_HOURS)
    act, warm, cold = [], [], []
    for sampled in problems:
        problem = compile_problem(policy.spec, sampled.demands)
        tables = build_tables(problem)
        obs = engine.observation(tables, None)
        for _ in range(20):
            t = time.perf_counter()
            agent.act(obs)
            act.append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.solve(problem)
        warm.append(time.perf_counter() - t)
        fresh = compile_problem(policy.spec, {k: v * 1.0001 for k, v in sampled.demands.items()})
        t = time.perf_counter()
        engine.solve(fresh)
        cold.append(time.perf_counter() - t)

    def ms(values: list[float]) -> dict[str, float]:
        a = np.array(values) * 1000
        return {
            "median": round(float(np.median(a)), 3),
            "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3),
        }

    return {
        "decisions": len(problems),
        "agentMs": ms(act),
        "solveWithTablesBuiltMs": ms(warm),
        "solveFromScratchMs": ms(cold),
        "fallbacks": dict(engine.fallbacks),
    }


# -- ablation: the agent against fixed rules in its action space ------------------------

RISING = 0.05  # the `trend` feature above which a rule counts the load as rising


@dataclass(frozen=True)
class Rule:
    """A fixed policy in the shop agent's action space: every knob steered one step per
    decision towards a target. The defaults are where a fresh engine starts (margin 0,
    spot target 1, the limit that needs the fewest replicas); unlike "hold", the limit
    then follows the fewest-replicas one as the load moves."""

    name: str
    margin: float = 0.0
    margin_when_rising: float | None = None
    spot_target: float = 1.0
    concurrency_offset: int = 0  # grid steps from the limit that needs fewest replicas

    def act(self, obs: F32Array) -> IntArray:
        per = len(WORKLOAD_FEATURES)
        n_w = (len(obs) - len(GLOBAL_FEATURES)) // per
        action = np.ones(len(KNOBS) * n_w, dtype=np.int64)
        for w in range(n_w):
            f = dict(zip(WORKLOAD_FEATURES, obs[w * per : (w + 1) * per], strict=True))
            margin = self.margin
            if self.margin_when_rising is not None and f["trend"] > RISING:
                margin = self.margin_when_rising
            action[len(KNOBS) * w] = _towards(f["margin"] * MAX_MARGIN, margin, 0.05)
            off = round(float(f["concurrency_vs_best"]) * 8)
            action[len(KNOBS) * w + 1] = _towards(off, self.concurrency_offset, 0.5)
            action[len(KNOBS) * w + 2] = _towards(f["spot_target"], self.spot_target, SPOT_STEP / 2)
        return action

    def sample(self, obs: F32Array, count: int, seed: int) -> list[IntArray]:
        return [self.act(obs)] * count  # a rule has no alternatives


def _towards(value: float, target: float, tolerance: float) -> int:
    """0 (down), 1 (hold) or 2 (up): the knob's move towards `target`."""
    if value < target - tolerance:
        return 2
    return 0 if value > target + tolerance else 1


RULES = (
    Rule("start settings"),
    Rule("margin 0.1", margin=0.1),
    Rule("margin 0.2 while the load rises", margin_when_rising=0.2),
    Rule("spot target 0.5", spot_target=0.5),
    Rule("limit one step below", concurrency_offset=-1),
    Rule("limit one step above", concurrency_offset=1),
)


class _CountingAgent:
    """The shipped agent, counting how often its greedy action holds every knob."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.actions = 0
        self.holds = 0

    def act(self, obs: F32Array) -> IntArray:
        action = np.asarray(self.agent.act(obs), dtype=np.int64)
        self.actions += 1
        self.holds += int((action == 1).all())
        return action

    def sample(self, obs: F32Array, count: int, seed: int) -> list[IntArray]:
        return self.agent.sample(obs, count, seed)


def _run_policy(
    policy: ScalingPolicy, arrivals: FloatArray, agent: Agent, config: SimConfig, keep_card: bool
) -> SimResult:
    """`spotwise:rl` with `agent` acting; without its card a rule is never out of range."""
    setup = setup_from_policy(policy.spec)
    context = StrategyContext(setup.spec, setup.workloads, setup.pools, config.seed)
    runner = create_strategy("spotwise:genetic", context)
    engine = engine_for(policy.spec, "rl")
    assert isinstance(engine, RlEngine)
    engine.policy = agent  # the engine as the operator builds it, with another actor
    if not keep_card:
        engine.card = None
    runner.engine = engine  # type: ignore[attr-defined]
    with native_stdout_to_stderr():
        return Simulation(setup, runner, config).run(arrivals)


def ablation(
    policy: ScalingPolicy,
    traces: dict[str, str],
    settings: RlBenchSettings,
    say: Callable[[str], None],
) -> dict[str, Any]:
    shipped, _ = load_agent(settings.agent)
    runs = []
    for day, spec in traces.items():
        arrivals = window_arrivals(spec, policy, settings)
        seed = settings.seeds[0]
        config = sim_config(settings, seed)
        say(f"ablation {day}: the shipped agent")
        counting = _CountingAgent(shipped)
        agent_result = _run_policy(policy, arrivals, counting, config, keep_card=True)
        row: dict[str, Any] = {
            "window": day,
            "seed": seed,
            "agent": {
                "cost": round(agent_result.cost, 4),
                "sloViolationPct": agent_result.summary()["sloViolationPct"],
                "greedyActions": counting.actions,
                "holdEveryKnob": counting.holds,
            },
            "rules": {},
        }
        for rule in RULES:
            say(f"ablation {day}: {rule.name}")
            r = _run_policy(policy, arrivals, rule, config, keep_card=False)
            row["rules"][rule.name] = {
                "cost": round(r.cost, 4),
                "costVsAgent": round(r.cost / agent_result.cost, 4),
                "sloViolationPct": r.summary()["sloViolationPct"],
            }
        runs.append(row)
    return {
        "runs": runs,
        "agentHoldShare": round(
            sum(r["agent"]["holdEveryKnob"] for r in runs)
            / max(1, sum(r["agent"]["greedyActions"] for r in runs)),
            4,
        ),
        "rulesCostVsAgentMean": {
            rule.name: round(
                statistics.fmean(r["rules"][rule.name]["costVsAgent"] for r in runs), 4
            )
            for rule in RULES
        },
        "rulesSloViolationPctMax": {
            rule.name: max(r["rules"][rule.name]["sloViolationPct"] for r in runs) for rule in RULES
        },
    }


# -- the concurrency study ------------------------------------------------------------


def concurrency(
    data_dir: Path, settings: RlBenchSettings, out_dir: Path | None, say: Callable[[str], None]
) -> dict[str, Any]:
    say(f"concurrency study on {settings.concurrency_day}")
    policy = study_policy()
    agent, _ = load_agent(settings.concurrency_agent)
    spec = _window(data_dir, settings.concurrency_day, 1)
    arrivals = load_arrivals(
        spec, policy, peak_rps=settings.peak_rps, weights=None, step_seconds=settings.step_seconds
    )[: round(86400 / settings.step_seconds)]
    study = run_study(policy.spec, arrivals, agent, seed=1, step_seconds=settings.step_seconds)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_study(
            study,
            out_dir / "rl-concurrency.png",
            f"Knative-like service, WorldCup98 {settings.concurrency_day}, peak "
            f"{settings.peak_rps:g} rps",
        )
    return {"trace": spec, **study}


def training(settings: RlBenchSettings) -> dict[str, Any]:
    out = {}
    for name in (settings.agent, settings.concurrency_agent):
        card = json.loads(resolve_agent(name).with_suffix(".json").read_text("utf-8"))
        out[name] = {
            "algo": card["algo"],
            "steps": card["steps"],
            "envs": card["envs"],
            "trainingSeconds": card["trainingSeconds"],
            "traces": card["traces"],
        }
    return out


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, where the sections that measure them ran."""
    out: dict[str, Any] = {}
    ho = result.get("heldOut")
    if ho:
        out["rlCostWithin10PctOfGenetic"] = all(r["rlCostVsGenetic"] <= 1.10 for r in ho["runs"])
        out["rlSloViolationAtMost1.5Pct"] = all(
            r["strategies"]["spotwise:rl"]["sloViolationPct"] <= 1.5 for r in ho["runs"]
        )
    hy = result.get("hybrid")
    if hy:
        out["hybridReachesGeneticCostWithHalfTheGenerations"] = (
            hy["hybridAtMostGeneticCost"] == hy["count"]
        )
    inf = result.get("inference")
    if inf:
        out["agentInferenceAtMost5Ms"] = inf["agentMs"]["max"] <= 5.0
        out["rlSolveAtMost5Ms"] = inf["solveWithTablesBuiltMs"]["max"] <= 5.0
    cc = result.get("concurrency")
    if cc:
        vs = cc["learnedVsDefault"]
        out["concurrencyP95AtLeast20PctLowerThanKnativeDefault"] = vs["p95Reduction"] >= 0.20
        out["concurrencyThroughputAtLeastKnativeDefault"] = vs["throughputRatio"] >= 1.0
    tr = result.get("training")
    if tr:
        out["shippedAgentTrainedIn30Min"] = all(t["trainingSeconds"] <= 1800 for t in tr.values())
    return out
