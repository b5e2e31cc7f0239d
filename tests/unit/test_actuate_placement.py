"""The slot rule realizes the planned spot:on-demand split as closely as an even spread
can, never beyond the policy's spot limits; nodes are dealt to slots by demand; the pod
template gets exactly the affinity, spread and toleration the rule says, once; unplacing
takes out exactly those again and leaves every rule of the user's as it was."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubefake import merge_patch, strategic_merge_patch

from spotwise.actuate.kube import DEPLOYMENTS, KNATIVE_SERVICES, ObjectRef
from spotwise.actuate.placement import (
    KEEP_TOLERANCE,
    KWOK_TOLERATION,
    KWOK_TOLERATION_ANNOTATION,
    MAX_SLOTS,
    Spread,
    choose_spread,
    current_spread,
    deal,
    placement_patch,
    slot_layout,
    spot_pod_limit,
    unplacement_patch,
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


# -- keeping the slots a workload has ---------------------------------------------------


def miss(spread: Spread, replicas: int, spot: int) -> int:
    low, high = spread.spot_pods(replicas)
    return max(abs(high - spot), abs(spot - low))


def with_slots(spread: Spread) -> dict:
    """A Deployment whose template holds `spread`, as `placement_patch` writes it."""
    obj = deployment()
    patch = placement_patch(DEPLOYMENT, obj, "shop.shop", spread, tolerate_kwok=False)
    return strategic_merge_patch(obj, patch.body)


def test_current_spread_reads_back_what_placement_wrote():
    for spread in (Spread(1, 0), Spread(1, 1), Spread(3, 2), Spread(10, 7)):
        assert current_spread(with_slots(spread), "shop.shop") == spread
    assert current_spread(deployment(), "shop.shop") is None
    assert current_spread(with_slots(Spread(3, 2)), "other.shop") is None
    odd = with_slots(Spread(3, 2))
    terms = odd["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    expressions = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    expressions[0]["matchExpressions"][1]["values"] = ["spot-1", "on-demand-0"]  # no spot-0
    assert current_spread(odd, "shop.shop") is None


def test_one_more_replica_at_the_same_share_writes_no_placement_patch():
    # r=10, s=7 is exactly (10, 7); r=11, s=8 alone would be re-chosen.
    first = choose_spread(10, 7, spot_limit=10, spot_nodes=20, on_demand_nodes=20)
    assert first == Spread(10, 7)
    fresh = choose_spread(11, 8, spot_limit=11, spot_nodes=20, on_demand_nodes=20)
    assert fresh != first
    obj = with_slots(first)
    kept = choose_spread(
        11,
        8,
        spot_limit=11,
        spot_nodes=20,
        on_demand_nodes=20,
        current=current_spread(obj, "shop.shop"),
    )
    assert kept == first
    assert placement_patch(DEPLOYMENT, obj, "shop.shop", kept, tolerate_kwok=False) is None


def test_a_large_share_change_re_chooses_the_slots():
    obj = with_slots(Spread(10, 7))
    chosen = choose_spread(
        10,
        2,
        spot_limit=10,
        spot_nodes=20,
        on_demand_nodes=20,
        current=current_spread(obj, "shop.shop"),
    )
    assert chosen == Spread(5, 1)
    assert placement_patch(DEPLOYMENT, obj, "shop.shop", chosen, tolerate_kwok=False) is not None


def test_slots_kept_when_the_limit_or_the_nodes_no_longer_allow_them_are_re_chosen():
    # (10, 7) at r=11 may put 8 on spot: over a limit of 7.
    assert (
        choose_spread(
            11, 7, spot_limit=7, spot_nodes=20, on_demand_nodes=20, current=Spread(10, 7)
        ).spot_pods(11)[1]
        <= 7
    )
    # Seven spot slots need seven spot nodes.
    assert (
        choose_spread(
            10, 7, spot_limit=10, spot_nodes=3, on_demand_nodes=20, current=Spread(10, 7)
        ).spot
        <= 3
    )


def test_scaling_2_to_30_at_a_share_of_0_7_rolls_the_template_rarely():
    """The reviewer's walk: one replica at a time, s = round(0.7 r), within 0.7 of r."""
    changes_by_keep = {}
    for keep in (False, True):
        changes, current = 0, None
        for r in range(2, 31):
            limit = math.floor(0.7 * r + 1e-9)
            chosen = choose_spread(
                r,
                min(round(0.7 * r), limit),
                spot_limit=limit,
                spot_nodes=20,
                on_demand_nodes=20,
                current=current if keep else None,
            )
            changes += current is not None and chosen != current
            current = chosen
        changes_by_keep[keep] = changes
    assert changes_by_keep[True] <= 7 < changes_by_keep[False], changes_by_keep


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 60), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20
    ),
    spot_nodes=st.integers(0, 12),
    od_nodes=st.integers(0, 12),
)
def test_kept_slots_never_exceed_the_limits_and_stay_close(steps, spot_nodes, od_nodes):
    current: Spread | None = None
    for replicas, share, limit_share in steps:
        spot = round(replicas * share)
        limit = max(spot, math.floor(replicas * limit_share))
        fresh = choose_spread(
            replicas, spot, spot_limit=limit, spot_nodes=spot_nodes, on_demand_nodes=od_nodes
        )
        chosen = choose_spread(
            replicas,
            spot,
            spot_limit=limit,
            spot_nodes=spot_nodes,
            on_demand_nodes=od_nodes,
            current=current,
        )
        if chosen != fresh:  # the current slots, kept: within every bound, and close enough
            assert chosen == current
            assert chosen.spot_pods(replicas)[1] <= limit
            assert chosen.spot <= spot_nodes and chosen.on_demand <= od_nodes
            assert miss(chosen, replicas, spot) <= max(KEEP_TOLERANCE, miss(fresh, replicas, spot))
        current = chosen


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
        "metadata": {
            "resourceVersion": "5",
            "annotations": {"spotwise.dev/kwok-toleration": "added"},
        },
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


