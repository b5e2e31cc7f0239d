"""Packaging: the `operator/` source root, the version, package data and import weight."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import spotwise

# Only the operator's shell (observe/, actuate/, controller/) and the rl extra may load these.
HEAVY = ("kubernetes", "kopf", "prometheus_api_client", "torch", "stable_baselines3")


def run_python(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


# --- the source root is not a package ------------------------------------------------


def test_source_root_is_not_a_package(repo_root: Path):
    assert (repo_root / "operator" / "spotwise" / "__init__.py").is_file()
    assert not (repo_root / "operator" / "__init__.py").exists()


def _assert_stdlib_operator(origin: str, repo_root: Path) -> None:
    path = Path(origin).resolve()
    assert path.parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert not path.is_relative_to(repo_root)


def test_import_operator_is_the_standard_library(repo_root: Path):
    import operator

    assert operator.itemgetter(1)(("a", "b")) == "b"
    assert operator.__file__ is not None
    _assert_stdlib_operator(operator.__file__, repo_root)


def test_import_operator_from_the_repo_root_is_the_standard_library(repo_root: Path):
    # `python -c` and `python -m` put the working folder first on sys.path, where the
    # `operator/` folder would shadow the stdlib if it were a package.
    out = run_python(
        "import json, operator; "
        "print(json.dumps([operator.__file__, hasattr(operator, 'itemgetter')]))",
        cwd=repo_root,
    )
    origin, has_itemgetter = json.loads(out)
    assert has_itemgetter
    _assert_stdlib_operator(origin, repo_root)


# --- version ---------------------------------------------------------------------------


def test_version_matches_pyproject(pyproject: dict):
    assert spotwise.__version__ == pyproject["project"]["version"]


def test_installed_metadata_matches_pyproject(pyproject: dict):
    installed = importlib.metadata.version("spotwise")
    assert installed == pyproject["project"]["version"], "stale install: run `make install`"


# --- package data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("package", "name", "header_word"),
    [
        ("spotwise.catalog", "aws-us-east-1.csv", "name"),
        ("spotwise.sim", "worldcup98-2day.csv", "requests"),
    ],
)
def test_package_data_is_found_with_importlib_resources(package: str, name: str, header_word: str):
    entry = resources.files(package).joinpath("data", name)
    assert entry.is_file()
    lines = entry.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    assert header_word in lines[0]


def test_py_typed_marker_ships():
    assert resources.files("spotwise").joinpath("py.typed").is_file()


def _copy_source(repo_root: Path, dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (repo_root / name).exists():
            shutil.copy2(repo_root / name, src / name)
        else:
            (src / name).write_text("")
    shutil.copytree(
        repo_root / "operator",
        src / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "Dockerfile"),
    )
    return src


def test_wheel_ships_package_data_and_no_operator_package(repo_root: Path, tmp_path: Path):
    setuptools = pytest.importorskip("setuptools", reason="setuptools is needed to build a wheel")
    if int(setuptools.__version__.split(".")[0]) < 68:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build needs (68)")
    src = _copy_source(repo_root, tmp_path)
    out = tmp_path / "wheel"
    pip_wheel = ["pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    build = subprocess.run(
        [sys.executable, "-m", *pip_wheel, "--disable-pip-version-check", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("spotwise-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "spotwise/catalog/data/aws-us-east-1.csv" in names
    assert "spotwise/sim/data/worldcup98-2day.csv" in names
    assert "spotwise/py.typed" in names
    assert not [n for n in names if n.startswith(("operator/", "tests/", "bench/"))]

    # Installed from the wheel (not the editable source tree), the data still loads.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out_json = run_python(
        "import json, spotwise\n"
        "from spotwise.catalog import builtin_catalog_names\n"
        "from spotwise.sim.traces import builtin_trace_names\n"
        "print(json.dumps([spotwise.__file__, builtin_catalog_names(), builtin_trace_names()]))",
        cwd=tmp_path,
        env=env,
    )
    origin, catalogs, traces = json.loads(out_json)
    assert Path(origin).resolve().is_relative_to(site.resolve())
    assert "aws-us-east-1" in catalogs
    assert "worldcup98-2day" in traces


# --- import weight ---------------------------------------------------------------------

_IMPORT_CORE = f"""
import importlib, json, pkgutil, sys
import spotwise.domain
import spotwise.models
for info in pkgutil.iter_modules(spotwise.models.__path__, "spotwise.models."):
    importlib.import_module(info.name)
import spotwise.engines
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
models = sorted(m for m in sys.modules if m.startswith("spotwise.models."))
print(json.dumps({{"loaded": loaded, "models": models}}))
"""


def test_core_imports_stay_light(tmp_path: Path):
    result = json.loads(run_python(_IMPORT_CORE, cwd=tmp_path))
    assert result["models"], "no spotwise.models.* module was imported"
    assert result["loaded"] == [], (
        "domain/models/engines must not import the operator shell or torch: "
        + ", ".join(sorted({m.split(".")[0] for m in result["loaded"]}))
    )
