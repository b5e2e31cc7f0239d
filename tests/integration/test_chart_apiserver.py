"""The Helm chart against a real kube-apiserver (envtest binaries): every object it renders
passes the server's validation (server-side apply, dry run, strict field validation), its
RBAC lets the service account do what the operator needs and no more, and `spotwise run`
started with the chart's arguments and that service account's token serves a policy and
peers without a single Forbidden.

Rendering is the real Helm SDK (helm-python-sdk). Nothing runs pods here: the operator
runs as a local process with the chart's credentials, not in its container (the image
cannot be built on machines without a Docker engine). Skipped with the reason when
etcd/kube-apiserver or the Helm SDK are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from controlplane import REPO_ROOT, ControlPlane, api_message, apply_crd, free_port
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

try:
    import helm_python as helm
except Exception as absent:  # ImportError, or HelmLibraryError when its library cannot load
    pytest.skip(f"helm-python-sdk is unavailable: {absent}", allow_module_level=True)

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "spotwise"
RELEASE = "chart-it"
NAMESPACE = "chart-it-system"  # where the release lives
SERVED = "chart-it"  # the namespace the running operator serves
OTHER = ("chart-it-shop", "chart-it-web")  # namespaces named in watchNamespaces value sets
# Kinds whose CRDs this control plane lacks (prometheus-operator is not installed).
ABSENT_KINDS = {"ServiceMonitor"}
FIELD_MANAGER = "spotwise-chart-test"
STARTUP_LIMIT = 120.0  # seconds for the operator process to import, log in and serve
TICK_LIMIT = 60.0  # the first tick runs at once; this covers a slow, shared machine
T = TypeVar("T")

Obj = dict[str, Any]


def render(values: Obj | None = None) -> list[Obj]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def apply(dyn: dynamic.DynamicClient, obj: Obj, *, dry_run: bool) -> Any:
    """Server-side apply; a dry run is validated and admitted but not stored. Unknown or
    duplicate fields are errors (fieldValidation=Strict), not silently dropped."""
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return dyn.server_side_apply(
        resource,
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All" if dry_run else None,
        query_params=[("fieldValidation", "Strict")],
    )


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """Admin access, with the chart's CRDs (ScalingPolicy and kopf's peerings) Established
    and the namespaces the value sets name created."""
    with control_plane.api_client() as admin:
        with helm.Chart.load(CHART) as chart:
            crds = [yaml.safe_load(c["data"]) for c in chart.crds]
        for crd in crds:
            apply_crd(admin, crd)
        core = client.CoreV1Api(admin)
        for name in (NAMESPACE, SERVED, *OTHER):
            try:
                core.create_namespace({"metadata": {"name": name}})
            except ApiException as exists:
                if exists.status != 409:
                    raise
        yield admin


@pytest.fixture(scope="module")
def dyn(api: client.ApiClient) -> dynamic.DynamicClient:
    # Made after the CRDs exist: the dynamic client discovers kinds when it is created.
    return dynamic.DynamicClient(api)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"standalone": True},
        {"watchNamespaces": list(OTHER)},
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        {"metrics": {"port": 0}, "livenessProbe": {"enabled": False}},
        {"serviceAccount": {"create": False, "name": "default"}, "rbac": {"create": False}},
    ],
    ids=["defaults", "standalone", "namespaces", "servicemonitor", "bare", "own-rbac"],
)
def test_every_rendered_object_passes_server_validation(dyn, values):
    objects = render(values)
    checked = []
    for obj in objects:
        if obj["kind"] in ABSENT_KINDS:
            continue
        try:
            answer = apply(dyn, obj, dry_run=True)
        except ApiException as refused:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {api_message(refused)}")
        assert answer.metadata.name == obj["metadata"]["name"]
        checked.append(obj["kind"])
    assert "Deployment" in checked
    assert len(checked) == len([o for o in objects if o["kind"] not in ABSENT_KINDS])


def test_strict_dry_run_refuses_a_bad_object(dyn):
    """The check above can fail: a misspelled field in the chart's Deployment is refused."""
    (deployment,) = [o for o in render() if o["kind"] == "Deployment"]
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(ApiException) as refused:
        apply(dyn, deployment, dry_run=True)
    assert "replica" in api_message(refused.value)


# -- the release, applied for real -------------------------------------------------------


@pytest.fixture(scope="module")
def release(dyn: dynamic.DynamicClient) -> list[Obj]:
    """The chart serving SERVED, applied for real except its Deployment: the operator runs
    as a local process below, with the service account's credentials."""
    objects = render({"watchNamespaces": [SERVED]})
    for obj in objects:
        if obj["kind"] != "Deployment":
            apply(dyn, obj, dry_run=False)
    return objects


def account_of(objects: list[Obj]) -> str:
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    return f"system:serviceaccount:{NAMESPACE}:{account['metadata']['name']}"


