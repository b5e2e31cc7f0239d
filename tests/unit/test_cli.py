"""The `spotwise` command line: validate, crds, recommend. Bad input exits 1 with one line
per problem and no traceback; wrong usage exits 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from spotwise import __version__
from spotwise.cli import app

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml"))
WEB = ROOT / "policies" / "web.yaml"
CRD_FILE = ROOT / "manifests" / "crds" / "spotwise.dev_scalingpolicies.yaml"

# `  path: reason` under a `<file> is invalid:` header
PROBLEM_LINE = re.compile(r"^  (<file>|<document>|[A-Za-z][\w.\[\]]*): \S.*$")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def web_data() -> dict[str, Any]:
    data = yaml.safe_load(WEB.read_text())
    assert isinstance(data, dict)
    return data


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def demands_for(path: Path, scale: float = 4.0) -> list[str]:
    """--demand options: `scale` single-request service rates per workload."""
    out = []
    for w in yaml.safe_load(path.read_text())["spec"]["workloads"]:
        out += ["--demand", f"{w['name']}={scale * w['capacity']['serviceRateRps']:g}"]
    return out


def problems(result: Any, path: Path) -> list[str]:
    """The problem lines of a failed validate: exit 1, a header, one line per problem."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path} is invalid:", lines
    for line in lines[1:]:
        assert PROBLEM_LINE.match(line), line
    assert result.stdout == ""
    return [line.strip() for line in lines[1:]]


# -- top level -----------------------------------------------------------------------------


