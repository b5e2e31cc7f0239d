"""Actuator ``env``: the limit as a container environment variable on the pod template.

The variable (``concurrency.envVar``) is set on every container that already defines it,
or on the first container when none does. Changing the pod template rolls the pods, so
the patch is built only when the value differs.

Deployments and StatefulSets get a strategic merge patch that names just the container
and the variable (both lists merge by ``name``); a variable that came from ``valueFrom``
has that key removed. A Knative Service only takes JSON merge patches, which replace
lists whole, so it gets all containers as read, conditional on its resourceVersion.
"""

from __future__ import annotations

from typing import Any

from spotwise.actuate.concurrency.base import register
from spotwise.actuate.kube import Obj, ObjectRef
from spotwise.actuate.patches import Patch, dig, guarded
from spotwise.actuate.workloads import ActuationError, WorkloadView


def env_patch(
    ref: ObjectRef, workload: Obj, var: str, concurrency: int, *, strategic: bool
) -> Patch | None:
    containers: list[dict[str, Any]] = list(
        dig(workload, "spec", "template", "spec", "containers") or []
    )
    if not containers:
        raise ActuationError(f"{ref} has no containers to set {var} on")
    value = str(concurrency)
    holders = [
        i for i, c in enumerate(containers) if any(e.get("name") == var for e in c.get("env") or [])
    ]
    changed: list[int] = []
    new = list(containers)
    for i in holders or [0]:
        env = list(containers[i].get("env") or [])
        current = next((e for e in env if e.get("name") == var), None)
        if current is not None and current.get("value") == value and "valueFrom" not in current:
            continue
        entry = {"name": var, "value": value}
        if current is None:
            env.append(entry)
        else:
            env[env.index(current)] = entry
        new[i] = {**containers[i], "env": env}
        changed.append(i)
    if not changed:
        return None
    if strategic:
        listed = []
        for i in changed:
            was: dict[str, Any] = next(
                (e for e in containers[i].get("env") or [] if e.get("name") == var), {}
            )
            item: dict[str, Any] = {"name": var, "value": value}
            if "valueFrom" in was:
                item["valueFrom"] = None  # strategic merge would keep it beside the value
            listed.append({"name": containers[i]["name"], "env": [item]})
        body: Obj = {"spec": {"template": {"spec": {"containers": listed}}}}
    else:
        body = guarded(workload, {"spec": {"template": {"spec": {"containers": new}}}})
    names = ", ".join(str(containers[i].get("name") or f"containers[{i}]") for i in changed)
    return Patch(ref, body, f"env {var}={value} on {names} (rolls the pods)")


@register("env")
class EnvActuator:
    name = "env"

    def patches(self, view: WorkloadView, concurrency: int) -> list[Patch]:
        var = view.spec.concurrency.env_var
        if var is None:  # the API model requires it for actuator env
            raise ActuationError("concurrency.envVar is required when actuator is env")
        patch = env_patch(view.ref, view.obj, var, concurrency, strategic=view.ref.resource.builtin)
        return [] if patch is None else [patch]