def allowed(api: client.ApiClient, user: str, verb: str, group: str, resource: str) -> bool:
    plural, _, sub = resource.partition("/")
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
                "resourceAttributes": {
                    "namespace": SERVED,
                    "verb": verb,
                    "group": group,
                    "resource": plural,
                    "subresource": sub,
                },
            },
        }
    )
    return bool(review.status.allowed)


def test_the_service_account_may_do_what_manifests_rbac_yaml_grants(api, release):
    """The API server's own authorizer, asked for each verb of each rule of
    manifests/rbac.yaml on behalf of the chart's service account."""
    user = account_of(release)
    rbac = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests" / "rbac.yaml").read_text()) if d]
    (role,) = [d for d in rbac if d["kind"] == "ClusterRole"]
    denied = [
        f"{verb} {group or 'core'}/{resource}"
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if not allowed(api, user, verb, group, resource)
    ]
    assert denied == []


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("delete", "apps", "deployments"),
        ("list", "", "secrets"),
        ("create", "", "secrets"),
        ("get", "", "configmaps"),
        ("delete", "spotwise.dev", "scalingpolicies"),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ],
)
def test_the_service_account_may_not_do_more(api, release, verb, group, resource):
    assert not allowed(api, account_of(release), verb, group, resource)


# -- the operator with the chart's arguments and credentials -----------------------------


def service_account_kubeconfig(
    api: client.ApiClient, plane: ControlPlane, objects: list[Obj], path: Path
) -> Path:
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account["metadata"]["name"],
        NAMESPACE,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": "spotwise", "user": {"token": token.status.token}}],
        "contexts": [{"name": "spotwise", "context": {"cluster": "envtest", "user": "spotwise"}}],
        "current-context": "spotwise",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def chart_args(objects: list[Obj], metrics_port: int, health_port: int) -> list[str]:
    """The Deployment's `spotwise run` arguments, its ports moved to free loopback ones."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = []
    for arg in container["args"]:
        if arg.startswith("--liveness="):
            arg = f"--liveness=http://127.0.0.1:{health_port}/healthz"
        elif arg.startswith("--metrics-port="):
            arg = f"--metrics-port={metrics_port}"
        args.append(arg)
    return args


def eventually(check: Callable[[], T | None], limit: float, what: str, log: Path) -> T:
    deadline = time.monotonic() + limit
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (ApiException, OSError, KeyError, TypeError) as err:
            last, value = err, None
        if value:
            return value
        time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    pytest.fail(f"{what}: not within {limit:.0f}s (last error: {last})\n{tail}")


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
        return bool(answer.status == 200)


def web_policy() -> Obj:
    """policies/web.yaml in SERVED, in DryRun and without Prometheus: the operator reads
    the Deployment, finds no metrics, and writes status, a finalizer and an event."""
    policy: Obj = yaml.safe_load((REPO_ROOT / "policies" / "web.yaml").read_text())
    policy["metadata"] = {"name": "web", "namespace": SERVED}
    policy["spec"]["mode"] = "DryRun"
    del policy["spec"]["prometheus"]
    return policy


def test_operator_runs_with_the_charts_arguments_and_service_account(
    control_plane, api, release, tmp_path
):
    args = chart_args(release, metrics_port := free_port(), health_port := free_port())
    assert args[:2] == ["run", f"--namespace={SERVED}"] and "--standalone" not in args
    kubeconfig = service_account_kubeconfig(api, control_plane, release, tmp_path / "kubeconfig")
    log = tmp_path / "operator.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": str(kubeconfig)}
    labels = {"app": "web"}
    client.AppsV1Api(api).create_namespaced_deployment(
        SERVED,
        {
            "metadata": {"name": "web", "namespace": SERVED},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "pause:3.9"}]},
                },
            },
        },
    )
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "spotwise.dev", "v1alpha1", SERVED, "scalingpolicies", web_policy()
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "spotwise", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        eventually(lambda: healthy(health_port), STARTUP_LIMIT, "liveness endpoint", log)

        def status() -> Obj | None:
            body = custom.get_namespaced_custom_object(
                "spotwise.dev", "v1alpha1", SERVED, "scalingpolicies", "web"
            )
            return body if (body.get("status") or {}).get("conditions") else None

        body = eventually(status, TICK_LIMIT, "the policy's status", log)
        ready = {c["type"]: c for c in body["status"]["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "NoPlanYet"), ready
        assert "spotwise.dev/finalizer" in body["metadata"]["finalizers"]

        def warned() -> bool:
            events = client.CoreV1Api(api).list_namespaced_event(SERVED).items
            return any(e.reason == "MetricsUnavailable" for e in events)

        eventually(warned, TICK_LIMIT, "a MetricsUnavailable event", log)

        def peered() -> Obj | None:
            peering = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", SERVED, "kopfpeerings", "spotwise"
            )
            return peering.get("status") or None

        assert len(eventually(peered, TICK_LIMIT, "the operator in the KopfPeering", log)) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
            assert b"spotwise_decisions_total" in answer.read()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text(errors="replace")
    assert "Forbidden" not in text and " 403" not in text, text[-4000:]
