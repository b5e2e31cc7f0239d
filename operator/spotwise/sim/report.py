"""What a comparison of strategies leaves behind: a JSON summary, a CSV time series, PNG
plots, and the table the CLI prints.

`write_report(out_dir, results, setup, summary)` writes

- `summary.json`: the summary dict as given (usually `spotwise.sim.run.summarize`'s
  {"strategies": {name: metrics}} plus run settings);
- `timeseries.csv`: long format, one row per step per strategy: time_s, strategy,
  cost_rate ($/h), spot_nodes, on_demand_nodes, then per workload replicas_<w> (ready),
  concurrency_<w>, p95_ms_<w> and shed_<w> (requests shed in the step), then violation
  (0/1) and interruptions (spot nodes lost in the step);
- `cost.png`: cumulative cost per strategy, interruptions ticked on the curves;
- `nodes.png`: per strategy, spot and on-demand nodes stacked, ready replicas on a twin
  axis, interruptions ticked;
- `p95.png`: per workload, p95 of every strategy against the SLO (log scale).

Not here: running simulations (`simulator.py`) or the oracle (`strategies/oracle.py`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich import box
from rich.table import Table

from spotwise.sim.simulator import FloatArray, Series, SimResult, SimSetup

DPI = 150
_P95_POINTS = 400  # p95 lines show at most this many points: the worst step of each bin
_SPOT_COLOR = "#f28e2b"
_ON_DEMAND_COLOR = "#4e79a7"
_REPLICAS_COLOR = "#222222"
_INTERRUPTION_COLOR = "#d62728"

# summary_table's columns: (header, key in a strategy's summary, format)
# Short headers: the table must fit 80 columns (a CI log, a pipe) with full strategy names.
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("$", "cost", "{:.2f}"),
    ("×oracle", "costVsOracle", "{:.2f}"),
    ("SLO✗%", "sloViolationPct", "{:.2f}"),
    ("p95 ms", "p95Ms", "{:.0f}"),
    ("shed%", "shedPct", "{:.2f}"),
    ("intr.", "interruptions", "{:d}"),
    ("churn", "nodeChurn", "{:d}"),
    ("wall s", "wallSeconds", "{:.0f}"),
)


# -- the CLI table --------------------------------------------------------------------


def strategy_rows(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Per-strategy entries of a summary: `summary["strategies"]`, or else every
    top-level entry that is a mapping."""
    inner = summary.get("strategies")
    source = inner if isinstance(inner, Mapping) else summary
    return {str(k): v for k, v in source.items() if isinstance(v, Mapping)}


