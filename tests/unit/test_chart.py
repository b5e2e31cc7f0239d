"""The Helm chart (charts/spotwise) through the real Helm SDK: lint, render with defaults and
with value sets, the objects it renders, and no drift from manifests/.

helm-python-sdk runs Helm's own Go code (a shared library in its wheel): no helm binary and
no network. Rendered `spotwise run` arguments are parsed by the real CLI (its `run` replaced by a
recorder), so a flag the operator does not know fails here rather than in a crash-looping pod.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import spotwise

try:
    import helm_python as helm
except Exception as absent:  # ImportError, or HelmLibraryError when its library cannot load
    pytest.skip(f"helm-python-sdk is unavailable: {absent}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "spotwise"
MANIFESTS = ROOT / "manifests"
RELEASE = "spotwise"
NAMESPACE = "spotwise-system"
# Chart-owned CRDs beside the generated ones: kopf's peering resources (manifests/ has them
# in operator.yaml).
KOPF_CRDS = {"kopf.dev_clusterkopfpeerings.yaml", "kopf.dev_kopfpeerings.yaml"}
# Helm lint severities: 1 info, 2 warning, 3 error.
WARNING = 2

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(
    chart: Any, values: Obj | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[Obj]:
    """Every object the chart renders (NOTES.txt left out), as `helm template` would."""
    out = chart.render(values or {}, name=name, namespace=namespace)
    return [
        doc
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def kinds(objects: list[Obj]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def one(objects: list[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {kinds(objects)}"
    return found[0]


def container(objects: list[Obj]) -> Obj:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(operator, dict)
    return operator


def port(c: Obj, name: str) -> int | None:
    return next((p["containerPort"] for p in c.get("ports", []) if p["name"] == name), None)


def run_options(args: list[str]) -> Any:
    """The RunOptions `spotwise <args>` starts the operator with: the real CLI parses them,
    and the operator's `run` is replaced by a recorder, so nothing runs."""
    import spotwise.controller
    from spotwise.cli import app

    started: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spotwise.controller, "run", started.append)
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"spotwise {' '.join(args)}: {result.output}"
    (options,) = started
    return options


def manifest_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifest(path: Path, kind: str) -> Obj:
    return one(manifest_docs(path), kind)


# --- the chart as a whole --------------------------------------------------------------


def test_chart_metadata_follows_the_package(chart):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "spotwise"
    assert meta["appVersion"] == pyproject["project"]["version"] == spotwise.__version__


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"standalone": True},
        {"watchNamespaces": ["shop", "web"]},
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        {"metrics": {"port": 0}, "livenessProbe": {"enabled": False}},
        {"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}},
    ],
    ids=["defaults", "standalone", "namespaces", "servicemonitor", "bare", "own-rbac"],
)
def test_helm_lint_passes_strict(values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.25.0")
    assert report["errors"] == []
    assert report["total_charts_linted"] == 1
    serious = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert serious == []


def test_lint_reports_a_broken_chart(tmp_path):
    """The lint above can fail: the same chart with a template that does not parse does."""
    with helm.Chart.load(CHART) as loaded:
        copy = Path(loaded.save_dir(tmp_path))
    (copy / "templates" / "broken.yaml").write_text("{{ if }}\n")
    report = helm.lint(copy, strict=True)
    assert report["errors"] or any(m["severity"] > WARNING for m in report["messages"])


def test_defaults_render_the_operator(chart):
    objects = render(chart)
    assert kinds(objects) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects:
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_default_deployment_matches_manifests_operator_yaml(chart):
    """The chart with defaults runs what `kubectl apply -f manifests/` runs."""
    rendered = one(render(chart), "Deployment")
    applied = manifest(MANIFESTS / "operator.yaml", "Deployment")
    ours, theirs = rendered["spec"]["template"]["spec"], applied["spec"]["template"]["spec"]
    (c,), (m,) = ours["containers"], theirs["containers"]
    assert rendered["spec"]["replicas"] == applied["spec"]["replicas"] == 2
    assert c["args"] == m["args"]
    assert c["image"] == m["image"]
    assert c["securityContext"] == m["securityContext"]
    assert c["resources"] == m["resources"]
    assert c["volumeMounts"] == m["volumeMounts"] and ours["volumes"] == theirs["volumes"]
    assert theirs["securityContext"].items() <= ours["securityContext"].items()
    assert m["livenessProbe"].items() <= c["livenessProbe"].items()
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        p["name"]: p["containerPort"] for p in m["ports"]
    }


