"""`python -m spotwise`."""

from spotwise.cli import main

main()
