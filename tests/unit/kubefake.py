"""A fake Kubernetes API server in memory, behind a real `ApiClient`, for tests.

`FakeKubeApi` is an `ApiClient` whose `call_api` answers from a dict of objects instead of
the network, so everything above it (the kubernetes client's request building, content
types, response parsing and `ApiException`s, and Spotwise's `Kube`) runs for real. Like
client-go's fake clientset it stores objects, serves get/list (label selectors
``k=v,k2=v2``, field selector ``spec.nodeName``), create, delete, the ``/scale`` and
``/eviction`` subresources, JSON merge patches (RFC 7386) and strategic merge patches,
honours a ``metadata.resourceVersion`` precondition with 409, and records every request.
Errors are injected per method and path.

It is a fake: its strategic merge knows only the merge keys Spotwise's patches touch
(containers, env, topologySpreadConstraints by name/topologyKey; every other list is
replaced), it runs no admission, defaulting, validation or controllers, and it treats
every group it is told about as installed. Tests that need the real thing use a real
API server (tests/integration).
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import RESTResponse

Obj = dict[str, Any]

# (group/version, plural) -> (kind, namespaced)
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "nodes"): ("Node", False),
    ("v1", "pods"): ("Pod", True),
    ("apps/v1", "deployments"): ("Deployment", True),
    ("apps/v1", "statefulsets"): ("StatefulSet", True),
    ("autoscaling/v2", "horizontalpodautoscalers"): ("HorizontalPodAutoscaler", True),
    ("serving.knative.dev/v1", "services"): ("Service", True),
    ("keda.sh/v1alpha1", "scaledobjects"): ("ScaledObject", True),
    ("karpenter.sh/v1", "nodepools"): ("NodePool", False),
}
_PLURALS = {(gv, kind): plural for (gv, plural), (kind, _) in KINDS.items()}
_MERGE_KEYS = {"containers": "name", "env": "name", "topologySpreadConstraints": "topologyKey"}


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any


@dataclass(frozen=True)
class _Route:
    api_version: str
    plural: str
    namespace: str | None
    name: str | None
    sub: str | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.api_version, self.plural, self.namespace or "", self.name or "")


class FakeKubeApi(ApiClient):
    """An `ApiClient` answered by an in-memory API server (see the module docstring)."""

    def __init__(self, *, missing: tuple[str, ...] = ()) -> None:
        config = Configuration()
        config.host = "http://fake-apiserver.invalid"
        super().__init__(config)
        self.objects: dict[tuple[str, str, str, str], Obj] = {}
        self.requests: list[Request] = []
        self.missing = set(missing)  # api versions whose CRDs are "not installed"
        self._failures: list[tuple[str, str, int, str, str | None]] = []
        self._versions = itertools.count(1)

    # -- setting up and looking ---------------------------------------------------

    def add(self, *objs: Obj) -> None:
        """Store objects as they are (plus a resourceVersion), as if they existed."""
        for obj in objs:
            obj = copy.deepcopy(obj)
            kind, namespaced = self._kind(obj["apiVersion"], obj["kind"])
            meta = obj.setdefault("metadata", {})
            if namespaced:
                meta.setdefault("namespace", "default")
            meta["resourceVersion"] = str(next(self._versions))
            plural = _PLURALS[(obj["apiVersion"], kind)]
            key = (obj["apiVersion"], plural, meta.get("namespace", ""), meta["name"])
            self.objects[key] = obj

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        self._kind(api_version, kind)
        key = (api_version, _PLURALS[(api_version, kind)], namespace or "", name)
        return self.objects[key]

    def all(self, api_version: str, kind: str) -> list[Obj]:
        plural = _PLURALS[(api_version, kind)]
        return [
            o
            for (gv, p, _, _), o in sorted(self.objects.items())
            if (gv, p) == (api_version, plural)
        ]

    def fail(
        self,
        method: str,
        path: str,
        status: int = 500,
        message: str = "injected",
        *,
        named: str | None = None,
    ) -> None:
        """Answer every `method` request to `path` (query ignored) with `status`; with
        `named`, only those whose body is an object of that name (to fail one create)."""
        self._failures.append((method, path, status, message, named))

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def clear(self) -> None:
        self.requests.clear()

    # -- the server ------------------------------------------------------------------

    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> RESTResponse:
        parts = urlsplit(url)
        headers = header_params or {}
        request = Request(
            method,
            parts.path,
            dict(parse_qsl(parts.query)),
            headers.get("Content-Type"),
            copy.deepcopy(body),
        )
        self.requests.append(request)
        for m, path, status, message, named in self._failures:
            if m == method and path == parts.path and named in (None, _name_of(body)):
                return _status(status, message)
        try:
            status, payload = self._serve(request)
        except _Error as err:
            return _status(err.status, err.message)
        return _response(status, payload)

    def _serve(self, req: Request) -> tuple[int, Any]:
        route = self._route(req.path)
        if route.name is None:
            if req.method == "GET":
                return 200, self._list(route, req.query)
            if req.method == "POST":
                return 201, self._create(route, req.body)
        elif route.sub == "scale":
            return self._scale(route, req)
        elif route.sub == "eviction" and req.method == "POST":
            self._take(route)
            self.objects.pop(route.key)
            return 201, {"kind": "Status", "status": "Success"}
        elif route.sub is None and req.method == "GET":
            return 200, self._take(route)
        elif route.sub is None and req.method == "PATCH":
            return 200, self._patch(route, req)
        elif route.sub is None and req.method == "DELETE":
            self._take(route)
            return 200, self.objects.pop(route.key)
        raise _Error(405, f"{req.method} {req.path} is not served by the fake")

    def _route(self, path: str) -> _Route:
        segs = [s for s in path.split("/") if s]
        if segs[:1] == ["api"]:
            api_version, rest = segs[1], segs[2:]
        elif segs[:1] == ["apis"]:
            api_version, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        else:
            raise _Error(404, f"no route {path}")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        if api_version in self.missing or (api_version, plural) not in KINDS:
            raise _Error(404, f"the server could not find the requested resource ({path})")
        return _Route(
            api_version,
            plural,
            namespace,
            rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None,
        )

    def _kind(self, api_version: str, kind: str) -> tuple[str, bool]:
        plural = _PLURALS.get((api_version, kind))
        if plural is None:
            raise ValueError(f"the fake does not know {api_version} {kind}")
        return KINDS[(api_version, plural)]

    def _take(self, route: _Route) -> Obj:
        found = self.objects.get(route.key)
        if found is None:
            raise _Error(404, f'{route.plural} "{route.name}" not found')
        return found

    def _list(self, route: _Route, query: dict[str, str]) -> Obj:
        kind, _ = KINDS[(route.api_version, route.plural)]
        items = [
            copy.deepcopy(o)
            for (gv, plural, ns, _), o in sorted(self.objects.items())
            if (gv, plural) == (route.api_version, route.plural)
            and (route.namespace is None or ns == route.namespace)
            and _selected(o, query.get("labelSelector"), query.get("fieldSelector"))
        ]
        return {"apiVersion": route.api_version, "kind": f"{kind}List", "items": items}

    def _create(self, route: _Route, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if route.namespace is not None:
            meta["namespace"] = route.namespace
        key = (route.api_version, route.plural, route.namespace or "", meta["name"])
        if key in self.objects:
            raise _Error(409, f'{route.plural} "{meta["name"]}" already exists')
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _patch(self, route: _Route, req: Request) -> Obj:
        current = self._take(route)
        body = copy.deepcopy(req.body)
        wanted_version = (body.get("metadata") or {}).pop("resourceVersion", None)
        if wanted_version is not None and wanted_version != current["metadata"]["resourceVersion"]:
            raise _Error(
                409, "the object has been modified; please apply your changes to the latest version"
            )
        if req.content_type == "application/merge-patch+json":
            patched = merge_patch(current, body)
        elif req.content_type == "application/strategic-merge-patch+json":
            if route.api_version not in ("v1", "apps/v1", "autoscaling/v2"):
                raise _Error(415, "the body of the request was in an unknown format")
            patched = strategic_merge_patch(current, body)
        else:
            raise _Error(415, f"unsupported patch type {req.content_type}")
        if patched != current:
            patched["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[route.key] = patched
        return copy.deepcopy(self.objects[route.key])

    def _scale(self, route: _Route, req: Request) -> tuple[int, Any]:
        obj = self._take(route)
        if req.method == "PATCH":
            replicas = (req.body.get("spec") or {}).get("replicas")
            if replicas != obj.get("spec", {}).get("replicas"):
                obj.setdefault("spec", {})["replicas"] = replicas
                obj["metadata"]["resourceVersion"] = str(next(self._versions))
        elif req.method != "GET":
            raise _Error(405, f"{req.method} on /scale is not served by the fake")
        replicas = obj.get("spec", {}).get("replicas", 1)
        return 200, {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": route.name, "namespace": route.namespace},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        }


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _response(status: int, payload: Any) -> RESTResponse:
    raw = SimpleNamespace(
        status=status,
        reason=_REASONS.get(status, "OK"),
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )
    return RESTResponse(raw)


def _status(code: int, message: str) -> RESTResponse:
    return _response(
        code,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": _REASONS.get(code, "").replace(" ", ""),
            "code": code,
        },
    )


def _name_of(body: Any) -> str | None:
    meta = body.get("metadata") if isinstance(body, dict) else None
    return str(meta.get("name")) if isinstance(meta, dict) else None


def _selected(obj: Obj, labels: str | None, fields: str | None) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (labels or "").split(",")):
        key, _, value = term.partition("=")
        if have.get(key) != value:
            return False
    for term in filter(None, (fields or "").split(",")):
        key, _, value = term.partition("=")
        if key != "spec.nodeName":
            raise _Error(400, f"field selector {key} is not served by the fake")
        if (obj.get("spec") or {}).get("nodeName") != value:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge patch, for the merge keys in `_MERGE_KEYS` only."""
    if isinstance(patch, list) and field in _MERGE_KEYS and isinstance(target, list):
        key = _MERGE_KEYS[field]
        items = [copy.deepcopy(item) for item in target]
        for item in patch:
            at = next((i for i, old in enumerate(items) if old.get(key) == item.get(key)), None)
            if at is None:
                items.append(strategic_merge_patch({}, item))
            else:
                items[at] = strategic_merge_patch(items[at], item)
        return items
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = strategic_merge_patch(out.get(name), value, name)
    return out
