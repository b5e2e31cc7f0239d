"""The slot rule realizes the planned spot:on-demand split as closely as an even spread
can, never beyond the policy's spot limits; nodes are dealt to slots by demand; the pod
template gets exactly the affinity, spread and toleration the rule says, once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotwise.actuate.fake import strategic_merge_patch
from spotwise.actuate.kube import DEPLOYMENTS, KNATIVE_SERVICES, ObjectRef
from spotwise.actuate.placement import (
    KWOK_TOLERATION,
    MAX_SLOTS,
    Spread,
    choose_spread,
    deal,
    placement_patch,
    slot_layout,
    spot_pod_limit,
)
from spotwise.api import parse_policy
from spotwise.domain import CapacityType, Catalog, InstanceType, NodeCount, Plan, WorkloadPlan

LARGE = InstanceType("m6i.large", 2, 8, 0.096, 0.04)
XLARGE = InstanceType("c6i.xlarge", 4, 8, 0.17, 0.07)
CATALOG = Catalog("test", (LARGE, XLARGE))
DEPLOYMENT = ObjectRef(DEPLOYMENTS, "web", "shop")


def spec(**nodes):
    return parse_policy(
        {
            "apiVersion": "spotwise.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {
                "workloads": [
                    {
                        "name": "web",
                        "targetRef": {"kind": "Deployment", "name": "web"},
                        "slo": {"latencyP95Ms": 200},
                    },
                    {
                        "name": "api",
                        "targetRef": {"kind": "Deployment", "name": "api"},
                        "slo": {"latencyP95Ms": 200},
                        "resources": {"cpu": "1", "memory": "1Gi"},
                    },
                ],
                "nodes": {"provider": "kwok", **nodes},
            },
        }
    ).spec


def plan(web: tuple[int, int], api: tuple[int, int], spot_nodes: int, od_nodes: int) -> Plan:
    def wp(name: str, replicas: int, spot: int) -> WorkloadPlan:
        pods = (("m6i.large/spot", spot), ("m6i.large/on-demand", replicas - spot))
        return WorkloadPlan(name, replicas, 8, 100.0, tuple(p for p in pods if p[1]))

    nodes = (
        NodeCount("m6i.large", CapacityType.SPOT, spot_nodes),
        NodeCount("m6i.large", CapacityType.ON_DEMAND, od_nodes),
    )
    return Plan("exact", True, False, 1.0, (wp("web", *web), wp("api", *api)), nodes, 0.5)


# -- the rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "spot", "expected"),
    [
        (10, 7, Spread(10, 7)),
        (4, 3, Spread(4, 3)),
        (6, 4, Spread(3, 2)),  # 2 per slot: exact with 3 slots, so not 6
        (5, 5, Spread(1, 1)),
        (5, 0, Spread(1, 0)),
        (0, 0, Spread(1, 0)),
        (9, 3, Spread(3, 1)),
    ],
)
def test_choose_spread_examples(replicas, spot, expected):
    chosen = choose_spread(replicas, spot, spot_limit=replicas, spot_nodes=20, on_demand_nodes=20)
    assert chosen == expected
    assert chosen.spot_pods(replicas) == (spot, spot)


def test_choose_spread_never_exceeds_the_spot_limit():
    # r=7, s=4 has no exact spread within 10 slots... except (7, 4); limit it out with nodes.
    chosen = choose_spread(7, 4, spot_limit=4, spot_nodes=2, on_demand_nodes=2)
    assert chosen.spot_pods(7)[1] <= 4
    assert chosen == Spread(2, 1)  # 3 or 4 on spot: the closest that never passes 4


def test_choose_spread_needs_a_node_per_slot():
    chosen = choose_spread(10, 7, spot_limit=10, spot_nodes=2, on_demand_nodes=1)
    assert chosen.spot <= 2 and chosen.on_demand <= 1
    assert chosen == Spread(3, 2)


def test_no_nodes_at_all_falls_back_to_on_demand():
    assert choose_spread(4, 2, spot_limit=4, spot_nodes=0, on_demand_nodes=0) == Spread(1, 0)


@given(
    replicas=st.integers(0, 200),
    share=st.floats(0, 1),
    limit_share=st.floats(0, 1),
    spot_nodes=st.integers(0, 12),
    od_nodes=st.integers(0, 12),
)
def test_choose_spread_respects_every_bound(replicas, share, limit_share, spot_nodes, od_nodes):
    spot = round(replicas * share)
    limit = max(spot, round(replicas * limit_share))
    chosen = choose_spread(
        replicas, spot, spot_limit=limit, spot_nodes=spot_nodes, on_demand_nodes=od_nodes
    )
    if od_nodes == 0 and (spot_nodes == 0 or replicas > limit):  # nothing fits the policy
        assert chosen == Spread(1, 0)
        return
    assert 1 <= chosen.slots <= MAX_SLOTS
    assert chosen.spot <= spot_nodes and chosen.on_demand <= od_nodes
    low, high = chosen.spot_pods(replicas)
    assert high <= limit
    error = max(abs(high - spot), abs(spot - low))
    if od_nodes:  # never worse than all on-demand, or all spot, where those fit
        assert error <= spot
    if spot_nodes and replicas <= limit:
        assert error <= replicas - spot


def test_spot_pod_limit_takes_the_stricter_of_max_share_and_on_demand_floor():
    s = spec(spot={"maxShare": 0.8}, onDemand={"minShare": 0.3})
    assert spot_pod_limit(s, 10) == 7
    assert spot_pod_limit(spec(spot={"enabled": False}), 10) == 0


# -- the layout -----------------------------------------------------------------------


def test_slot_layout_gives_each_workload_its_spread_and_deals_nodes_by_demand():
    layout = slot_layout(spec(), plan(web=(4, 3), api=(6, 4), spot_nodes=5, od_nodes=2), CATALOG)
    assert layout.spreads == (("web", Spread(4, 3)), ("api", Spread(3, 2)))
    # spot demand per slot: web 3 pods x 0.5 CPU over 3 slots, api 4 pods x 1 CPU over 2
    # -> spot-0 and spot-1 carry 2.5 CPU each, spot-2 0.5: the two extra nodes go to 0 and 1
    assert [(s.name, s.capacity_type, s.nodes) for s in layout.slots] == [
        ("spot-0", CapacityType.SPOT, ((LARGE, 2),)),
        ("spot-1", CapacityType.SPOT, ((LARGE, 2),)),
        ("spot-2", CapacityType.SPOT, ((LARGE, 1),)),
        ("on-demand-0", CapacityType.ON_DEMAND, ((LARGE, 2),)),
    ]
    assert sum(s.count for s in layout.slots) == 7  # every planned node, once


def test_deal_gives_every_slot_a_node_first_and_the_biggest_to_the_busiest():
    dealt = deal([LARGE, LARGE, XLARGE], [1.0, 5.0])
    assert dealt == [[LARGE], [XLARGE, LARGE]]


def test_slot_layout_with_an_unknown_instance_type_raises_value_error():
    bad = Plan("exact", True, False, 1.0, (), (NodeCount("x9.huge", CapacityType.SPOT, 1),), 1.0)
    with pytest.raises(ValueError, match=r"x9\.huge"):
        slot_layout(spec(), bad, CATALOG)


# -- the pod template -----------------------------------------------------------------


def deployment(pod_spec: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "5"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {"containers": [{"name": "app", "image": "web:1"}], **(pod_spec or {})}
            },
        },
    }


OURS = [
    {"key": "spotwise.dev/policy", "operator": "In", "values": ["shop.shop"]},
    {"key": "spotwise.dev/slot", "operator": "In", "values": ["spot-0", "spot-1", "on-demand-0"]},
]
SPREAD = {
    "maxSkew": 1,
    "topologyKey": "spotwise.dev/slot",
    "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"app": "web"}},
}


def test_placement_patch_exact_body():
    patch = placement_patch(DEPLOYMENT, deployment(), "shop.shop", Spread(3, 2), tolerate_kwok=True)
    assert patch.ref == DEPLOYMENT
    assert patch.what == "placement 2 of 3 slots spot (spot-0, spot-1, on-demand-0)"
    assert patch.body == {
        "metadata": {"resourceVersion": "5"},
        "spec": {
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": OURS}]
                            }
                        }
                    },
                    "topologySpreadConstraints": [SPREAD],
                    "tolerations": [
                        {
                            "key": "kwok.x-k8s.io/node",
                            "operator": "Equal",
                            "value": "fake",
                            "effect": "NoSchedule",
                        }
                    ],
                }
            }
        },
    }


def test_placement_keeps_the_users_rules_and_ands_ours_into_each_term():
    user = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}
                            ]
                        },
                        {
                            "matchExpressions": [
                                {"key": "spotwise.dev/slot", "operator": "In", "values": ["old"]},
                            ],
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                            ],
                        },
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    }
    patch = placement_patch(
        DEPLOYMENT, deployment(user), "shop.shop", Spread(3, 2), tolerate_kwok=False
    )
    pod = patch.body["spec"]["template"]["spec"]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]},
                *OURS,
            ]
        },
        {
            "matchExpressions": OURS,
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
        },
    ]
    assert pod["topologySpreadConstraints"] == [user["topologySpreadConstraints"][0], SPREAD]
    assert "tolerations" not in pod  # unchanged without kwok


def test_placement_applied_once_is_not_patched_again():
    current = deployment()
    patch = placement_patch(DEPLOYMENT, current, "shop.shop", Spread(3, 2), tolerate_kwok=True)
    body = dict(patch.body)
    body.pop("metadata")
    after = strategic_merge_patch(current, body)
    assert placement_patch(DEPLOYMENT, after, "shop.shop", Spread(3, 2), tolerate_kwok=True) is None
    moved = placement_patch(DEPLOYMENT, after, "shop.shop", Spread(4, 3), tolerate_kwok=True)
    assert moved is not None and set(moved.body["spec"]["template"]["spec"]) == {"affinity"}


def test_knative_pods_are_selected_by_the_service_label():
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": [{"image": "web:1"}]}}},
    }
    ref = ObjectRef(KNATIVE_SERVICES, "web", "shop")
    patch = placement_patch(ref, service, "shop.shop", Spread(1, 1), tolerate_kwok=False)
    (spread,) = patch.body["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": {"serving.knative.dev/service": "web"}}
    assert "metadata" not in patch.body  # no resourceVersion to guard on


def test_kwok_toleration_is_exactly_kwoks_taint():
    assert KWOK_TOLERATION == {
        "key": "kwok.x-k8s.io/node",
        "operator": "Equal",
        "value": "fake",
        "effect": "NoSchedule",
    }
