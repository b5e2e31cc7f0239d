"""Spot interruption risk: expected interruptions per node-hour, and the pools of a catalog.

AWS Spot Advisor publishes, per instance type and region, a bucket of the monthly
interruption frequency (<5%, 5-10%, 10-15%, 15-20%, >20%). This module turns a bucket
into an expected rate and a catalog into priced pools. It does not decide how much
capacity to keep on on-demand; the engines do, with these numbers. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from spotwise.domain import INTERRUPTION_BUCKETS, CapacityType, Catalog, Pool

HOURS_PER_MONTH = 730.0  # 365 * 24 / 12, the figure AWS bills monthly rates with

# Midpoint of each bucket's monthly interruption frequency. The open-ended ">20%" bucket
# has no midpoint; 25% is as far above 20% as the other midpoints are above their floor.
BUCKET_MONTHLY_RATE: tuple[float, ...] = (0.025, 0.075, 0.125, 0.175, 0.25)

# A type Spot Advisor does not rate is new, rare or thinly traded; none of those argue
# for optimism, so it is planned as "15-20%": risky enough that engines prefer rated
# cheap pools, but not ranked below the types known to be the worst.
UNKNOWN_BUCKET = 3


def _check(bucket: int | None) -> int:
    if bucket is None:
        return UNKNOWN_BUCKET
    if isinstance(bucket, bool) or not 0 <= bucket < len(INTERRUPTION_BUCKETS):
        raise ValueError(
            f"interruption bucket must be 0..{len(INTERRUPTION_BUCKETS) - 1} or None, "
            f"got {bucket!r}"
        )
    return bucket


def interruptions_per_hour(bucket: int | None) -> float:
    """Expected interruptions per spot node-hour for a Spot Advisor bucket (None = unknown)."""
    return BUCKET_MONTHLY_RATE[_check(bucket)] / HOURS_PER_MONTH


def bucket_label(bucket: int | None) -> str:
    """The Spot Advisor label of a bucket ("<5%" ...), or "unknown" for None."""
    if bucket is None:
        return "unknown"
    return INTERRUPTION_BUCKETS[_check(bucket)]


def pools_for(catalog: Catalog, *, spot: bool = True, on_demand: bool = True) -> tuple[Pool, ...]:
    """The pools a catalog offers: per type, on-demand first, then spot if it has a price."""
    pools: list[Pool] = []
    for itype in catalog.instance_types:
        if on_demand:
            pools.append(Pool(itype, CapacityType.ON_DEMAND, itype.on_demand_price, 0.0))
        price = itype.spot_price
        if spot and price is not None and price > 0:  # InstanceType.spot_available
            rate = interruptions_per_hour(itype.interruption_bucket)
            pools.append(Pool(itype, CapacityType.SPOT, price, rate))
    return tuple(pools)


def expected_interruptions(nodes_by_pool: Mapping[str, int], pools: Iterable[Pool]) -> float:
    """Expected node interruptions per hour for `nodes_by_pool` (pool name -> node count).

    A pool name that is not among `pools` raises KeyError: counting it as zero risk
    would hide a mismatch between a plan and the pools it was made from.
    """
    rate = {p.name: p.interruptions_per_hour for p in pools}
    total = 0.0
    for name, nodes in nodes_by_pool.items():
        if name not in rate:
            raise KeyError(f"pool {name} is not among the given pools")
        if nodes < 0:
            raise ValueError(f"pool {name} has a negative node count {nodes}")
        total += nodes * rate[name]
    return total
