"""kopf wiring: which handler runs on which event. No decisions are made here.

- startup: persistence under `spotwise.dev` (annotations only: the status is ours), the
  finalizer `spotwise.dev/finalizer`, event posting as `spotwise`, watch timeouts;
- create/resume/update of a ScalingPolicy: validate the spec into the Ready condition
  at once, and wake its daemon;
- one daemon per ScalingPolicy: a tick every `intervalSeconds`, or sooner when woken;
  it stops when the policy is deleted;
- deletion of a ScalingPolicy: release what its node provider made (`tick.release`),
  retried with backoff through `kopf.TemporaryError` and given up after
  `RELEASE_ATTEMPTS`; kopf removes the finalizer once this handler is done and the
  daemon has stopped;
- Node events: an interruption taint wakes the affected policies (`interruptions`);
- a liveness probe reporting how many policies are served.

Handlers are registered on a registry passed in, never on kopf's global one, so that
importing this module changes nothing.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from spotwise.api.v1alpha1 import GROUP, PLURAL, VERSION
from spotwise.controller.interruptions import POLICY_LABEL, InterruptionWatch
from spotwise.controller.tick import Policies, Released, Shell, check_spec, release, tick

log = logging.getLogger("spotwise.controller")

PREFIX = "spotwise.dev"
FINALIZER = "spotwise.dev/finalizer"
PEERING = "spotwise"
# How long a deleted policy's daemon may take to finish a tick before kopf cancels it.
CANCELLATION_TIMEOUT_SECONDS = 30.0
DEFAULT_INTERVAL_SECONDS = 60
NODE_HANDLER = "nodes"
# A deleted policy's nodes get this many attempts, RELEASE_BACKOFF_SECONDS apart at first
# and twice as far each time up to the cap (10, 20, 40, 80, 120 s: about 4.5 minutes), so
# a PodDisruptionBudget that holds a drain delays the deletion but never blocks it.
RELEASE_ATTEMPTS = 6
RELEASE_BACKOFF_SECONDS = 10.0
RELEASE_BACKOFF_MAX_SECONDS = 120.0


class QuietNodeEvents(logging.Filter):
    """Drops kopf's "Handler 'nodes' succeeded." line: it comes with every update of every
    node of every policy (kubelet heartbeats included) and says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"Handler {NODE_HANDLER!r} succeeded" not in record.getMessage()