def test_default_args_parse_as_all_namespaces_with_peering(chart):
    args = container(render(chart))["args"]
    assert args == [
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=8000",
    ]
    options = run_options(args)
    assert options.all_namespaces is True and options.namespaces == ()
    assert options.standalone is False
    assert options.liveness == "http://0.0.0.0:8080/healthz"
    assert options.metrics_port == 8000


def test_run_options_refuses_an_unknown_flag():
    """The CLI check above can fail."""
    with pytest.raises(AssertionError, match="No such option"):
        run_options(["run", "--all-namespaces", "--metric-port=8000"])


# --- namespaces, peering, replicas -----------------------------------------------------


def test_watch_namespaces_become_n_flags_and_a_peering_in_each(chart):
    objects = render(chart, {"watchNamespaces": ["shop", "web", "shop"]})
    args = container(objects)["args"]
    assert "--all-namespaces" not in args
    options = run_options(args)
    assert options.namespaces == ("shop", "web") and options.all_namespaces is False
    peerings = [o for o in objects if o["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["shop", "web"]
    assert "ClusterKopfPeering" not in kinds(objects)


def test_peering_objects_are_named_like_the_operators_peering(chart):
    from spotwise.controller.handlers import PEERING

    cluster = one(render(chart, name="other"), "ClusterKopfPeering")
    namespaced = one(render(chart, {"watchNamespaces": ["shop"]}), "KopfPeering")
    assert cluster["metadata"]["name"] == namespaced["metadata"]["name"] == PEERING
    assert cluster["apiVersion"] == namespaced["apiVersion"] == "kopf.dev/v1"


def test_peered_replicas_default_to_two_with_rolling_updates(chart):
    deployment = one(render(chart), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "strategy" not in deployment["spec"]  # RollingUpdate: peers hand over
    assert one(render(chart, {"replicaCount": 3}), "Deployment")["spec"]["replicas"] == 3


def test_standalone_runs_one_unpeered_replica_recreated_on_update(chart):
    objects = render(chart, {"standalone": True})
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert run_options(container(objects)["args"]).standalone is True
    assert not {"ClusterKopfPeering", "KopfPeering"} & set(kinds(objects))
    namespaced = render(chart, {"standalone": True, "watchNamespaces": ["shop"]})
    assert "KopfPeering" not in kinds(namespaced)


@pytest.mark.parametrize("replicas", [0, 1])
def test_standalone_accepts_zero_or_one_replica(chart, replicas):
    objects = render(chart, {"standalone": True, "replicaCount": replicas})
    assert one(objects, "Deployment")["spec"]["replicas"] == replicas


def test_standalone_with_two_replicas_is_refused(chart):
    with pytest.raises(helm.HelmRenderError, match=r"replicaCount must be 0 or 1 \(got 2\)"):
        render(chart, {"standalone": True, "replicaCount": 2})


# --- RBAC -------------------------------------------------------------------------------


def test_cluster_role_rules_equal_manifests_rbac_yaml(chart):
    rendered = one(render(chart), "ClusterRole")["rules"]
    expected = manifest(MANIFESTS / "rbac.yaml", "ClusterRole")["rules"]
    assert rendered == expected


def test_binding_grants_the_role_to_the_operators_service_account(chart):
    objects = render(chart, name="costs", namespace="platform")
    role, binding = one(objects, "ClusterRole"), one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "platform"}
    ]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    # Cluster-scoped names carry the release, so two releases do not collide.
    assert role["metadata"]["name"] == "costs-spotwise"


def test_existing_service_account_and_rbac_are_used_as_given(chart):
    objects = render(chart, {"serviceAccount": {"create": False, "name": "ops"}})
    assert "ServiceAccount" not in kinds(objects)
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"
    bare = render(chart, {"rbac": {"create": False}})
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds(bare))


