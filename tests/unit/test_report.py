"""The comparison report: summary.json, timeseries.csv, PNG plots, the CLI table."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from spotwise.api import load_policy_file
from spotwise.sim.report import strategy_rows, summary_table, write_report
from spotwise.sim.run import summarize
from spotwise.sim.simulator import SimConfig, SimResult, SimSetup, Simulation, setup_from_policy
from spotwise.sim.strategies import create_strategy
from spotwise.sim.strategies.base import StrategyContext

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = 60


@cache
def shop() -> tuple[SimSetup, dict[str, SimResult]]:
    spec = load_policy_file(ROOT / "policies" / "shop-knative.yaml").spec
    setup = setup_from_policy(spec)
    t = np.arange(STEPS)
    arrivals = np.stack(
        [800 + 400 * np.sin(t / 9.0), 120 + 60 * np.sin(t / 7.0), 2000 + 900 * np.sin(t / 11.0)],
        axis=1,
    )
    results = {}
    for name in ("on-demand-hpa", "spotkube"):
        strategy = create_strategy(name, StrategyContext(spec, setup.workloads, setup.pools, 0))
        results[name] = Simulation(setup, strategy, SimConfig(seed=0)).run(arrivals)
    # One interruption on record, so that the plots draw their ticks.
    results["spotkube"].series.interruptions[STEPS // 2] = 1
    return setup, results


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Path]]:
    setup, results = shop()
    out = tmp_path_factory.mktemp("report") / "out"
    return out, write_report(out, results, setup, summarize(results))


def test_write_report_writes_every_file(report):
    out, paths = report
    names = sorted(p.name for p in paths)
    assert names == ["cost.png", "nodes.png", "p95.png", "summary.json", "timeseries.csv"]
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 0


def test_summary_json_is_the_summary_as_given(tmp_path):
    setup, results = shop()
    summary = {"strategies": {"x": {"cost": 1.5, "decisions": np.int64(3)}}, "note": "hi"}
    write_report(tmp_path, results, setup, summary)
    text = (tmp_path / "summary.json").read_text()
    assert json.loads(text) == {"strategies": {"x": {"cost": 1.5, "decisions": 3}}, "note": "hi"}
    assert "\n  " in text  # indented


def test_csv_has_one_row_per_step_per_strategy(report):
    out, _ = report
    setup, results = shop()
    with (out / "timeseries.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == STEPS * len(results)
    header = list(rows[0])
    assert header[:5] == ["time_s", "strategy", "cost_rate", "spot_nodes", "on_demand_nodes"]
    for w in setup.workloads:
        for col in ("replicas", "concurrency", "p95_ms", "shed"):
            assert f"{col}_{w.name}" in header
    assert header[-2:] == ["violation", "interruptions"]
    for name, result in results.items():
        mine = [r for r in rows if r["strategy"] == name]
        assert [float(r["time_s"]) for r in mine] == result.series.time
        assert [int(r["replicas_checkout"]) for r in mine] == [
            row[1] for row in result.series.replicas
        ]
        assert {r["violation"] for r in mine} <= {"0", "1"}
        assert sum(int(r["interruptions"]) for r in mine) == sum(result.series.interruptions)
        rate = np.array([float(r["cost_rate"]) for r in mine])
        assert rate == pytest.approx(result.series.cost_rate, rel=1e-5)


def test_plots_are_png_images(report):
    out, _ = report
    for name in ("cost.png", "nodes.png", "p95.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        image = imread(out / name)
        height, width = image.shape[:2]
        assert width >= 1000 and height >= 500  # 150 dpi
        assert image.std() > 0.01  # not blank


def test_summary_table_shows_cost_over_the_oracle():
    _, results = shop()
    with_oracle = dict(results)
    base = results["spotkube"]
    with_oracle["oracle"] = SimResult("oracle", base.cost / 2, base.series, 0, 0, 1, 0.0)
    summary = {**summarize(with_oracle), "policy": "shop", "steps": STEPS}
    assert set(strategy_rows(summary)) == {"on-demand-hpa", "spotkube", "oracle"}
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    lines = console.export_text().splitlines()
    spotkube = next(line for line in lines if "spotkube" in line)
    oracle = next(line for line in lines if line.lstrip().startswith("oracle"))
    assert "2.00" in spotkube and "1.00" in oracle


def test_summary_table_has_a_row_per_strategy():
    _, results = shop()
    table = summary_table(summarize(results))
    assert table.row_count == len(results)
    headers = [c.header for c in table.columns]
    assert headers == [
        "strategy",
        "$",
        "×oracle",
        "SLO✗%",
        "p95 ms",
        "shed%",
        "intr.",
        "churn",
        "wall s",
    ]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "on-demand-hpa" in text and "spotkube" in text and "–" in text  # no oracle


def test_summary_table_reads_a_flat_summary():
    flat = {"a": {"cost": 1.0, "costVsOracle": 1.25, "interruptions": 2}, "meta": 3}
    table = summary_table(flat)
    assert table.row_count == 1
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "1.25" in text and "1.00" in text
