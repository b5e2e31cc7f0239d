#!/usr/bin/env python3
"""Every strategy on held-out traces with three interruption seeds; JSON on stdout.

The same as `spotwise bench savings -o json` (run from the repository root so that
../shared/data is found). Usage:

    python bench/savings.py [--seeds 1,2,3] [--days 2] [--interruption-scale 100] > savings.json
"""

import sys

from spotwise.cli import app

if __name__ == "__main__":
    app(["bench", "savings", *sys.argv[1:]], prog_name="bench/savings.py")