# --- probes, security, metrics ---------------------------------------------------------


def test_liveness_probe_checks_the_endpoint_the_operator_serves(chart):
    c = container(render(chart, {"livenessProbe": {"port": 9440, "failureThreshold": 5}}))
    probe = c["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert probe["failureThreshold"] == 5
    assert port(c, "health") == 9440
    assert run_options(c["args"]).liveness == "http://0.0.0.0:9440/healthz"


def test_liveness_probe_off_drops_flag_probe_and_port(chart):
    c = container(render(chart, {"livenessProbe": {"enabled": False}}))
    assert "livenessProbe" not in c
    assert port(c, "health") is None
    assert run_options(c["args"]).liveness is None


def test_liveness_and_metrics_on_one_port_is_refused(chart):
    with pytest.raises(helm.HelmRenderError, match="both 8000"):
        render(chart, {"livenessProbe": {"port": 8000}})


def test_operator_runs_non_root_on_a_read_only_root(chart):
    objects = render(chart)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The one writable place: CA bundles for Prometheus go to /tmp.
    (mount,) = c["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["mountPath"] == "/tmp" and volume == {"name": "tmp", "emptyDir": {}}


def test_metrics_service_selects_the_operator_pods(chart):
    objects = render(chart, {"metrics": {"port": 9100}})
    deployment, service = one(objects, "Deployment"), one(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}
    ]
    c = container(objects)
    assert port(c, "metrics") == 9100
    assert run_options(c["args"]).metrics_port == 9100
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}


def test_metrics_port_zero_turns_metrics_off(chart):
    objects = render(chart, {"metrics": {"port": 0}})
    assert "Service" not in kinds(objects)
    c = container(objects)
    assert port(c, "metrics") is None
    assert run_options(c["args"]).metrics_port is None  # the CLI's "off"
    template = one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert "annotations" not in template


def test_service_monitor_only_when_enabled(chart):
    assert "ServiceMonitor" not in kinds(render(chart))
    objects = render(
        chart,
        {
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
            "podAnnotations": {"team": "platform"},
        },
    )
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # Scraped once: no prometheus.io annotations beside a ServiceMonitor.
    template = one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert template["annotations"] == {"team": "platform"}


def test_service_monitor_without_metrics_is_refused(chart):
    with pytest.raises(helm.HelmRenderError, match=r"metrics\.port is 0"):
        render(chart, {"metrics": {"port": 0, "serviceMonitor": {"enabled": True}}})


# --- pass-through values ----------------------------------------------------------------


