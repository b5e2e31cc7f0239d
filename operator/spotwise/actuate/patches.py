"""Patches as values: what to send to which object, and why, before anything is sent.

Builders return `Patch` values (or nothing when the object already holds the wanted
values: that is what makes actuation idempotent). `coalesce` folds all patches of one
object into one request, so that replicas, concurrency and placement on a Knative Service
cost one new Revision, and env plus placement on a Deployment one rollout, not two.

Not here: sending (`spotwise.actuate.kube`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spotwise.actuate.kube import Obj, ObjectRef
from spotwise.api.v1alpha1 import parse_quantity


@dataclass(frozen=True)
class Patch:
    """A body for one object; `what` says in a few words what it changes.

    `scale` patches go to the ``/scale`` subresource and carry only the replica count.
    """

    ref: ObjectRef
    body: Obj
    what: str
    scale: bool = False


@dataclass
class Report:
    """What one actuation did: a line per object changed, a line per object that failed."""

    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.changes += other.changes
        self.errors += other.errors


def deep_merge(into: Obj, extra: Mapping[str, Any], where: str = "") -> Obj:
    """`into` with `extra` merged in, recursively; two different non-dict values for the
    same key are a bug in the builders and raise ValueError."""
    out = dict(into)
    for key, value in extra.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, f"{where}.{key}")
        elif key in out and out[key] != value:
            raise ValueError(f"two patches set {where}.{key} differently")
        else:
            out[key] = value
    return out


def coalesce(patches: Iterable[Patch]) -> list[Patch]:
    """One patch per object (and per subresource), in first-seen order."""
    merged: dict[tuple[ObjectRef, bool], Patch] = {}
    for p in patches:
        key = (p.ref, p.scale)
        if key in merged:
            old = merged[key]
            merged[key] = Patch(
                p.ref, deep_merge(old.body, p.body), f"{old.what}; {p.what}", p.scale
            )
        else:
            merged[key] = p
    return list(merged.values())


def dig(obj: Any, *path: str | int) -> Any:
    """obj[path[0]][path[1]]..., or None where any step is missing."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def same_number(current: Any, wanted: float) -> bool:
    """True when `current` (an int, a float, or a string such as "8", "8.0" or the "1k"
    the API server writes for a quantity of 1000) equals `wanted`. Comparing numbers, not
    text, keeps a server-normalized value from looking changed on every tick."""
    if isinstance(current, bool) or current is None:
        return False
    if isinstance(current, int | float):
        return float(current) == float(wanted)
    try:
        return parse_quantity(str(current).strip()) == float(wanted)
    except ValueError:
        return False


def resource_version(obj: Obj) -> str | None:
    value = dig(obj, "metadata", "resourceVersion")
    return str(value) if value is not None else None


def guarded(obj: Obj, body: Obj) -> Obj:
    """`body` made conditional on `obj` being unchanged: a patch that resends a whole list
    read from `obj` must not overwrite an edit made since (the server answers 409)."""
    version = resource_version(obj)
    if version is None:
        return body
    return deep_merge(body, {"metadata": {"resourceVersion": version}})
