"""Fixtures for tests against real servers: a Prometheus server and a Kubernetes control plane.

Each server's fixtures live in a module of their own beside this file and are registered here
by import. A test that needs a server the machine lacks is skipped with the reason.
"""

from controlplane import control_plane, scalingpolicy_crd  # noqa: F401
from promserver import prometheus, prometheus_factory, secure_prometheus  # noqa: F401
