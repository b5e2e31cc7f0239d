"""The ScalingPolicy v1alpha1 models and policy loading: examples, defaults, one-line errors."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotwise.api import (
    PolicyError,
    ScalingPolicy,
    load_policy_file,
    load_policy_text,
    parse_cpu,
    parse_memory_gib,
    parse_policy,
)
from spotwise.api.loading import parse_spec
from spotwise.api.v1alpha1 import (
    CatalogSpec,
    ObjectMeta,
    ScalingPolicySpec,
    SloSpec,
    TargetRef,
    WorkloadSpec,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml"))

MINIMAL = """\
apiVersion: spotwise.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: minimal
spec:
  workloads:
    - name: api
      targetRef: {kind: Deployment, name: api}
      slo: {latencyP95Ms: 250}
"""

LINE = re.compile(r"^(<file>|<document>|[A-Za-z][\w.\[\]]*): \S.*$")


def problems_of(action: Callable[[], object]) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as caught:
        action()
    error = caught.value
    text = str(error)
    assert "Traceback" not in text
    assert text.count("\n") == len(error.problems) - 1
    for line in text.splitlines():
        assert LINE.match(line), line
    return error.problems


def web() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "policies" / "web.yaml").read_text())
    assert isinstance(data, dict)
    return data


def one_problem(mutate: Callable[[dict[str, Any]], None]) -> tuple[str, str]:
    data = web()
    mutate(data)
    problems = problems_of(lambda: parse_policy(data))
    assert len(problems) == 1, problems
    return problems[0]


def workload(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    w = data["spec"]["workloads"][i]
    assert isinstance(w, dict)
    return w


# --- the examples -----------------------------------------------------------------------


def test_there_are_examples() -> None:
    names = {p.name for p in POLICY_FILES}
    assert {"web.yaml", "shop-knative.yaml", "batch-api.yaml"} <= names


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    policy = load_policy_file(path)
    assert policy.kind == "ScalingPolicy"
    assert policy.api_version == "spotwise.dev/v1alpha1"
    text = path.read_text()
    assert text.startswith("#"), "examples start with a comment saying what they show"
    for w in policy.spec.workloads:
        assert w.capacity is not None, f"{path.name}: {w.name} needs capacity to work offline"


def test_web_example() -> None:
    spec = load_policy_file(ROOT / "policies" / "web.yaml").spec
    (w,) = spec.workloads
    assert (w.name, w.slo.latency_p95_ms) == ("web", 200)
    assert (w.replicas.min, w.replicas.max) == (2, 40)
    assert (w.concurrency.actuator, w.concurrency.env_var) == ("env", "WEB_CONCURRENCY")
    assert w.capacity is not None and w.capacity.service_rate_rps == 25
    assert spec.nodes.catalog.instance_types is not None
    assert len(spec.nodes.catalog.instance_types) == 7
    assert spec.nodes.on_demand.min_share == 0.2 and spec.nodes.on_demand.min_nodes == 1
    assert spec.nodes.spot.max_share == 0.8 and spec.nodes.spot.max_pool_share == 0.5
    assert spec.nodes.survive_pool_loss and spec.nodes.provider == "karpenter"
    assert spec.objective.max_hourly_cost == 10 and spec.objective.headroom == 0.2
    assert spec.optimizer.engine == "genetic"
    assert w.metrics is not None and w.metrics.profile == "generic"


def test_shop_knative_example() -> None:
    spec = load_policy_file(ROOT / "policies" / "shop-knative.yaml").spec
    assert [w.name for w in spec.workloads] == ["frontend", "checkout", "catalog"]
    for w in spec.workloads:
        assert w.target_ref.kind == "Service"
        assert w.target_ref.api_version == "serving.knative.dev/v1"
        assert w.concurrency.actuator == "knative"
    assert spec.nodes.catalog.instance_types is None
    assert spec.nodes.catalog.builtin == "aws-us-east-1"
    assert spec.objective.max_hourly_cost == 25


def test_batch_api_example() -> None:
    spec = load_policy_file(ROOT / "policies" / "batch-api.yaml").spec
    assert spec.optimizer.engine == "exact"
    assert spec.workloads[0].concurrency.actuator == "keda"
    assert spec.nodes.on_demand.min_share == 0 and not spec.nodes.survive_pool_loss
    custom = {c.name: c for c in spec.nodes.catalog.custom}
    assert custom["c6i.2xlarge"].on_demand_price == 0.272
    assert not custom["c6i.2xlarge"].complete
    c7g = custom["c7g.2xlarge"]
    assert c7g.complete and c7g.arch == "arm64" and c7g.memory_gib == 16


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_example_catalog_resolves(path: Path) -> None:
    catalog_module = pytest.importorskip("spotwise.catalog")
    spec = load_policy_file(path).spec.nodes.catalog
    assert spec.builtin is not None
    merged = catalog_module.merge_catalog(
        catalog_module.builtin_catalog(spec.builtin),
        [c.to_k8s() for c in spec.custom],
        spec.instance_types,
    )
    assert len(merged) >= 1


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_round_trip(path: Path) -> None:
    policy = load_policy_file(path)
    again = parse_policy(policy.to_k8s())
    assert again == policy


# --- defaults ---------------------------------------------------------------------------


def test_defaults() -> None:
    policy = load_policy_text(MINIMAL, "minimal.yaml")
    spec = policy.spec
    assert policy.metadata.name == "minimal" and policy.metadata.namespace is None
    assert policy.status is None
    assert spec.mode == "Active" and spec.interval_seconds == 60 and spec.prometheus is None
    (w,) = spec.workloads
    assert w.target_ref.api_version == "apps/v1"
    assert (w.replicas.min, w.replicas.max) == (1, 100)
    assert (w.concurrency.min, w.concurrency.max) == (1, 256)
    assert w.concurrency.actuator == "none" and w.concurrency.env_var is None
    assert not w.concurrency.hard
    assert w.metrics is None and w.capacity is None
    assert (w.resources.cpu, w.resources.memory) == ("500m", "512Mi")
    assert w.resources.cpu_cores == 0.5 and w.resources.memory_gib == 0.5
    nodes = spec.nodes
    assert nodes.provider == "none"
    assert nodes.catalog.builtin == "aws-us-east-1"
    assert nodes.catalog.instance_types is None and nodes.catalog.custom == []
    assert (nodes.on_demand.min_share, nodes.on_demand.min_nodes) == (0.0, 0)
    assert nodes.spot.enabled and nodes.spot.max_share == 1.0 and nodes.spot.max_pool_share == 1.0
    assert not nodes.survive_pool_loss
    assert (nodes.daemon_set_reserve.cpu, nodes.daemon_set_reserve.memory) == ("200m", "256Mi")
    assert nodes.daemon_set_reserve.pods == 3
    assert spec.objective.max_hourly_cost is None and spec.objective.headroom == 0.15
    opt = spec.optimizer
    assert opt.engine == "genetic" and opt.time_budget_seconds == 2.0
    assert (opt.genetic.population, opt.genetic.generations) == (64, 40)
    assert opt.genetic.seed is None and opt.genetic.objectives == "cost"
    assert opt.rl.agent is None
    assert spec.stabilization.scale_down_seconds == 300
    assert spec.stabilization.max_replica_step == 10


def test_capacity_defaults() -> None:
    data = yaml.safe_load(MINIMAL)
    data["spec"]["workloads"][0]["capacity"] = {"serviceRateRps": 10}
    capacity = parse_policy(data).spec.workloads[0].capacity
    assert capacity is not None
    assert (capacity.contention, capacity.coherency, capacity.tail_factor) == (0.0, 0.0, 2.0)


def test_knative_service_defaults_its_api_version() -> None:
    data = yaml.safe_load(MINIMAL)
    data["spec"]["workloads"][0]["targetRef"] = {"kind": "Service", "name": "api"}
    ref = parse_policy(data).spec.workloads[0].target_ref
    assert ref.api_version == "serving.knative.dev/v1"


def test_python_construction_uses_snake_case() -> None:
    spec = ScalingPolicySpec(
        workloads=[
            WorkloadSpec(
                name="api",
                target_ref=TargetRef(kind="Deployment", name="api"),
                slo=SloSpec(latency_p95_ms=100),
            )
        ],
    )
    policy = ScalingPolicy(metadata=ObjectMeta(name="p"), spec=spec)
    wire = policy.to_k8s()
    assert wire["apiVersion"] == "spotwise.dev/v1alpha1" and wire["kind"] == "ScalingPolicy"
    assert wire["spec"]["workloads"][0]["slo"] == {"latencyP95Ms": 100}
    assert wire["spec"]["intervalSeconds"] == 60
    assert "status" not in wire


def test_cluster_object_with_server_metadata_and_status() -> None:
    data = yaml.safe_load(MINIMAL)
    data["metadata"].update(
        namespace="shop",
        uid="0b6f6c2e-0000-4000-8000-000000000000",
        resourceVersion="12345",
        generation=3,
        creationTimestamp="2024-05-01T12:00:00Z",
        managedFields=[{"manager": "kubectl"}],
    )
    data["status"] = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Planned",
                "message": "",
                # YAML parses an unquoted timestamp into a datetime
                "lastTransitionTime": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            }
        ],
        "plan": {
            "engine": "genetic",
            "decidedAt": "2024-05-01T12:00:00+00:00",
            "feasible": True,
            "overBudget": False,
            "hourlyCost": 1.25,
            "onDemandHourlyCost": 3.0,
            "savingsRatio": 0.583,
            "workloads": [
                {
                    "name": "api",
                    "replicas": 4,
                    "concurrency": 8,
                    "predictedP95Ms": 120.5,
                    "spotReplicas": 3,
                }
            ],
            "nodes": [{"instanceType": "m6i.large", "capacityType": "spot", "count": 2}],
            "risk": {"capacityAfterWorstPoolLoss": 0.5, "expectedInterruptionsPerHour": 0.01},
        },
    }
    policy = parse_policy(data)
    assert policy.metadata.model_extra is not None
    assert policy.metadata.model_extra["generation"] == 3
    assert policy.status is not None and policy.status.plan is not None
    assert policy.status.conditions[0].last_transition_time == "2024-05-01T12:00:00Z"
    assert policy.status.plan.nodes[0].capacity_type == "spot"
    assert policy.status.plan.reasons == []


class _Body(Mapping[str, Any]):
    """A read-only mapping like kopf's Body."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_any_mapping_is_accepted() -> None:
    data = yaml.safe_load(MINIMAL)
    data["spec"]["workloads"] = tuple(data["spec"]["workloads"])
    assert parse_policy(_Body(data)).metadata.name == "minimal"