# -- unplacing ------------------------------------------------------------------------

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
ARCH = {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}
ZONE_SPREAD = {
    "maxSkew": 2,
    "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "ScheduleAnyway",
}
DEDICATED = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
SERVICE = ObjectRef(KNATIVE_SERVICES, "web", "shop")


def placed(obj: dict, *, policy: str = "shop.shop", kwok: bool = True) -> dict:
    """`obj` after its placement patch, as a strategic merge applies it."""
    patch = placement_patch(DEPLOYMENT, obj, policy, Spread(3, 2), tolerate_kwok=kwok)
    return strategic_merge_patch(obj, patch.body)


def service(pod_spec: dict | None = None) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": [{"image": "web:1"}], **(pod_spec or {})}}},
    }


def test_unplacing_a_bare_deployment_gives_back_its_template_and_is_done_once():
    original = deployment()
    patch = unplacement_patch(DEPLOYMENT, placed(original), "shop.shop")
    assert patch.ref == DEPLOYMENT
    assert patch.what == "placement removed (node affinity, slot spread, kwok toleration)"
    assert patch.body == {
        "metadata": {"resourceVersion": "5", "annotations": {KWOK_TOLERATION_ANNOTATION: None}},
        "spec": {
            "template": {
                "spec": {"affinity": None, "topologySpreadConstraints": None, "tolerations": None}
            }
        },
    }
    after = strategic_merge_patch(placed(original), patch.body)
    assert after["spec"] == original["spec"]
    assert after["metadata"]["annotations"] == {}
    assert unplacement_patch(DEPLOYMENT, after, "shop.shop") is None


def test_unplacing_sends_the_users_rules_back_byte_identical():
    user = {
        "affinity": {
            "nodeAffinity": {
                REQUIRED: {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [ARCH]},
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                            ]
                        },
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": {"matchExpressions": [ARCH]}}
                ],
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            },
        },
        "topologySpreadConstraints": [ZONE_SPREAD],
        "tolerations": [DEDICATED],
    }
    patch = unplacement_patch(DEPLOYMENT, placed(deployment(copy.deepcopy(user))), "shop.shop")
    # A strategic merge keeps list items a patch does not name where the list has a merge
    # key (topologySpreadConstraints): ours goes by a delete directive. The other two
    # lists are atomic, so they are sent whole: exactly the user's.
    assert patch.body == {
        "metadata": {"resourceVersion": "5", "annotations": {KWOK_TOLERATION_ANNOTATION: None}},
        "spec": {
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            REQUIRED: {
                                "nodeSelectorTerms": user["affinity"]["nodeAffinity"][REQUIRED][
                                    "nodeSelectorTerms"
                                ]
                            }
                        }
                    },
                    "topologySpreadConstraints": [
                        {"topologyKey": "spotwise.dev/slot", "$patch": "delete"}
                    ],
                    "tolerations": [DEDICATED],
                }
            }
        },
    }


@pytest.mark.parametrize(
    ("affinity", "sent"),
    [
        (None, None),
        (
            {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            },
            {"nodeAffinity": None},
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "preference": {"matchExpressions": [ARCH]}}
                    ]
                }
            },
            {"nodeAffinity": {REQUIRED: None}},
        ),
    ],
)
def test_unplacing_removes_the_required_node_affinity_and_only_what_it_leaves_empty(affinity, sent):
    original = deployment({} if affinity is None else {"affinity": affinity})
    patch = unplacement_patch(DEPLOYMENT, placed(original, kwok=False), "shop.shop")
    assert patch.body["spec"]["template"]["spec"]["affinity"] == sent
    after = strategic_merge_patch(placed(original, kwok=False), patch.body)
    assert after["spec"] == original["spec"]


def test_a_template_placed_by_another_policy_or_never_placed_is_left_alone():
    assert (
        unplacement_patch(DEPLOYMENT, placed(deployment(), policy="shop.other"), "shop.shop")
        is None
    )
    assert unplacement_patch(DEPLOYMENT, deployment(), "shop.shop") is None


