"""Benchmarks that print JSON: `spotwise bench <name>` and the scripts in `bench/`.

Each benchmark is a function returning a JSON-ready dict; the CLI and the scripts only
print it. Benchmarks use the library (domain, models, engines, catalog, decide) and never
the cluster-facing shell (Kubernetes, kopf, Prometheus).
"""