def test_parse_spec_paths_start_with_spec() -> None:
    spec = yaml.safe_load(MINIMAL)["spec"]
    assert parse_spec(spec).workloads[0].name == "api"
    spec["workloads"][0]["replicas"] = {"min": -1}
    assert problems_of(lambda: parse_spec(spec)) == [
        ("spec.workloads[0].replicas.min", "must be ≥ 0, got -1")
    ]


# --- quantities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [
        ("500m", 0.5),
        ("250m", 0.25),
        ("2", 2.0),
        ("0.5", 0.5),
        (2, 2.0),
        ("1500m", 1.5),
        ("100u", 0.0001),
        ("2e-1", 0.2),
        (".5", 0.5),
    ],
)
def test_parse_cpu(quantity: str | int, cores: float) -> None:
    assert parse_cpu(quantity) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("quantity", "gib"),
    [
        ("512Mi", 0.5),
        ("1Gi", 1.0),
        ("1G", 1e9 / 2**30),
        ("2Ti", 2048.0),
        ("1024Ki", 1 / 1024),
        ("1073741824", 1.0),
        ("500M", 5e8 / 2**30),
        ("1k", 1000 / 2**30),
        (1073741824, 1.0),
    ],
)
def test_parse_memory(quantity: str | int, gib: float) -> None:
    assert parse_memory_gib(quantity) == pytest.approx(gib)


