"""Without the `rl` extra (stable-baselines3, gymnasium, torch) everything else imports
and runs, and asking for the rl or hybrid engine, or for training, says what to install.

The extra is installed here, so a subprocess hides it behind an import blocker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoRlExtra(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("stable_baselines3", "gymnasium", "torch"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoRlExtra())
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(
        f"""
        import sys
        from spotwise.cli import main
        sys.argv = ["spotwise", *{list(args)!r}]
        main()
        """
    )


def test_the_blocker_really_hides_the_extra():
    done = run("import stable_baselines3")
    assert done.returncode != 0 and "No module named 'stable_baselines3'" in done.stderr


def test_everything_but_spotwise_rl_imports_without_the_extra():
    done = run(
        """
        import pkgutil, importlib, spotwise
        names = [m.name for m in pkgutil.walk_packages(spotwise.__path__, "spotwise.")]
        # The RL feature itself needs the extra; spotwise.__main__ runs the command line.
        rl = ("spotwise.rl.", "spotwise.benchmarks.rl")
        skipped = [n for n in names if n.startswith(rl) or n == "spotwise.__main__"]
        for name in names:
            if name not in skipped:
                importlib.import_module(name)
        from spotwise.engines import engine_names
        print(len(names) - len(skipped), ",".join(engine_names()))
        """
    )
    assert done.returncode == 0, done.stderr
    count, engines = done.stdout.split()
    assert int(count) > 30
    assert engines == "exact,genetic,hybrid,rl"


def test_recommend_with_genetic_still_works():
    done = cli(
        "recommend",
        "-f",
        "policies/web.yaml",
        "--demand",
        "web=300",
        "--engine",
        "genetic",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert '"engine": "genetic"' in done.stdout


def test_engine_rl_and_hybrid_say_the_extra_is_missing():
    for engine in ("rl", "hybrid"):
        done = cli(
            "recommend", "-f", "policies/web.yaml", "--demand", "web=300", "--engine", engine
        )
        assert done.returncode == 1
        line = done.stderr.strip()
        assert "\n" not in line and "Traceback" not in done.stderr
        assert "need the optional 'rl' extra" in line and "pip install 'spotwise[rl]'" in line


def test_simulate_with_spotwise_rl_says_the_extra_is_missing():
    done = cli(
        "simulate",
        "-f",
        "policies/web.yaml",
        "--trace",
        "synthetic:diurnal:1",
        "--days",
        "0.01",
        "--strategies",
        "spotwise:rl",
        "-o",
        "json",
    )
    assert done.returncode == 1
    assert "need the optional 'rl' extra" in done.stderr and "Traceback" not in done.stderr


def test_train_says_the_extra_is_missing():
    done = cli(
        "train", "-f", "policies/web.yaml", "--trace", "synthetic:diurnal:1", "--out", "x.zip"
    )
    assert done.returncode == 1
    assert "spotwise train needs the optional 'rl' extra" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_rl_says_the_extra_is_missing():
    done = cli("bench", "rl", "--only", "training")
    assert done.returncode == 1
    assert "bench rl needs the optional 'rl' extra" in done.stderr
    assert "Traceback" not in done.stderr
