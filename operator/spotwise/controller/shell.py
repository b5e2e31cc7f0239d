"""The production ports of a tick: Prometheus and the Kubernetes API through
`spotwise.observe` and `spotwise.actuate`, status patches through the kubernetes client,
events through kopf.

The observe and actuate functions are injected (`Calls`, defaulting to the real ones), so
the composition — connect, read metrics, read the cluster, build the observation — is
tested with named fakes, and the network code with real servers. Every blocking call runs
on a small thread pool, never on the event loop.

Not here: what a tick decides (`tick`), kopf handlers (`handlers`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from spotwise.actuate import Actuation
from spotwise.actuate import actuate as actuate_plan
from spotwise.actuate import release as release_nodes
from spotwise.api.v1alpha1 import (
    GROUP,
    PLURAL,
    VERSION,
    PrometheusSpec,
    ScalingPolicy,
    ScalingPolicySpec,
)
from spotwise.controller.solver import Solver
from spotwise.controller.telemetry import Telemetry
from spotwise.controller.tick import LOOKBACK_SECONDS, STEP_SECONDS, Acted, Shell
from spotwise.decide import Event, Observation
from spotwise.domain import Plan
from spotwise.observe import (
    ClusterState,
    Metrics,
    MetricsClient,
    connect,
    observation,
    read_cluster,
    read_metrics,
)

log = logging.getLogger("spotwise.controller")

T = TypeVar("T")
IO_THREADS = 16  # blocking API and Prometheus calls in flight at once
CLIENT_TTL_SECONDS = 300.0  # re-read Prometheus credentials this often (rotated Secrets)
REQUEST_TIMEOUT_SECONDS = 10.0


class Connect(Protocol):
    def __call__(
        self,
        spec: PrometheusSpec,
        *,
        secrets: Callable[[str, str], str | None] | None,
        namespace: str,
    ) -> MetricsClient: ...


class ReadMetrics(Protocol):
    def __call__(
        self,
        spec: Any,
        client: MetricsClient,
        *,
        namespace: str,
        now: float,
        lookback_seconds: float,
        step_seconds: float,
    ) -> Metrics: ...


class BuildObservation(Protocol):
    def __call__(
        self,
        metrics: Metrics,
        cluster: ClusterState,
        *,
        at: float,
        step_seconds: float,
        spec: ScalingPolicySpec | None = None,
    ) -> Observation: ...


@dataclass(frozen=True)
class Calls:
    """The observe/actuate functions the shell calls (the real ones by default)."""

    connect: Connect = connect
    read_metrics: ReadMetrics = read_metrics
    read_cluster: Callable[[k8s.ApiClient, ScalingPolicy], ClusterState] = read_cluster
    observation: BuildObservation = observation
    actuate: Callable[[k8s.ApiClient, ScalingPolicy, Plan], Actuation] = actuate_plan
    release: Callable[[k8s.ApiClient, ScalingPolicy], Actuation] = release_nodes


def kube_api_client() -> k8s.ApiClient:
    """An API client from the in-cluster service account, else the kubeconfig
    ($KUBECONFIG or ~/.kube/config). Raises when neither works."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = k8s.Configuration.get_default_copy()
    # One connection per concurrent call, or urllib3 discards and reconnects.
    configuration.connection_pool_maxsize = IO_THREADS * 2
    return k8s.ApiClient(configuration)


