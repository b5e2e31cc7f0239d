"""What the kopf handlers do, without kopf running: operator settings, the daemon loop
(ticks, early wake-ups, stopping), spec handlers, releasing and forgetting a deleted
policy. The network is `FakeCluster` from the tick tests; the stop flag and the retry
exception are kopf's own."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter
from test_controller_tick import FakeCluster, policy_body

from spotwise.controller.handlers import (
    FINALIZER,
    RELEASE_ATTEMPTS,
    Controller,
    QuietNodeEvents,
    configure,
    interval_of,
)
from spotwise.controller.interruptions import InterruptionWatch
from spotwise.controller.tick import Acted, Policies
from spotwise.observe import interrupted_pool


def test_settings_keep_kopf_bookkeeping_under_spotwise():
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == FINALIZER == "spotwise.dev/finalizer"
    progress = settings.persistence.progress_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "spotwise.dev"
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "spotwise.dev"
    assert settings.peering.name == "spotwise"
    assert settings.posting.reporting_component == "spotwise"
    assert settings.posting.event_name_prefix == "spotwise-event-"


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ({"intervalSeconds": 15}, 15.0),
        ({}, 60.0),
        ({"intervalSeconds": 5}, 60.0),  # invalid: the default, not a hot loop
        ({"intervalSeconds": "15"}, 60.0),
        ({"intervalSeconds": True}, 60.0),
    ],
)
def test_interval_of_a_body(spec, seconds):
    assert interval_of({"spec": spec}) == seconds
    assert interval_of({}) == 60.0


def controller(fake: FakeCluster) -> Controller:
    policies = Policies()
    return Controller(fake.shell(), InterruptionWatch(policies, interrupted_pool), policies)


def test_the_daemon_ticks_wakes_early_and_stops():
    fake = FakeCluster(policy_body(intervalSeconds=3600))
    ctl = controller(fake)
    setter: FlagSetter[Any] = FlagSetter()
    stopped = AsyncFlagWaiter(setter)

    async def scenario() -> None:
        serving = asyncio.create_task(
            ctl.serve(
                fake.body, "team", "shop", stopped=lambda: bool(stopped), wait_stop=stopped.wait
            )
        )
        while len(fake.observed) < 1:
            await asyncio.sleep(0.01)
        rt = ctl.policies.get("team", "shop")
        assert rt is not None
        # An hour's interval, but a spec change wakes the daemon at once.
        fake.body["spec"]["objective"]["headroom"] = 0.3
        await ctl.spec_changed(fake.body, "team", "shop")
        while len(fake.observed) < 2:
            await asyncio.sleep(0.01)
        setter.set(kopf.DaemonStoppingReason.RESOURCE_DELETED)
        await asyncio.wait_for(serving, timeout=30)

    asyncio.run(scenario())
    assert len(fake.observed) == 2
    assert "plan" in fake.body["status"]
    ctl.forget("team", "shop")
    assert ctl.policies.get("team", "shop") is None
    assert (
        ctl.shell.telemetry.registry.get_sample_value(
            "spotwise_hourly_cost_dollars", {"namespace": "team", "policy": "shop"}
        )
        is None
    )


def test_a_stopped_daemon_does_not_tick():
    fake = FakeCluster(policy_body())
    ctl = controller(fake)

    async def scenario() -> None:
        setter: FlagSetter[Any] = FlagSetter()
        stopped = AsyncFlagWaiter(setter)
        setter.set(kopf.DaemonStoppingReason.OPERATOR_EXITING)
        await ctl.serve(
            fake.body, "team", "shop", stopped=lambda: bool(stopped), wait_stop=stopped.wait
        )

    asyncio.run(scenario())
    assert fake.observed == []


def test_spec_seen_reports_a_bad_spec_at_once():
    fake = FakeCluster(policy_body(intervalSeconds=1))
    ctl = controller(fake)
    asyncio.run(ctl.spec_seen(fake.body, "team", "shop"))
    ready = next(c for c in fake.body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "intervalSeconds" in ready["message"]
    rt = ctl.policies.get("team", "shop")
    assert rt is not None and not rt.wake.is_set()  # found, not changed: no extra tick


def test_node_handler_successes_are_not_logged_but_everything_else_is():
    quiet = QuietNodeEvents()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not quiet.filter(record("Handler 'nodes' succeeded."))
    assert quiet.filter(record("Handler 'spec-created' succeeded."))
    assert quiet.filter(record("Handler 'nodes' failed with an exception. Will ignore."))


def test_the_release_is_a_mandatory_delete_handler_with_bounded_retries():
    registry = kopf.OperatorRegistry()
    controller(FakeCluster(policy_body())).register(registry)
    (handler,) = [h for h in registry._changing.get_all_handlers() if h.id == "release"]
    assert handler.reason == kopf.Reason.DELETE
    assert handler.requires_finalizer  # kopf keeps the finalizer until it is done
    assert handler.retries == RELEASE_ATTEMPTS


def test_deleting_releases_the_nodes_then_forgets_the_policy():
    fake = FakeCluster(policy_body())
    ctl = controller(fake)
    ctl.policies.ensure("team", "shop")
    done = asyncio.run(ctl.deleting(fake.body, "team", "shop", retry=0))
    assert done.outcome == "released" and len(fake.released) == 1
    assert [e.reason for e in fake.events] == ["Released"]
    assert ctl.policies.get("team", "shop") is None


def test_an_incomplete_release_is_retried_with_backoff_then_given_up():
    fake = FakeCluster(policy_body())
    refused = "Node n: cordoned, evicted 0 pods; eviction of team/api-1 refused; left cordoned"
    fake.release_result = Acted(errors=(refused,))
    ctl = controller(fake)
    ctl.policies.ensure("team", "shop")
    delays = []
    for retry in range(RELEASE_ATTEMPTS - 1):
        with pytest.raises(kopf.TemporaryError) as raised:
            asyncio.run(ctl.deleting(fake.body, "team", "shop", retry=retry))
        assert str(raised.value) == (
            f"release incomplete: {refused} (attempt {retry + 1} of {RELEASE_ATTEMPTS})"
        )
        delays.append(raised.value.delay)
        assert ctl.policies.get("team", "shop") is not None  # still being released
    assert delays == [10.0, 20.0, 40.0, 80.0, 120.0]
    assert fake.events == []
    done = asyncio.run(ctl.deleting(fake.body, "team", "shop", retry=RELEASE_ATTEMPTS - 1))
    assert done.outcome == "abandoned"  # kopf now removes the finalizer
    assert [(e.type, e.reason) for e in fake.events] == [("Warning", "ReleaseFailed")]
    assert len(fake.released) == RELEASE_ATTEMPTS
    assert ctl.policies.get("team", "shop") is None
