"""Discrete-time simulator of a cluster under a request trace, for comparing strategies.

For offline what-if runs and benchmarks (traces, spot interruptions, node start-up delays,
per-second billing). Not for anything that talks to a live cluster: that is the
operator's shell (`spotwise.controller`, `spotwise.observe`, `spotwise.actuate`).
"""
