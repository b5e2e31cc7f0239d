"""The ScalingPolicy CRD against a real kube-apiserver: it is accepted and Established, the
example policies pass its schema, bad policies are refused with the schema's own messages,
and the printer columns and status subresource behave as `kubectl` users will see them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import REPO_ROOT, ControlPlane, api_message, crd_condition
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "spotwise.dev", "v1alpha1", "scalingpolicies"
POLICY_FILES = sorted((REPO_ROOT / "policies").glob("*.yaml"))
NAMESPACE = "spotwise-crd-test"


def load(path: Path) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(path.read_text())
    return policy


def web_policy(name: str) -> dict[str, Any]:
    """The web example, renamed into the test namespace: a policy known to be valid."""
    policy = load(REPO_ROOT / "policies" / "web.yaml")
    policy["metadata"] = {"name": name, "namespace": NAMESPACE}
    return policy


def is_subset(expected: Any, actual: Any) -> bool:
    """True when every field of `expected` is in `actual` with the same value."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and is_subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane, scalingpolicy_crd: dict[str, Any]) -> Iterator[Any]:
    """An admin client, with the CRD Established and every namespace the tests use."""
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        wanted = {NAMESPACE} | {load(path)["metadata"]["namespace"] for path in POLICY_FILES}
        existing = {ns.metadata.name for ns in core.list_namespace().items}
        for name in sorted(wanted - existing):
            core.create_namespace({"metadata": {"name": name}})
        yield api_client


@pytest.fixture
def objects(api: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create(objects: client.CustomObjectsApi, policy: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        policy["metadata"]["namespace"],
        PLURAL,
        policy,
        field_validation="Strict",
    )
    return created


def refusal(objects: client.CustomObjectsApi, policy: dict[str, Any], status: int = 422) -> str:
    """Create `policy`, expect the API server to refuse it, return the server's message.

    Schema violations are 422 Invalid; a body that does not decode strictly is 400.
    """
    with pytest.raises(ApiException) as refused:
        create(objects, policy)
    assert refused.value.status == status, api_message(refused.value)
    with pytest.raises(ApiException) as absent:
        objects.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, policy["metadata"]["name"]
        )
    assert absent.value.status == 404
    return api_message(refused.value)


def test_crd_is_established_with_its_names(control_plane: ControlPlane, scalingpolicy_crd):
    with control_plane.api_client() as api_client:
        crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
            scalingpolicy_crd["metadata"]["name"]
        )
    assert crd_condition(crd, "Established").status == "True"
    assert crd_condition(crd, "NamesAccepted").status == "True"
    assert crd.status.accepted_names.kind == "ScalingPolicy"
    assert set(crd.status.accepted_names.short_names) == {"sp", "spol"}


@pytest.mark.parametrize("path", POLICY_FILES, ids=[p.stem for p in POLICY_FILES])
def test_example_policy_is_accepted_and_kept_whole(objects, path):
    policy = load(path)
    stored = create(objects, policy)
    assert is_subset(policy["spec"], stored["spec"]), "the server dropped or changed a field"
    assert stored["metadata"]["generation"] == 1


def test_server_fills_nested_defaults_of_an_omitted_object(objects):
    policy = web_policy("defaults")
    del policy["spec"]["workloads"][0]["concurrency"]
    stored = create(objects, policy)
    concurrency = stored["spec"]["workloads"][0]["concurrency"]
    assert concurrency["min"] <= concurrency["max"]
    assert concurrency["min"] == 1


def test_replicas_min_above_max_is_refused_by_the_cel_rule(objects):
    policy = web_policy("replicas-inverted")
    policy["spec"]["workloads"][0]["replicas"] = {"min": 10, "max": 2}
    assert "replicas.min must not exceed replicas.max" in refusal(objects, policy)


def test_negative_price_is_refused(objects):
    policy = web_policy("negative-price")
    policy["spec"]["nodes"]["catalog"]["custom"] = [{"name": "m6i.large", "onDemandPrice": -0.1}]
    message = refusal(objects, policy)
    assert "spec.nodes.catalog.custom[0].onDemandPrice" in message
    assert "greater than 0" in message


def test_unknown_field_is_refused_under_strict_field_validation(objects):
    policy = web_policy("unknown-field")
    policy["spec"]["workloads"][0]["replicass"] = {"min": 1, "max": 2}
    message = refusal(objects, policy, status=400)
    assert 'unknown field "spec.workloads[0].replicass"' in message


def test_empty_workloads_list_is_refused(objects):
    policy = web_policy("no-workloads")
    policy["spec"]["workloads"] = []
    message = refusal(objects, policy)
    assert "spec.workloads" in message
    assert "at least 1 items" in message


STATUS = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Planned",
            "message": "plan applied",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
    ],
    "plan": {
        "engine": "genetic",
        "decidedAt": "2025-01-01T00:00:00Z",
        "feasible": True,
        "overBudget": False,
        "hourlyCost": 1.25,
        "onDemandHourlyCost": 2.5,
        "savingsRatio": 0.5,
        "risk": {"capacityAfterWorstPoolLoss": 0.75},
        "workloads": [{"name": "web", "replicas": 4, "concurrency": 8, "predictedP95Ms": 150.0}],
        "nodes": [{"instanceType": "m6i.large", "capacityType": "spot", "count": 2}],
    },
}


def test_status_subresource_takes_a_status_patch_and_ignores_status_in_the_main_resource(
    objects,
):
    name = "status"
    create(objects, web_policy(name))
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": STATUS}
    )
    assert is_subset(STATUS, patched["status"])
    assert patched["metadata"]["generation"] == 1, "a status write must not bump generation"

    # With the subresource on, status written through the main resource is dropped.
    stale = copy.deepcopy(patched)
    stale["status"]["plan"]["hourlyCost"] = 99.0
    stale["spec"]["intervalSeconds"] = 30
    replaced = objects.replace_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name, stale
    )
    assert replaced["status"]["plan"]["hourlyCost"] == 1.25
    assert replaced["spec"]["intervalSeconds"] == 30
    assert replaced["metadata"]["generation"] == 2


def test_printer_columns_show_spec_and_plan(objects):
    name = "columns"
    create(objects, web_policy(name))
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": STATUS}
    )
    # What `kubectl get scalingpolicies` asks for: the server renders the printer columns.
    table = objects.get_namespaced_custom_object(
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        name,
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    assert table["kind"] == "Table"
    columns = [column["name"] for column in table["columnDefinitions"]]
    assert columns == ["Name", "Engine", "Mode", "$/h", "Savings", "Ready", "Age"]
    (row,) = table["rows"]
    cells = dict(zip(columns, row["cells"], strict=True))
    assert cells["Name"] == name
    assert cells["Engine"] == "genetic"
    assert cells["Mode"] == "Active"
    assert cells["$/h"] == 1.25
    assert cells["Savings"] == 0.5
    assert cells["Ready"] == "True"
