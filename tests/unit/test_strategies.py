"""The baseline strategies the simulator compares spotwise against: HPA (alone, on
on-demand nodes and on Karpenter-like spot), SpotKube and Knative's defaults, plus every
other registered strategy for the replica bounds."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from spotwise.api import load_policy_file
from spotwise.api.v1alpha1 import ScalingPolicySpec
from spotwise.models.capacity import throughput
from spotwise.models.latency import p95_ms
from spotwise.sim.cluster import NOTICE_SECONDS
from spotwise.sim.simulator import (
    SimConfig,
    SimResult,
    SimSetup,
    Simulation,
    align_traces,
    setup_from_policy,
)
from spotwise.sim.strategies import create_strategy, strategy_names
from spotwise.sim.strategies.base import Action, Provisioner, StrategyContext, View
from spotwise.sim.strategies.hpa import Hpa, fixed_concurrency
from spotwise.sim.strategies.knative_default import KnativeDefault
from spotwise.sim.strategies.on_demand_hpa import OnDemandHpa
from spotwise.sim.strategies.spotkube import SpotKube
from spotwise.sim.traces import synthetic

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ("web", "shop-knative")
PEAK_RPS = {"web": 2500.0, "frontend": 3000.0, "checkout": 400.0, "catalog": 6000.0}
STEP = 10.0
BASELINES = ("on-demand-hpa", "spot-greedy", "spotkube", "knative-default")


@cache
def policy(name: str) -> tuple[ScalingPolicySpec, SimSetup]:
    spec = load_policy_file(ROOT / "policies" / f"{name}.yaml").spec
    return spec, setup_from_policy(spec)


@cache
def diurnal_arrivals(name: str, hours: float = 1.0) -> np.ndarray:
    """`hours` of a noisy day from 09:00, when load climbs towards the afternoon peak."""
    _, setup = policy(name)
    traces = {
        w.name: synthetic("noisy-diurnal", 1.0, STEP, PEAK_RPS[w.name], seed=i)
        for i, w in enumerate(setup.workloads)
    }
    arrivals = align_traces(setup, traces, STEP)
    start = int(9 * 3600 / STEP)
    return arrivals[start : start + int(hours * 3600 / STEP)]


def levels(setup: SimSetup, *segments: tuple[float, float]) -> np.ndarray:
    """Piecewise-constant arrivals: (seconds, fraction of each workload's peak)."""
    rows = [np.full(int(seconds / STEP), fraction) for seconds, fraction in segments]
    shape = np.concatenate(rows)
    peaks = np.array([PEAK_RPS[w.name] for w in setup.workloads])
    return shape[:, None] * peaks[None, :]


class Recorder:
    """A strategy wrapper that keeps every view time and action."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.interval_seconds = inner.interval_seconds
        self.reacts_to_notices = inner.reacts_to_notices
        self.provisioner = inner.provisioner
        self.times: list[float] = []
        self.actions: list[Action] = []

    def decide(self, view: View) -> Action:
        action = self.inner.decide(view)
        self.times.append(view.now)
        self.actions.append(action)
        return action


def simulate(
    policy_name: str,
    strategy: str,
    arrivals: np.ndarray,
    *,
    seed: int = 0,
    on_step=None,
    sim_out: list | None = None,
) -> tuple[SimResult, Recorder]:
    spec, setup = policy(policy_name)
    recorder = Recorder(
        create_strategy(strategy, StrategyContext(spec, setup.workloads, setup.pools, seed))
    )
    sim = Simulation(setup, recorder, SimConfig(step_seconds=STEP, seed=seed))
    if sim_out is not None:
        sim_out.append(sim)
    result = sim.run(arrivals, on_step=(lambda i: on_step(sim, i)) if on_step else None)
    return result, recorder


# -- every registered strategy ---------------------------------------------------------


def test_the_baselines_are_registered():
    assert set(BASELINES) <= set(strategy_names())


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize("strategy", strategy_names())
def test_replicas_stay_within_bounds(policy_name, strategy):
    _, setup = policy(policy_name)
    result, recorder = simulate(policy_name, strategy, diurnal_arrivals(policy_name))
    lo = np.array([w.min_replicas for w in setup.workloads])
    hi = np.array([w.max_replicas for w in setup.workloads])
    assert recorder.actions
    for t, action in zip(recorder.times, recorder.actions, strict=True):
        assert (action.replicas >= lo).all() and (action.replicas <= hi).all(), (t, action)
        assert (action.concurrency >= 1).all()
    ready = np.array(result.series.replicas)
    assert ready.shape == (len(diurnal_arrivals(policy_name)), len(setup.workloads))
    assert (ready <= hi).all()


@pytest.mark.parametrize("strategy", ["spot-greedy", "knative-default"])
def test_karpenter_like_strategies_get_pods_running(strategy):
    _, setup = policy("web")
    result, _ = simulate("web", strategy, diurnal_arrivals("web"))
    ready = np.array(result.series.replicas)[30:]  # after 5 min of start-up
    assert (ready >= setup.workloads[0].min_replicas).mean() > 0.95


@pytest.mark.parametrize("strategy", ["on-demand-hpa", "spotkube"])
def test_strategies_with_their_own_node_timing_serve_the_load(strategy):
    _, setup = policy("shop-knative")
    result, _ = simulate("shop-knative", strategy, diurnal_arrivals("shop-knative"))
    ready = np.array(result.series.replicas)[30:]
    lo = np.array([w.min_replicas for w in setup.workloads])
    assert (ready >= lo).all(axis=1).mean() > 0.95
    assert result.summary()["shedPct"] < 5.0


# -- the HPA -----------------------------------------------------------------------------


def hpa_view(setup: SimSetup, now: float, ready: int, utilization: float) -> View:
    n_w, n_p = len(setup.workloads), len(setup.pools)
    return View(
        now=now,
        step_seconds=STEP,
        workloads=setup.workloads,
        pools=setup.pools,
        rates=tuple(np.zeros(1) for _ in range(n_w)),
        pods=np.full((n_w, n_p), 0, dtype=np.int64),
        ready_pods=np.full(n_w, ready),
        nodes=np.zeros(n_p, dtype=np.int64),
        ready_nodes=np.zeros(n_p, dtype=np.int64),
        noticed_pools=frozenset(),
        concurrency=np.ones(n_w, dtype=np.int64),
        utilization=np.full(n_w, utilization),
        in_flight=np.zeros(n_w),
        ppn=np.ones((n_w, n_p), dtype=np.int64),
    )


def test_hpa_scale_up_is_limited_to_double_or_four_pods_per_period():
    _, setup = policy("web")
    hpa = Hpa(setup.workloads)
    got = []
    for k in range(5):
        current = hpa.spec_replicas[0]
        # Demand for 29.5 pods at the 70 % target, seen on the pods asked for so far.
        util = 0.7 * 29.5 / current
        got.append(int(hpa.replicas(hpa_view(setup, 15.0 * k, current, util))[0]))
    assert got == [6, 12, 24, 30, 30]


def test_hpa_tolerance_keeps_replicas_within_ten_percent():
    _, setup = policy("web")
    hpa = Hpa(setup.workloads)
    hpa.spec_replicas = [10]
    assert hpa.replicas(hpa_view(setup, 0.0, 10, 0.7 * 1.09))[0] == 10
    assert hpa.replicas(hpa_view(setup, 15.0, 10, 0.7 * 1.11))[0] == 12


def test_hpa_stabilization_holds_replicas_for_300_s_after_a_drop():
    _, setup = policy("web")
    hpa = Hpa(setup.workloads)
    hpa.spec_replicas = [10]
    timeline = {}
    for k in range(60):
        now = 15.0 * k
        util = 0.7 if now < 300 else 0.139  # load falls to a fifth at t = 300 s
        timeline[now] = int(hpa.replicas(hpa_view(setup, now, hpa.spec_replicas[0], util))[0])
    # The last recommendation of 10 was at 285 s: it holds until 285 + 300 s.
    assert all(timeline[t] == 10 for t in timeline if t < 585)
    assert timeline[585.0] == 2
    assert all(timeline[t] == 2 for t in timeline if t >= 585)


def test_hpa_stabilization_in_a_simulation():
    _, setup = policy("web")
    arrivals = levels(setup, (900.0, 1.0), (900.0, 0.2))
    _, recorder = simulate("web", "on-demand-hpa", arrivals)
    replicas = {
        t: int(a.replicas[0]) for t, a in zip(recorder.times, recorder.actions, strict=True)
    }
    high = replicas[max(t for t in replicas if t < 900)]
    assert high > 4
    held = [r for t, r in replicas.items() if 900 <= t < 900 + 270]
    assert held and all(r == high for r in held)
    assert replicas[max(replicas)] < high
    first_drop = min(t for t, r in replicas.items() if t >= 900 and r < high)
    assert 900 + 270 <= first_drop <= 900 + 320


def test_fixed_concurrency_is_within_bounds_and_meets_the_slo_at_the_target():
    for name in POLICIES:
        _, setup = policy(name)
        for w in setup.workloads:
            c = fixed_concurrency(w)
            assert w.min_concurrency <= c <= w.max_concurrency
    _, setup = policy("web")
    web = setup.workloads[0]
    c = fixed_concurrency(web)
    x = float(throughput(web.usl, c))
    assert (
        float(
            p95_ms(web.usl, replicas=10, concurrency=c, load_rps=7 * x, tail_factor=web.tail_factor)
        )
        <= web.slo_p95_ms
    )


# -- on-demand-hpa ------------------------------------------------------------------------


@pytest.mark.parametrize("policy_name", POLICIES)
def test_on_demand_hpa_never_buys_spot(policy_name):
    _, setup = policy(policy_name)
    result, recorder = simulate(policy_name, "on-demand-hpa", diurnal_arrivals(policy_name))
    assert max(result.series.spot_nodes) == 0
    assert max(result.series.on_demand_nodes) > 0
    strategy = recorder.inner
    assert isinstance(strategy, OnDemandHpa)
    assert strategy.pool is not None and not setup.pools[strategy.pool].is_spot
    assert isinstance(strategy.provisioner, Provisioner)
    assert strategy.provisioner.consolidate_after_seconds == 600
    assert not strategy.provisioner.replace_on_notice


# -- spot-greedy --------------------------------------------------------------------------


def test_spot_greedy_launches_a_replacement_on_a_notice():
    _, setup = policy("web")
    arrivals = levels(setup, (1500.0, 0.5))
    notice_step = 90
    noticed: dict[str, object] = {}
    seen: set[tuple[int, float]] = set()

    def on_step(sim, i):
        nodes = sim.cluster.nodes
        seen.update((n.pool, n.launched_at) for n in nodes)
        if i == notice_step - 1:
            spot = [n for n in nodes if setup.pools[n.pool].is_spot and n.ready_at <= i * STEP]
            assert spot, "no ready spot node to interrupt"
            spot[0].interrupt_at = notice_step * STEP + NOTICE_SECONDS
            spot[0].notice_at = notice_step * STEP
            noticed["pool"] = spot[0].pool

    result, _ = simulate("web", "spot-greedy", arrivals, on_step=on_step)
    at_notice = [p for p, t in seen if t == notice_step * STEP]
    assert not [t for _, t in seen if 600 <= t < notice_step * STEP]  # steady before
    assert at_notice, "no node launched when the notice arrived"
    assert all(setup.pools[p].is_spot and p != noticed["pool"] for p in at_notice)
    assert result.interruptions == 1


def test_spot_greedy_buys_cheapest_spot_first_and_skips_noticed_pools():
    spec, setup = policy("web")
    strategy = create_strategy(
        "spot-greedy", StrategyContext(spec, setup.workloads, setup.pools, 0)
    )
    assert strategy.provisioner is not None
    assert strategy.provisioner.replace_on_notice
    assert strategy.provisioner.consolidate_after_seconds == 30
    sim = Simulation(setup, strategy, SimConfig())
    view = sim.view(0.0, np.zeros((1, 1)), np.zeros(1), frozenset())
    order = strategy.provisioner.pool_order(view, 0)
    spot = [p for p in order if setup.pools[p].is_spot]
    assert order[: len(spot)] == spot and len(spot) < len(order)
    per_pod = [setup.pools[p].hourly_price / view.ppn[0, p] for p in spot]
    assert per_pod == sorted(per_pod)
    noticed = sim.view(0.0, np.zeros((1, 1)), np.zeros(1), frozenset({order[0]}))
    assert order[0] not in strategy.provisioner.pool_order(noticed, 0)


# -- spotkube -----------------------------------------------------------------------------


def test_spotkube_decides_every_300_s_only():
    _, setup = policy("web")
    arrivals = diurnal_arrivals("web")

    def on_step(sim, i):
        if i == 100:  # a notice mid-interval must not trigger a decision
            spot = [n for n in sim.cluster.nodes if setup.pools[n.pool].is_spot]
            if spot:
                spot[0].interrupt_at = (i + 2) * STEP + NOTICE_SECONDS
                spot[0].notice_at = (i + 2) * STEP

    result, recorder = simulate("web", "spotkube", arrivals, on_step=on_step)
    assert recorder.times == [300.0 * k for k in range(len(recorder.times))]
    assert result.decisions == len(recorder.times) == int(np.ceil(len(arrivals) * STEP / 300))
    for action in recorder.actions:
        assert action.pods is not None and action.nodes is not None
        assert (action.pods.sum(axis=1) == action.replicas).all()


def test_spotkube_relaxes_the_policy_and_fixes_concurrency():
    spec, setup = policy("shop-knative")
    strategy = SpotKube(StrategyContext(spec, setup.workloads, setup.pools, 0))
    sim = Simulation(setup, strategy, SimConfig())
    load = np.array([PEAK_RPS[w.name] for w in setup.workloads]) / 2
    view = sim.view(0.0, load[None, :], load, frozenset())
    replicas = strategy.replicas_for(view)
    problem = strategy.problem(view, replicas)
    c = problem.constraints
    assert (c.headroom, c.on_demand_min_share, c.on_demand_min_nodes) == (0.0, 0.0, 0)
    assert (c.spot_max_share, c.spot_max_pool_share, c.survive_pool_loss) == (1.0, 1.0, False)
    for i, (w, wl) in enumerate(zip(problem.workloads, setup.workloads, strict=True)):
        n, conc = replicas[i], strategy.concurrency[i]
        assert w.min_concurrency == w.max_concurrency == conc
        assert w.min_replicas == w.max_replicas == n
        assert wl.min_replicas <= n <= wl.max_replicas
        # Fewest replicas for the SLO at the observed load: one fewer misses it.
        assert w.demand_rps == pytest.approx(load[i])
        if n > wl.min_replicas:
            assert (
                float(
                    p95_ms(
                        wl.usl,
                        replicas=n - 1,
                        concurrency=conc,
                        load_rps=w.demand_rps,
                        tail_factor=wl.tail_factor,
                    )
                )
                > wl.slo_p95_ms
            )
    action = strategy.decide(view)
    assert list(action.replicas) == replicas
    assert action.nodes is not None and action.nodes.sum() > 0


# -- knative-default ----------------------------------------------------------------------


def knative_view(
    setup: SimSetup, now: float, ready: int, in_flight: float, utilization: float = 0.5
) -> View:
    return replace(
        hpa_view(setup, now, ready, utilization), in_flight=np.full(len(setup.workloads), in_flight)
    )


def test_knative_aims_at_70_in_flight_per_pod_with_limit_100():
    spec, setup = policy("web")
    kpa = KnativeDefault(StrategyContext(spec, setup.workloads, setup.pools, 0))
    action = None
    for k in range(12):  # 700 requests in flight on 10 pods, steady
        action = kpa.decide(knative_view(setup, STEP * k, 10, 70.0))
    assert action is not None
    assert action.replicas[0] == 10
    assert action.concurrency[0] == 100


def test_knative_panics_and_does_not_scale_down_for_60_s():
    spec, setup = policy("web")
    kpa = KnativeDefault(StrategyContext(spec, setup.workloads, setup.pools, 0))
    for k in range(12):
        kpa.decide(knative_view(setup, STEP * k, 4, 70.0))
    # A burst: 4 pods suddenly hold 4 x 210 in flight, 3x the target -> panic to 12.
    burst = kpa.decide(knative_view(setup, 120.0, 4, 210.0))
    assert burst.replicas[0] == 12
    # The burst is gone but panic holds 12 until 60 s after the last panic reading.
    held = [
        kpa.decide(knative_view(setup, 120.0 + STEP * k, 12, 20.0)).replicas[0] for k in range(1, 7)
    ]
    assert held == [12] * 6
    after = kpa.decide(knative_view(setup, 190.0, 12, 20.0)).replicas[0]
    assert after < 12


def test_knative_keeps_at_least_one_pod_and_the_workload_minimum():
    spec, setup = policy("shop-knative")
    kpa = KnativeDefault(StrategyContext(spec, setup.workloads, setup.pools, 0))
    action = None
    for k in range(20):
        action = kpa.decide(knative_view(setup, STEP * k, 3, 0.0, 0.0))
    assert action is not None
    assert list(action.replicas) == [max(w.min_replicas, 1) for w in setup.workloads]


def test_knative_reads_saturated_pods_as_queueing():
    """An overloaded pod's in-flight count includes the queue: at 1.5x capacity the
    autoscaler sees 150 per pod and asks for more pods even when the latency model's
    in-flight figure is small (a limit past the USL peak)."""
    spec, setup = policy("web")
    kpa = KnativeDefault(StrategyContext(spec, setup.workloads, setup.pools, 0))
    action = kpa.decide(knative_view(setup, 0.0, 4, 5.0, utilization=1.5))
    assert action.replicas[0] == int(np.ceil(4 * 150 / 70))