@pytest.mark.parametrize(
    "bad",
    ["", "lots", "1.2.3", "1Gb", "Gi", "1 Gi", "-1", "1e", "1e3m", " 1", True, 1.5, "1e400"],
)
def test_bad_quantities_raise_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_cpu(bad)
    with pytest.raises(ValueError):
        parse_memory_gib(bad)


def test_integer_quantities_are_accepted() -> None:
    def integers(d: dict[str, Any]) -> None:
        workload(d)["resources"] = {"cpu": 2, "memory": 1073741824}

    data = web()
    integers(data)
    resources = parse_policy(data).spec.workloads[0].resources
    assert (resources.cpu, resources.cpu_cores, resources.memory_gib) == ("2", 2.0, 1.0)


# --- one clear problem per line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("apiVersion: spotwise.dev/v1alpha1\nkind: [ScalingPolicy\n", "line 3, column 1"),
        ("metadata:\n  name: a\n   namespace: b\n", "line 3, column 13"),
        ("spec:\n\tworkloads: []\n", "line 2, column 1"),
        ("kind: ScalingPolicy\nkind: ScalingPolicy\n", "duplicate key 'kind'"),
    ],
)
def test_malformed_yaml(text: str, fragment: str) -> None:
    problems = problems_of(lambda: load_policy_text(text, "bad.yaml"))
    assert len(problems) == 1
    path, reason = problems[0]
    assert path == "<file>"
    assert reason.startswith("invalid YAML")
    assert fragment in reason
    assert "\n" not in reason


