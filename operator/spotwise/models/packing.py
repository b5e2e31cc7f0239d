"""How many pods of one shape fit on one node of an instance type.

Allocatable = capacity - kubelet reserve (the EKS/Karpenter formulas) - the DaemonSet
reserve the policy declares. Several workloads share a pool's nodes: each pod of a
workload takes 1/pods_per_node of a node, and a pool needs as many nodes as the sum of
those fractions, rounded up. That is exact for one workload per pool and a close
approximation for mixed pods well below node size.

Not here: which pool a pod lands in (the engines decide that).
"""

from __future__ import annotations

import math
from functools import lru_cache

from spotwise.domain import InstanceType, NodeReserve, Resources

MAX_PODS_CAP = 110


def max_pods(instance_type: InstanceType) -> int:
    """Pods the kubelet admits; approximates EKS's ENI-based limit (29 on a 2-vCPU type)."""
    return max(8, min(MAX_PODS_CAP, int(14.5 * instance_type.vcpu)))


def kubelet_reserved_cpu(vcpu: float) -> float:
    """Cores the kubelet keeps: 6% of the first, 1% of the second, 0.5% of the next two,
    0.25% of the rest (the EKS AMI formula Karpenter also uses)."""
    tiers = ((1.0, 0.06), (1.0, 0.01), (2.0, 0.005), (math.inf, 0.0025))
    left, reserved = vcpu, 0.0
    for size, rate in tiers:
        take = min(left, size)
        reserved += take * rate
        left -= take
        if left <= 0:
            break
    return reserved


def kubelet_reserved_memory_gib(instance_type: InstanceType) -> float:
    """255 MiB + 11 MiB per admissible pod + 100 MiB hard eviction threshold."""
    return (255 + 11 * max_pods(instance_type) + 100) / 1024


def allocatable(instance_type: InstanceType, reserve: NodeReserve) -> Resources:
    cpu = instance_type.vcpu - kubelet_reserved_cpu(instance_type.vcpu) - reserve.cpu
    memory = (
        instance_type.memory_gib - kubelet_reserved_memory_gib(instance_type) - reserve.memory_gib
    )
    return Resources(cpu=max(cpu, 0.0), memory_gib=max(memory, 0.0))


@lru_cache(maxsize=65536)
def pods_per_node(pod: Resources, instance_type: InstanceType, reserve: NodeReserve) -> int:
    """Pods of shape `pod` one node holds; 0 when not even one fits."""
    room = allocatable(instance_type, reserve)
    slots = max_pods(instance_type) - reserve.pods
    by_cpu = math.floor(room.cpu / pod.cpu + 1e-9) if pod.cpu > 0 else slots
    by_memory = math.floor(room.memory_gib / pod.memory_gib + 1e-9) if pod.memory_gib > 0 else slots
    return max(0, min(by_cpu, by_memory, slots))
