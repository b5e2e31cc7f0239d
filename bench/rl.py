#!/usr/bin/env python3
"""The RL agents measured against their targets; JSON on stdout, progress on stderr.

The same as `spotwise bench rl -o json` (run from the repository root so that
../shared/data and policies/agents are found). About 40 minutes on 2 cores with one seed:
two-day held-out simulations of rl, genetic and hybrid dominate. Usage:

    python bench/rl.py [--seeds 1,2,3] [--only heldOut,hybrid,inference,concurrency,training]
                       [--out docs/results] > rl.json
"""

import sys

from spotwise.cli import app

if __name__ == "__main__":
    app(["bench", "rl", *sys.argv[1:]], prog_name="bench/rl.py")