def test_version(runner):
    result = run(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_no_arguments_prints_help(runner):
    result = run(runner)
    assert result.exit_code in (0, 2)
    assert "validate" in result.output and "recommend" in result.output


# -- validate ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_validate_accepts_every_example(runner, path):
    result = run(runner, "validate", "-f", path)
    assert result.exit_code == 0, result.output
    assert "valid ScalingPolicy" in result.stdout
    assert result.stderr == ""


def test_validate_as_a_real_process():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run(
        [sys.executable, "-m", "spotwise", "validate", "-f", "policies/web.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid ScalingPolicy web" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_validate_malformed_yaml(runner, tmp_path):
    path = write(tmp_path, "apiVersion: spotwise.dev/v1alpha1\nkind: [ScalingPolicy\n")
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("<file>: invalid YAML at line ")


def test_validate_unknown_field(runner, tmp_path):
    data = web_data()
    data["spec"]["workloads"][0]["replicaz"] = 3
    path = write(tmp_path, data)
    assert problems(run(runner, "validate", "-f", path), path) == [
        "spec.workloads[0].replicaz: unknown field"
    ]


def test_validate_negative_price(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"]["custom"] = [{"name": "m6i.large", "onDemandPrice": -0.1}]
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("spec.nodes.catalog.custom[0].onDemandPrice: must be > 0")


def test_validate_min_above_max(runner, tmp_path):
    data = web_data()
    data["spec"]["workloads"][0]["replicas"] = {"min": 50, "max": 40}
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("spec.workloads[0].replicas.min: ")
    assert "40" in line and "50" in line


def test_validate_lists_every_problem_one_per_line(runner, tmp_path):
    data = web_data()
    data["spec"]["workloads"][0]["replicas"] = {"min": 50, "max": 40}
    data["spec"]["workloads"][0]["bogus"] = True
    data["spec"]["objective"]["maxHourlyCost"] = -5
    path = write(tmp_path, data)
    lines = problems(run(runner, "validate", "-f", path), path)
    assert len(lines) == 3, lines
    paths = sorted(line.split(": ", 1)[0] for line in lines)
    assert paths == [
        "spec.objective.maxHourlyCost",
        "spec.workloads[0].bogus",
        "spec.workloads[0].replicas.min",
    ]


def test_validate_empty_file(runner, tmp_path):
    path = write(tmp_path, "")
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("<file>: ") and "empty" in line


def test_validate_missing_file(runner, tmp_path):
    path = tmp_path / "absent.yaml"
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("<file>: cannot read")


def test_validate_empty_catalog_builtin_null(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"] = {"builtin": None}
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("spec.nodes.catalog")


def test_validate_instance_types_naming_nothing_valid(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"]["instanceTypes"] = ["nope.large", "zip.xlarge"]
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("spec.nodes.catalog")
    assert "nope.large" in line and "zip.xlarge" in line


def test_validate_custom_only_catalog_naming_no_custom_type(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"] = {
        "builtin": None,
        "instanceTypes": ["m6i.large"],
        "custom": [{"name": "own.large", "vcpu": 2, "memoryGiB": 8, "onDemandPrice": 0.1}],
    }
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert line.startswith("spec.nodes.catalog.instanceTypes[0]: ")
    assert "m6i.large" in line


def test_validate_custom_only_catalog_is_valid(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"] = {
        "builtin": None,
        "custom": [
            {
                "name": "own.large",
                "vcpu": 2,
                "memoryGiB": 8,
                "onDemandPrice": 0.1,
                "spotPrice": 0.03,
                "interruptionBucket": 1,
            }
        ],
    }
    result = run(runner, "validate", "-f", write(tmp_path, data))
    assert result.exit_code == 0, result.output


def test_validate_without_capacity_is_valid(runner, tmp_path):
    # capacity is fitted from metrics in the cluster; only offline recommend needs it
    data = web_data()
    del data["spec"]["workloads"][0]["capacity"]
    result = run(runner, "validate", "-f", write(tmp_path, data))
    assert result.exit_code == 0, result.output


def test_validate_requires_file(runner):
    assert run(runner, "validate").exit_code == 2


def test_unknown_instance_type_message_points_at_custom(runner, tmp_path):
    data = web_data()
    data["spec"]["nodes"]["catalog"]["instanceTypes"] = ["nope.large"]
    path = write(tmp_path, data)
    (line,) = problems(run(runner, "validate", "-f", path), path)
    assert "custom" in line, line


def test_validate_verdict_is_one_line_when_piped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    path = tmp_path / "a-policy-file-with-a-rather-long-name-for-a-long-line.yaml"
    path.write_text((ROOT / "policies" / "shop-knative.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "spotwise", "validate", "-f", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout


# -- crds ----------------------------------------------------------------------------------


def test_crds_matches_the_generated_manifest(runner):
    result = run(runner, "crds")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["kind"] == "CustomResourceDefinition"
    assert printed["metadata"]["name"] == "scalingpolicies.spotwise.dev"
    assert printed == yaml.safe_load(CRD_FILE.read_text())


# -- recommend -----------------------------------------------------------------------------

TOP_KEYS = {
    "engine",
    "feasible",
    "overBudget",
    "hourlyCost",
    "onDemandHourlyCost",
    "savingsRatio",
    "solveSeconds",
    "workloads",
    "nodes",
    "risk",
}
WORKLOAD_KEYS = {"name", "replicas", "concurrency", "predictedP95Ms"}
NODE_KEYS = {"instanceType", "capacityType", "count"}


@pytest.mark.parametrize("engine", ["exact", "genetic"])
@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_recommend_json_shape(runner, tmp_path, path, engine):
    # a time budget that never binds: the answer depends on the seed, not the machine
    data = yaml.safe_load(path.read_text())
    data["spec"].setdefault("optimizer", {})["timeBudgetSeconds"] = 60
    path = write(tmp_path, data, path.name)
    result = run(
        runner,
        "recommend",
        "-f",
        path,
        *demands_for(path),
        "--engine",
        engine,
        "--seed",
        "3",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(out, dict)
    assert set(out) == TOP_KEYS
    assert out["engine"] == engine
    assert out["feasible"] is True and out["overBudget"] is False
    for key in ("hourlyCost", "onDemandHourlyCost", "savingsRatio", "solveSeconds"):
        assert isinstance(out[key], int | float) and not isinstance(out[key], bool), key
    assert 0 < out["hourlyCost"] <= out["onDemandHourlyCost"] + 1e-9
    assert 0 <= out["savingsRatio"] < 1
    assert out["solveSeconds"] >= 0
    spec_workloads = {w["name"]: w for w in yaml.safe_load(path.read_text())["spec"]["workloads"]}
    assert [w["name"] for w in out["workloads"]] == list(spec_workloads)
    for w in out["workloads"]:
        assert set(w) == WORKLOAD_KEYS
        assert isinstance(w["replicas"], int) and w["replicas"] >= 1
        assert isinstance(w["concurrency"], int) and w["concurrency"] >= 1
        assert w["predictedP95Ms"] <= spec_workloads[w["name"]]["slo"]["latencyP95Ms"]
    assert out["nodes"]
    for n in out["nodes"]:
        assert set(n) == NODE_KEYS
        assert n["capacityType"] in {"spot", "on-demand"}
        assert isinstance(n["count"], int) and n["count"] >= 1
        assert isinstance(n["instanceType"], str) and n["instanceType"]
    assert set(out["risk"]) == {"capacityAfterWorstPoolLoss"}
    assert 0 <= out["risk"]["capacityAfterWorstPoolLoss"] <= 1


def test_recommend_json_defaults_to_the_policy_engine(runner):
    result = run(runner, "recommend", "-f", WEB, "--demand", "web=300", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["engine"] == "genetic"


def test_recommend_table(runner):
    result = run(runner, "recommend", "-f", WEB, "--demand", "web=300", "--engine", "exact")
    assert result.exit_code == 0, result.output
    assert "web" in result.stdout
    assert "saved" in result.stdout


def test_recommend_unknown_workload(runner):
    result = run(
        runner, "recommend", "-f", WEB, "--demand", "web=10", "--demand", "ghost=5", "-o", "json"
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "ghost" in line and "unknown workload" in line


def test_recommend_missing_demand(runner):
    path = ROOT / "policies" / "shop-knative.yaml"
    result = run(runner, "recommend", "-f", path, "--demand", "frontend=10")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert "checkout" in line and "catalog" in line


@pytest.mark.parametrize("bad", ["web", "=5", "web=abc", "web=-1", "web=nan", "web=inf", "web="])
def test_recommend_malformed_demand_is_a_usage_error(runner, bad):
    result = run(runner, "recommend", "-f", WEB, "--demand", bad)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--demand" in result.output


def test_recommend_demand_given_twice_is_a_usage_error(runner):
    result = run(runner, "recommend", "-f", WEB, "--demand", "web=1", "--demand", "web=2")
    assert result.exit_code == 2
    assert "twice" in result.output


def test_recommend_requires_a_demand(runner):
    assert run(runner, "recommend", "-f", WEB).exit_code == 2


def test_recommend_unknown_engine_is_a_usage_error(runner):
    result = run(runner, "recommend", "-f", WEB, "--demand", "web=1", "--engine", "magic")
    assert result.exit_code == 2


def test_recommend_without_capacity_says_capacity_is_needed(runner, tmp_path):
    data = web_data()
    del data["spec"]["workloads"][0]["capacity"]
    path = write(tmp_path, data)
    result = run(runner, "recommend", "-f", path, "--demand", "web=100", "-o", "json")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "web" in line and "capacity" in line


def test_recommend_invalid_policy_exits_1(runner, tmp_path):
    data = web_data()
    data["spec"]["workloads"][0]["replicas"] = {"min": 50, "max": 40}
    path = write(tmp_path, data)
    result = run(runner, "recommend", "-f", path, "--demand", "web=100", "-o", "json")
    lines = problems(result, path)
    assert len(lines) == 1 and lines[0].startswith("spec.workloads[0].replicas.min")