def test_a_kwok_toleration_the_user_wrote_stays():
    original = deployment({"tolerations": [dict(KWOK_TOLERATION)]})
    first = placement_patch(DEPLOYMENT, original, "shop.shop", Spread(3, 2), tolerate_kwok=True)
    assert "tolerations" not in first.body["spec"]["template"]["spec"]
    assert "annotations" not in first.body["metadata"]  # not ours, so not marked
    patch = unplacement_patch(DEPLOYMENT, placed(original), "shop.shop")
    assert patch.what == "placement removed (node affinity, slot spread)"
    assert set(patch.body["spec"]["template"]["spec"]) == {"affinity", "topologySpreadConstraints"}
    assert "annotations" not in patch.body["metadata"]


def test_a_marker_whose_toleration_the_user_removed_goes_without_a_rollout():
    obj = deployment()
    obj["metadata"]["annotations"] = {KWOK_TOLERATION_ANNOTATION: "added", "team": "shop"}
    patch = unplacement_patch(DEPLOYMENT, obj, "shop.shop")
    assert patch.what == f"placement removed (annotation {KWOK_TOLERATION_ANNOTATION})"
    assert patch.body == {"metadata": {"annotations": {KWOK_TOLERATION_ANNOTATION: None}}}


def test_a_knative_service_gets_its_lists_whole_in_a_merge_patch():
    original = service({"topologySpreadConstraints": [ZONE_SPREAD], "tolerations": [DEDICATED]})
    first = placement_patch(SERVICE, original, "shop.shop", Spread(1, 1), tolerate_kwok=True)
    on = merge_patch(original, first.body)
    patch = unplacement_patch(SERVICE, on, "shop.shop")
    assert patch.body == {
        "metadata": {"annotations": {KWOK_TOLERATION_ANNOTATION: None}},
        "spec": {
            "template": {
                "spec": {
                    "affinity": None,
                    "topologySpreadConstraints": [ZONE_SPREAD],
                    "tolerations": [DEDICATED],
                }
            }
        },
    }
    assert merge_patch(on, patch.body)["spec"] == original["spec"]


_EXPRESSION = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["kubernetes.io/arch", "disktype", "topology.kubernetes.io/zone"]),
        "operator": st.sampled_from(["In", "NotIn"]),
        "values": st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2),
    }
)
_FIELD = st.fixed_dictionaries(
    {"key": st.just("metadata.name"), "operator": st.just("In"), "values": st.just(["n1"])}
)
_TERM = st.one_of(
    st.fixed_dictionaries({"matchExpressions": st.lists(_EXPRESSION, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"matchFields": st.lists(_FIELD, min_size=1, max_size=1)}),
    st.fixed_dictionaries(
        {
            "matchExpressions": st.lists(_EXPRESSION, min_size=1, max_size=2),
            "matchFields": st.lists(_FIELD, min_size=1, max_size=1),
        }
    ),
)
_SPREAD = st.sampled_from(
    [ZONE_SPREAD, {**ZONE_SPREAD, "topologyKey": "kubernetes.io/hostname", "maxSkew": 1}]
)
_TOLERATION = st.sampled_from(
    [
        DEDICATED,
        {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"},
        # how KWOK's docs tolerate its nodes: the user's, not ours
        {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"},
    ]
)


@given(
    terms=st.lists(_TERM, max_size=3),
    preferred=st.booleans(),
    spreads=st.lists(_SPREAD, max_size=2, unique_by=lambda c: c["topologyKey"]),
    tolerations=st.lists(_TOLERATION, max_size=2),
    kwok=st.booleans(),
    slots=st.sampled_from([Spread(1, 1), Spread(1, 0), Spread(3, 2), Spread(10, 7)]),
)
def test_place_then_unplace_is_the_identity_on_the_users_pod_spec(
    terms, preferred, spreads, tolerations, kwok, slots
):
    pod: dict = {}
    node_affinity: dict = {}
    if terms:
        node_affinity[REQUIRED] = {"nodeSelectorTerms": terms}
    if preferred:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 5, "preference": {"matchExpressions": [ARCH]}}
        ]
    if node_affinity:
        pod["affinity"] = {"nodeAffinity": node_affinity}
    if spreads:
        pod["topologySpreadConstraints"] = spreads
    if tolerations:
        pod["tolerations"] = tolerations
    original = service(copy.deepcopy(pod))
    first = placement_patch(SERVICE, original, "shop.shop", slots, tolerate_kwok=kwok)
    on = merge_patch(original, first.body)
    patch = unplacement_patch(SERVICE, on, "shop.shop")
    off = merge_patch(on, patch.body)
    assert off["spec"] == original["spec"]
    assert KWOK_TOLERATION_ANNOTATION not in (off["metadata"].get("annotations") or {})
    assert unplacement_patch(SERVICE, off, "shop.shop") is None