def test_malformed_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  workloads: [\n")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(bad)
    assert caught.value.source == str(bad)
    assert caught.value.problems[0][0] == "<file>"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("# nothing here\n", "empty"),
        ("---\n...\n", "empty"),
        (MINIMAL + "---\n" + MINIMAL, "2 YAML documents"),
    ],
)
def test_file_level_problems(text: str, fragment: str) -> None:
    problems = problems_of(lambda: load_policy_text(text, "x.yaml"))
    assert len(problems) == 1
    assert problems[0][0] == "<file>" and fragment in problems[0][1]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "a number")],
)
def test_document_must_be_a_mapping(text: str, kind: str) -> None:
    problems = problems_of(lambda: load_policy_text(text, "x.yaml"))
    assert problems == [("<document>", f"must be a ScalingPolicy mapping, got {kind}")]


def test_trailing_separator_is_one_document() -> None:
    assert load_policy_text("---\n" + MINIMAL + "---\n", "x.yaml").metadata.name == "minimal"


def test_unreadable_files(tmp_path: Path) -> None:
    missing = problems_of(lambda: load_policy_file(tmp_path / "nope.yaml"))
    assert len(missing) == 1 and missing[0][0] == "<file>" and "cannot read" in missing[0][1]
    directory = problems_of(lambda: load_policy_file(tmp_path))
    assert len(directory) == 1 and "cannot read" in directory[0][1]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    problems = problems_of(lambda: load_policy_file(binary))
    assert len(problems) == 1 and problems[0][0] == "<file>"


def test_unknown_field() -> None:
    assert one_problem(lambda d: workload(d).update(replicaz=3)) == (
        "spec.workloads[0].replicaz",
        "unknown field",
    )


def test_snake_case_keys_are_unknown_on_the_wire() -> None:
    path, reason = one_problem(lambda d: d["spec"].update(interval_seconds=30))
    assert (path, reason) == ("spec.interval_seconds", "unknown field")


