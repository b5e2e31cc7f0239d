#!/usr/bin/env python3
"""Exact vs genetic on the fixed optimizer instances; JSON on stdout, progress on stderr.

The same as `spotwise bench optimizer -o json`. Usage:

    python bench/optimizer.py [--exact-time-limit SECONDS] [--seed N] > optimizer.json
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from spotwise.benchmarks.optimizer import run_optimizer_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--exact-time-limit",
        type=float,
        default=60.0,
        help="seconds the exact engine may take to prove an optimum (60)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the instances and the GA")
    args = parser.parse_args(argv)
    result = run_optimizer_benchmark(
        exact_time_limit=args.exact_time_limit, seed=args.seed, console=Console(stderr=True)
    )
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
