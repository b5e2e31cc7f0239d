"""Training an agent for the rl engine, and its model card.

`train()` builds vectorized `SpotwiseEnv`s over the training traces, trains a
stable-baselines3 agent (PPO by default; A2C; DQN through `OneChangeAction`, since DQN
needs a single discrete action), and writes next to `NAME.zip`:

- `NAME.json`: the machine-readable card the engine reads (algorithm, workloads, feature
  names, the observation range seen in training, which sets the out-of-range rule) plus
  the traces, steps, seed, reward weights, training time, reward curve and evaluation;
- `NAME.md`: the same for people;
- `NAME.reward.png`: episode return against training steps.

The evaluation replays held-out traces through the simulator with `spotwise:rl` and
`spotwise:genetic` on the same seeds.

Trace specs are `builtin:NAME`, `synthetic:KIND[:DAYS]` or a CSV file, and a CSV with
ISO-8601 timestamps may be cut to dates with `FILE@FROM..TO` (TO excluded), e.g.
`worldcup98-requests-per-minute.csv@1998-06-01..1998-06-03`. Each spec is rescaled to
`peak_rps` and split over the workloads by `weights`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from spotwise.api import ScalingPolicy
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.decide import compile_problem
from spotwise.engines.base import IntArray
from spotwise.engines.rl import (
    GLOBAL_FEATURES,
    KNOBS,
    SIGNATURE_FIELDS,
    WORKLOAD_FEATURES,
    F32Array,
    feature_names,
    load_agent,
    one_change_to_multi,
    workload_signature,
)
from spotwise.rl.concurrency import FEATURES as CONCURRENCY_FEATURES
from spotwise.rl.concurrency import SLO_WEIGHT, ConcurrencyEnv, plot_study, run_study
from spotwise.rl.env import REWARD_WEIGHTS, EpisodeSettings, RewardWeights, SpotwiseEnv
from spotwise.sim.run import summarize, weights_split
from spotwise.sim.simulator import FloatArray, SimConfig, SimResult, Simulation, setup_from_policy
from spotwise.sim.strategies import create_strategy
from spotwise.sim.strategies.base import StrategyContext
from spotwise.sim.traces import TraceError, load_trace_csv, resolve_trace
from spotwise.stdio import native_stdout_to_stderr

ALGOS = ("ppo", "a2c", "dqn")
TASKS = ("autoscale", "concurrency")
# Discount per decision. The engine decides every one to five simulated minutes and what a
# decision causes (a margin that rode out a surge, a spot pool that was lost) plays out
# within the hour: a horizon of about 20 decisions. The concurrency agent moves one grid
# step a minute, and getting from Knative's 100 to a good target takes ten of them.
GAMMA = {"autoscale": 0.95, "concurrency": 0.99}


class TrainError(ValueError):
    """Bad training input; the message is one line."""


@dataclass(frozen=True)
class TrainSettings:
    task: str = "autoscale"  # the rl engine's agent, or "concurrency" (the Knative study)
    steps: int = 20_000  # environment steps (engine decisions), summed over the envs
    seed: int = 0
    algo: str = "ppo"
    envs: int = 4  # vectorized environments (in one process unless `processes`)
    processes: bool = False  # one process per environment (SubprocVecEnv)
    threads: int = 1  # torch threads
    peak_rps: float = 2000.0
    weights: tuple[float, ...] | None = None  # per workload; None = equal
    episode: EpisodeSettings = field(default_factory=EpisodeSettings)
    reward: RewardWeights = REWARD_WEIGHTS


@dataclass(frozen=True)
class EvalSettings:
    traces: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (1,)
    days: float = 2.0
    interruption_scale: float = 100.0
    step_seconds: float = 10.0


# -- traces -----------------------------------------------------------------------------


def load_arrivals(
    spec_text: str,
    policy: ScalingPolicy,
    *,
    peak_rps: float,
    weights: Sequence[float] | None,
    step_seconds: float,
    seed: int = 0,
) -> FloatArray:
    """(steps, workloads) requests/second for one trace spec (see the module docstring)."""
    source, _, dates = spec_text.partition("@")
    try:
        if dates:
            trace = _dated_window(Path(source), dates)
        else:
            trace = resolve_trace(source, step_seconds=60.0, seed=seed)
        trace = trace.resampled(step_seconds).rescaled(peak_rps)
    except TraceError as e:
        message = str(e)  # most already name the file
        raise TrainError(
            message if source in message else f"trace {spec_text}: {message}"
        ) from None
    n = len(policy.spec.workloads)
    w = list(weights) if weights is not None else [1.0] * n
    if len(w) != n:
        raise TrainError(f"{len(w)} weights given for {n} workloads")
    return weights_split(trace.rps, w)


def _dated_window(path: Path, dates: str) -> Any:
    start_text, sep, end_text = dates.partition("..")
    if not sep:
        raise TrainError(f"{path}@{dates}: expected FROM..TO dates, e.g. 1998-06-01..1998-06-03")
    try:
        start, end = datetime.fromisoformat(start_text), datetime.fromisoformat(end_text)
    except ValueError:
        raise TrainError(f"{path}@{dates}: dates must be ISO-8601 (YYYY-MM-DD)") from None
    trace = load_trace_csv(path)
    first = _first_time(path)
    offset = (start - first).total_seconds()
    length = (end - start).total_seconds()
    if length <= 0:
        raise TrainError(f"{path}@{dates}: TO must come after FROM")
    return trace.window(max(offset, 0.0), length)


def _first_time(path: Path) -> datetime:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.reader(handle)
            next(rows)
            first = next(rows)[0]
        return datetime.fromisoformat(first).replace(tzinfo=None)
    except (OSError, StopIteration, ValueError, IndexError):
        raise TrainError(
            f"{path}: a date window needs ISO-8601 timestamps in the first column"
        ) from None


# -- DQN ------------------------------------------------------------------------------


def training_traces(
    policy: ScalingPolicy, trace_specs: Sequence[str], out: Path, settings: TrainSettings
) -> list[FloatArray]:
    """Check the settings and load the training traces: TrainError before any work."""
    if settings.algo not in ALGOS:
        raise TrainError(f"algo must be one of {', '.join(ALGOS)}, not {settings.algo!r}")
    if settings.task not in TASKS:
        raise TrainError(f"task must be one of {', '.join(TASKS)}, not {settings.task!r}")
    if settings.task == "concurrency" and settings.algo == "dqn":
        raise TrainError("the concurrency task trains with ppo or a2c")
    if settings.steps < 1:
        raise TrainError("steps must be at least 1")
    if out.suffix != ".zip":
        raise TrainError(f"{out}: the agent file must end in .zip")
    if not trace_specs:
        raise TrainError("give at least one --trace")
    return [
        load_arrivals(
            s,
            policy,
            peak_rps=settings.peak_rps,
            weights=settings.weights,
            step_seconds=settings.episode.step_seconds,
            seed=settings.seed,
        )
        for s in trace_specs
    ]


class OneChangeAction(gym.ActionWrapper[F32Array, np.int64, IntArray]):
    """Discrete(2K + 1) for DQN: hold every knob, or move exactly one knob down or up
    (`spotwise.engines.rl.one_change_to_multi`)."""

    def __init__(self, env: SpotwiseEnv) -> None:
        super().__init__(env)
        self.n_workloads = len(env.setup.workloads)
        self.action_space = spaces.Discrete(2 * len(KNOBS) * self.n_workloads + 1)

    def action(self, action: np.int64) -> IntArray:
        return one_change_to_multi(int(action), self.n_workloads)


# -- training ---------------------------------------------------------------------------


@dataclass
class TrainResult:
    zip_path: Path
    card: dict[str, Any]


def train(
    policy: ScalingPolicy,
    policy_path: Path | None,
    trace_specs: Sequence[str],
    out: Path,
    settings: TrainSettings,
    evaluation: EvalSettings,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_eval: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, save `out` (NAME.zip) and write the card; see the module docstring."""
    import torch
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    traces = training_traces(policy, trace_specs, out, settings)
    spec = policy.spec
    torch.set_num_threads(settings.threads)

    concurrency = settings.task == "concurrency"

    def make_env() -> gym.Env[Any, Any]:
        if concurrency:
            return ConcurrencyEnv(spec, traces, settings=settings.episode)
        env = SpotwiseEnv(spec, traces, settings=settings.episode, weights=settings.reward)
        return OneChangeAction(env) if settings.algo == "dqn" else env

    try:
        make_env()
    except ValueError as e:
        raise TrainError(str(e)) from None
    vec = make_vec_env(
        make_env,
        n_envs=settings.envs,
        seed=settings.seed,
        vec_env_cls=SubprocVecEnv if settings.processes and settings.envs > 1 else DummyVecEnv,
    )
    # Rewards are normalized for learning only; the agent never sees them at inference.
    gamma = GAMMA[settings.task]
    env = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=gamma)
    common: dict[str, Any] = {"seed": settings.seed, "device": "cpu", "verbose": 0}
    net = {"net_arch": [64, 64]}
    model: Any
    if settings.algo == "ppo":
        n_steps = max(32, min(256, settings.steps // max(settings.envs, 1)))
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=n_steps,
            batch_size=min(256, n_steps * settings.envs),
            n_epochs=10,
            learning_rate=3e-4,
            gamma=gamma,
            gae_lambda=0.95,
            ent_coef=0.01,
            policy_kwargs=net,
            **common,
        )
    elif settings.algo == "a2c":
        model = A2C("MlpPolicy", env, n_steps=16, gamma=gamma, policy_kwargs=net, **common)
    else:
        model = DQN(
            "MlpPolicy",
            env,
            learning_starts=min(1000, settings.steps // 4),
            buffer_size=min(100_000, settings.steps),
            exploration_fraction=0.3,
            target_update_interval=500,
            gamma=gamma,
            policy_kwargs=net,
            **common,
        )
    if settings.algo != "dqn" and not concurrency:
        _prefer_hold(model)
    recorder = _Recorder(settings.steps, on_progress)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    with native_stdout_to_stderr():
        model.learn(total_timesteps=settings.steps, callback=recorder)
    seconds = time.perf_counter() - started
    env.close()
    cpu_seconds = _cpu_seconds() - cpu_started
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    names = [w.name for w in spec.workloads]
    card: dict[str, Any] = {
        "name": out.stem,
        "task": settings.task,
        "algo": settings.algo,
        "actionEncoding": "one-change" if settings.algo == "dqn" else "multi-discrete",
        "policy": _policy_info(policy, policy_path),
        "workloads": names,
        "workloadSignature": workload_signature(compile_problem(spec, dict.fromkeys(names, 0.0))),
        "signatureFields": [*SIGNATURE_FIELDS, "peakRpsPerPod"],
        "features": list(CONCURRENCY_FEATURES) if concurrency else feature_names(names),
        "featuresPerWorkload": [] if concurrency else list(WORKLOAD_FEATURES),
        "globalFeatures": [] if concurrency else list(GLOBAL_FEATURES),
        "knobs": ["concurrency"] if concurrency else list(KNOBS),
        "observationRange": {
            "low": [round(float(x), 6) for x in recorder.low],
            "high": [round(float(x), 6) for x in recorder.high],
        },
        "rewardWeights": {"slo": SLO_WEIGHT} if concurrency else asdict(settings.reward),
        "episode": {
            "hours": settings.episode.hours,
            "stepSeconds": settings.episode.step_seconds,
            # The concurrency study never interrupts spot nodes.
            "interruptionScale": 0.0 if concurrency else settings.episode.interruption_scale,
            "loadScale": list(settings.episode.scale),
        },
        "traces": list(trace_specs),
        "peakRps": settings.peak_rps,
        "weights": list(settings.weights) if settings.weights else None,
        "steps": settings.steps,
        "seed": settings.seed,
        "gamma": gamma,
        "envs": settings.envs,
        "processes": settings.processes,
        "torchThreads": settings.threads,
        "trainingSeconds": round(seconds, 1),
        **_cpu_fields(cpu_seconds, in_processes=isinstance(vec, SubprocVecEnv)),
        "loadAverageAfter": _load_average(),
        "episodes": len(recorder.returns),
        "rewardCurve": [[int(t), round(float(r), 3)] for t, r in recorder.returns],
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "evaluation": None,
    }
    write_card(out, card)
    if evaluation.traces:
        judge = evaluate_concurrency if concurrency else evaluate
        card["evaluation"] = judge(policy, out, evaluation, settings, on_eval=on_eval)
        write_card(out, card)
    return TrainResult(out, card)


HOLD_PRIOR = 2.0  # initial logit of "hold" over down/up: p(hold) = 0.79 per knob


def _prefer_hold(model: Any) -> None:
    """Start the policy mostly holding each knob. The shielded plan at hold is already a
    sane plan (the SLO need on the cheapest nodes), so exploration goes around it
    instead of a random walk of margins and limits."""
    import torch

    bias = model.policy.action_net.bias
    with torch.no_grad():
        bias[1::3] += HOLD_PRIOR


class _Recorder:
    """A stable-baselines3 callback: progress, the observation range, episode returns.
    (Built lazily so that importing this module does not need stable-baselines3.)"""

    def __new__(cls, total: int, on_progress: Callable[[int, int], None] | None) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class Recorder(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.low: F32Array = np.full(1, np.inf, dtype=np.float32)
                self.high: F32Array = np.full(1, -np.inf, dtype=np.float32)
                self.returns: list[tuple[int, float]] = []

            def _seen(self, obs: Any) -> None:
                batch = np.asarray(obs, dtype=np.float32).reshape(-1, np.shape(obs)[-1])
                if self.low.shape[0] != batch.shape[1]:
                    self.low = np.full(batch.shape[1], np.inf, dtype=np.float32)
                    self.high = np.full(batch.shape[1], -np.inf, dtype=np.float32)
                self.low = np.minimum(self.low, batch.min(axis=0))
                self.high = np.maximum(self.high, batch.max(axis=0))

            def _on_training_start(self) -> None:
                last = getattr(self.model, "_last_obs", None)
                if last is not None:
                    self._seen(last)

            def _on_step(self) -> bool:
                self._seen(self.locals["new_obs"])
                for info in self.locals.get("infos", ()):
                    if "episode" in info:
                        self.returns.append((self.num_timesteps, float(info["episode"]["r"])))
                if on_progress is not None:
                    on_progress(min(self.num_timesteps, total), total)
                return True

        return Recorder()


def _cpu_fields(cpu_seconds: float, *, in_processes: bool) -> dict[str, Any]:
    if in_processes:
        # SB3 starts environment processes from a fork server: they are not our children,
        # so getrusage cannot see their CPU time, and the parent's alone would mislead.
        return {
            "trainingCpuSeconds": None,
            "trainingCpuSecondsNote": (
                f"not measured: the environments ran in their own processes, whose CPU "
                f"time this process cannot see (its own: {cpu_seconds:.1f} s)"
            ),
        }
    return {"trainingCpuSeconds": round(cpu_seconds, 1)}


def _cpu_seconds() -> float:
    """CPU seconds used by this process and by its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other jobs on the machine slow training down."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _policy_info(policy: ScalingPolicy, path: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {"name": policy.metadata.name}
    if path is not None:
        info["file"] = str(path)
        info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return info


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch

    return {
        "stable-baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
    }


# -- evaluation -----------------------------------------------------------------------


def run_learned(
    spec: ScalingPolicySpec, arrivals: FloatArray, strategy: str, config: SimConfig, agent: str
) -> tuple[SimResult, dict[str, Any]]:
    """One simulation of `spotwise:<engine>` in this process, with what the engine
    counted: decisions it was asked for and, for rl and hybrid, fallbacks by reason."""
    setup = setup_from_policy(spec)
    context = StrategyContext(setup.spec, setup.workloads, setup.pools, config.seed, agent=agent)
    runner = create_strategy(strategy, context)
    with native_stdout_to_stderr():
        result = Simulation(setup, runner, config).run(arrivals)
    engine = getattr(runner, "engine", None)
    rl: Any = getattr(engine, "rl", engine)  # hybrid keeps its rl engine inside
    counts: dict[str, Any] = {"engineCalls": getattr(rl, "decisions", None)}
    if hasattr(rl, "fallbacks"):
        counts["fallbacks"] = dict(rl.fallbacks)
    return result, counts


def evaluate(
    policy: ScalingPolicy,
    agent: Path,
    settings: EvalSettings,
    train_settings: TrainSettings,
    *,
    on_eval: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`spotwise:rl` (this agent) and `spotwise:genetic` on each held-out trace and seed:
    the simulator's summary per run, rl's fallbacks, and rl's cost over genetic's."""
    runs = []
    for spec_text in settings.traces:
        arrivals = load_arrivals(
            spec_text,
            policy,
            peak_rps=train_settings.peak_rps,
            weights=train_settings.weights,
            step_seconds=settings.step_seconds,
        )
        arrivals = arrivals[: max(1, round(settings.days * 86400 / settings.step_seconds))]
        for seed in settings.seeds:
            config = SimConfig(
                step_seconds=settings.step_seconds,
                seed=seed,
                interruption_scale=settings.interruption_scale,
            )
            results, counts = {}, {}
            for name in ("spotwise:rl", "spotwise:genetic"):
                if on_eval is not None:
                    on_eval(f"{spec_text} seed {seed}: {name}")
                results[name], counts[name] = run_learned(
                    policy.spec, arrivals, name, config, str(agent)
                )
            summary = summarize(results)["strategies"]
            rl, ga = summary["spotwise:rl"], summary["spotwise:genetic"]
            runs.append(
                {
                    "trace": spec_text,
                    "seed": seed,
                    "rlCostVsGenetic": round(rl["cost"] / ga["cost"], 4) if ga["cost"] else None,
                    "strategies": summary,
                    "rlEngine": counts["spotwise:rl"],
                }
            )
    ratios = [r["rlCostVsGenetic"] for r in runs if r["rlCostVsGenetic"] is not None]
    slo = [r["strategies"]["spotwise:rl"]["sloViolationPct"] for r in runs]
    return {
        "settings": {
            "traces": list(settings.traces),
            "seeds": list(settings.seeds),
            "days": settings.days,
            "interruptionScale": settings.interruption_scale,
            "stepSeconds": settings.step_seconds,
        },
        "runs": runs,
        "rlCostVsGeneticMax": max(ratios) if ratios else None,
        "rlCostVsGeneticMean": round(float(np.mean(ratios)), 4) if ratios else None,
        "rlSloViolationPctMax": max(slo) if slo else None,
    }


def evaluate_concurrency(
    policy: ScalingPolicy,
    agent: Path,
    settings: EvalSettings,
    train_settings: TrainSettings,
    *,
    on_eval: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The Knative concurrency study (`spotwise.rl.concurrency.run_study`) with this agent
    on each held-out trace; a plot per trace next to the agent."""
    model, _ = load_agent(str(agent))
    studies = []
    for i, spec_text in enumerate(settings.traces):
        if on_eval is not None:
            on_eval(f"concurrency study on {spec_text}")
        arrivals = load_arrivals(
            spec_text,
            policy,
            peak_rps=train_settings.peak_rps,
            weights=None,
            step_seconds=settings.step_seconds,
        )
        arrivals = arrivals[: max(1, round(settings.days * 86400 / settings.step_seconds))]
        study = run_study(
            policy.spec, arrivals, model, seed=settings.seeds[0], step_seconds=settings.step_seconds
        )
        png = agent.with_suffix(f".study-{i + 1}.png")
        plot_study(study, png, f"{Path(spec_text).name}: throughput and p95 vs concurrency")
        studies.append({"trace": spec_text, "plot": png.name, **study})
    return {
        "settings": {
            "traces": list(settings.traces),
            "seed": settings.seeds[0],
            "days": settings.days,
            "stepSeconds": settings.step_seconds,
            "peakRps": train_settings.peak_rps,
        },
        "studies": studies,
    }


# -- the card -------------------------------------------------------------------------


def write_card(zip_path: Path, card: Mapping[str, Any]) -> list[Path]:
    """NAME.json, NAME.md and NAME.reward.png next to the agent."""
    json_path = zip_path.with_suffix(".json")
    json_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    png = zip_path.with_suffix(".reward.png")
    _plot_rewards(card.get("rewardCurve") or [], png, str(card.get("name")))
    md = zip_path.with_suffix(".md")
    md.write_text(card_markdown(card, png.name), encoding="utf-8")
    return [json_path, md, png]


def _plot_rewards(curve: Sequence[Sequence[float]], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    if curve:
        t = np.array([c[0] for c in curve], dtype=np.float64)
        r = np.array([c[1] for c in curve], dtype=np.float64)
        ax.plot(t, r, ".", alpha=0.35, label="episode return")
        k = max(1, len(r) // 10)
        if len(r) >= k > 1:
            smooth = np.convolve(r, np.ones(k) / k, mode="valid")
            ax.plot(t[k - 1 :], smooth, "-", label=f"mean of {k}")
        ax.legend(loc="lower right")
    ax.set_xlabel("training steps (engine decisions)")
    ax.set_ylabel("return per episode")
    ax.set_title(f"{name}: reward during training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _study_markdown(ev: Mapping[str, Any]) -> list[str]:
    s = ev["settings"]
    lines = [
        f"The study on held-out traces ({s['days']:g} days, peak {s['peakRps']:g} rps, seed "
        f"{s['seed']}, no spot interruptions). Throughput = requests served per second; p95 = "
        "the simulator's summary p95 (30 s where requests were shed).",
        "",
    ]
    for study in ev["studies"]:
        lines += [
            f"**`{study['trace']}`**",
            "",
            "| | target | throughput rps | p95 ms | p95 of a typical step, ms | shed % | pods |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("knativeDefault", "knative-default"),
            ("bestFixed", "best fixed (sweep)"),
            ("learned", "learned (mean target)"),
        ):
            o = study[key]
            lines.append(
                f"| {label} | {o['concurrency']:g} | {o['throughputRps']:.1f} | {o['p95Ms']:.0f} | "
                f"{o['p95MedianMs']:.0f} | {o['shedPct']:.2f} | {o['meanPods']:.2f} |"
            )
        vs = study["learnedVsDefault"]
        lines += [
            "",
            f"Learned vs knative-default: p95 {100 * vs['p95Reduction']:.0f} % lower, "
            f"throughput x{vs['throughputRatio']:.3f}.",
            "",
            f"![throughput and p95 against concurrency]({study['plot']})",
            "",
        ]
    return lines


def _fallbacks(counts: Mapping[str, Any]) -> str:
    fallbacks = counts.get("fallbacks") or {}
    total = sum(fallbacks.values())
    why = "; ".join(f"{n}: {k}" for k, n in sorted(fallbacks.items(), key=lambda kv: -kv[1]))
    return f"{total} / {counts.get('engineCalls')}" + (f" ({why})" if why else "")


def card_markdown(card: Mapping[str, Any], png_name: str) -> str:
    """The human-readable model card."""
    ev = card.get("evaluation")
    w = card["rewardWeights"]
    ep = card["episode"]
    where = "one process each" if card["processes"] else "in one process"
    concurrency = card.get("task") == "concurrency"
    notes = []
    if card.get("trainingCpuSeconds") is not None:
        notes.append(f"{card['trainingCpuSeconds']:.0f} s of CPU")
    elif card.get("trainingCpuSecondsNote"):
        notes.append(f"CPU time {card['trainingCpuSecondsNote']}")
    if card.get("loadAverageAfter"):
        load = ", ".join(f"{x:g}" for x in card["loadAverageAfter"])
        notes.append(f"load average {load} at the end")
    cpu = f" ({'; '.join(notes)})" if notes else ""
    if concurrency:
        what = (
            f"A {card['algo'].upper()} agent that sets the Knative concurrency target of the "
            f"single service of `{card['policy']['name']}` (the concurrency study, "
            "`spotwise.rl.concurrency`)."
        )
        reward = f"served / arrived - {w['slo']:g} x [p95 > SLO], per step"
    else:
        what = (
            f"A {card['algo'].upper()} agent for the Spotwise `rl` engine, trained for the "
            f"policy `{card['policy']['name']}` (workloads {', '.join(card['workloads'])})."
        )
        reward = (
            f"-cost/reference - {w['slo']:g} x SLO-violation minutes - "
            f"{w['churn']:g} x nodes changed"
        )
    lines = [
        f"# Agent `{card['name']}`",
        "",
        f"{what} Generated by `spotwise train`; the machine-readable card is "
        f"`{card['name']}.json`.",
        "",
        "## Training",
        "",
        "| | |",
        "| --- | --- |",
        f"| algorithm | {card['algo']} ({card['actionEncoding']} actions) |",
        f"| steps (engine decisions) | {card['steps']:,} in {card['episodes']} episodes |",
        f"| environments | {card['envs']} ({where}) |",
        f"| seed | {card['seed']} |",
        f"| wall time | {card['trainingSeconds']:.0f} s{cpu} |",
        f"| episodes | {ep['hours']:g} h windows, {ep['stepSeconds']:g} s steps, load "
        f"x{ep['loadScale'][0]:g}..{ep['loadScale'][1]:g}, interruptions "
        f"x{ep['interruptionScale']:g} |",
        f"| reward | {reward} |",
        f"| traces (peak {card['peakRps']:g} rps each) | "
        + "<br>".join(f"`{t}`" for t in card["traces"])
        + " |",
        "| versions | " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + " |",
        "",
        f"![reward curve]({png_name})",
        "",
        "## Held-out evaluation",
        "",
    ]
    if not ev:
        lines.append("None was run (no `--eval-trace`).")
    elif concurrency:
        lines += _study_markdown(ev)
    else:
        s = ev["settings"]
        lines += [
            f"`spotwise:rl` with this agent against `spotwise:genetic`, same traces and seeds "
            f"({s['days']:g} days, interruptions x{s['interruptionScale']:g}, "
            f"{s['stepSeconds']:g} s steps). None of these traces was used in training.",
            "",
            "| trace | seed | rl $ | genetic $ | rl / genetic | rl SLO viol. % | "
            "genetic SLO viol. % | rl fallbacks / decisions |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in ev["runs"]:
            rl, ga = r["strategies"]["spotwise:rl"], r["strategies"]["spotwise:genetic"]
            lines.append(
                f"| `{r['trace']}` | {r['seed']} | {rl['cost']:.3f} | {ga['cost']:.3f} | "
                f"{r['rlCostVsGenetic']} | {rl['sloViolationPct']} | {ga['sloViolationPct']} | "
                f"{_fallbacks(r['rlEngine'])} |"
            )
        lines += [
            "",
            f"Worst rl / genetic cost: {ev['rlCostVsGeneticMax']}; mean "
            f"{ev['rlCostVsGeneticMean']}; worst rl SLO violation {ev['rlSloViolationPctMax']} %.",
        ]
    if concurrency:
        return "\n".join([*lines, ""])
    lines += [
        "",
        "## Out-of-range rule",
        "",
        "The engine falls back to the genetic engine (and the plan says so) when the policy's "
        "workloads are not the ones above (by name, in order, with the same SLO, pod size and "
        "concurrency bounds and a peak throughput per pod within 25 %: `workloadSignature` in "
        "the JSON), or when any observation feature lies outside the range seen in training "
        "(`observationRange`) by more than 10 % of that range plus 0.02.",
        "",
    ]
    return "\n".join(lines)
