"""The `spotwise` command line: validate, crds, recommend, bench (and, as they land,
simulate, demo, train, run).

Thin: parse arguments, call the library, print. Bad input exits 1 with one line per
problem on stderr, never a traceback; wrong usage exits 2.
"""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from spotwise import __version__
from spotwise.api import PolicyError, ScalingPolicy, load_policy_file
from spotwise.decide import DecisionError, Recommendation, build_catalog, recommend
from spotwise.stdio import native_stdout_to_stderr

app = typer.Typer(
    name="spotwise",
    help="Cost-aware Kubernetes autoscaling: replicas, concurrency and the spot/on-demand "
    "node mix, decided together against a latency SLO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks; each prints JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

err = Console(stderr=True)
out = Console()


class Output(StrEnum):
    json = "json"
    table = "table"


class EngineName(StrEnum):
    exact = "exact"
    genetic = "genetic"
    rl = "rl"
    hybrid = "hybrid"


def fail(lines: list[str] | str, code: int = 1) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load(path: Path) -> ScalingPolicy:
    try:
        return load_policy_file(path)
    except PolicyError as e:
        fail([f"{path} is invalid:", *(f"  {line}" for line in e.lines())])


@app.callback(invoke_without_command=True)
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit(0)


@app.command()
def validate(
    file: Annotated[Path, typer.Option("-f", "--file", help="ScalingPolicy YAML file.")],
) -> None:
    """Check a ScalingPolicy: exit 0 when valid, 1 with one line per problem."""
    policy = load(file)
    try:
        catalog = build_catalog(policy.spec)
    except DecisionError as e:
        fail([f"{file} is invalid:", f"  {e}"])
    if not len(catalog):
        fail([f"{file} is invalid:", "  spec.nodes.catalog: no instance types to choose from"])
    out.print(
        f"{file}: valid ScalingPolicy {policy.metadata.name} "
        f"({len(policy.spec.workloads)} workloads, {len(catalog)} instance types)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def crds() -> None:
    """Print the ScalingPolicy CustomResourceDefinition (generated from the API models)."""
    from spotwise.api.crd import render_crd

    sys.stdout.write(render_crd())


def parse_demands(values: list[str]) -> dict[str, float]:
    demands: dict[str, float] = {}
    for raw in values:
        name, sep, number = raw.partition("=")
        if not sep or not name:
            raise typer.BadParameter(
                f"{raw!r}: expected WORKLOAD=RPS, e.g. web=800", param_hint="--demand"
            )
        try:
            rps = float(number)
        except ValueError:
            raise typer.BadParameter(
                f"{raw!r}: {number!r} is not a number", param_hint="--demand"
            ) from None
        if not math.isfinite(rps) or rps < 0:
            raise typer.BadParameter(
                f"{raw!r}: requests/second must be a finite number ≥ 0", param_hint="--demand"
            )
        if name in demands:
            raise typer.BadParameter(f"{name} given twice", param_hint="--demand")
        demands[name] = rps
    return demands


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    plan = rec.plan
    return {
        "engine": plan.engine,
        "feasible": plan.feasible,
        "overBudget": plan.over_budget,
        "hourlyCost": round(plan.hourly_cost, 6),
        "onDemandHourlyCost": round(rec.on_demand_hourly_cost, 6),
        "savingsRatio": round(rec.savings_ratio, 6),
        "solveSeconds": round(plan.solve_seconds, 6),
        "workloads": [
            {
                "name": w.name,
                "replicas": w.replicas,
                "concurrency": w.concurrency,
                # JSON has no infinity: an unbounded prediction (saturated) is null.
                "predictedP95Ms": round(w.predicted_p95_ms, 3)
                if math.isfinite(w.predicted_p95_ms)
                else None,
            }
            for w in plan.workloads
        ],
        "nodes": [
            {
                "instanceType": n.instance_type,
                "capacityType": n.capacity_type.value,
                "count": n.count,
            }
            for n in plan.nodes
        ],
        "risk": {"capacityAfterWorstPoolLoss": round(plan.capacity_after_worst_pool_loss, 6)},
    }


@app.command(name="recommend")
def recommend_cmd(
    file: Annotated[Path, typer.Option("-f", "--file", help="ScalingPolicy YAML file.")],
    demand: Annotated[list[str], typer.Option("--demand", help="WORKLOAD=RPS, once per workload.")],
    engine: Annotated[
        EngineName | None, typer.Option(help="Engine; defaults to the policy's.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for the genetic engine.")] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
) -> None:
    """Plan replicas, concurrency and nodes for fixed demand, offline (no cluster)."""
    policy = load(file)
    demands = parse_demands(demand)
    try:
        with native_stdout_to_stderr():
            rec = recommend(
                policy.spec, demands, engine=engine.value if engine else None, seed=seed
            )
    except DecisionError as e:
        fail(f"{file}: {e}")
    for reason in rec.plan.reasons:
        if not reason.startswith("evolved "):
            err.print(f"note: {reason}", markup=False, highlight=False)
    if output is Output.json:
        sys.stdout.write(json.dumps(recommendation_json(rec)) + "\n")
        return
    print_recommendation(policy, rec)


def print_recommendation(policy: ScalingPolicy, rec: Recommendation) -> None:
    plan = rec.plan
    status = "feasible" if plan.feasible else "INFEASIBLE"
    if plan.over_budget:
        status += ", over budget"
    out.print(
        f"[bold]{policy.metadata.name}[/] — {plan.engine} plan, {status}, "
        f"solved in {plan.solve_seconds:.3f}s"
    )
    wt = Table("workload", "replicas", "on spot", "concurrency", "predicted p95", "SLO")
    slos = {w.name: w.slo.latency_p95_ms for w in policy.spec.workloads}
    for w in plan.workloads:
        p95 = f"{w.predicted_p95_ms:.0f} ms" if math.isfinite(w.predicted_p95_ms) else "∞"
        wt.add_row(
            w.name,
            str(w.replicas),
            str(w.spot_replicas),
            str(w.concurrency),
            p95,
            f"{slos[w.name]:g} ms",
        )
    out.print(wt)
    nt = Table("instance type", "capacity", "nodes")
    for n in plan.nodes:
        nt.add_row(n.instance_type, n.capacity_type.value, str(n.count))
    out.print(nt)
    out.print(
        f"cost ${plan.hourly_cost:.4f}/h vs ${rec.on_demand_hourly_cost:.4f}/h all "
        f"on-demand: [bold green]{rec.savings_ratio:.1%} saved[/]; capacity left after "
        f"losing the worst spot pool {plan.capacity_after_worst_pool_loss:.0%}"
    )


def _trace_arrivals(
    setup: Any,
    traces: list[str],
    weights: list[str],
    peak_rps: float | None,
    step_seconds: float,
    days: float | None,
    seed: int,
) -> Any:
    """(steps, W) arrivals from `--trace` values: one shared SPEC split by `--weight`, or
    WORKLOAD=SPEC per workload."""
    import numpy as np

    from spotwise.sim.run import weights_split
    from spotwise.sim.traces import TraceError, resolve_trace

    names = [w.name for w in setup.workloads]
    shared = [t for t in traces if "=" not in t or t.split("=", 1)[0] not in names]
    own = dict(t.split("=", 1) for t in traces if t not in shared)
    if len(shared) > 1:
        raise typer.BadParameter(
            "give one shared trace, or WORKLOAD=SPEC for each workload", param_hint="--trace"
        )
    if not shared and set(own) != set(names):
        missing = sorted(set(names) - set(own))
        raise typer.BadParameter(
            f"no trace for workload {', '.join(missing)}", param_hint="--trace"
        )
    try:
        if shared:
            trace = resolve_trace(
                shared[0], peak_rps=peak_rps, step_seconds=step_seconds, seed=seed
            )
            w = dict.fromkeys(names, 1.0)
            for item in weights:
                name, _, value = item.partition("=")
                if name not in w:
                    raise typer.BadParameter(f"unknown workload {name!r}", param_hint="--weight")
                w[name] = float(value)
            arrivals = weights_split(trace.rps, [w[n] for n in names])
        else:
            columns = [
                resolve_trace(own[n], peak_rps=peak_rps, step_seconds=step_seconds, seed=seed).rps
                for n in names
            ]
            steps = min(len(c) for c in columns)
            arrivals = np.stack([c[:steps] for c in columns], axis=1)
    except (TraceError, ValueError) as e:
        fail(f"trace: {e}")
    if days is not None:
        arrivals = arrivals[: max(1, int(days * 86400 / step_seconds))]
    return arrivals


def _simulate(
    policy: ScalingPolicy,
    arrivals: Any,
    strategies: list[str],
    *,
    seed: int,
    interruption_scale: float,
    step_seconds: float,
    out_dir: Path | None,
    output: Output,
    agent: str | None,
    title: str,
    spot_prices: Any = None,
) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from spotwise.sim.report import summary_table, write_report
    from spotwise.sim.run import run_strategies, summarize
    from spotwise.sim.simulator import SimConfig, setup_from_policy

    config = SimConfig(
        step_seconds=step_seconds,
        seed=seed,
        interruption_scale=interruption_scale,
        spot_price_multiplier=spot_prices,
    )
    steps = len(arrivals)
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=output is Output.json,
    ) as bar:
        tasks = {s: bar.add_task(s, total=steps) for s in strategies}

        def show(done: dict[str, int]) -> None:
            for s, n in done.items():
                bar.update(tasks[s], completed=n)

        try:
            with native_stdout_to_stderr():
                results = run_strategies(
                    policy.to_k8s(), arrivals, strategies, config, agent=agent, on_progress=show
                )
        except (ValueError, KeyError) as e:
            fail(str(e).strip("'\""))
    summary = summarize(results)
    if out_dir is not None:
        setup = setup_from_policy(policy.spec)
        full = {
            **summary,
            "policy": policy.metadata.name,
            "title": title,
            "seed": seed,
            "steps": steps,
            "stepSeconds": step_seconds,
            "interruptionScale": interruption_scale,
        }
        written = write_report(out_dir, results, setup, full)
        err.print(f"report: {len(written)} files in {out_dir}/", highlight=False)
    if output is Output.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        out.print(summary_table(summary))
    return summary


@app.command()
def simulate(
    policy_file: Annotated[Path, typer.Option("--policy", "-f", help="ScalingPolicy YAML.")],
    trace: Annotated[
        list[str],
        typer.Option(
            help="builtin:NAME, synthetic:KIND[:DAYS] or a CSV file, shared by all workloads; or "
            "WORKLOAD=SPEC once per workload."
        ),
    ],
    weight: Annotated[
        list[str], typer.Option(help="WORKLOAD=W: its share of a shared trace (default equal).")
    ] = [],  # noqa: B006
    peak_rps: Annotated[
        float | None,
        typer.Option(help="Rescale each trace so its busiest step is this many requests/second."),
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated; default: every baseline, spotwise:<policy engine>, oracle."
        ),
    ] = None,
    days: Annotated[float | None, typer.Option(help="Simulate only the first D days.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for interruptions and engines.")] = 0,
    interruption_scale: Annotated[
        float,
        typer.Option(help="Multiply every pool's spot interruption rate (rehearse bad days)."),
    ] = 1.0,
    step_seconds: Annotated[float, typer.Option(help="Simulation step.")] = 10.0,
    agent: Annotated[str | None, typer.Option(help="Trained RL agent for spotwise:rl.")] = None,
    spot_prices: Annotated[
        Path | None,
        typer.Option(
            help="Spot price series CSV (date, machine_type, region, spot_hourly): its movement "
            "scales every spot price; default: constant catalog averages."
        ),
    ] = None,
    spot_price_type: Annotated[
        str | None,
        typer.Option(help="Machine type of the series to use (default: the file's first)."),
    ] = None,
    spot_price_region: Annotated[
        str | None, typer.Option(help="Region of the series to use (default: the file's first).")
    ] = None,
    spot_price_speedup: Annotated[
        float, typer.Option(help="Replay the price series this many times faster than real time.")
    ] = 1.0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write summary.json, timeseries.csv and PNG plots here."),
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
) -> None:
    """Replay traces against simulated strategies and compare cost, SLO and churn."""
    from spotwise.sim.prices import PriceSeriesError, load_spot_prices
    from spotwise.sim.run import default_strategies
    from spotwise.sim.simulator import setup_from_policy

    prices = None
    if spot_prices is not None:
        try:
            prices = load_spot_prices(
                spot_prices,
                machine_type=spot_price_type,
                region=spot_price_region,
                speedup=spot_price_speedup,
            )
        except PriceSeriesError as e:
            fail(str(e))

    policy = load(policy_file)
    try:
        setup = setup_from_policy(policy.spec)
    except DecisionError as e:
        fail(f"{policy_file}: {e}")
    arrivals = _trace_arrivals(setup, trace, weight, peak_rps, step_seconds, days, seed)
    names = (
        [s.strip() for s in strategies.split(",") if s.strip()]
        if strategies
        else default_strategies(policy.spec.optimizer.engine)
    )
    _simulate(
        policy,
        arrivals,
        names,
        seed=seed,
        interruption_scale=interruption_scale,
        step_seconds=step_seconds,
        out_dir=out_dir,
        output=output,
        agent=agent,
        title=f"{policy_file.name} on {', '.join(trace)}",
        spot_prices=prices,
    )


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the report goes.")] = Path(
        "spotwise-report"
    ),
    seed: Annotated[int, typer.Option(help="Seed for interruptions and engines.")] = 7,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
) -> None:
    """The main job on its embedded default: the built-in WorldCup98 trace, the demo
    policy, every strategy, a table and a report."""
    from spotwise.sim.demo import DEMO, demo_arrivals, demo_policy

    policy = demo_policy()
    err.print(
        f"[bold]Spotwise demo[/]: policy {policy.metadata.name} "
        f"({len(policy.spec.workloads)} workloads), trace {DEMO.trace} "
        f"({DEMO.days * 24:g} h, peak {DEMO.peak_rps:g} rps), spot interruptions "
        f"×{DEMO.interruption_scale:g}, seed {seed}"
    )
    _simulate(
        policy,
        demo_arrivals(),
        list(DEMO.strategies),
        seed=seed,
        interruption_scale=DEMO.interruption_scale,
        step_seconds=DEMO.step_seconds,
        out_dir=out_dir,
        output=output,
        agent=None,
        title=DEMO.title,
    )


