import pytest

from spotwise.domain import INTERRUPTION_BUCKETS, CapacityType, Catalog, InstanceType
from spotwise.models.risk import (
    HOURS_PER_MONTH,
    UNKNOWN_BUCKET,
    bucket_label,
    expected_interruptions,
    interruptions_per_hour,
    pools_for,
)

CATALOG = Catalog(
    "test",
    (
        InstanceType("a.large", 2, 8, 0.10, spot_price=0.04, interruption_bucket=0),
        InstanceType("b.large", 2, 8, 0.12, spot_price=0.05, interruption_bucket=4),
        InstanceType("c.large", 2, 8, 0.11, spot_price=0.03),  # no bucket
        InstanceType("d.large", 2, 8, 0.09),  # no spot
    ),
)


def test_rate_is_monotone_in_bucket():
    rates = [interruptions_per_hour(b) for b in range(len(INTERRUPTION_BUCKETS))]
    assert rates == sorted(rates)
    assert len(set(rates)) == len(rates)
    assert all(r > 0 for r in rates)


def test_rate_is_bucket_midpoint_per_month():
    assert interruptions_per_hour(0) == pytest.approx(0.025 / HOURS_PER_MONTH)
    assert interruptions_per_hour(2) * HOURS_PER_MONTH == pytest.approx(0.125)
    assert interruptions_per_hour(4) * HOURS_PER_MONTH == pytest.approx(0.25)


def test_unknown_bucket_is_treated_as_risky_but_not_worst():
    assert interruptions_per_hour(None) == interruptions_per_hour(UNKNOWN_BUCKET)
    assert interruptions_per_hour(None) > interruptions_per_hour(2)
    assert interruptions_per_hour(None) < interruptions_per_hour(4)


@pytest.mark.parametrize("bad", [-1, 5, 99])
def test_rate_rejects_out_of_range_bucket(bad):
    with pytest.raises(ValueError, match=r"0\.\.4"):
        interruptions_per_hour(bad)


def test_bucket_label():
    assert bucket_label(0) == "<5%"
    assert bucket_label(4) == ">20%"
    assert bucket_label(None) == "unknown"


def test_pools_for_counts():
    assert len(pools_for(CATALOG)) == 4 + 3
    assert len(pools_for(CATALOG, spot=False)) == 4
    assert len(pools_for(CATALOG, on_demand=False)) == 3
    assert pools_for(CATALOG, spot=False, on_demand=False) == ()
    names = [p.name for p in pools_for(CATALOG)]
    assert len(names) == len(set(names))


def test_pools_for_prices_and_rates():
    pools = {p.name: p for p in pools_for(CATALOG)}
    spot = pools["a.large/spot"]
    assert spot.capacity_type is CapacityType.SPOT
    assert spot.hourly_price == 0.04
    assert spot.interruptions_per_hour == interruptions_per_hour(0)
    assert pools["b.large/spot"].interruptions_per_hour == interruptions_per_hour(4)
    assert pools["c.large/spot"].interruptions_per_hour == interruptions_per_hour(None)
    on_demand = pools["a.large/on-demand"]
    assert on_demand.hourly_price == 0.10
    assert on_demand.interruptions_per_hour == 0.0
    assert "d.large/spot" not in pools


def test_expected_interruptions():
    pools = pools_for(CATALOG)
    nodes = {"a.large/spot": 3, "b.large/spot": 2, "a.large/on-demand": 10}
    expected = 3 * interruptions_per_hour(0) + 2 * interruptions_per_hour(4)
    assert expected_interruptions(nodes, pools) == pytest.approx(expected)
    assert expected_interruptions({}, pools) == 0.0
    assert expected_interruptions({"a.large/on-demand": 50}, pools) == 0.0


def test_expected_interruptions_rejects_unknown_pool():
    with pytest.raises(KeyError, match=r"z\.large/spot"):
        expected_interruptions({"z.large/spot": 1}, pools_for(CATALOG))