def test_negative_price_in_custom_catalog() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["spec"]["nodes"]["catalog"]["custom"] = [{"name": "m6i.large", "spotPrice": -0.01}]

    assert one_problem(mutate) == (
        "spec.nodes.catalog.custom[0].spotPrice",
        "must be > 0, got -0.01",
    )


def test_replicas_min_above_max() -> None:
    assert one_problem(lambda d: workload(d)["replicas"].update(min=50)) == (
        "spec.workloads[0].replicas.min",
        "must be ≤ max (40), got 50",
    )


def test_concurrency_min_above_max() -> None:
    assert one_problem(lambda d: workload(d)["concurrency"].update(min=65)) == (
        "spec.workloads[0].concurrency.min",
        "must be ≤ max (64), got 65",
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("onDemand", "minShare", -0.1, "must be ≥ 0, got -0.1"),
        ("onDemand", "minShare", 1.2, "must be ≤ 1, got 1.2"),
        ("spot", "maxShare", 1.5, "must be ≤ 1, got 1.5"),
        ("spot", "maxPoolShare", 0, "must be > 0, got 0"),
    ],
)
def test_shares_outside_unit_interval(section: str, key: str, value: float, reason: str) -> None:
    assert one_problem(lambda d: d["spec"]["nodes"][section].update({key: value})) == (
        f"spec.nodes.{section}.{key}",
        reason,
    )


def test_empty_workloads() -> None:
    assert one_problem(lambda d: d["spec"].update(workloads=[])) == (
        "spec.workloads",
        "must not be empty",
    )


def test_duplicate_workload_names() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["spec"]["workloads"].append(copy.deepcopy(workload(d)))

    assert one_problem(mutate) == (
        "spec.workloads[1].name",
        "duplicate workload name 'web' (also workloads[0])",
    )


