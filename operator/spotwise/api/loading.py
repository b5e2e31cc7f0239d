"""Turn YAML files, text or cluster objects into validated `ScalingPolicy` models.

Every failure is a `PolicyError` whose problems are ``(path, reason)`` pairs, printed one
per line as ``path: reason``, e.g.::

    spec.workloads[0].replicas.min: must be ≤ max (3), got 5
    spec.workloads[0].replicaz: unknown field

Paths use the wire (camelCase) names. ``<file>`` marks problems with the file itself
(unreadable, not YAML, empty, several documents) and ``<document>`` problems with the
document as a whole (not a mapping). Bad input never raises anything but `PolicyError`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from spotwise.api.v1alpha1 import ScalingPolicy, ScalingPolicySpec

FILE = "<file>"
DOCUMENT = "<document>"

Problem = tuple[str, str]


class PolicyError(Exception):
    """A policy that cannot be used, with every problem found: ``(path, reason)`` pairs."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems: list[Problem] = list(problems) or [(DOCUMENT, "invalid policy")]
        self.source = source
        super().__init__(self.__str__())

    def lines(self) -> list[str]:
        """One ``path: reason`` line per problem."""
        return [f"{path}: {reason}" for path, reason in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --------------------------------------------------------------------------------------
# pydantic errors -> problems
# --------------------------------------------------------------------------------------


def format_path(loc: Iterable[str | int]) -> str:
    """``("spec", "workloads", 0, "slo")`` -> ``spec.workloads[0].slo``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or DOCUMENT


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_REASONS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "none_required": "must be null",
}

_BOUNDS = {
    "greater_than_equal": ("ge", "≥"),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "≤"),
    "less_than": ("lt", "<"),
}


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "spotwise_field":
        return str(ctx.get("reason", error["msg"]))
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        return str(cause) if cause is not None else error["msg"]
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return f"must be {symbol} {_number(ctx.get(key))}, got {_shown(value)}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {_shown(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must have at least {n} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind in _TYPE_REASONS:
        return f"{_TYPE_REASONS[kind]}, got {_shown(value)}"
    msg = error["msg"]
    return msg[:1].lower() + msg[1:]


def validation_problems(
    error: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[Problem]:
    """The problems of a pydantic ValidationError, with wire-name paths under `prefix`."""
    problems: list[Problem] = []
    for detail in error.errors(include_url=False):
        loc: list[str | int] = [*prefix, *detail["loc"]]
        reason = _reason(detail)
        if detail["type"] == "spotwise_field":
            extra = (detail.get("ctx") or {}).get("loc") or ()
            loc.extend(p for p in extra if isinstance(p, str | int))
        if "[key]" in loc:
            # A bad mapping key: pydantic puts "[key]" after the key itself.
            loc = [p for p in loc if p != "[key]"]
            reason = f"key {reason}"
        problem = (format_path(loc), reason)
        if problem not in problems:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------------------
# objects -> models
# --------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """Mappings (e.g. kopf bodies) to dicts and tuples to lists, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def parse_policy(data: object, *, source: str | None = None) -> ScalingPolicy:
    """Validate a decoded document (dict, kopf body, ...) into a ScalingPolicy.

    Raises PolicyError listing every problem found.
    """
    if isinstance(data, ScalingPolicy):
        return data
    if not isinstance(data, Mapping):
        raise PolicyError(
            [(DOCUMENT, f"must be a ScalingPolicy mapping, got {_kind_of(data)}")], source
        )
    document = _plain(data)
    assert isinstance(document, dict)
    problems: list[Problem] = [
        (key, "required") for key in ("apiVersion", "kind") if key not in document
    ]
    try:
        policy = ScalingPolicy.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as error:
        problems.extend(validation_problems(error))
    except RecursionError:
        problems.append((DOCUMENT, "nested too deeply"))
    if problems:
        raise PolicyError(problems, source)
    return policy


def parse_spec(data: object, *, source: str | None = None) -> ScalingPolicySpec:
    """Validate only a spec (e.g. a kopf handler's `spec`); paths start with ``spec.``."""
    if isinstance(data, ScalingPolicySpec):
        return data
    if not isinstance(data, Mapping):
        raise PolicyError([("spec", f"must be a mapping, got {_kind_of(data)}")], source)
    try:
        return ScalingPolicySpec.model_validate(_plain(data), by_alias=True, by_name=False)
    except ValidationError as error:
        raise PolicyError(validation_problems(error, ("spec",)), source) from None
    except RecursionError:
        raise PolicyError([("spec", "nested too deeply")], source) from None


# --------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_reason(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = error.problem or error.context or "malformed YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {what}"
    return "invalid YAML: " + " ".join(str(error).split())


def load_policy_text(text: str, source: str = "<string>") -> ScalingPolicy:
    """Parse one ScalingPolicy from YAML (or JSON) text; `source` names it in errors."""
    try:
        documents = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as error:
        raise PolicyError([(FILE, _yaml_reason(error))], source) from None
    except RecursionError:
        raise PolicyError([(FILE, "invalid YAML: nested too deeply")], source) from None
    if not documents:
        raise PolicyError([(FILE, "is empty; expected one ScalingPolicy document")], source)
    if len(documents) > 1:
        raise PolicyError(
            [(FILE, f"holds {len(documents)} YAML documents; expected one ScalingPolicy")],
            source,
        )
    return parse_policy(documents[0], source=source)


def load_policy_file(path: str | Path) -> ScalingPolicy:
    """Read and validate one ScalingPolicy YAML file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PolicyError([(FILE, f"cannot read {source}: {reason}")], source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PolicyError(
            [(FILE, f"not UTF-8 text (bad byte at offset {error.start})")], source
        ) from None
    return load_policy_text(text, source)


__all__ = [
    "DOCUMENT",
    "FILE",
    "PolicyError",
    "Problem",
    "format_path",
    "load_policy_file",
    "load_policy_text",
    "parse_policy",
    "parse_spec",
    "validation_problems",
]
