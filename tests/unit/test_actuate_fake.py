"""The fake API server behaves like the real one where Spotwise's tests rely on it: merge
and strategic merge patches, resourceVersion preconditions, selectors, subresources and
errors surfacing as the kubernetes client's own `ApiException`s."""

from __future__ import annotations

import pytest
from kubefake import FakeKubeApi, merge_patch, strategic_merge_patch
from kubernetes.client.exceptions import ApiException

from spotwise.actuate.kube import DEPLOYMENTS, NODES, PODS, SCALED_OBJECTS, Kube, ObjectRef


def deployment(name: str = "web", **spec) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target, patch, result):
    assert merge_patch(target, patch) == result


def test_strategic_merge_merges_containers_and_env_by_name_and_replaces_other_lists():
    target = {
        "containers": [
            {"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "s"},
        ],
        "tolerations": [{"key": "x"}],
    }
    patch = {
        "containers": [
            {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ],
        "tolerations": [{"key": "y"}],
    }
    assert strategic_merge_patch(target, patch) == {
        "containers": [
            {
                "name": "app",
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "3"},
                    {"name": "C", "value": "4"},
                ],
            },
            {"name": "side", "image": "s"},
        ],
        "tolerations": [{"key": "y"}],
    }


def test_a_stale_resource_version_is_a_conflict():
    fake = FakeKubeApi()
    fake.add(deployment())
    kube = Kube(fake)
    ref = ObjectRef(DEPLOYMENTS, "web", "shop")
    version = kube.get(ref)["metadata"]["resourceVersion"]
    kube.patch(ref, {"metadata": {"resourceVersion": version}, "spec": {"paused": True}})
    with pytest.raises(ApiException) as err:
        kube.patch(ref, {"metadata": {"resourceVersion": version}, "spec": {"paused": False}})
    assert err.value.status == 409
    assert fake.get("apps/v1", "Deployment", "web", "shop")["spec"]["paused"] is True


def test_a_patch_that_changes_nothing_keeps_the_resource_version():
    fake = FakeKubeApi()
    fake.add(deployment())
    kube = Kube(fake)
    ref = ObjectRef(DEPLOYMENTS, "web", "shop")
    before = kube.get(ref)["metadata"]["resourceVersion"]
    kube.patch(ref, {"spec": {"replicas": 2}})
    assert kube.get(ref)["metadata"]["resourceVersion"] == before


def test_lists_filter_by_namespace_labels_and_node_name():
    fake = FakeKubeApi()
    fake.add(deployment("a"), deployment("b"))
    fake.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p1", "namespace": "x"},
            "spec": {"nodeName": "n1"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p2", "namespace": "y"},
            "spec": {"nodeName": "n2"},
        },
    )
    kube = Kube(fake)
    assert [
        d["metadata"]["name"] for d in kube.list(DEPLOYMENTS, "shop", label_selector="app=b")
    ] == ["b"]
    assert kube.list(DEPLOYMENTS, "other") == []
    on_n1 = kube.list(PODS, field_selector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in on_n1] == ["p1"]


def test_an_uninstalled_crd_answers_404_and_an_injected_failure_its_status():
    fake = FakeKubeApi(missing=("keda.sh/v1alpha1",))
    kube = Kube(fake)
    with pytest.raises(ApiException) as err:
        kube.list(SCALED_OBJECTS, "shop")
    assert err.value.status == 404
    fake.fail("GET", "/api/v1/nodes", 503, "etcd is down")
    with pytest.raises(ApiException) as err:
        kube.list(NODES)
    assert err.value.status == 503
    assert "etcd is down" in err.value.body


def test_scale_and_eviction_subresources():
    fake = FakeKubeApi()
    fake.add(deployment())
    fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}})
    kube = Kube(fake)
    kube.scale(ObjectRef(DEPLOYMENTS, "web", "shop"), 7)
    assert fake.get("apps/v1", "Deployment", "web", "shop")["spec"]["replicas"] == 7
    assert kube.evict(ObjectRef(PODS, "p", "shop")) is True
    assert kube.evict(ObjectRef(PODS, "p", "shop")) is False  # already gone
    assert fake.all("v1", "Pod") == []
