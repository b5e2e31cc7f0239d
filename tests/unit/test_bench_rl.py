"""The RL benchmark's ablation rules: fixed policies in the shop agent's action space."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="the rl extra is not installed")

from spotwise.benchmarks.rl import RISING, RULES, Rule
from spotwise.engines.rl import GLOBAL_FEATURES, KNOBS, MAX_MARGIN, WORKLOAD_FEATURES

DOWN, HOLD, UP = 0, 1, 2


def obs_for(*workloads: dict[str, float]) -> np.ndarray:
    """An observation: the named features per workload, 0 elsewhere."""
    rows = [[w.get(f, 0.0) for f in WORKLOAD_FEATURES] for w in workloads]
    return np.array([*np.ravel(rows), *([0.0] * len(GLOBAL_FEATURES))], dtype=np.float32)


def knob(action: np.ndarray, w: int, name: str) -> int:
    return int(action[len(KNOBS) * w + KNOBS.index(name)])


FRESH = {"margin": 0.0, "spot_target": 1.0, "concurrency_vs_best": 0.0}


def test_the_start_settings_hold_every_knob_where_a_fresh_agent_starts():
    action = Rule("start settings").act(obs_for(FRESH, FRESH, FRESH))
    assert action.tolist() == [HOLD] * 9


def test_the_start_settings_steer_back():
    moved = {"margin": 0.2 / MAX_MARGIN, "spot_target": 0.5, "concurrency_vs_best": 2 / 8}
    action = Rule("start settings").act(obs_for(moved))
    assert [knob(action, 0, k) for k in KNOBS] == [DOWN, DOWN, UP]


def test_targets_are_reached_one_step_at_a_time():
    rule = Rule("x", margin=0.1, spot_target=0.5, concurrency_offset=-1)
    action = rule.act(obs_for(FRESH))
    assert [knob(action, 0, k) for k in KNOBS] == [UP, DOWN, DOWN]
    there = {"margin": 0.1 / MAX_MARGIN, "spot_target": 0.5, "concurrency_vs_best": -1 / 8}
    assert rule.act(obs_for(there)).tolist()[:3] == [HOLD] * 3


def test_margin_while_rising_follows_each_workloads_trend():
    rule = Rule("rising", margin_when_rising=0.2)
    rising = {**FRESH, "trend": RISING + 0.01}
    falling = {**FRESH, "trend": -0.3, "margin": 0.2 / MAX_MARGIN}
    action = rule.act(obs_for(rising, FRESH, falling))
    assert [knob(action, w, "replicas") for w in range(3)] == [UP, HOLD, DOWN]


def test_rule_names_are_unique_and_the_start_settings_come_first():
    names = [r.name for r in RULES]
    assert len(set(names)) == len(names)
    assert names[0] == "start settings"