def configure(settings: kopf.OperatorSettings) -> None:
    """Operator settings: kopf's bookkeeping under `spotwise.dev`, events as spotwise."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.peering.name = PEERING
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "spotwise"
    settings.posting.reporting_instance = socket.gethostname()
    settings.posting.event_name_prefix = "spotwise-event-"
    # Servers drop idle watches silently now and then; reconnecting every few minutes
    # keeps the Node watch (interruptions) from going deaf.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30


def interval_of(body: Mapping[str, Any]) -> float:
    """The policy's interval, or the default while its spec is invalid."""
    value = (body.get("spec") or {}).get("intervalSeconds", DEFAULT_INTERVAL_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 3600:
        return DEFAULT_INTERVAL_SECONDS
    return float(value)


def release_delay(retry: int) -> float:
    """Seconds to wait after failed attempt number `retry` (0 for the first)."""
    return min(RELEASE_BACKOFF_SECONDS * 2.0**retry, RELEASE_BACKOFF_MAX_SECONDS)


class Controller:
    """The policies served, the shell their ticks use, and the Node watch. The methods are
    what the kopf handlers call; `register` binds them to a registry."""

    def __init__(self, shell: Shell, watch: InterruptionWatch, policies: Policies) -> None:
        self.shell = shell
        self.watch = watch
        self.policies = policies

    async def serve(
        self,
        body: Mapping[str, Any],
        namespace: str,
        name: str,
        *,
        stopped: Callable[[], bool],
        wait_stop: Callable[[], Awaitable[object]],
    ) -> None:
        """The daemon of one policy: a tick, then wait for the interval, a wake-up (spec
        change, interruption) or the stop. `body` is kopf's live view: the latest state."""
        rt = self.policies.ensure(namespace, name)
        while not stopped():
            await tick(body, rt, self.shell)
            if await rt.nap(interval_of(body), wait_stop()) == "stop":
                break

    def forget(self, namespace: str, name: str) -> None:
        """A policy was deleted: drop its memory and its metric series."""
        self.policies.forget(namespace, name)
        self.shell.telemetry.forget(namespace, name)

    async def deleting(
        self, body: Mapping[str, Any], namespace: str, name: str, *, retry: int
    ) -> Released:
        """The policy is being deleted: release what its node provider made, attempt
        number `retry` (kopf counts from 0). An incomplete release raises
        `kopf.TemporaryError` (kopf calls again after the delay, keeping the finalizer);
        the last attempt gives up with a Warning event, and kopf lets the object go."""
        done = await release(
            body,
            self.policies.get(namespace, name),
            self.shell,
            last_attempt=retry + 1 >= RELEASE_ATTEMPTS,
        )
        if done.outcome == "retry":
            raise kopf.TemporaryError(
                f"{done.message} (attempt {retry + 1} of {RELEASE_ATTEMPTS})",
                delay=release_delay(retry),
            )
        self.forget(namespace, name)
        return done

    async def spec_seen(self, body: Mapping[str, Any], namespace: str, name: str) -> None:
        """Created, or found at start-up: report a bad spec without waiting for a tick (the
        daemon starts on its own)."""
        await check_spec(body, self.policies.ensure(namespace, name), self.shell)

    async def spec_changed(self, body: Mapping[str, Any], namespace: str, name: str) -> None:
        """The spec changed: report it if bad, and re-plan now, not at the next interval."""
        rt = self.policies.ensure(namespace, name)
        await check_spec(body, rt, self.shell)
        rt.wake.set()

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """Register every handler on `registry`."""

        @kopf.on.login(id="login", registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            # In-cluster service account, else $KUBECONFIG: the same as the shell's client.
            return kopf.login_via_client(**kwargs)

        @kopf.on.startup(id="configure", registry=registry)
        async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
            configure(settings)

        @kopf.on.cleanup(id="cleanup", registry=registry)
        async def cleanup(**_: Any) -> None:
            self.shell.solver.close()

        @kopf.on.probe(id="policies", registry=registry)
        async def served(**_: Any) -> int:
            return len(self.policies)

        async def seen(*, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
            await self.spec_seen(body, namespace or "", name)

        async def changed(*, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
            await self.spec_changed(body, namespace or "", name)

        kopf.on.resume(GROUP, VERSION, PLURAL, id="spec-resumed", registry=registry)(seen)
        kopf.on.create(GROUP, VERSION, PLURAL, id="spec-created", registry=registry)(seen)
        kopf.on.update(GROUP, VERSION, PLURAL, id="spec-updated", field="spec", registry=registry)(
            changed
        )

        @kopf.daemon(
            GROUP,
            VERSION,
            PLURAL,
            id="tick",
            cancellation_timeout=CANCELLATION_TIMEOUT_SECONDS,
            registry=registry,
        )
        async def daemon(
            *,
            stopped: kopf.DaemonStopped,
            body: kopf.Body,
            namespace: str | None,
            name: str,
            logger: logging.Logger | logging.LoggerAdapter[Any],
            **_: Any,
        ) -> None:
            namespace = namespace or ""
            logger.info("serving policy %s/%s", namespace, name)
            try:
                await self.serve(
                    body, namespace, name, stopped=lambda: bool(stopped), wait_stop=stopped.wait
                )
            finally:
                reason = stopped.reason
                if reason is not None and reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
                    self.forget(namespace, name)
                    logger.info("policy %s/%s deleted: its daemon stopped", namespace, name)

        # Mandatory (not optional): kopf keeps the finalizer until this handler is done.
        # `retries` is a backstop for an unexpected exception; `deleting` itself gives up
        # on its last attempt.
        @kopf.on.delete(
            GROUP, VERSION, PLURAL, id="release", retries=RELEASE_ATTEMPTS, registry=registry
        )
        async def deleted(
            *, body: kopf.Body, namespace: str | None, name: str, retry: int, **_: Any
        ) -> None:
            done = await self.deleting(body, namespace or "", name, retry=retry)
            # The module's logger, not kopf's: the events are posted already.
            say = log.warning if done.outcome == "abandoned" else log.info
            say("policy %s/%s deleted: %s", namespace, name, done.message)

        @kopf.on.event(
            "",
            "v1",
            "nodes",
            id=NODE_HANDLER,
            labels={POLICY_LABEL: kopf.PRESENT},
            registry=registry,
        )
        async def node_changed(
            *,
            event: Mapping[str, Any],
            body: kopf.Body,
            logger: logging.Logger | logging.LoggerAdapter[Any],
            **_: Any,
        ) -> None:
            for rt, pool in self.watch.node_event(str(event.get("type")), body):
                logger.warning(
                    "spot interruption of pool %s: re-planning policy %s/%s now",
                    pool,
                    rt.namespace,
                    rt.name,
                )