def test_duplicate_custom_instance_types() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["spec"]["nodes"]["catalog"]["custom"] = [
            {"name": "m6i.large", "spotPrice": 0.03},
            {"name": "m6i.large", "onDemandPrice": 0.09},
        ]

    path, reason = one_problem(mutate)
    assert path == "spec.nodes.catalog.custom[1].name"
    assert "duplicate instance type 'm6i.large'" in reason


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("cpu", "lots", "must be a Kubernetes quantity"),
        ("cpu", "0", "must be more than 0 CPU"),
        ("cpu", "-1", "must be more than 0 CPU"),
        ("cpu", 0.5, 'must be quoted when fractional: write "0.5"'),
        ("memory", "512MB", "must be a Kubernetes quantity"),
        ("memory", "0Mi", "must be more than 0 bytes"),
        ("cpu", "1e400", "must be a Kubernetes quantity"),  # 10.0 ** 400 overflowed
    ],
)
def test_bad_quantity(field: str, value: Any, fragment: str) -> None:
    path, reason = one_problem(lambda d: workload(d)["resources"].update({field: value}))
    assert path == f"spec.workloads[0].resources.{field}"
    assert fragment in reason


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            lambda d: workload(d)["slo"].update(latencyP95Ms=0),
            "spec.workloads[0].slo.latencyP95Ms",
            "must be > 0",
        ),
        (lambda d: workload(d).pop("slo"), "spec.workloads[0].slo", "required"),
        (
            lambda d: d["spec"].update(mode="Fast"),
            "spec.mode",
            "must be 'Active', 'DryRun' or 'Paused', got 'Fast'",
        ),
        (
            lambda d: d["spec"].update(intervalSeconds="60"),
            "spec.intervalSeconds",
            "must be an integer, got '60'",
        ),
        (lambda d: d["spec"].update(intervalSeconds=5), "spec.intervalSeconds", "must be ≥ 10"),
        (lambda d: d.pop("apiVersion"), "apiVersion", "required"),
        (
            lambda d: d.update(apiVersion="spotwise.dev/v1"),
            "apiVersion",
            "must be 'spotwise.dev/v1alpha1'",
        ),
        (lambda d: d.update(kind="Policy"), "kind", "must be 'ScalingPolicy'"),
        (lambda d: d["metadata"].update(name="Web_1"), "metadata.name", "DNS-1123 subdomain"),
        (
            lambda d: workload(d).update(name="web.front"),
            "spec.workloads[0].name",
            "DNS-1123 label",
        ),
        (
            lambda d: workload(d)["concurrency"].pop("envVar"),
            "spec.workloads[0].concurrency.envVar",
            "required when actuator is env",
        ),
        (
            lambda d: workload(d)["concurrency"].update(actuator="keda"),
            "spec.workloads[0].concurrency.envVar",
            "only used with actuator env",
        ),
        (
            lambda d: workload(d)["concurrency"].update(actuator="knative", envVar=None),
            "spec.workloads[0].concurrency.actuator",
            "needs targetRef.kind Service",
        ),
        (
            lambda d: workload(d)["concurrency"].update(max=20000),
            "spec.workloads[0].concurrency.max",
            "must be ≤ 10000",
        ),
        (
            lambda d: workload(d)["targetRef"].update(kind="Service"),
            "spec.workloads[0].targetRef.apiVersion",
            "needs apiVersion serving.knative.dev/v1",
        ),
        (
            lambda d: workload(d)["targetRef"].update(kind="ReplicaSet"),
            "spec.workloads[0].targetRef.kind",
            "must be 'Deployment', 'StatefulSet' or 'Service'",
        ),
        (
            lambda d: workload(d)["capacity"].update(contention=1.0),
            "spec.workloads[0].capacity.contention",
            "must be < 1",
        ),
        (
            lambda d: d["spec"]["prometheus"].update(url="prometheus:9090"),
            "spec.prometheus.url",
            "http:// or https:// URL",
        ),
        (
            lambda d: d["spec"]["prometheus"].update(timeoutSeconds=0),
            "spec.prometheus.timeoutSeconds",
            "must be > 0",
        ),
        (
            lambda d: d["spec"]["prometheus"].update(authSecretRef={"name": "prom"}),
            "spec.prometheus.authSecretRef.tokenKey",
            "set tokenKey, or usernameKey and passwordKey",
        ),
        (
            lambda d: d["spec"]["prometheus"].update(
                authSecretRef={"name": "p", "usernameKey": "u"}
            ),
            "spec.prometheus.authSecretRef.passwordKey",
            "required when usernameKey is set",
        ),
        (
            lambda d: d["spec"]["nodes"]["catalog"].update(instanceTypes=[]),
            "spec.nodes.catalog.instanceTypes",
            "must not be empty",
        ),
        (
            lambda d: d["spec"]["nodes"]["catalog"].update(instanceTypes=["m5.large", "m5.large"]),
            "spec.nodes.catalog.instanceTypes[1]",
            "listed twice",
        ),
        (
            lambda d: d["spec"]["nodes"]["catalog"].update(builtin=None),
            "spec.nodes.catalog.custom",
            "must list instance types when builtin is null",
        ),
        (
            lambda d: d["spec"]["nodes"]["catalog"].update(custom=[{"name": "x", "arch": "riscv"}]),
            "spec.nodes.catalog.custom[0].arch",
            "must be 'x86_64' or 'arm64'",
        ),
        (
            lambda d: d["spec"]["nodes"]["catalog"].update(
                custom=[{"name": "x", "interruptionBucket": 5}]
            ),
            "spec.nodes.catalog.custom[0].interruptionBucket",
            "must be ≤ 4",
        ),
        (
            lambda d: d["spec"]["objective"].update(headroom=6),
            "spec.objective.headroom",
            "must be ≤ 5",
        ),
        (
            lambda d: d["spec"]["optimizer"].update(engine="annealing"),
            "spec.optimizer.engine",
            "must be 'exact', 'genetic', 'rl' or 'hybrid'",
        ),
        (
            lambda d: d["spec"]["optimizer"]["genetic"].update(population=4),
            "spec.optimizer.genetic.population",
            "must be ≥ 8",
        ),
        (
            lambda d: d["spec"]["stabilization"].update(maxReplicaStep=0),
            "spec.stabilization.maxReplicaStep",
            "must be ≥ 1",
        ),
        (lambda d: d["spec"].update(nodes=[]), "spec.nodes", "must be a mapping"),
        (
            lambda d: d["metadata"].update(labels={"team": 7}),
            "metadata.labels.team",
            "must be a string, got 7",
        ),
        (
            lambda d: workload(d)["concurrency"].update(hard="yes"),
            "spec.workloads[0].concurrency.hard",
            "must be true or false",
        ),
        (
            lambda d: d["spec"]["objective"].update(maxHourlyCost=float("inf")),
            "spec.objective.maxHourlyCost",
            "must be a finite number",
        ),
        (
            lambda d: d["spec"]["objective"].update(headroom=float("nan")),
            "spec.objective.headroom",
            "must be a finite number",
        ),
        (
            lambda d: d["spec"]["nodes"].update(daemonSetReserve={"cpu": "-100m"}),
            "spec.nodes.daemonSetReserve.cpu",
            "must not be negative",
        ),
    ],
)
def test_bad_field(mutate: Callable[[dict[str, Any]], object], path: str, fragment: str) -> None:
    got_path, reason = one_problem(lambda d: mutate(d) and None)
    assert got_path == path
    assert fragment in reason


