"""Pods per node: kubelet reserve, DaemonSet reserve, max pods."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotwise.catalog import builtin_catalog
from spotwise.domain import InstanceType, NodeReserve, Resources
from spotwise.models.packing import (
    MAX_PODS_CAP,
    allocatable,
    kubelet_reserved_cpu,
    kubelet_reserved_memory_gib,
    max_pods,
    pods_per_node,
)


def it(vcpu: float, memory_gib: float | None = None) -> InstanceType:
    return InstanceType(
        f"t{vcpu}", vcpu, memory_gib if memory_gib is not None else 4 * vcpu, 0.05 * vcpu
    )


NO_RESERVE = NodeReserve(cpu=0.0, memory_gib=0.0, pods=0)
DEFAULT_RESERVE = NodeReserve()

TYPES = st.builds(
    it,
    st.sampled_from([1, 2, 4, 8, 16, 32, 64, 96]),
    st.sampled_from([0.5, 1, 2, 4, 8, 16, 64, 256]),
)
PODS = st.builds(Resources, cpu=st.floats(0.01, 16), memory_gib=st.floats(0.01, 64))
RESERVES = st.builds(
    NodeReserve, cpu=st.floats(0, 2), memory_gib=st.floats(0, 4), pods=st.integers(0, 20)
)


# -- kubelet reserve -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vcpu", "expected"),
    [
        # 6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% of the rest
        (1, 0.06),
        (2, 0.06 + 0.01),
        (4, 0.06 + 0.01 + 2 * 0.005),
        (8, 0.06 + 0.01 + 2 * 0.005 + 4 * 0.0025),
        (64, 0.06 + 0.01 + 2 * 0.005 + 60 * 0.0025),
    ],
)
def test_kubelet_reserved_cpu(vcpu, expected):
    assert kubelet_reserved_cpu(vcpu) == pytest.approx(expected, abs=1e-12)


def test_kubelet_reserved_cpu_never_falls_with_bigger_nodes():
    sizes = [0.5, 1, 1.5, 2, 3, 4, 6, 8, 16, 64, 192]
    reserved = [kubelet_reserved_cpu(v) for v in sizes]
    assert reserved == sorted(reserved)
    assert kubelet_reserved_cpu(0.5) == pytest.approx(0.03)


def test_max_pods():
    assert max_pods(it(2)) == 29  # EKS: m5.large / m6i.large
    assert max_pods(it(0.5)) == 8  # never below 8
    assert max_pods(it(8)) == MAX_PODS_CAP
    assert max_pods(it(64)) == MAX_PODS_CAP


@pytest.mark.parametrize("vcpu", [1, 2, 4, 8, 64])
def test_kubelet_reserved_memory(vcpu):
    t = it(vcpu)
    expected_mib = 255 + 11 * max_pods(t) + 100
    assert kubelet_reserved_memory_gib(t) == pytest.approx(expected_mib / 1024)


def test_allocatable_subtracts_both_reserves():
    t = it(2, 8)
    room = allocatable(t, NodeReserve(cpu=0.2, memory_gib=0.25, pods=3))
    assert room.cpu == pytest.approx(2 - 0.07 - 0.2)
    assert room.memory_gib == pytest.approx(8 - (255 + 11 * 29 + 100) / 1024 - 0.25)


def test_allocatable_is_never_negative():
    room = allocatable(it(1, 0.5), NodeReserve(cpu=5, memory_gib=5, pods=0))
    assert room.cpu == 0
    assert room.memory_gib == 0


# -- pods per node -------------------------------------------------------------------------


def test_pods_per_node_hand_example():
    # m6i.large-like: 2 vCPU, 8 GiB; 1.73 cores and ~7.15 GiB left after both reserves
    t = it(2, 8)
    assert pods_per_node(Resources(0.5, 0.5), t, DEFAULT_RESERVE) == 3  # by CPU
    assert pods_per_node(Resources(0.1, 2.0), t, DEFAULT_RESERVE) == 3  # by memory
    assert pods_per_node(Resources(0.25, 0.25), t, DEFAULT_RESERVE) == 6


def test_pods_per_node_fits_the_exact_quotient():
    # allocatable cpu is 2 - 0.07 - 0.13 = 1.8: 1.8 / 0.3 = 6 exactly, despite rounding
    t = it(2, 64)
    reserve = NodeReserve(cpu=0.13, memory_gib=0.0, pods=0)
    assert pods_per_node(Resources(0.3, 0.01), t, reserve) == 6


@given(TYPES, PODS, st.floats(1.0, 8.0), st.floats(1.0, 8.0))
def test_bigger_pods_never_fit_more(t, pod, grow_cpu, grow_mem):
    bigger = Resources(pod.cpu * grow_cpu, pod.memory_gib * grow_mem)
    assert pods_per_node(bigger, t, DEFAULT_RESERVE) <= pods_per_node(pod, t, DEFAULT_RESERVE)


def test_pods_per_node_decreases_with_pod_size():
    t = it(16, 64)
    counts = [
        pods_per_node(Resources(cpu, cpu * 2), t, DEFAULT_RESERVE)
        for cpu in (0.25, 0.5, 1, 2, 4, 8)
    ]
    assert counts == sorted(counts, reverse=True)
    assert len(set(counts)) == len(counts)


@given(TYPES, RESERVES)
def test_zero_when_a_pod_is_bigger_than_allocatable(t, reserve):
    room = allocatable(t, reserve)
    too_wide = Resources(room.cpu + 0.01, 0.01)
    too_tall = Resources(0.01, room.memory_gib + 0.01)
    assert pods_per_node(too_wide, t, reserve) == 0
    assert pods_per_node(too_tall, t, reserve) == 0


@given(TYPES, PODS, RESERVES)
def test_bounded_by_max_pods_minus_daemonset_pods(t, pod, reserve):
    n = pods_per_node(pod, t, reserve)
    assert 0 <= n <= max(0, max_pods(t) - reserve.pods)
    room = allocatable(t, reserve)
    assert n * pod.cpu <= room.cpu + 1e-6
    assert n * pod.memory_gib <= room.memory_gib + 1e-6


@pytest.mark.parametrize("vcpu", [1, 2, 4, 8, 64])
def test_tiny_pods_hit_the_pod_limit(vcpu):
    t = it(vcpu, 8 * vcpu)
    tiny = Resources(0.001, 0.001)
    assert pods_per_node(tiny, t, DEFAULT_RESERVE) == max_pods(t) - DEFAULT_RESERVE.pods
    assert pods_per_node(tiny, t, NO_RESERVE) == max_pods(t)


def test_daemonset_pods_can_take_every_slot():
    t = it(2, 8)
    assert pods_per_node(Resources(0.01, 0.01), t, NodeReserve(0, 0, pods=max_pods(t))) == 0
    assert pods_per_node(Resources(0.01, 0.01), t, NodeReserve(0, 0, pods=500)) == 0


def test_zero_sized_requests_are_limited_by_the_other_resource():
    t = it(2, 8)
    assert pods_per_node(Resources(0.0, 2.0), t, DEFAULT_RESERVE) == 3
    assert pods_per_node(Resources(0.5, 0.0), t, DEFAULT_RESERVE) == 3
    assert pods_per_node(Resources(0.0, 0.0), t, DEFAULT_RESERVE) == 29 - 3


@given(TYPES, PODS, RESERVES, st.floats(0, 1), st.floats(0, 2), st.integers(0, 10))
def test_bigger_reserve_never_fits_more(t, pod, reserve, more_cpu, more_mem, more_pods):
    bigger = NodeReserve(
        reserve.cpu + more_cpu, reserve.memory_gib + more_mem, reserve.pods + more_pods
    )
    assert pods_per_node(pod, t, bigger) <= pods_per_node(pod, t, reserve)


def test_builtin_catalog_types_hold_a_default_pod():
    catalog = builtin_catalog("aws-us-east-1")
    pod = Resources(0.5, 0.5)
    for t in catalog.instance_types:
        n = pods_per_node(pod, t, DEFAULT_RESERVE)
        if t.vcpu >= 2 and t.memory_gib >= 2:
            assert n >= 1, t.name
        assert n <= max_pods(t) - DEFAULT_RESERVE.pods
