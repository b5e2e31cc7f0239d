from pathlib import Path

import pytest

from spotwise.catalog import (
    CatalogError,
    builtin_catalog,
    builtin_catalog_names,
    load_catalog,
    load_catalog_csv,
    load_catalog_yaml,
    merge_catalog,
)
from spotwise.domain import INTERRUPTION_BUCKETS

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HEADER = "name,arch,vcpu,memory_gib,on_demand_price,spot_price,interruption_bucket\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- built-in -----------------------------------------------------------------------


def test_builtin_names():
    assert "aws-us-east-1" in builtin_catalog_names()


def test_builtin_catalog_is_sane():
    catalog = builtin_catalog()
    assert catalog.name == "aws-us-east-1"
    assert len(catalog) >= 30
    archs = {t.arch for t in catalog.instance_types}
    assert {"x86_64", "arm64"} <= archs
    for t in catalog.instance_types:
        assert t.vcpu > 0 and t.memory_gib > 0
        assert t.on_demand_price > 0
        if t.spot_price is not None:
            assert 0 < t.spot_price < t.on_demand_price, t.name
        if t.interruption_bucket is not None:
            assert 0 <= t.interruption_bucket < len(INTERRUPTION_BUCKETS)
    assert catalog.get("m6i.large") is not None
    assert catalog.get("c7g.xlarge") is not None


def test_builtin_catalog_is_cached():
    assert builtin_catalog() is builtin_catalog("aws-us-east-1")


def test_unknown_builtin():
    with pytest.raises(CatalogError, match="aws-us-east-1"):
        builtin_catalog("gcp-mars-1")


# --- the shared data file -------------------------------------------------------------


def test_shared_instances_csv_loads():
    path = SHARED_DATA / "aws-us-east-1-instances.csv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    catalog = load_catalog(path)
    assert catalog.name == "aws-us-east-1-instances"
    assert len(catalog) > 600
    m5 = catalog.get("m5.large")
    assert m5 is not None and m5.vcpu == 2 and m5.memory_gib == 8
    assert m5.spot_price is not None and m5.spot_price < m5.on_demand_price
    # ec2instances.info lists t2.* once as i386 and once as x86_64: one type to us.
    t2 = catalog.get("t2.micro")
    assert t2 is not None and t2.arch == "x86_64"
    assert any(t.arch == "arm64" for t in catalog.instance_types)
    assert any(t.spot_price is None for t in catalog.instance_types)


def test_builtin_matches_shared_source():
    path = SHARED_DATA / "aws-us-east-1-instances.csv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    source = load_catalog_csv(path)
    for t in builtin_catalog().instance_types:
        assert source.get(t.name) == t


# --- CSV errors -----------------------------------------------------------------------


def test_csv_roundtrip(tmp_path):
    path = write(
        tmp_path,
        "mine.csv",
        HEADER + "a.large,arm64,2,8,0.1,0.04,1\nb.large,,4,16,0.2,,\n",
    )
    catalog = load_catalog(path)
    assert catalog.name == "mine"
    a, b = catalog.instance_types
    assert (a.arch, a.spot_price, a.interruption_bucket) == ("arm64", 0.04, 1)
    assert (b.arch, b.spot_price, b.interruption_bucket) == ("x86_64", None, None)
    assert load_catalog_csv(path, name="other").name == "other"