def test_scheduling_image_and_pod_values_reach_the_pod(chart):
    values: Obj = {
        "image": {"repository": "registry.example/spotwise", "tag": "dev", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull"}],
        "nodeSelector": {"karpenter.sh/capacity-type": "on-demand"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "resources": {"requests": {"cpu": "1"}},
        "priorityClassName": "system-cluster-critical",
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "podLabels": {"team": "platform"},
        "verbose": True,
    }
    objects = render(chart, values)
    pod = one(objects, "Deployment")["spec"]["template"]
    c = container(objects)
    assert c["image"] == "registry.example/spotwise:dev"
    assert c["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod["spec"][key] == values[key]
    # Helm merges a map value into the default: the request is set, the limit kept.
    assert c["resources"] == {
        "requests": {"cpu": "1", "memory": "256Mi"},
        "limits": {"memory": "768Mi"},
    }
    assert c["env"] == values["env"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert run_options(c["args"]).verbose is True


def test_names_follow_the_release(chart):
    objects = render(chart, name="costs")
    assert one(objects, "Deployment")["metadata"]["name"] == "costs-spotwise"
    overridden = render(chart, {"fullnameOverride": "sw"}, name="costs")
    assert {o["metadata"]["name"] for o in overridden if o["kind"] != "ClusterKopfPeering"} == {
        "sw",
        "sw-metrics",
    }


# --- values that are wrong --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watchNamespace": ["shop"]}, "'watchNamespace' not allowed"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"watchNamespaces": ["Shop_1"]}, "/watchNamespaces/0"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"interval": "30"}}}, "/metrics/serviceMonitor/interval"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ],
    ids=["typo", "type", "namespace", "port", "duration", "enum"],
)
def test_schema_refuses_bad_values_naming_the_key(chart, values, message):
    with pytest.raises(helm.HelmValuesError, match=message):
        render(chart, values)


def test_notes_say_what_is_served(chart):
    notes = chart.render({"watchNamespaces": ["shop", "web"]}, name=RELEASE, namespace=NAMESPACE)
    text = notes["spotwise/templates/NOTES.txt"]
    assert "namespace(s) shop, web" in text
    assert "a KopfPeering per namespace" in text
    assert "kubectl -n spotwise-system port-forward svc/spotwise-metrics 8000" in text


# --- no drift from manifests/ -----------------------------------------------------------


def test_chart_crds_are_a_copy_of_manifests_crds():
    """`make chart` copies manifests/crds/ into the chart; CI fails when they differ."""
    generated = sorted(p.name for p in (MANIFESTS / "crds").glob("*.yaml"))
    assert generated, "manifests/crds/ holds no CRD"
    for name in generated:
        copy = CHART / "crds" / name
        assert copy.is_file(), f"charts/spotwise/crds/{name} is missing: run `make chart`"
        assert copy.read_bytes() == (MANIFESTS / "crds" / name).read_bytes(), (
            f"charts/spotwise/crds/{name} differs from manifests/crds/{name}: run `make chart`"
        )
    extra = {p.name for p in (CHART / "crds").iterdir()} - set(generated)
    assert extra <= KOPF_CRDS, f"charts/spotwise/crds/ holds files manifests/crds/ lacks: {extra}"


def test_chart_kopf_crds_equal_manifests_operator_yaml():
    ours = [d for name in sorted(KOPF_CRDS) for d in manifest_docs(CHART / "crds" / name)]
    theirs = [
        d
        for d in manifest_docs(MANIFESTS / "operator.yaml")
        if d["kind"] == "CustomResourceDefinition"
    ]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    assert sorted(ours, key=key) == sorted(theirs, key=key)


def test_helm_sees_every_crd(chart):
    names = {yaml.safe_load(c["data"])["metadata"]["name"] for c in chart.crds}
    assert names == {
        "scalingpolicies.spotwise.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


# --- the image the chart runs (operator/Dockerfile cannot be built here: no Docker engine) ---


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of operator/Dockerfile, continuation lines joined."""
    text = (ROOT / "operator" / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def test_dockerfile_agrees_with_the_chart_and_the_cli(chart):
    """What can be checked of the image without building it: its default command parses,
    its user and ports are the chart's, what it copies exists, its extra is declared."""
    steps = dockerfile()
    last = {instruction: args for instruction, args in steps}
    assert json.loads(last["ENTRYPOINT"]) == ["spotwise"]
    assert run_options(json.loads(last["CMD"])).all_namespaces is True
    pod = chart.values["podSecurityContext"]
    assert last["USER"] == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    values = chart.values
    assert set(last["EXPOSE"].split()) == {
        str(values["metrics"]["port"]),
        str(values["livenessProbe"]["port"]),
    }
    for instruction, args in steps:
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"operator/Dockerfile copies missing {source}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = next(a for i, a in steps if i == "ARG" and a.startswith("EXTRAS="))
    assert extras == "EXTRAS=operator"
    assert "operator" in pyproject["project"]["optional-dependencies"]
