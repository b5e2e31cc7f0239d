"""The shell sends what the API server expects: the right paths, patch types and bodies,
``fieldManager=spotwise``, and one readable line when a request fails."""

from __future__ import annotations

import socket

import pytest
import urllib3
from kubefake import FakeKubeApi
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from spotwise.actuate.kube import (
    DEPLOYMENTS,
    HPAS,
    KNATIVE_SERVICES,
    NODEPOOLS,
    NODES,
    PODS,
    STATEFULSETS,
    TRANSPORT_ERRORS,
    Kube,
    ObjectRef,
    describe_error,
)


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        (ObjectRef(DEPLOYMENTS, "web", "shop"), "/apis/apps/v1/namespaces/shop/deployments/web"),
        (ObjectRef(STATEFULSETS, "db", "shop"), "/apis/apps/v1/namespaces/shop/statefulsets/db"),
        (
            ObjectRef(HPAS, "web", "shop"),
            "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/web",
        ),
        (
            ObjectRef(KNATIVE_SERVICES, "web", "shop"),
            "/apis/serving.knative.dev/v1/namespaces/shop/services/web",
        ),
        (ObjectRef(NODEPOOLS, "pool"), "/apis/karpenter.sh/v1/nodepools/pool"),
        (ObjectRef(NODES, "n1"), "/api/v1/nodes/n1"),
        (ObjectRef(PODS, "p", "shop"), "/api/v1/namespaces/shop/pods/p"),
    ],
)
def test_paths(ref, path):
    assert ref.path == path


def test_builtin_kinds_get_strategic_merge_and_custom_resources_merge_patch():
    fake = FakeKubeApi()
    fake.add(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
        },
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
        },
    )
    kube = Kube(fake)
    kube.patch(ObjectRef(DEPLOYMENTS, "web", "shop"), {"spec": {"paused": True}})
    kube.patch(ObjectRef(KNATIVE_SERVICES, "web", "shop"), {"spec": {"x": 1}})
    sent = [(r.method, r.path, r.content_type, r.query) for r in fake.writes()]
    assert sent == [
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            "application/strategic-merge-patch+json",
            {"fieldManager": "spotwise"},
        ),
        (
            "PATCH",
            "/apis/serving.knative.dev/v1/namespaces/shop/services/web",
            "application/merge-patch+json",
            {"fieldManager": "spotwise"},
        ),
    ]


def test_scale_goes_to_the_scale_subresource_of_deployments_and_statefulsets():
    fake = FakeKubeApi()
    fake.add(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop"},
        },
    )
    kube = Kube(fake)
    kube.scale(ObjectRef(DEPLOYMENTS, "web", "shop"), 4)
    kube.scale(ObjectRef(STATEFULSETS, "db", "shop"), 3)
    sent = [(r.method, r.path, r.content_type, r.body) for r in fake.writes()]
    assert sent == [
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web/scale",
            "application/merge-patch+json",
            {"spec": {"replicas": 4}},
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/statefulsets/db/scale",
            "application/merge-patch+json",
            {"spec": {"replicas": 3}},
        ),
    ]


def test_eviction_body_is_a_policy_v1_eviction():
    fake = FakeKubeApi()
    fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}})
    Kube(fake).evict(ObjectRef(PODS, "p", "shop"))
    (request,) = fake.writes()
    assert (request.method, request.path) == ("POST", "/api/v1/namespaces/shop/pods/p/eviction")
    assert request.body == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "p", "namespace": "shop"},
    }


def test_missing_objects_are_none_and_deleting_them_is_no_error():
    kube = Kube(FakeKubeApi())
    assert kube.get(ObjectRef(DEPLOYMENTS, "nope", "shop")) is None
    assert kube.delete(ObjectRef(NODES, "nope")) is False


def test_describe_error_is_one_line_with_status_and_server_message():
    fake = FakeKubeApi()
    fake.fail("GET", "/api/v1/nodes", 403, 'nodes is forbidden: User "x"\ncannot list')
    with pytest.raises(ApiException) as err:
        Kube(fake).list(NODES)
    assert describe_error(err.value) == '403 Forbidden: nodes is forbidden: User "x" cannot list'


def test_an_unreachable_server_raises_a_transport_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.retries = urllib3.Retry(total=0)
    kube = Kube(ApiClient(config), timeout_seconds=2)
    with pytest.raises(TRANSPORT_ERRORS) as err:
        kube.get(ObjectRef(NODES, "n1"))
    assert isinstance(err.value, urllib3.exceptions.HTTPError)
    assert "\n" not in describe_error(err.value)