class KubeShell:
    """The ports, bound to one API client and one thread pool."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        calls: Calls | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.calls = calls or Calls()
        self.clock = clock
        self.io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="spotwise-io")
        self._clients: dict[tuple[str, str], tuple[float, MetricsClient]] = {}

    async def _blocking(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn)

    # -- observe ---------------------------------------------------------------------------

    async def observe(self, policy: ScalingPolicy, at: float) -> Observation:
        return await self._blocking(lambda: self.observe_now(policy, at))

    def observe_now(self, policy: ScalingPolicy, at: float) -> Observation:
        """Metrics and cluster state as a decide.Observation. What cannot be read becomes
        `metrics_available=False` with the reason: the decision then holds its plan."""
        namespace = policy.metadata.namespace or "default"
        spec = policy.spec
        try:
            cluster = self.calls.read_cluster(self.api, policy)
            for problem in cluster.problems:
                log.warning("policy %s/%s: %s", namespace, policy.metadata.name, problem)
            if spec.prometheus is None:
                # Without Prometheus there is no demand to forecast: the decision holds.
                metrics = Metrics.unavailable("spec.prometheus is not set: no request rates")
            else:
                metrics = self.calls.read_metrics(
                    spec,
                    self._client(namespace, spec.prometheus),
                    namespace=namespace,
                    now=at,
                    lookback_seconds=LOOKBACK_SECONDS,
                    step_seconds=STEP_SECONDS,
                )
            # With the spec, capacity is fitted only where the spec gives none: a fit from
            # light-load samples must not replace numbers the user wrote.
            return self.calls.observation(
                metrics, cluster, at=at, step_seconds=STEP_SECONDS, spec=spec
            )
        except Exception as err:  # the observe layer promises not to raise; if it does, hold
            log.exception("policy %s/%s: observation failed", namespace, policy.metadata.name)
            return Observation(
                at=at,
                step_seconds=STEP_SECONDS,
                workloads=(),
                metrics_available=False,
                metrics_message=f"observation failed: {type(err).__name__}: {err}"[:500],
            )

    def _client(self, namespace: str, spec: PrometheusSpec) -> MetricsClient:
        key = (namespace, spec.model_dump_json())
        cached = self._clients.get(key)
        now = self.clock()
        if cached is not None and now - cached[0] < CLIENT_TTL_SECONDS:
            return cached[1]
        # Expired entries go too: deleted policies and old specs leave no clients behind.
        for stale in [k for k, (at, _) in self._clients.items() if now - at >= CLIENT_TTL_SECONDS]:
            del self._clients[stale]
        client = self.calls.connect(
            spec, secrets=self._secret_reader(namespace), namespace=namespace
        )
        self._clients[key] = (now, client)
        return client

    def _secret_reader(self, namespace: str) -> Callable[[str, str], str | None]:
        core = k8s.CoreV1Api(self.api)

        def read(name: str, key: str) -> str | None:
            try:
                secret = core.read_namespaced_secret(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
            except k8s.ApiException as err:
                if err.status == 404:
                    return None
                raise
            raw = (secret.data or {}).get(key)
            if raw is None:
                return None
            try:
                return base64.b64decode(raw).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None

        return read

    # -- act and report --------------------------------------------------------------------

    async def actuate(self, policy: ScalingPolicy, plan: Plan) -> Acted:
        done = await self._blocking(lambda: self.calls.actuate(self.api, policy, plan))
        return Acted(tuple(done.changes), tuple(done.errors))

    async def release(self, policy: ScalingPolicy) -> Acted:
        done = await self._blocking(lambda: self.calls.release(self.api, policy))
        return Acted(tuple(done.changes), tuple(done.errors))

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        custom = k8s.CustomObjectsApi(self.api)

        def send() -> None:
            try:
                custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            except k8s.ApiException as err:
                if err.status != 404:  # deleted meanwhile: nothing left to report on
                    raise

        await self._blocking(send)

    @staticmethod
    def post_event(body: Mapping[str, Any], event: Event) -> None:
        # kopf only reads apiVersion, kind and metadata from the object it reports on.
        obj = body if isinstance(body, kopf.Body) else cast(kopf.Body, dict(body))
        kopf.event(obj, type=event.type, reason=event.reason, message=event.message)

    def close(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)


def kube_shell(
    api: k8s.ApiClient,
    *,
    solver: Solver,
    telemetry: Telemetry,
    calls: Calls | None = None,
) -> tuple[Shell, KubeShell]:
    """The tick's ports for the operator, and the object that owns their resources."""
    ports = KubeShell(api, calls=calls)
    shell = Shell(
        observe=ports.observe,
        actuate=ports.actuate,
        release=ports.release,
        patch_status=ports.patch_status,
        post_event=ports.post_event,
        solver=solver,
        telemetry=telemetry,
        clock=ports.clock,
    )
    return shell, ports
