"""Keeping stdout clean for machine-readable output.

HiGHS (inside SciPy's `milp`) prints debug lines such as
"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();" straight to
file descriptor 1, bypassing Python. Commands that print JSON run their work inside
`native_stdout_to_stderr()`; worker processes started meanwhile inherit the redirect.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress


def _flush_c_stdio() -> None:
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


@contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what anything writes to file descriptor 1 to descriptor 2 meanwhile."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
