"""`spotwise run`: the operator process — kopf embedded, with its ports and metrics.

Everything that can fail before the first policy is served (no kubeconfig, the metrics
port taken) fails here with a one-line `RunError`, before kopf starts.

Not here: handlers (`handlers`), the tick (`tick`), the network ports (`shell`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kopf
from kubernetes.config import kube_config

from spotwise.controller.handlers import PEERING, Controller, QuietNodeEvents
from spotwise.controller.interruptions import InterruptionWatch
from spotwise.controller.shell import kube_api_client, kube_shell
from spotwise.controller.solver import ProcessSolver
from spotwise.controller.telemetry import Telemetry
from spotwise.controller.tick import Policies
from spotwise.observe import interrupted_pool

log = logging.getLogger("spotwise.controller")


class RunError(Exception):
    """The operator cannot start; the message is one line."""


class UsageError(RunError):
    """The options contradict each other or miss something."""


@dataclass(frozen=True)
class RunOptions:
    namespaces: Sequence[str] = ()
    all_namespaces: bool = False
    standalone: bool = False
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    metrics_port: int | None = None  # None or 0: no /metrics endpoint
    kubeconfig: Path | None = None
    verbose: bool = False


def run(options: RunOptions) -> None:
    """Run the operator until SIGINT/SIGTERM. Raises RunError when it cannot start."""
    if options.all_namespaces and options.namespaces:
        raise UsageError("-A (all namespaces) and -n NAMESPACE exclude each other")
    if not options.all_namespaces and not options.namespaces:
        raise UsageError("give -A (all namespaces) or -n NAMESPACE (repeatable)")
    if options.kubeconfig is not None:
        if not options.kubeconfig.is_file():
            raise RunError(f"--kubeconfig {options.kubeconfig}: no such file")
        # The client library reads $KUBECONFIG once, when imported, into this default;
        # kopf's login and the shell's client both load from it.
        os.environ["KUBECONFIG"] = str(options.kubeconfig)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(options.kubeconfig)
    kopf.configure(verbose=options.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kopf.objects").addFilter(QuietNodeEvents())
    try:
        api = kube_api_client()
    except Exception as err:
        raise RunError(f"cannot reach Kubernetes: {' '.join(str(err).split())}") from None
    telemetry = Telemetry()
    if options.metrics_port:
        try:
            telemetry.serve(options.metrics_port)
        except OSError as err:
            raise RunError(
                f"--metrics-port {options.metrics_port}: {err.strerror or err}"
            ) from None
    solver = ProcessSolver()
    policies = Policies()
    shell, ports = kube_shell(api, solver=solver, telemetry=telemetry)
    controller = Controller(shell, InterruptionWatch(policies, interrupted_pool), policies)
    registry = kopf.OperatorRegistry()
    controller.register(registry)
    log.info(
        "spotwise operator: %s, %s, %d solver worker(s)%s",
        "all namespaces"
        if options.all_namespaces
        else "namespaces " + ", ".join(options.namespaces),
        "standalone" if options.standalone else f"peering {PEERING!r}",
        solver.workers,
        f", metrics on :{options.metrics_port}" if options.metrics_port else "",
    )
    try:
        kopf.run(
            registry=registry,
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
            # Peering by name is set at startup, not here: kopf makes a peering named here
            # mandatory, and the operator must also run where kopf's peering CRDs are absent.
            standalone=options.standalone,
            # Replicas of the operator peer as active/standby: kopf pauses every operator
            # that sees a peer with a higher *or equal* priority, so each picks its own.
            priority=None if options.standalone else random.randint(1, 10_000),
            liveness_endpoint=options.liveness,
        )
    finally:
        solver.close()
        ports.close()
        api.close()  # type: ignore[no-untyped-call]
