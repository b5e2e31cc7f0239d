"""Fixtures shared by every test layer.

Real data and real servers are used wherever the machine has them; when something is
absent the test that needs it is skipped with a reason (shown by `-ra`), never failed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# CI machines are slower and noisier than laptops: no per-example deadline there (tests
# never assert wall-clock times), and print the blob that reproduces a failure.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    def where(tool: str) -> str:
        return shutil.which(tool) or "absent"

    return [
        f"spotwise repo: {REPO_ROOT}",
        f"shared data: {SHARED_DATA if SHARED_DATA.is_dir() else 'absent (tests using it skip)'}",
        f"prometheus: {where('prometheus')}, promtool: {where('promtool')}",
        f"KUBEBUILDER_ASSETS: {os.environ.get('KUBEBUILDER_ASSETS') or 'unset'}",
    ]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder (holds pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` next to the repository, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