def test_zero_reserve_is_fine() -> None:
    data = web()
    data["spec"]["nodes"]["daemonSetReserve"] = {"cpu": "0", "memory": 0, "pods": 0}
    reserve = parse_policy(data).spec.nodes.daemon_set_reserve
    assert (reserve.cpu, reserve.memory, reserve.pods) == ("0", "0", 0)


def test_custom_only_catalog() -> None:
    catalog = CatalogSpec.model_validate(
        {
            "builtin": None,
            "instanceTypes": ["big"],
            "custom": [{"name": "big", "vcpu": 16, "memoryGiB": 64, "onDemandPrice": 0.8}],
        }
    )
    assert catalog.builtin is None and catalog.custom[0].complete
    with pytest.raises(ValueError, match="needs vcpu, memoryGiB and onDemandPrice"):
        CatalogSpec.model_validate({"builtin": None, "custom": [{"name": "x", "vcpu": 2}]})
    with pytest.raises(ValueError, match="not a custom type"):
        CatalogSpec.model_validate(
            {
                "builtin": None,
                "instanceTypes": ["m5.large"],
                "custom": [{"name": "x", "vcpu": 2, "memoryGiB": 4, "onDemandPrice": 0.1}],
            }
        )


def test_several_problems_are_all_reported_one_per_line() -> None:
    data = web()
    workload(data)["replicaz"] = 1
    workload(data)["slo"]["latencyP95Ms"] = -5
    data["spec"]["nodes"]["spot"]["maxShare"] = 2
    problems = problems_of(lambda: parse_policy(data))
    assert [p for p, _ in problems] == [
        "spec.workloads[0].slo.latencyP95Ms",
        "spec.workloads[0].replicaz",
        "spec.nodes.spot.maxShare",
    ]
    assert str(PolicyError(problems)).splitlines() == [f"{p}: {r}" for p, r in problems]


def test_policy_error_is_one_line_per_problem() -> None:
    error = PolicyError([("spec.a", "unknown field"), ("spec.b", "required")], source="x.yaml")
    assert str(error) == "spec.a: unknown field\nspec.b: required"
    assert error.lines() == ["spec.a: unknown field", "spec.b: required"]
    assert error.source == "x.yaml"


def test_deeply_nested_input_is_a_policy_error() -> None:
    text = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    problems = problems_of(lambda: load_policy_text(text, "deep.yaml"))
    assert len(problems) == 1