def test_csv_minimal_columns(tmp_path):
    path = write(tmp_path, "min.csv", "name,vcpu,memory_gib,on_demand_price\nx.large,2,4,0.1\n")
    assert load_catalog_csv(path).get("x.large") is not None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.large,x86_64,2,8,-0.1,,", r"line 2 \(a\.large\): on_demand_price must be > 0"),
        ("a.large,x86_64,2,8,0,,", r"line 2 \(a\.large\): on_demand_price must be > 0"),
        ("a.large,x86_64,2,8,0.1,0,", r"spot_price must be > 0"),
        ("a.large,x86_64,0,8,0.1,,", r"line 2 \(a\.large\): vcpu must be > 0"),
        ("a.large,x86_64,2,8,0.1,0.05,5", r"interruption_bucket must be an integer 0\.\.4"),
        ("a.large,x86_64,2,8,0.1,0.05,-1", r"interruption_bucket must be an integer 0\.\.4"),
        ("a.large,x86_64,two,8,0.1,,", r"vcpu must be a number, got 'two'"),
        ("a.large,x86_64,2,8,nan,,", r"on_demand_price must be a finite number"),
        ("a.large,sparc,2,8,0.1,,", r"arch must be one of"),
        (",x86_64,2,8,0.1,,", r"line 2: name is missing"),
        ("a.large,x86_64,2,,0.1,,", r"memory_gib is missing"),
    ],
)
def test_csv_bad_values(tmp_path, row, message):
    path = write(tmp_path, "bad.csv", HEADER + row + "\n")
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog_csv(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_csv_missing_columns(tmp_path):
    path = write(tmp_path, "bad.csv", "name,vcpu\na.large,2\n")
    with pytest.raises(CatalogError, match="missing columns memory_gib, on_demand_price"):
        load_catalog_csv(path)


def test_csv_duplicate_names(tmp_path):
    path = write(
        tmp_path, "dup.csv", HEADER + "a.large,x86_64,2,8,0.1,,\na.large,x86_64,2,8,0.2,,\n"
    )
    with pytest.raises(CatalogError, match=r"line 3 .*duplicate instance type a\.large"):
        load_catalog_csv(path)


def test_csv_empty_catalog(tmp_path):
    path = write(tmp_path, "nothing.csv", HEADER)
    with pytest.raises(CatalogError, match="catalog nothing has no instance types"):
        load_catalog_csv(path)


def test_csv_empty_file(tmp_path):
    with pytest.raises(CatalogError, match="empty file"):
        load_catalog_csv(write(tmp_path, "empty.csv", ""))


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog_csv(tmp_path / "absent.csv")


def test_unknown_suffix(tmp_path):
    with pytest.raises(CatalogError, match="unknown catalog format"):
        load_catalog(write(tmp_path, "cat.txt", HEADER))


# --- YAML -----------------------------------------------------------------------------


YAML_TYPES = """\
- name: a.large
  vcpu: 2
  memoryGiB: 8
  onDemandPrice: 0.1
  spotPrice: 0.04
  interruptionBucket: "<5%"
  arch: amd64
- {name: b.large, vcpu: 4, memoryGiB: 16, onDemandPrice: 0.2, arch: aarch64}
"""


def test_yaml_list(tmp_path):
    catalog = load_catalog(write(tmp_path, "mine.yaml", YAML_TYPES))
    a, b = catalog.instance_types
    assert catalog.name == "mine"
    assert (a.arch, a.spot_price, a.interruption_bucket) == ("x86_64", 0.04, 0)
    assert (b.arch, b.spot_price) == ("arm64", None)


def test_yaml_mapping(tmp_path):
    text = "name: lab\ninstanceTypes:\n" + "".join(
        "  " + line + "\n" for line in YAML_TYPES.splitlines()
    )
    catalog = load_catalog_yaml(write(tmp_path, "cat.yml", text))
    assert catalog.name == "lab"
    assert catalog.names() == ["a.large", "b.large"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{name: a, vcpu: 2, memoryGiB: 8, onDemandPrice: -1}",
            r"entry 1 \(a\): onDemandPrice must be > 0",
        ),
        ("{name: a, vcpu: 0, memoryGiB: 8, onDemandPrice: 1}", r"entry 1 \(a\): vcpu must be > 0"),
        (
            "{name: a, vcpu: 2, memoryGiB: 8, onDemandPrice: 1, interruptionBucket: 7}",
            r"interruptionBucket must be an integer",
        ),
        (
            "{name: a, vcpu: 2, memoryGiB: 8, onDemandPrice: cheap}",
            r"onDemandPrice must be a number",
        ),
        ("{name: a, vcpu: true, memoryGiB: 8, onDemandPrice: 1}", r"vcpu must be a number"),
        ("{name: a, vcpu: 2, onDemandPrice: 1}", r"memoryGiB is missing"),
        (
            "{name: a, vcpu: 2, memoryGiB: 8, onDemandPrice: 1, spotprice: 1}",
            r"unknown field 'spotprice'",
        ),
        ("just-a-string", r"entry 1: expected a mapping"),
    ],
)
def test_yaml_bad_entries(tmp_path, entry, message):
    path = write(tmp_path, "bad.yaml", f"- {entry}\n")
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog_yaml(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_duplicates(tmp_path):
    entry = "- {name: a, vcpu: 2, memoryGiB: 8, onDemandPrice: 1}\n"
    with pytest.raises(CatalogError, match=r"entry 2 \(a\): duplicate instance type a"):
        load_catalog_yaml(write(tmp_path, "dup.yaml", entry * 2))


@pytest.mark.parametrize("text", ["", "[]\n", "instanceTypes: []\n"])
def test_yaml_empty(tmp_path, text):
    with pytest.raises(CatalogError, match="catalog empty has no instance types"):
        load_catalog_yaml(write(tmp_path, "empty.yaml", text))


def test_yaml_syntax_error(tmp_path):
    with pytest.raises(CatalogError, match="not valid YAML") as err:
        load_catalog_yaml(write(tmp_path, "broken.yaml", "- {name: a, vcpu: [\n"))
    assert "\n" not in str(err.value)


def test_yaml_wrong_shape(tmp_path):
    with pytest.raises(CatalogError, match="instanceTypes must be a list"):
        load_catalog_yaml(write(tmp_path, "odd.yaml", "instanceTypes: 3\n"))
    with pytest.raises(CatalogError, match="unknown top-level field types"):
        load_catalog_yaml(write(tmp_path, "odd.yaml", "types: []\n"))


# --- merge ----------------------------------------------------------------------------


def test_merge_overrides_keep_unset_values():
    base = builtin_catalog()
    merged = merge_catalog(
        base, [{"name": "m6i.large", "spotPrice": 0.02, "onDemandPrice": None}], None
    )
    before, after = base.get("m6i.large"), merged.get("m6i.large")
    assert before is not None and after is not None
    assert after.spot_price == 0.02
    assert after.on_demand_price == before.on_demand_price
    assert after.interruption_bucket == before.interruption_bucket
    assert merged.names() == base.names()
    assert base.get("m6i.large") == before  # the base is untouched


def test_merge_custom_type_and_restrict():
    base = builtin_catalog()
    custom = {
        "name": "x9.huge",
        "vcpu": 96,
        "memoryGiB": 384,
        "onDemandPrice": 4.0,
        "spotPrice": None,
        "interruptionBucket": 2,
        "arch": None,
    }
    merged = merge_catalog(base, [custom], ["x9.huge", "m6i.large"])
    assert merged.names() == ["x9.huge", "m6i.large"]
    x9 = merged.get("x9.huge")
    assert x9 is not None and x9.interruption_bucket == 2 and x9.arch == "x86_64"
    assert merged.name == base.name


def test_merge_custom_type_needs_shape_and_price():
    with pytest.raises(
        CatalogError,
        match=r"instance type x9\.huge is not in catalog aws-us-east-1; "
        r"give vcpu, memoryGiB and onDemandPrice",
    ):
        merge_catalog(builtin_catalog(), [{"name": "x9.huge", "vcpu": 4}], None)


def test_merge_bad_override_value():
    with pytest.raises(CatalogError, match=r"m6i\.large\): onDemandPrice must be > 0"):
        merge_catalog(builtin_catalog(), [{"name": "m6i.large", "onDemandPrice": 0}], None)


def test_merge_restrict_unknown_names():
    with pytest.raises(CatalogError, match=r"nope\.large, nada\.small"):
        merge_catalog(builtin_catalog(), [], ["m6i.large", "nope.large", "nada.small"])


def test_merge_restrict_to_nothing():
    with pytest.raises(CatalogError, match="catalog aws-us-east-1 has no instance types"):
        merge_catalog(builtin_catalog(), [], [])
