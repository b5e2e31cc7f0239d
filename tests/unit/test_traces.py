"""Request traces: CSV loading and its refusals, reshaping, generators, built-in data."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from spotwise.sim.traces import (
    SYNTHETIC_KINDS,
    Trace,
    TraceError,
    builtin_trace_names,
    diurnal,
    flash_crowd,
    load_builtin_trace,
    load_trace_csv,
    resolve_trace,
    synthetic,
    synthetic_noise,
    with_noise,
    write_trace_csv,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WORLDCUP = SHARED_DATA / "worldcup98-requests-per-minute.csv"


def _random_trace(n: int = 500, step: float = 60.0, seed: int = 1) -> Trace:
    rng = np.random.default_rng(seed)
    return Trace("random", step, rng.gamma(2.0, 50.0, n))


def _write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the Trace value ---------------------------------------------------------------------


def test_trace_copies_and_freezes_its_array() -> None:
    source = np.array([1.0, 2.0, 3.0])
    trace = Trace("t", 10, source)
    source[0] = 99.0
    assert trace.rps[0] == 1.0
    assert trace.rps.dtype == np.float64
    with pytest.raises(ValueError):
        trace.rps[0] = 5.0
    assert trace == Trace("t", 10.0, [1, 2, 3])  # type: ignore[arg-type]
    assert hash(trace) == hash(Trace("t", 10.0, np.array([1.0, 2.0, 3.0])))


@pytest.mark.parametrize(
    ("step", "rps"),
    [(0.0, [1.0]), (-1.0, [1.0]), (10.0, []), (10.0, [1.0, -0.5]), (10.0, [np.nan])],
)
def test_trace_rejects_bad_values(step: float, rps: list[float]) -> None:
    with pytest.raises(TraceError):
        Trace("bad", step, np.array(rps))


def test_summary_properties() -> None:
    trace = Trace("t", 60.0, np.array([1.0, 3.0, 2.0]))
    assert trace.duration_seconds == 180.0
    assert trace.peak == 3.0
    assert trace.mean == pytest.approx(2.0)
    assert trace.total_requests == pytest.approx(360.0)
    assert trace.times_seconds.tolist() == [0.0, 60.0, 120.0]


def test_rescaled_hits_the_peak_exactly() -> None:
    trace = _random_trace()
    for peak in (1.0, 37.3, 12_345.6):
        out = trace.rescaled(peak)
        assert out.peak == peak
        np.testing.assert_allclose(out.rps / out.peak, trace.rps / trace.peak)
    with pytest.raises(TraceError):
        Trace("zero", 1.0, np.zeros(3)).rescaled(10.0)
    with pytest.raises(TraceError):
        trace.rescaled(0.0)


def test_scaled() -> None:
    trace = _random_trace()
    np.testing.assert_allclose(trace.scaled(2.5).rps, trace.rps * 2.5)
    with pytest.raises(TraceError):
        trace.scaled(-1.0)


@pytest.mark.parametrize("new_step", [10.0, 7.0, 20.0, 30.0, 45.0, 120.0, 300.0, 420.0, 3600.0])
def test_resampled_conserves_requests(new_step: float) -> None:
    trace = _random_trace(n=1440)
    out = trace.resampled(new_step)
    assert out.step_seconds == new_step
    assert out.total_requests == pytest.approx(trace.total_requests, rel=0.01)
    assert out.duration_seconds == pytest.approx(trace.duration_seconds, abs=new_step / 2)
    assert np.all(out.rps >= 0)


def test_resampled_coarser_is_the_average_and_finer_interpolates() -> None:
    trace = Trace("t", 60.0, np.array([1.0, 3.0, 5.0, 7.0]))
    np.testing.assert_allclose(trace.resampled(120.0).rps, [2.0, 6.0])
    fine = trace.resampled(30.0)
    assert fine.steps == 8
    assert np.all(np.diff(fine.rps) >= 0)  # a straight ramp stays a ramp, no stair steps
    assert trace.resampled(60.0) is trace


def test_window() -> None:
    trace = Trace("t", 60.0, np.arange(10, dtype=float))
    out = trace.window(120.0, 180.0)
    assert out.rps.tolist() == [2.0, 3.0, 4.0]
    assert out.step_seconds == 60.0
    with pytest.raises(TraceError):
        trace.window(540.0, 120.0)
    with pytest.raises(TraceError):
        trace.window(0.0, 10.0)
    with pytest.raises(TraceError):
        trace.window(-60.0, 60.0)


# --- CSV ---------------------------------------------------------------------------------


def test_csv_round_trip_seconds(tmp_path: Path) -> None:
    trace = Trace("wc", 60.0, np.array([10.0, 0.5, 2.25, 7.0]))
    path = tmp_path / "wc.csv"
    write_trace_csv(trace, path)
    assert path.read_text().splitlines()[0] == "seconds,requests"
    back = load_trace_csv(path)
    assert back.name == "wc"
    assert back.step_seconds == 60.0
    np.testing.assert_allclose(back.rps, trace.rps)


def test_csv_round_trip_iso(tmp_path: Path) -> None:
    trace = _random_trace(n=50, step=300.0)
    path = tmp_path / "iso.csv"
    write_trace_csv(trace, path, start=datetime(1998, 6, 24, 23, 30))
    assert path.read_text().splitlines()[1].startswith("1998-06-24T23:30:00,")
    back = load_trace_csv(path, name="renamed")
    assert back.name == "renamed"
    assert back.step_seconds == 300.0
    np.testing.assert_allclose(back.rps, trace.rps)


def test_csv_counts_become_rates_and_columns_are_found_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "host,hits,ts\na,30,1998-05-01T00:00:00Z\nb,90,1998-05-01T00:00:30Z\n")
    trace = load_trace_csv(path)
    assert trace.step_seconds == 30.0
    np.testing.assert_allclose(trace.rps, [1.0, 3.0])


def test_csv_falls_back_to_first_two_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "when,how_many\n0,100\n10,50\n\n20,0\n")
    np.testing.assert_allclose(load_trace_csv(path).rps, [10.0, 5.0, 0.0])


def test_csv_units_implied_by_column_names(tmp_path: Path) -> None:
    minutes = load_trace_csv(_write(tmp_path, "minute,count\n0,60\n1,120\n", "m.csv"))
    assert minutes.step_seconds == 60.0
    np.testing.assert_allclose(minutes.rps, [1.0, 2.0])
    rates = load_trace_csv(_write(tmp_path, "t,rps\n0,4.5\n10,6\n", "r.csv"))
    np.testing.assert_allclose(rates.rps, [4.5, 6.0])


def test_csv_fills_whole_missing_intervals(tmp_path: Path) -> None:
    # 60 s data with one and then two missing minutes, and one slightly late row.
    path = _write(
        tmp_path,
        "seconds,requests\n0,60\n60,120\n180,240\n363,60\n420,120\n480,60\n540,60\n",
    )
    trace = load_trace_csv(path)
    assert trace.step_seconds == 60.0
    np.testing.assert_allclose(trace.rps * 60.0, [60, 120, 180, 240, 180, 120, 60, 120, 60, 60])


MALFORMED: dict[str, tuple[str, str]] = {
    "empty": ("", "empty"),
    "blank-only": ("\n\n", "empty"),
    "one-column": ("time\n0\n60\n", "fewer than two columns"),
    "no-header": ("0,1\n60,2\n", "header"),
    "short-row": ("time,requests\n0,1\n60\n", "row 3"),
    "non-numeric-count": ("time,requests\n0,1\n60,lots\n", "row 3"),
    "nan-count": ("time,requests\n0,1\n60,nan\n", "row 3"),
    "negative-count": ("time,requests\n0,1\n60,-4\n120,2\n", "row 3"),
    "bad-iso-time": ("time,requests\n1998-06-24 00:00,1\n1998-06-24 00:01,2\nnoon,3\n", "row 4"),
    "bad-seconds-time": ("time,requests\n0,1\n60,2\n2024-01-01,3\n", "row 4"),
    "repeated-time": ("time,requests\n0,1\n60,2\n60,3\n", "row 4"),
    "backwards-time": ("time,requests\n0,1\n60,2\n30,3\n", "row 4"),
    "irregular": ("time,requests\n0,1\n60,2\n120,3\n210,4\n270,5\n330,5\n", "row 5"),
    "too-close": ("time,requests\n0,1\n60,2\n120,3\n125,4\n185,5\n245,5\n", "row 5"),
    "header-only": ("time,requests\n", "need at least 2"),
    "one-row": ("time,requests\n0,5\n", "need at least 2"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csv_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    text, expected = MALFORMED[case]
    path = _write(tmp_path, text, f"{case}.csv")
    with pytest.raises(TraceError) as info:
        load_trace_csv(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{case}.csv" in message
    assert expected in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: file not found"):
        load_trace_csv(tmp_path / "nope.csv")


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"time,requests\n\xff\xfe\x00\x01")
    with pytest.raises(TraceError, match=r"bin\.csv"):
        load_trace_csv(path)


# --- generators --------------------------------------------------------------------------


def test_diurnal_shape_and_determinism() -> None:
    a = diurnal(7, 300.0, base_rps=10.0, peak_rps=100.0, seed=3)
    b = diurnal(7, 300.0, base_rps=10.0, peak_rps=100.0, seed=3)
    c = diurnal(7, 300.0, base_rps=10.0, peak_rps=100.0, seed=4)
    assert a == b
    assert a != c
    assert a.steps == 7 * 288
    assert a.peak == pytest.approx(100.0)
    assert a.rps.min() == pytest.approx(10.0, abs=0.5)
    # Busiest hour of an average day lands near peak_hour (14:00), the quietest near 02:00.
    by_hour = a.rps.reshape(7, 24, 12).mean(axis=(0, 2))
    assert 12 <= int(by_hour.argmax()) <= 16
    assert int(by_hour.argmin()) in {0, 1, 2, 3, 4}
    # Days differ in amplitude (the weekly variation).
    daily_peaks = a.rps.reshape(7, 288).max(axis=1)
    assert daily_peaks.min() < 0.9 * daily_peaks.max()


def test_with_noise_mean_one_and_non_negative() -> None:
    flat = Trace("flat", 10.0, np.full(20_000, 50.0))
    noisy = with_noise(flat, cv=0.3, seed=1)
    assert noisy == with_noise(flat, cv=0.3, seed=1)
    assert noisy != with_noise(flat, cv=0.3, seed=2)
    assert np.all(noisy.rps >= 0)
    assert noisy.mean == pytest.approx(50.0, rel=0.02)
    assert noisy.rps.std() / noisy.mean == pytest.approx(0.3, rel=0.05)
    assert with_noise(flat, cv=0.0, seed=1) == flat


def test_flash_crowd_profile() -> None:
    flat = Trace("flat", 60.0, np.full(200, 10.0))
    out = flash_crowd(
        flat, at_seconds=600.0, multiplier=4.0, rise_seconds=300.0, decay_seconds=600.0
    )
    assert out.rps[:10].tolist() == [10.0] * 10
    assert out.rps[15] == pytest.approx(40.0)  # 600 + 300 s: the full multiplier
    assert out.rps[25] == pytest.approx(10.0 + 30.0 * np.exp(-1.0))  # one time constant on
    assert out.rps[-1] == pytest.approx(10.0, abs=1e-3)
    instant = flash_crowd(
        flat, at_seconds=600.0, multiplier=2.0, rise_seconds=0.0, decay_seconds=60.0
    )
    assert instant.rps[10] == pytest.approx(20.0)


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
def test_synthetic_kinds(kind: str) -> None:
    a = synthetic(kind, 2, 60.0, 250.0, seed=7)
    assert a == synthetic(kind, 2, 60.0, 250.0, seed=7)
    assert a != synthetic(kind, 2, 60.0, 250.0, seed=8)
    assert a.name == f"synthetic:{kind}"
    assert a.steps == 2 * 1440
    assert a.peak == 250.0
    assert np.all(a.rps >= 0)


def test_dividing_out_the_noise_leaves_the_noise_free_day() -> None:
    noisy = synthetic("noisy-diurnal", 2, 60.0, 250.0, seed=7)
    noise = synthetic_noise("noisy-diurnal", 2, 60.0, seed=7)
    assert noise.std() > 0.1
    # The same day shape (same seed, independent streams), on the noisy trace's scale.
    ratio = noisy.rps / noise / synthetic("diurnal", 2, 60.0, 250.0, seed=7).rps
    assert ratio.std() / ratio.mean() < 1e-9
    for quiet in ("diurnal", "steps"):
        assert np.all(synthetic_noise(quiet, 2, 60.0, seed=7) == 1.0)


def test_flash_crowd_kind_stands_out() -> None:
    trace = synthetic("flash-crowd", 2, 60.0, 100.0, seed=0)
    assert np.median(trace.rps) < 0.4 * trace.peak


def test_unknown_synthetic_kind() -> None:
    with pytest.raises(TraceError, match="unknown synthetic trace kind"):
        synthetic("sawtooth", 1, 60.0, 10.0)


# --- built-in and resolve ----------------------------------------------------------------


def test_builtin_worldcup_window() -> None:
    assert "worldcup98-2day" in builtin_trace_names()
    trace = load_builtin_trace("worldcup98-2day")
    assert trace.name == "worldcup98-2day"
    assert trace.step_seconds == 60.0
    assert trace.steps == 2 * 1440
    assert trace.peak == pytest.approx(213_235 / 60.0)
    files = resources.files("spotwise.sim").joinpath("data")
    size = len(files.joinpath("worldcup98-2day.csv").read_bytes())
    assert size <= 1_000_000
    assert files.joinpath("README.md").is_file()
    with pytest.raises(TraceError, match="available: worldcup98-2day"):
        load_builtin_trace("nope")


def test_resolve_trace_specs(tmp_path: Path) -> None:
    builtin = resolve_trace("builtin:worldcup98-2day", peak_rps=50.0, step_seconds=10.0)
    assert builtin.step_seconds == 10.0
    assert builtin.peak == 50.0
    assert builtin.steps == 2 * 8640

    synth = resolve_trace("synthetic:steps:0.5", peak_rps=20.0, seed=3)
    assert synth.steps == 720
    assert synth.peak == 20.0
    assert synth == resolve_trace("synthetic:steps:0.5", peak_rps=20.0, seed=3)
    default = resolve_trace("synthetic:diurnal")
    assert default.duration_seconds == 2 * 86_400
    assert default.peak == 100.0

    path = tmp_path / "mine.csv"
    write_trace_csv(Trace("mine", 60.0, np.array([1.0, 2.0])), path)
    assert resolve_trace(str(path)).name == "mine"

    for bad in ("synthetic:", "synthetic:steps:two", "bultin:worldcup98-2day", "builtin:x"):
        with pytest.raises(TraceError):
            resolve_trace(bad)


def test_trace_stays_a_frozen_dataclass() -> None:
    trace = Trace("t", 1.0, np.ones(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trace.name = "u"  # type: ignore[misc]
    assert dataclasses.replace(trace, name="u").name == "u"


def test_worldcup98_full_log_loads() -> None:
    if not WORLDCUP.is_file():
        pytest.skip(f"{WORLDCUP} is absent")
    with WORLDCUP.open() as handle:
        assert handle.readline().strip() == "period,count"
        assert sum(1 for _ in handle) == 125_300
    trace = load_trace_csv(WORLDCUP)
    assert trace.step_seconds == 60.0
    # 125,300 rows span 125,310 minutes: ten missing minutes in May are interpolated.
    assert trace.steps == 125_310
    assert trace.peak == pytest.approx(229_426 / 60.0)
    # The built-in window is exactly 1998-06-24 and 1998-06-25 of the full log.
    start = (datetime(1998, 6, 24) - datetime(1998, 4, 30, 21, 30)).total_seconds()
    window = trace.window(start, 2 * 86_400)
    np.testing.assert_array_equal(window.rps, load_builtin_trace("worldcup98-2day").rps)
