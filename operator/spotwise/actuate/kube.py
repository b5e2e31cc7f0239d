"""The thin shell between actuation and the Kubernetes API: objects in, objects out, as
plain JSON dicts.

Reads and writes go through the kubernetes client's `ApiClient` (its auth, TLS, proxy and
retry settings) with raw paths, the way its `CustomObjectsApi` does, so that built-in and
custom resources are handled alike and nothing the server sends is lost on the way back
(the typed models drop fields they do not know; a patch built from them would erase
those). The one typed call is the scale subresource (`AppsV1Api.patch_namespaced_*_scale`).

Writes are JSON merge patches (RFC 7386) for custom resources, which the API server only
accepts in that form, and strategic merge patches for built-in kinds, whose merge keys let
a patch name one container or env var instead of resending the list. Every write carries
``fieldManager=spotwise`` so that `managedFields` shows who changed what.

Not here: deciding what to write (the pure builders elsewhere in `spotwise.actuate`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException

from spotwise.actuate.labels import FIELD_MANAGER

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# What one failed request raises: the server answered with an error, or never answered.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (ApiException, urllib3.exceptions.HTTPError)


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of object and where it lives in the API."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        """Served by kube-apiserver itself, so strategic merge patch works."""
        return self.group in _BUILTIN_GROUPS

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            root += f"/namespaces/{namespace}"
        root += f"/{self.plural}"
        return root if name is None else f"{root}/{name}"


_BUILTIN_GROUPS = frozenset({"", "apps", "autoscaling", "policy"})

DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
KNATIVE_SERVICES = Resource("serving.knative.dev", "v1", "services", "Service")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
SCALED_OBJECTS = Resource("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject")
NODEPOOLS = Resource("karpenter.sh", "v1", "nodepools", "NodePool", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod")

WORKLOAD_RESOURCES = {r.kind: r for r in (DEPLOYMENTS, STATEFULSETS, KNATIVE_SERVICES)}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object: what it is and where."""

    resource: Resource
    name: str
    namespace: str | None = None

    @property
    def path(self) -> str:
        return self.resource.path(self.namespace, self.name)

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.resource.kind} {where}"


def ref_of(resource: Resource, obj: Obj) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(resource, str(meta.get("name", "")), meta.get("namespace"))


def describe_error(err: Exception) -> str:
    """One line for a failed request: status, reason and the server's message."""
    if isinstance(err, ApiException):
        message = ""
        if err.body:
            try:
                status = json.loads(err.body)
                message = str(status.get("message", "")) if isinstance(status, dict) else ""
            except ValueError:
                message = str(err.body)
        head = f"{err.status} {err.reason}".strip() if err.status else str(err.reason or "")
        text = f"{head}: {message}" if message else head
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def is_not_found(err: Exception) -> bool:
    return isinstance(err, ApiException) and err.status == 404


class Kube:
    """Get, list, patch, create, delete and evict, with JSON dicts; errors raise
    `ApiException` (or a urllib3 error when the server cannot be reached)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout_seconds: float | None = 10.0,
    ) -> None:
        self.api = api
        self.field_manager = field_manager
        self.timeout_seconds = timeout_seconds

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Obj | None = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=self.timeout_seconds)
        response.read()  # type: ignore[no-untyped-call]
        return self.api.response_deserialize(response, {"2XX": "object"}).data

    def get(self, ref: ObjectRef) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            found: Obj = self._call("GET", ref.path)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """The objects of a kind (in one namespace, or all when `namespace` is None)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        found = self._call("GET", resource.path(namespace), query=query)
        items = found.get("items") if isinstance(found, dict) else None
        return [item for item in items or [] if isinstance(item, dict)]

    def patch(self, ref: ObjectRef, body: Obj) -> Obj:
        """A strategic merge patch for built-in kinds, a JSON merge patch otherwise."""
        kind = STRATEGIC_MERGE_PATCH if ref.resource.builtin else MERGE_PATCH
        patched: Obj = self._call(
            "PATCH",
            ref.path,
            query=[("fieldManager", self.field_manager)],
            body=body,
            content_type=kind,
        )
        return patched

    def scale(self, ref: ObjectRef, replicas: int) -> None:
        """``{"spec": {"replicas": n}}`` on the apps/v1 ``/scale`` subresource."""
        apps = AppsV1Api(self.api)
        send = {
            "Deployment": apps.patch_namespaced_deployment_scale,
            "StatefulSet": apps.patch_namespaced_stateful_set_scale,
        }[ref.resource.kind]
        send(
            ref.name,
            ref.namespace or "default",
            {"spec": {"replicas": replicas}},
            field_manager=self.field_manager,
            _content_type=MERGE_PATCH,
            _request_timeout=self.timeout_seconds,
        )

    def create(self, resource: Resource, body: Obj, namespace: str | None = None) -> Obj:
        created: Obj = self._call(
            "POST",
            resource.path(namespace),
            query=[("fieldManager", self.field_manager)],
            body=body,
            content_type="application/json",
        )
        return created

    def delete(self, ref: ObjectRef) -> bool:
        """Delete the object; False when it was already gone."""
        try:
            self._call("DELETE", ref.path)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def evict(self, pod: ObjectRef) -> bool:
        """Ask the policy/v1 Eviction API to evict a pod (it honours PodDisruptionBudgets and
        answers 429 when one forbids it); False when the pod was already gone."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
        }
        try:
            self._call("POST", pod.path + "/eviction", body=body, content_type="application/json")
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
