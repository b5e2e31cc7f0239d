"""Read instance catalogs: the built-in ones shipped in the package, and user CSV/YAML files.

This is the only place that turns files into `spotwise.domain.Catalog` values, and it
validates as it reads: every problem is a `CatalogError` with a one-line message that
names the file, the row or entry, and the field. It does not price anything, pick
instance types or talk to a cloud API.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from spotwise.domain import INTERRUPTION_BUCKETS, Catalog, InstanceType

__all__ = [
    "CatalogError",
    "builtin_catalog",
    "builtin_catalog_names",
    "load_catalog",
    "load_catalog_csv",
    "load_catalog_yaml",
    "merge_catalog",
]

DEFAULT_BUILTIN = "aws-us-east-1"


class CatalogError(ValueError):
    """A catalog file or catalog override that cannot be used as given."""


# CSV header -> InstanceType field. Besides our own names this accepts the columns of
# ../shared/data/aws-us-east-1-instances.csv (ec2instances.info + Spot Advisor), so that
# file loads as it is; columns not listed here (e.g. spot_savings_pct) are ignored.
_CSV_COLUMNS: dict[str, str] = {
    "name": "name",
    "instance_type": "name",
    "arch": "arch",
    "vcpu": "vcpu",
    "memory_gib": "memory_gib",
    "on_demand_price": "on_demand_price",
    "ondemand_hourly": "on_demand_price",
    "spot_price": "spot_price",
    "spot_avg_hourly": "spot_price",
    "interruption_bucket": "interruption_bucket",
}
_REQUIRED_FIELDS: tuple[str, ...] = ("name", "vcpu", "memory_gib", "on_demand_price")

# YAML / override key -> InstanceType field. snake_case is accepted too, because the same
# dicts may come from a pydantic model dumped by field name rather than by alias.
_YAML_KEYS: dict[str, str] = {
    "name": "name",
    "arch": "arch",
    "vcpu": "vcpu",
    "memoryGiB": "memory_gib",
    "onDemandPrice": "on_demand_price",
    "spotPrice": "spot_price",
    "interruptionBucket": "interruption_bucket",
    "memory_gib": "memory_gib",
    "on_demand_price": "on_demand_price",
    "spot_price": "spot_price",
    "interruption_bucket": "interruption_bucket",
}
# The user-facing spelling of each field, for messages about YAML and overrides.
_YAML_NAME: dict[str, str] = {
    "name": "name",
    "arch": "arch",
    "vcpu": "vcpu",
    "memory_gib": "memoryGiB",
    "on_demand_price": "onDemandPrice",
    "spot_price": "spotPrice",
    "interruption_bucket": "interruptionBucket",
}

# Kubernetes labels say amd64/arm64, EC2 says x86_64/arm64: keep one spelling per machine.
# i386 is listed by ec2instances.info for types that also run x86_64 (t2.*).
_ARCH_ALIASES: dict[str, str] = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "i386": "x86_64",
    "arm64": "arm64",
    "aarch64": "arm64",
}


# --- field parsing (shared by CSV, YAML and overrides) ---------------------------------


class _FieldError(Exception):
    """A bad field value; the caller adds where it was found."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool):  # YAML `true` is an int to Python
        raise _FieldError(field, f"must be a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            raise _FieldError(field, f"must be a number, got {text!r}") from None
    if not math.isfinite(number):
        raise _FieldError(field, f"must be a finite number, got {value!r}")
    return number


def _positive(field: str, value: Any) -> float:
    number = _number(field, value)
    if number <= 0:
        raise _FieldError(field, f"must be > 0, got {number:g}")
    return number


def _bucket(field: str, value: Any) -> int:
    if isinstance(value, str) and value.strip() in INTERRUPTION_BUCKETS:
        return INTERRUPTION_BUCKETS.index(value.strip())
    number = _number(field, value)
    top = len(INTERRUPTION_BUCKETS) - 1
    if not number.is_integer() or not 0 <= number <= top:
        raise _FieldError(
            field,
            f"must be an integer 0..{top} or one of {', '.join(INTERRUPTION_BUCKETS)}, "
            f"got {value!r}",
        )
    return int(number)


def _arch(field: str, value: Any) -> str:
    text = str(value).strip()
    arch = _ARCH_ALIASES.get(text.lower())
    if arch is None:
        raise _FieldError(field, f"must be one of {', '.join(sorted(_ARCH_ALIASES))}, got {text!r}")
    return arch


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _instance_type(fields: Mapping[str, Any], label: Mapping[str, str]) -> InstanceType:
    """Build one InstanceType from raw values keyed by InstanceType field name.

    `label` maps field names to how the user spelled them, so messages quote the column
    or key they actually wrote. Blank optional values mean "not given".
    """
    for field in _REQUIRED_FIELDS:
        if _blank(fields.get(field)):
            raise _FieldError(label.get(field, field), "is missing")
    name = str(fields["name"]).strip()
    spot = fields.get("spot_price")
    bucket = fields.get("interruption_bucket")
    arch = fields.get("arch")
    return InstanceType(
        name=name,
        vcpu=_positive(label.get("vcpu", "vcpu"), fields["vcpu"]),
        memory_gib=_positive(label.get("memory_gib", "memory_gib"), fields["memory_gib"]),
        on_demand_price=_positive(
            label.get("on_demand_price", "on_demand_price"), fields["on_demand_price"]
        ),
        spot_price=None if _blank(spot) else _positive(label.get("spot_price", "spot_price"), spot),
        interruption_bucket=None
        if _blank(bucket)
        else _bucket(label.get("interruption_bucket", "interruption_bucket"), bucket),
        arch="x86_64" if _blank(arch) else _arch(label.get("arch", "arch"), arch),
    )


def _catalog(name: str, types: Iterable[InstanceType]) -> Catalog:
    items = tuple(types)
    if not items:
        raise CatalogError(f"catalog {name} has no instance types")
    return Catalog(name, items)


# --- CSV --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheets
    except OSError as e:
        raise CatalogError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CatalogError(f"{path}: not UTF-8 text ({e.reason})") from None


def _parse_csv(text: str, source: str, name: str) -> Catalog:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise CatalogError(
            f"{source}: empty file; expected a header with columns {', '.join(_REQUIRED_FIELDS)}"
        )
    reader.fieldnames = header
    column_of: dict[str, str] = {}  # field -> column
    for column in header:
        field = _CSV_COLUMNS.get(column)
        if field is None:
            continue
        if field in column_of:
            raise CatalogError(
                f"{source}: columns {column_of[field]} and {column} both give {field}"
            )
        column_of[field] = column
    missing = [f for f in _REQUIRED_FIELDS if f not in column_of]
    if missing:
        raise CatalogError(f"{source}: missing columns {', '.join(missing)}")

    types: dict[str, InstanceType] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(v and v.strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        fields = {field: row.get(column) for field, column in column_of.items()}
        where = f"{source} line {line}"
        if not _blank(fields.get("name")):
            where += f" ({str(fields['name']).strip()})"
        try:
            itype = _instance_type(fields, column_of)
        except _FieldError as e:
            raise CatalogError(f"{where}: {e}") from None
        seen = types.get(itype.name)
        if seen is not None:
            # ec2instances.info lists some types once per architecture (t2.* as i386 and
            # x86_64); with i386 read as x86_64 those rows are equal: one type, no error.
            if seen == itype:
                continue
            raise CatalogError(
                f"{where}: duplicate instance type {itype.name} "
                f"(first on line {first_line[itype.name]})"
            )
        types[itype.name] = itype
        first_line[itype.name] = line
    return _catalog(name, types.values())


def load_catalog_csv(path: str | Path, name: str | None = None) -> Catalog:
    """Load a catalog from a CSV file; the catalog is named after the file unless `name`.

    Columns: name, vcpu, memory_gib, on_demand_price (required); spot_price and
    interruption_bucket (optional, blank = none); arch (optional, blank = x86_64). The
    column names of ec2instances.info exports (instance_type, ondemand_hourly,
    spot_avg_hourly) work too.
    """
    path = Path(path)
    return _parse_csv(_read_text(path), str(path), name or path.stem)


# --- YAML -------------------------------------------------------------------------------


def _entry(raw: Any, where: str) -> InstanceType:
    if not isinstance(raw, Mapping):
        raise CatalogError(
            f"{where}: expected a mapping with name, vcpu, memoryGiB, "
            f"onDemandPrice, got {type(raw).__name__}"
        )
    fields: dict[str, Any] = {}
    label: dict[str, str] = {}
    for key, value in raw.items():
        field = _YAML_KEYS.get(str(key))
        if field is None:
            raise CatalogError(
                f"{where}: unknown field {key!r}; expected one of "
                f"{', '.join(k for k in _YAML_KEYS if k in _YAML_NAME.values())}"
            )
        fields[field] = value
        label[field] = str(key)
    label = {**_YAML_NAME, **label}
    try:
        return _instance_type(fields, label)
    except _FieldError as e:
        raise CatalogError(f"{where}: {e}") from None


def load_catalog_yaml(path: str | Path) -> Catalog:
    """Load a catalog from YAML (or JSON): a list of instance types, or a mapping with
    `instanceTypes` (and optionally `name`). Each entry has name, vcpu, memoryGiB,
    onDemandPrice and optionally spotPrice, interruptionBucket (0..4 or "<5%" ...), arch.
    """
    path = Path(path)
    source = str(path)
    try:
        doc = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CatalogError(f"{source}: not valid YAML{at}: {problem}") from None

    name = path.stem
    if isinstance(doc, Mapping):
        unknown = sorted(str(k) for k in doc if k not in ("name", "instanceTypes"))
        if unknown:
            raise CatalogError(
                f"{source}: unknown top-level field {', '.join(unknown)}; "
                "expected instanceTypes (and optionally name)"
            )
        if doc.get("name") is not None:
            name = str(doc["name"])
        entries = doc.get("instanceTypes")
        if entries is None:
            entries = []
    elif doc is None:
        entries = []
    else:
        entries = doc
    if not isinstance(entries, list):
        raise CatalogError(f"{source}: instanceTypes must be a list, got {type(entries).__name__}")

    types: dict[str, InstanceType] = {}
    first: dict[str, int] = {}
    for i, raw in enumerate(entries, start=1):
        where = f"{source} entry {i}"
        if isinstance(raw, Mapping) and not _blank(raw.get("name")):
            where += f" ({str(raw['name']).strip()})"
        itype = _entry(raw, where)
        if itype.name in types:
            raise CatalogError(
                f"{where}: duplicate instance type {itype.name} "
                f"(first in entry {first[itype.name]})"
            )
        types[itype.name] = itype
        first[itype.name] = i
    return _catalog(name, types.values())


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file, choosing the format from its suffix (.csv, .yaml/.yml/.json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_catalog_csv(path)
    if suffix in (".yaml", ".yml", ".json"):  # JSON is YAML
        return load_catalog_yaml(path)
    raise CatalogError(
        f"{path}: unknown catalog format {suffix or '(no suffix)'}; use .csv, .yaml, .yml or .json"
    )


# --- built-in catalogs ------------------------------------------------------------------


def _data_dir() -> Traversable:
    return resources.files("spotwise.catalog").joinpath("data")


def builtin_catalog_names() -> list[str]:
    """Names of the catalogs shipped with the package, sorted."""
    return sorted(
        entry.name.removesuffix(".csv")
        for entry in _data_dir().iterdir()
        if entry.is_file() and entry.name.endswith(".csv")
    )


def builtin_catalog(name: str = DEFAULT_BUILTIN) -> Catalog:
    """A catalog shipped with the package. Cached: catalogs are immutable values."""
    return _builtin(name)


# Keyed on the name alone, so builtin_catalog() and builtin_catalog("aws-us-east-1")
# share one entry (the cache would key a defaulted argument separately).
@cache
def _builtin(name: str) -> Catalog:
    entry = _data_dir().joinpath(f"{name}.csv")
    if "/" in name or not entry.is_file():
        known = ", ".join(builtin_catalog_names()) or "none"
        raise CatalogError(f"no built-in catalog {name!r}; built-in catalogs: {known}")
    return _parse_csv(entry.read_text(encoding="utf-8"), f"built-in catalog {name}", name)


# --- overrides --------------------------------------------------------------------------


def merge_catalog(
    base: Catalog,
    overrides: Sequence[Mapping[str, Any]] = (),
    restrict: Sequence[str] | None = None,
) -> Catalog:
    """Apply a policy's instance-type overrides to `base`, then keep only `restrict`.

    Each override is a mapping with name and any of vcpu, memoryGiB, onDemandPrice,
    spotPrice, interruptionBucket, arch; a None value keeps the base value. A name not in
    `base` adds a custom type, which needs vcpu, memoryGiB and onDemandPrice. `restrict`
    (None = all) lists the names to keep, in that order; custom types count as known.
    """
    by_name: dict[str, InstanceType] = {t.name: t for t in base.instance_types}
    overridden: set[str] = set()
    for i, override in enumerate(overrides, start=1):
        raw_name = override.get("name")
        if _blank(raw_name):
            raise CatalogError(f"catalog {base.name} override {i}: name is missing")
        name = str(raw_name).strip()
        where = f"catalog {base.name} override {i} ({name})"
        if name in overridden:
            raise CatalogError(f"{where}: instance type {name} is overridden more than once")
        overridden.add(name)

        given: dict[str, Any] = {}
        label: dict[str, str] = dict(_YAML_NAME)
        for key, value in override.items():
            field = _YAML_KEYS.get(str(key))
            if field is None:
                raise CatalogError(f"{where}: unknown field {key!r}")
            if field != "name" and value is not None:
                given[field] = value
                label[field] = str(key)

        current = by_name.get(name)
        if current is None:
            if any(f not in given for f in ("vcpu", "memory_gib", "on_demand_price")):
                raise CatalogError(
                    f"instance type {name} is not in catalog {base.name}; "
                    "give vcpu, memoryGiB and onDemandPrice"
                )
            fields: dict[str, Any] = {"name": name, **given}
        else:
            fields = {
                "name": name,
                "vcpu": current.vcpu,
                "memory_gib": current.memory_gib,
                "on_demand_price": current.on_demand_price,
                "spot_price": current.spot_price,
                "interruption_bucket": current.interruption_bucket,
                "arch": current.arch,
                **given,
            }
        try:
            by_name[name] = _instance_type(fields, label)
        except _FieldError as e:
            raise CatalogError(f"{where}: {e}") from None

    if restrict is None:
        return _catalog(base.name, by_name.values())
    wanted = list(dict.fromkeys(n.strip() for n in restrict))
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise CatalogError(
            f"catalog {base.name} has no instance type {', '.join(unknown)}; "
            "define it as a custom type (spec.nodes.catalog.custom) with vcpu, memoryGiB and "
            "onDemandPrice"
        )
    return _catalog(base.name, (by_name[n] for n in wanted))