def summary_table(summary: Mapping[str, Any]) -> Table:
    """One row per strategy: cost, cost over the oracle's, SLO violation, p95, shed,
    interruptions, node churn, wall time (decisions are in the JSON and CSV)."""
    table = Table(
        title="Strategies on the same trace and seed",
        caption="SLO✗% = share of steps over the SLO or shedding; intr. = spot "
        "interruptions; churn = nodes launched + removed",
        padding=(0, 1),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("strategy", style="bold", no_wrap=True)
    for header, _, _ in _COLUMNS:
        table.add_column(header, justify="right")
    for name, row in strategy_rows(summary).items():
        table.add_row(name, *(_cell(row.get(key), fmt) for _, key, fmt in _COLUMNS))
    return table


def _cell(value: Any, fmt: str) -> str:
    if value is None or isinstance(value, bool):
        return "–"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            return "–"
        if fmt == "{:d}":
            return f"{round(number):d}"
        return fmt.format(number)
    return str(value)


# -- files ----------------------------------------------------------------------------


def write_report(
    out_dir: Path, results: Mapping[str, SimResult], setup: SimSetup, summary: Mapping[str, Any]
) -> list[Path]:
    """Write summary.json, timeseries.csv, cost.png, nodes.png and p95.png into
    `out_dir` (created if needed); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        _write_summary(out_dir / "summary.json", summary),
        _write_csv(out_dir / "timeseries.csv", results, setup),
    ]
    if results:
        paths += [
            _plot_cost(out_dir / "cost.png", results),
            _plot_nodes(out_dir / "nodes.png", results),
            _plot_p95(out_dir / "p95.png", results, setup),
        ]
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _write_summary(path: Path, summary: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _write_csv(path: Path, results: Mapping[str, SimResult], setup: SimSetup) -> Path:
    names = [w.name for w in setup.workloads]
    header = ["time_s", "strategy", "cost_rate", "spot_nodes", "on_demand_nodes"]
    for name in names:
        header += [f"replicas_{name}", f"concurrency_{name}", f"p95_ms_{name}", f"shed_{name}"]
    header += ["violation", "interruptions"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for strategy, result in results.items():
            s = result.series
            for i, t in enumerate(s.time):
                row: list[object] = [
                    _num(t),
                    strategy,
                    _num(s.cost_rate[i]),
                    s.spot_nodes[i],
                    s.on_demand_nodes[i],
                ]
                for w in range(len(names)):
                    row += [
                        s.replicas[i][w],
                        s.concurrency[i][w],
                        _num(s.p95_ms[i][w], 1),
                        _num(s.shed[i][w], 3),
                    ]
                row += [int(bool(s.violation[i])), s.interruptions[i]]
                writer.writerow(row)
    return path


def _num(value: float, digits: int = 6) -> str:
    return f"{round(float(value), digits):g}" if math.isfinite(value) else str(value)


# -- plots ----------------------------------------------------------------------------


def _step_seconds(s: Series) -> float:
    if len(s.time) >= 2:
        return float(np.median(np.diff(np.asarray(s.time, dtype=np.float64))))
    return 10.0


def _time_axis(results: Mapping[str, SimResult]) -> tuple[float, str]:
    """Divisor and label for the x axis: hours for long runs, minutes for short ones."""
    span = max((r.series.time[-1] for r in results.values() if r.series.time), default=0.0)
    return (3600.0, "time (h)") if span >= 2 * 3600 else (60.0, "time (min)")


def _colors(names: Sequence[str]) -> dict[str, Any]:
    """A tab10 colour per strategy, red left out: it marks interruptions."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    palette = [cmap(i) for i in range(10) if i != 3]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, for this figure only
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _interruption_steps(s: Series) -> NDArray[np.int64]:
    return np.flatnonzero(np.asarray(s.interruptions, dtype=np.int64) > 0)


def _plot_cost(path: Path, results: Mapping[str, SimResult]) -> Path:
    scale, xlabel = _time_axis(results)
    colors = _colors(list(results))
    fig = _new_figure(10, 5.5)
    ax = fig.add_subplot()
    ticks: list[tuple[FloatArray, FloatArray]] = []
    for name, result in results.items():
        s = result.series
        if not s.time:
            continue
        t = np.asarray(s.time, dtype=np.float64)
        dt = _step_seconds(s)
        cumulative = np.cumsum(np.asarray(s.cost_rate, dtype=np.float64) * dt / 3600.0)
        ax.plot(
            t / scale,
            cumulative,
            color=colors[name],
            lw=1.8,
            zorder=2,
            label=f"{name} (${result.cost:.2f})",
        )
        hits = _interruption_steps(s)
        if hits.size:
            ticks.append((t[hits] / scale, cumulative[hits]))
    for i, (x, y) in enumerate(ticks):
        ax.plot(
            x,
            y,
            linestyle="none",
            marker="|",
            markersize=14,
            markeredgewidth=2,
            color=_INTERRUPTION_COLOR,
            zorder=3,
            label="spot interruption" if i == 0 else None,
        )
    ax.set_title("Cumulative node cost per strategy")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cumulative cost ($)")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=9)
    return _save(fig, path)


def _plot_nodes(path: Path, results: Mapping[str, SimResult]) -> Path:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    scale, xlabel = _time_axis(results)
    names = list(results)
    fig = _new_figure(11, 1.2 + 2.3 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(
        "Nodes per strategy (on-demand below, spot stacked on top) and ready replicas", fontsize=13
    )
    for ax, name in zip(axes, names, strict=True):
        s = results[name].series
        t = np.asarray(s.time, dtype=np.float64) / scale
        spot = np.asarray(s.spot_nodes, dtype=np.float64)
        on_demand = np.asarray(s.on_demand_nodes, dtype=np.float64)
        if t.size:
            ax.stackplot(
                t, on_demand, spot, colors=[_ON_DEMAND_COLOR, _SPOT_COLOR], alpha=0.75, step="post"
            )
        top = float((spot + on_demand).max()) if t.size else 1.0
        ax.set_ylim(0, max(top * 1.15, 1.0))
        ax.set_ylabel("nodes")
        ax.set_title(name, loc="left", fontsize=11)
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        replicas = (
            np.asarray(s.replicas, dtype=np.float64).sum(axis=1) if s.replicas else np.zeros(0)
        )
        if t.size:
            twin.plot(t, replicas, color=_REPLICAS_COLOR, lw=1.0, drawstyle="steps-post")
        twin.set_ylim(0, max(float(replicas.max()) * 1.15 if replicas.size else 1.0, 1.0))
        twin.set_ylabel("ready replicas")
        for i in _interruption_steps(s):
            ax.axvline(t[i], ymin=0, ymax=0.12, color=_INTERRUPTION_COLOR, lw=2)
    axes[-1].set_xlabel(xlabel)
    axes[0].set_xlim(left=0)
    handles = [
        Patch(color=_ON_DEMAND_COLOR, alpha=0.75, label="on-demand nodes"),
        Patch(color=_SPOT_COLOR, alpha=0.75, label="spot nodes"),
        Line2D(
            [],
            [],
            color=_REPLICAS_COLOR,
            lw=1.0,
            label="ready replicas, all workloads (right axis)",
        ),
        Line2D([], [], color=_INTERRUPTION_COLOR, lw=2, label="spot interruption"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    return _save(fig, path)


def _worst_per_bin(t: FloatArray, values: FloatArray, size: int) -> tuple[FloatArray, FloatArray]:
    """The highest value of every `size` consecutive steps, at each bin's start."""
    if size <= 1:
        return t, values
    n = len(values) // size * size
    binned = values[:n].reshape(-1, size)
    worst = np.where(
        np.isnan(binned).all(axis=1),
        np.nan,
        np.nanmax(np.where(np.isnan(binned), -np.inf, binned), axis=1),
    )
    starts = t[:n:size]
    if n < len(values):
        rest = values[n:]
        starts = np.append(starts, t[n])
        worst = np.append(worst, np.nanmax(rest) if np.isfinite(rest).any() else np.nan)
    return starts, worst


def _plot_p95(path: Path, results: Mapping[str, SimResult], setup: SimSetup) -> Path:
    scale, xlabel = _time_axis(results)
    colors = _colors(list(results))
    workloads = setup.workloads
    steps = max((len(r.series.time) for r in results.values()), default=0)
    size = max(1, math.ceil(steps / _P95_POINTS))
    dt = next((_step_seconds(r.series) for r in results.values() if r.series.time), 10.0)
    fig = _new_figure(11, 1.2 + 3.0 * len(workloads))
    axes = fig.subplots(len(workloads), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle("p95 latency per workload against its SLO", fontsize=13)
    for w, (ax, wl) in enumerate(zip(axes, workloads, strict=True)):
        lowest, highest = wl.slo_p95_ms, wl.slo_p95_ms
        for name, result in results.items():
            s = result.series
            if not s.p95_ms:
                continue
            p95 = np.asarray([row[w] for row in s.p95_ms], dtype=np.float64)
            t, shown = _worst_per_bin(
                np.asarray(s.time, dtype=np.float64) / scale, np.where(p95 > 0, p95, np.nan), size
            )
            if np.isfinite(shown).any():
                lowest = min(lowest, float(np.nanmin(shown)))
                highest = max(highest, float(np.nanmax(shown)))
            ax.plot(t, shown, color=colors[name], lw=0.9, alpha=0.85, label=name)
        ax.axhline(wl.slo_p95_ms, color="black", ls="--", lw=1.3, label="SLO")
        ax.set_yscale("log")
        ax.set_ylim(lowest / 1.5, highest * 1.5)
        ax.set_ylabel("p95 (ms, log)")
        if size > 1:
            ax.text(
                0.995,
                0.97,
                f"worst step per {size * dt:g} s shown",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                alpha=0.7,
            )
        ax.set_title(f"{wl.name} (SLO {wl.slo_p95_ms:g} ms)", loc="left", fontsize=11)
        ax.grid(True, which="both", alpha=0.25)
    axes[-1].set_xlabel(xlabel)
    axes[0].set_xlim(left=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=9)
    return _save(fig, path)


__all__ = ["strategy_rows", "summary_table", "write_report"]