class Algo(StrEnum):
    ppo = "ppo"
    a2c = "a2c"
    dqn = "dqn"


class Task(StrEnum):
    autoscale = "autoscale"
    concurrency = "concurrency"


@app.command()
def train(
    policy_file: Annotated[Path, typer.Option("--policy", "-f", help="ScalingPolicy YAML.")],
    trace: Annotated[
        list[str],
        typer.Option(
            help="builtin:NAME, synthetic:KIND[:DAYS] or a CSV file (FILE@FROM..TO cuts a CSV "
            "with timestamps to dates); repeatable. Each is rescaled to --peak-rps."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Agent file to write: policies/agents/NAME.zip.")],
    steps: Annotated[int, typer.Option(help="Training steps (engine decisions).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed for episodes, interruptions and the net.")] = 0,
    algo: Annotated[Algo, typer.Option(help="ppo, a2c, or dqn (one knob per step).")] = Algo.ppo,
    task: Annotated[
        Task,
        typer.Option(
            help="autoscale: the rl engine's agent; concurrency: the Knative concurrency "
            "study's agent (a one-workload policy)."
        ),
    ] = Task.autoscale,
    weight: Annotated[
        list[str], typer.Option(help="WORKLOAD=W: its share of each trace (default equal).")
    ] = [],  # noqa: B006
    peak_rps: Annotated[float, typer.Option(help="Busiest step of each trace, req/s.")] = 2000.0,
    envs: Annotated[int, typer.Option(help="Vectorized environments.")] = 4,
    processes: Annotated[
        bool, typer.Option(help="One process per environment (default: all in this one).")
    ] = False,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    episode_hours: Annotated[float, typer.Option(help="Hours per training episode.")] = 12.0,
    step_seconds: Annotated[float, typer.Option(help="Simulation step in training.")] = 10.0,
    interruption_scale: Annotated[
        float, typer.Option(help="Multiply spot interruption rates in training and evaluation.")
    ] = 100.0,
    eval_trace: Annotated[
        list[str], typer.Option(help="Held-out trace for the model card; repeatable.")
    ] = [],  # noqa: B006
    eval_seeds: Annotated[str, typer.Option(help="Comma-separated evaluation seeds.")] = "1",
    eval_days: Annotated[float, typer.Option(help="Days of each held-out trace.")] = 2.0,
) -> None:
    """Train an agent for the rl engine and write it with its model card."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    try:
        from spotwise.rl.env import EpisodeSettings
        from spotwise.rl.train import EvalSettings, TrainError, TrainSettings, training_traces
        from spotwise.rl.train import train as run_training
    except ImportError as e:
        fail(
            f"spotwise train needs the optional 'rl' extra (stable-baselines3, gymnasium, "
            f"torch); {e.name} is not installed: pip install 'spotwise[rl]'"
        )
    policy = load(policy_file)
    names = [w.name for w in policy.spec.workloads]
    shares = dict.fromkeys(names, 1.0)
    for item in weight:
        name, _, value = item.partition("=")
        if name not in shares:
            raise typer.BadParameter(f"unknown workload {name!r}", param_hint="--weight")
        try:
            shares[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: not a number", param_hint="--weight") from None
    settings = TrainSettings(
        task=task.value,
        steps=steps,
        seed=seed,
        algo=algo.value,
        envs=envs,
        processes=processes,
        threads=threads,
        peak_rps=peak_rps,
        weights=tuple(shares[n] for n in names),
        episode=EpisodeSettings(
            hours=episode_hours, step_seconds=step_seconds, interruption_scale=interruption_scale
        ),
    )
    evaluation = EvalSettings(
        traces=tuple(eval_trace),
        seeds=tuple(int(x) for x in eval_seeds.split(",") if x.strip()),
        days=eval_days,
        interruption_scale=interruption_scale,
    )
    try:
        training_traces(policy, trace, out, settings)  # bad input fails before the bar shows
    except TrainError as e:
        fail(str(e))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        job = bar.add_task(f"training {out.stem} ({algo.value})", total=steps)

        def progress(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        def evaluating(what: str) -> None:
            bar.update(job, description=f"held-out: {what}")

        try:
            result = run_training(
                policy,
                policy_file,
                trace,
                out,
                settings,
                evaluation,
                on_progress=progress,
                on_eval=evaluating,
            )
        except (TrainError, DecisionError) as e:
            fail(str(e))
    card = result.card
    err.print(
        f"wrote {out} and its card ({out.with_suffix('.md').name}, "
        f"{out.with_suffix('.json').name}, {out.with_suffix('.reward.png').name}): "
        f"{card['steps']:,} steps in {card['trainingSeconds']:.0f} s",
        highlight=False,
    )
    ev = card.get("evaluation")
    if ev and task is Task.concurrency:
        for study in ev["studies"]:
            vs = study["learnedVsDefault"]
            err.print(
                f"held-out {study['trace']}: learned p95 {100 * vs['p95Reduction']:.0f} % below "
                f"knative-default at x{vs['throughputRatio']:.3f} its throughput",
                highlight=False,
            )
    elif ev:
        err.print(
            f"held-out: rl / genetic cost worst {ev['rlCostVsGeneticMax']}, mean "
            f"{ev['rlCostVsGeneticMean']}; rl SLO violation worst {ev['rlSloViolationPctMax']} %",
            highlight=False,
        )


@bench_app.command("optimizer")
def bench_optimizer(
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.json,
    exact_time_limit: Annotated[
        float, typer.Option(help="Seconds the exact engine may take to prove an optimum.")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed for the instances and the GA.")] = 0,
) -> None:
    """Exact vs genetic on a fixed set of instances: cost, time, gap."""
    from spotwise.benchmarks.optimizer import run_optimizer_benchmark

    result = run_optimizer_benchmark(exact_time_limit=exact_time_limit, seed=seed, console=err)
    if output is Output.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        out.print_json(json.dumps(result["summary"]))


@bench_app.command("savings")
def bench_savings(
    data: Annotated[
        Path, typer.Option(help="Folder with worldcup98-requests-per-minute.csv.")
    ] = Path("../shared/data"),
    seeds: Annotated[str, typer.Option(help="Comma-separated interruption seeds.")] = "1,2,3",
    days: Annotated[float, typer.Option(help="Days per trace.")] = 2.0,
    interruption_scale: Annotated[
        float, typer.Option(help="Multiply every pool's spot interruption rate.")
    ] = 100.0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Also write savings.json and the savings.png plot here."),
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.json,
) -> None:
    """Every strategy on held-out traces, several interruption seeds: cost, SLO, targets."""
    from spotwise.benchmarks.savings import SavingsSettings, plot_savings, run_savings_benchmark

    settings = SavingsSettings(
        days=days,
        interruption_scale=interruption_scale,
        seeds=tuple(int(x) for x in seeds.split(",") if x.strip()),
    )
    with native_stdout_to_stderr():
        result = run_savings_benchmark(
            data_dir=data if data.exists() else None, settings=settings, console=err
        )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "savings.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_savings(result, out_dir / "savings.png")
        err.print(f"wrote {out_dir / 'savings.json'} and {out_dir / 'savings.png'}")
    if output is Output.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        out.print_json(
            json.dumps(
                {
                    "aggregate": result["aggregate"],
                    "targets": {k: v for k, v in result["targets"].items() if k != "perRun"},
                }
            )
        )


@app.command(name="run")
def run_cmd(
    namespace: Annotated[
        list[str],
        typer.Option("-n", "--namespace", help="Serve policies in this namespace; repeatable."),
    ] = [],  # noqa: B006
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="Serve policies in every namespace.")
    ] = False,
    standalone: Annotated[
        bool, typer.Option(help="No peering: run even if other operators serve the same policies.")
    ] = False,
    liveness: Annotated[
        str | None,
        typer.Option(help="Liveness endpoint to serve, e.g. http://0.0.0.0:8080/healthz."),
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve the operator's Prometheus metrics on this port; 0: off.")
    ] = 8000,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Kubeconfig file; default: in-cluster, else $KUBECONFIG."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the operator: one control loop per ScalingPolicy, until interrupted."""
    from spotwise.controller import RunError, RunOptions, UsageError, run

    try:
        run(
            RunOptions(
                namespaces=tuple(namespace),
                all_namespaces=all_namespaces,
                standalone=standalone,
                liveness=liveness,
                metrics_port=metrics_port or None,
                kubeconfig=kubeconfig,
                verbose=verbose,
            )
        )
    except RunError as e:
        fail(f"spotwise run: {e}", code=2 if isinstance(e, UsageError) else 1)


@bench_app.command("rl")
def bench_rl(
    data: Annotated[
        Path, typer.Option(help="Folder with worldcup98-requests-per-minute.csv.")
    ] = Path("../shared/data"),
    seeds: Annotated[str, typer.Option(help="Comma-separated interruption seeds.")] = "1",
    only: Annotated[
        str,
        typer.Option(
            help="Comma-separated sections: heldOut,hybrid,inference,concurrency,ablation,training."
        ),
    ] = "heldOut,hybrid,inference,concurrency,ablation,training",
    agent: Annotated[str, typer.Option(help="The rl engine's agent.")] = "shop-ppo",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write the concurrency plot here.")
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.json,
) -> None:
    """The RL agents on held-out traces: rl and hybrid vs genetic, inference time, the
    Knative concurrency study."""
    try:
        from spotwise.benchmarks.rl import SECTIONS, RlBenchSettings, run_rl_benchmark
    except ImportError as e:
        fail(f"bench rl needs the optional 'rl' extra; {e.name} is not installed")
    sections = [s.strip() for s in only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise typer.BadParameter(f"unknown section {', '.join(unknown)}", param_hint="--only")
    if not (data / "worldcup98-requests-per-minute.csv").exists():
        fail(f"{data}: worldcup98-requests-per-minute.csv not found (give --data)")
    settings = RlBenchSettings(
        agent=agent, seeds=tuple(int(x) for x in seeds.split(",") if x.strip())
    )
    with err.status("rl benchmark") as status:
        result = run_rl_benchmark(
            data_dir=data,
            settings=settings,
            only=sections,
            out_dir=out_dir,
            say=lambda what: status.update(f"rl benchmark: {what}"),
        )
    if output is Output.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        out.print_json(json.dumps(result["targets"]))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
