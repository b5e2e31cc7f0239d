"""Request-rate traces that drive the simulator: load, synthesize and reshape them.

For: reading request-count CSVs (real logs such as WorldCup98), the built-in traces
shipped in `spotwise/sim/data`, seeded synthetic load shapes, and the unit conversions a
simulation needs (rescale to a peak, resample to the simulator's step, cut a window).
Not for: arrivals within a step, latency or capacity (`spotwise.models`), or running a
simulation.

CSV format read by `load_trace_csv`: a header row, then one row per interval. The time
column (named time/timestamp/ts/t/minute/seconds, else the first column) holds ISO-8601
timestamps or numbers of seconds (a column named `minute` holds minutes). The count
column (named requests/count/rps/value/hits, else the first other column) holds the
number of requests in the interval starting at that time (a column named `rps` already
holds requests/second). The interval is the median spacing of the times. Gaps that are a
whole number of intervals (missing minutes in real logs) are filled by linear
interpolation between the neighbouring rows; any other irregular spacing is refused.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

TIME_COLUMNS: tuple[str, ...] = ("time", "timestamp", "ts", "t", "minute", "seconds")
COUNT_COLUMNS: tuple[str, ...] = ("requests", "count", "rps", "value", "hits")
SYNTHETIC_KINDS: tuple[str, ...] = ("diurnal", "noisy-diurnal", "flash-crowd", "steps")
# Coefficient of variation of the synthetic traces' per-step noise. WorldCup98's
# minute-to-minute variation around its 15-minute mean is about 4 %: this is a stress.
SYNTHETIC_NOISE_CV = 0.15

# Spacing may deviate this much (relative to the median) before a row is refused.
SPACING_TOLERANCE = 0.10

DEFAULT_SYNTHETIC_DAYS = 2.0
DEFAULT_SYNTHETIC_STEP_SECONDS = 60.0
DEFAULT_SYNTHETIC_PEAK_RPS = 100.0

_SECONDS_PER_DAY = 86_400.0
_BUILTIN_PACKAGE = "spotwise.sim"
_BUILTIN_DIR = "data"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class TraceError(ValueError):
    """A trace could not be read, built or reshaped. The message is a single line."""


@dataclass(frozen=True)
class Trace:
    """Requests/second per fixed step, starting at time 0.

    `rps` is copied to a read-only float64 array, so a Trace is an immutable value.
    Reshaping methods keep the name; use `dataclasses.replace` to rename.
    """

    name: str
    step_seconds: float
    rps: FloatArray

    def __post_init__(self) -> None:
        step = float(self.step_seconds)
        if not math.isfinite(step) or step <= 0:
            raise TraceError(f"trace {self.name!r}: step_seconds must be > 0, got {step}")
        try:
            rps = np.array(self.rps, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TraceError(f"trace {self.name!r}: rps is not numeric ({exc})") from None
        if rps.ndim != 1 or rps.size == 0:
            raise TraceError(f"trace {self.name!r}: rps must be a non-empty 1-D array")
        if not bool(np.all(np.isfinite(rps))) or bool(np.any(rps < 0)):
            raise TraceError(f"trace {self.name!r}: rps must be finite and >= 0")
        rps.flags.writeable = False
        object.__setattr__(self, "step_seconds", step)
        object.__setattr__(self, "rps", rps)

    # The generated __eq__/__hash__ would compare arrays elementwise and fail; compare values.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            self.name == other.name
            and self.step_seconds == other.step_seconds
            and np.array_equal(self.rps, other.rps)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.step_seconds, self.rps.tobytes()))

    @property
    def steps(self) -> int:
        return int(self.rps.size)

    @property
    def duration_seconds(self) -> float:
        return self.steps * self.step_seconds

    @property
    def peak(self) -> float:
        return float(self.rps.max())

    @property
    def mean(self) -> float:
        return float(self.rps.mean())

    @property
    def total_requests(self) -> float:
        return float(self.rps.sum() * self.step_seconds)

    @property
    def times_seconds(self) -> FloatArray:
        """Start time of each step, seconds from the start of the trace."""
        return np.arange(self.steps, dtype=np.float64) * self.step_seconds

    def scaled(self, factor: float) -> Trace:
        """Every step multiplied by `factor` (>= 0)."""
        f = _finite(factor, "factor", minimum=0.0)
        return Trace(self.name, self.step_seconds, self.rps * f)

    def rescaled(self, peak_rps: float) -> Trace:
        """Scaled so that the busiest step is exactly `peak_rps` (> 0)."""
        target = _finite(peak_rps, "peak_rps", minimum=0.0, strict=True)
        if self.peak == 0:
            raise TraceError(f"trace {self.name!r}: cannot rescale an all-zero trace")
        # Divide first so the maximum becomes exactly 1.0 and then exactly `target`.
        return Trace(self.name, self.step_seconds, (self.rps / self.peak) * target)

    def resampled(self, step_seconds: float) -> Trace:
        """The same load at another step, keeping the total number of requests.

        Finer: rates linearly interpolated between step centres (smoother than repeating
        each value), then scaled so the total is unchanged. Coarser: the average rate over
        each new step. The new length is the duration divided by the new step, rounded,
        so a remainder of under half a new step is dropped.
        """
        new = _finite(step_seconds, "step_seconds", minimum=0.0, strict=True)
        old = self.step_seconds
        if new == old:
            return self
        n_new = max(1, round(self.duration_seconds / new))
        if new < old:
            old_centres = (np.arange(self.steps) + 0.5) * old
            new_centres = (np.arange(n_new) + 0.5) * new
            rps = np.interp(new_centres, old_centres, self.rps)
            # Interpolation loses a little at kinks that fall inside a new step; put it back.
            total = float(rps.sum()) * new
            if total > 0:
                rps = rps * (self.total_requests / total)
        else:
            cumulative = np.concatenate(([0.0], np.cumsum(self.rps) * old))
            old_edges = np.arange(self.steps + 1) * old
            edges = np.minimum(np.arange(n_new + 1) * new, self.duration_seconds)
            # The last new step may run past the end; average over the part that has data.
            rps = np.diff(np.interp(edges, old_edges, cumulative)) / np.diff(edges)
        return Trace(self.name, new, np.maximum(rps, 0.0))

    def window(self, start_seconds: float, duration_seconds: float) -> Trace:
        """The part from `start_seconds` lasting `duration_seconds`, both rounded to steps."""
        start = _finite(start_seconds, "start_seconds", minimum=0.0)
        length = _finite(duration_seconds, "duration_seconds", minimum=0.0, strict=True)
        first = round(start / self.step_seconds)
        count = round(length / self.step_seconds)
        if count < 1:
            raise TraceError(
                f"trace {self.name!r}: window of {length:g} s is shorter than one step "
                f"({self.step_seconds:g} s)"
            )
        if first + count > self.steps:
            raise TraceError(
                f"trace {self.name!r}: window {start:g}+{length:g} s runs past the end "
                f"({self.duration_seconds:g} s)"
            )
        return Trace(self.name, self.step_seconds, self.rps[first : first + count])


# --- CSV ---------------------------------------------------------------------------------


def load_trace_csv(path: str | os.PathLike[str], *, name: str | None = None) -> Trace:
    """Read a request-count CSV (format in the module docstring); the name defaults to the
    file's stem. Raises TraceError naming the file and row for anything malformed."""
    p = Path(path)
    try:
        handle = p.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise TraceError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise TraceError(f"{p}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise TraceError(f"{p}: cannot open ({exc.strerror})") from None
    with handle:
        try:
            return _parse_trace_csv(handle, source=str(p), name=name or p.stem)
        except UnicodeDecodeError:
            raise TraceError(f"{p}: not a UTF-8 text file") from None


def write_trace_csv(
    trace: Trace, path: str | os.PathLike[str], *, start: datetime | None = None
) -> None:
    """Write `trace` as requests per step: `seconds,requests`, or `time,requests` with
    ISO-8601 times when `start` is given. `load_trace_csv` reads it back."""
    counts = trace.rps * trace.step_seconds
    lines = ["time,requests" if start is not None else "seconds,requests"]
    for t, c in zip(trace.times_seconds.tolist(), counts.tolist(), strict=True):
        when = (start + timedelta(seconds=t)).isoformat() if start is not None else f"{t:.15g}"
        lines.append(f"{when},{c:.15g}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _parse_trace_csv(lines: Iterable[str], *, source: str, name: str) -> Trace:
    reader = csv.reader(lines)
    header: list[str] | None = None
    header_row = 0
    rows: list[tuple[int, list[str]]] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines carry no data
            if header is None:
                header = [cell.strip().lower() for cell in record]
                header_row = reader.line_num
            else:
                rows.append((reader.line_num, record))
    except csv.Error as exc:
        raise TraceError(f"{source}: row {reader.line_num}: not valid CSV ({exc})") from None

    if header is None:
        raise TraceError(f"{source}: empty file (expected a header such as 'time,requests')")
    if len(header) < 2:
        raise TraceError(
            f"{source}: row {header_row}: header {','.join(header)!r} has fewer than two "
            "columns; need a time column and a request-count column"
        )
    if all(_is_number(cell) for cell in header):
        raise TraceError(
            f"{source}: row {header_row}: expected a header row such as 'time,requests', "
            "got numbers"
        )
    time_idx, count_idx = _pick_columns(header)
    time_col, count_col = header[time_idx], header[count_idx]
    if len(rows) < 2:
        raise TraceError(
            f"{source}: {len(rows)} data row(s); need at least 2 to infer the interval"
        )

    # The first row decides the time format; later rows in the other format are refused.
    first = rows[0][1]
    numeric_time = len(first) <= time_idx or _is_number(first[time_idx].strip())
    time_unit = 60.0 if time_col == "minute" else 1.0
    width = max(time_idx, count_idx) + 1
    times = np.empty(len(rows), dtype=np.float64)
    counts = np.empty(len(rows), dtype=np.float64)
    for i, (row, record) in enumerate(rows):
        if len(record) < width:
            raise TraceError(
                f"{source}: row {row}: expected at least {width} columns, got {len(record)}"
            )
        raw_time, raw_count = record[time_idx].strip(), record[count_idx].strip()
        times[i] = _parse_time(raw_time, numeric_time, time_unit, f"{source}: row {row}")
        try:
            count = float(raw_count)
        except ValueError:
            raise TraceError(
                f"{source}: row {row}: {count_col} {raw_count!r} is not a number"
            ) from None
        if not math.isfinite(count):
            raise TraceError(f"{source}: row {row}: {count_col} {raw_count!r} is not finite")
        if count < 0:
            raise TraceError(f"{source}: row {row}: {count_col} {raw_count!r} is negative")
        counts[i] = count

    gaps = np.diff(times)
    backwards = np.flatnonzero(gaps <= 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise TraceError(
            f"{source}: row {rows[i][0]}: time {rows[i][1][time_idx].strip()!r} is not after "
            f"the previous row's {rows[i - 1][1][time_idx].strip()!r}"
        )
    step = float(np.median(gaps))
    multiples = np.rint(gaps / step)
    irregular = np.flatnonzero(
        (multiples < 1) | (np.abs(gaps - multiples * step) > SPACING_TOLERANCE * step)
    )
    if irregular.size:
        i = int(irregular[0]) + 1
        raise TraceError(
            f"{source}: row {rows[i][0]}: spacing {gaps[i - 1]:g} s from the previous row is "
            f"neither the median interval {step:g} s nor a whole multiple of it "
            f"(within {SPACING_TOLERANCE:.0%})"
        )
    # Place every row on the regular grid; whole missing intervals in between get a
    # straight line between their neighbours, which is exact at the rows themselves.
    grid = np.concatenate(([0.0], np.cumsum(multiples)))
    filled = np.interp(np.arange(int(grid[-1]) + 1, dtype=np.float64), grid, counts)
    rps = filled if count_col == "rps" else filled / step
    return Trace(name, step, rps)


def _pick_columns(header: list[str]) -> tuple[int, int]:
    time_idx = next((header.index(c) for c in TIME_COLUMNS if c in header), None)
    count_idx = next((header.index(c) for c in COUNT_COLUMNS if c in header), None)
    if time_idx is None:
        time_idx = next(i for i in range(len(header)) if i != count_idx)
    if count_idx is None:
        count_idx = next(i for i in range(len(header)) if i != time_idx)
    return time_idx, count_idx


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_time(raw: str, numeric: bool, unit: float, where: str) -> float:
    if numeric:
        try:
            value = float(raw) * unit
        except ValueError:
            raise TraceError(f"{where}: time {raw!r} is not a number of seconds") from None
        if not math.isfinite(value):
            raise TraceError(f"{where}: time {raw!r} is not finite")
        return value
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise TraceError(f"{where}: time {raw!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        # Only differences matter; reading naive times as UTC avoids local DST jumps.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --- built-in traces ---------------------------------------------------------------------


def _builtin_dir() -> Traversable:
    return resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR)


def builtin_trace_names() -> list[str]:
    """Names accepted by `load_builtin_trace`, sorted."""
    return sorted(
        entry.name.removesuffix(".csv")
        for entry in _builtin_dir().iterdir()
        if entry.is_file() and entry.name.endswith(".csv")
    )


def load_builtin_trace(name: str) -> Trace:
    """A trace shipped with the package (see `spotwise/sim/data/README.md`)."""
    names = builtin_trace_names()
    if name not in names:
        raise TraceError(
            f"unknown built-in trace {name!r}; available: {', '.join(names) or 'none'}"
        )
    text = _builtin_dir().joinpath(f"{name}.csv").read_text(encoding="utf-8")
    return _parse_trace_csv(io.StringIO(text, newline=""), source=f"builtin:{name}", name=name)


# --- synthetic traces --------------------------------------------------------------------


def diurnal(
    days: float,
    step_seconds: float,
    *,
    base_rps: float,
    peak_rps: float,
    peak_hour: float = 14.0,
    seed: int,
) -> Trace:
    """A smooth day/night cycle from `base_rps` at night to `peak_rps` at the busiest step.

    Each day's amplitude varies (seeded), with a quieter weekend, and a small seeded second
    harmonic shifts the evening shoulder, so different seeds give different but similar days.
    """
    span = _finite(days, "days", minimum=0.0, strict=True)
    step = _finite(step_seconds, "step_seconds", minimum=0.0, strict=True)
    top = _finite(peak_rps, "peak_rps", minimum=0.0, strict=True)
    floor = _finite(base_rps, "base_rps", minimum=0.0)
    if floor > top:
        raise TraceError(f"diurnal: base_rps {floor:g} exceeds peak_rps {top:g}")
    if not 0.0 <= peak_hour < 24.0:
        raise TraceError(f"diurnal: peak_hour must be in [0, 24), got {peak_hour}")
    rng = np.random.default_rng(seed)
    n = max(1, round(span * _SECONDS_PER_DAY / step))
    centres = (np.arange(n) + 0.5) * step
    phase = 2.0 * np.pi * (centres / 3600.0 - peak_hour) / 24.0
    # Raised cosine to the power 1.5: long flat nights and a narrower afternoon peak, as
    # in web logs, rather than a pure sinusoid.
    shape = ((1.0 + np.cos(phase)) / 2.0) ** 1.5
    shape = shape * (1.0 + 0.1 * np.cos(2.0 * phase + rng.uniform(0.0, 2.0 * np.pi)))
    # One amplitude per day, weekends (days 5 and 6 from a random weekday) lower, blended
    # between day centres so there is no jump at midnight.
    n_days = math.ceil(span) + 1
    first_weekday = int(rng.integers(7))
    weekend = ((np.arange(n_days) + first_weekday) % 7) >= 5
    amplitude = rng.uniform(0.85, 1.0, n_days) * np.where(weekend, 0.7, 1.0)
    day_centres = np.arange(n_days) + 0.5
    shape = shape * np.interp(centres / _SECONDS_PER_DAY, day_centres, amplitude)
    highest = float(shape.max())
    # A very short trace sampled exactly at the trough has no shape left to normalise.
    relative = shape / highest if highest > 0 else np.ones(n)
    rps = floor + (top - floor) * relative
    return Trace("diurnal", step, rps)


def with_noise(trace: Trace, *, cv: float, seed: int) -> Trace:
    """Each step multiplied by independent lognormal noise with mean 1 and coefficient of
    variation `cv`; the result stays non-negative."""
    spread = _finite(cv, "cv", minimum=0.0)
    if spread == 0:
        return trace
    return Trace(trace.name, trace.step_seconds, trace.rps * _noise(trace.steps, spread, seed))


def _noise(steps: int, cv: float, seed: int) -> FloatArray:
    sigma = math.sqrt(math.log1p(cv * cv))
    rng = np.random.default_rng(seed)
    # Mean -sigma^2/2 makes the factor's mean exactly 1, so noise adds no load on average.
    return rng.lognormal(mean=-sigma * sigma / 2.0, sigma=sigma, size=steps)


def flash_crowd(
    trace: Trace,
    *,
    at_seconds: float,
    multiplier: float,
    rise_seconds: float,
    decay_seconds: float,
) -> Trace:
    """A sudden surge: from `at_seconds` the load's multiplier ramps linearly from 1 to
    `multiplier` over `rise_seconds`, then falls back towards 1 exponentially with time
    constant `decay_seconds` (after that long, 37 % of the extra load is left)."""
    at = _finite(at_seconds, "at_seconds", minimum=0.0)
    m = _finite(multiplier, "multiplier", minimum=1.0)
    rise = _finite(rise_seconds, "rise_seconds", minimum=0.0)
    decay = _finite(decay_seconds, "decay_seconds", minimum=0.0, strict=True)
    t = trace.times_seconds
    # A zero rise is an instant jump; the ramp formula would divide by zero.
    ramp = np.clip((t - at) / rise, 0.0, 1.0) if rise > 0 else (t >= at).astype(np.float64)
    tail = np.exp(-np.maximum(t - at - rise, 0.0) / decay)
    factor = 1.0 + (m - 1.0) * ramp * tail
    return Trace(trace.name, trace.step_seconds, trace.rps * factor)


def synthetic(kind: str, days: float, step_seconds: float, peak_rps: float, seed: int = 0) -> Trace:
    """A seeded synthetic trace whose busiest step is `peak_rps`; kinds in SYNTHETIC_KINDS.

    "diurnal": smooth days with a night floor of 15 % of the peak. "noisy-diurnal": that
    with independent lognormal noise every step (coefficient of variation
    SYNTHETIC_NOISE_CV). "flash-crowd": noisy diurnal with one 3-6x surge starting at a
    busy moment (the surge is the peak). "steps": random levels between 10 % and 100 % of
    the peak, each held for 15 minutes to 3 hours.
    """
    return _synthetic(kind, days, step_seconds, peak_rps, seed)[0]


def synthetic_noise(kind: str, days: float, step_seconds: float, seed: int = 0) -> FloatArray:
    """The noise factors that `synthetic` with the same arguments multiplied each step by
    (all ones for the kinds without noise): dividing that trace by them leaves the
    noise-free load on the same scale, surge included."""
    return _synthetic(kind, days, step_seconds, 1.0, seed)[1]


def _synthetic(
    kind: str, days: float, step_seconds: float, peak_rps: float, seed: int
) -> tuple[Trace, FloatArray]:
    if kind not in SYNTHETIC_KINDS:
        raise TraceError(
            f"unknown synthetic trace kind {kind!r}; expected one of {', '.join(SYNTHETIC_KINDS)}"
        )
    top = _finite(peak_rps, "peak_rps", minimum=0.0, strict=True)
    # Independent streams per ingredient, so e.g. the noise does not change the day shape.
    shape_seed, noise_seed, event_seed = (
        int(s) for s in np.random.SeedSequence(seed).generate_state(3)
    )
    if kind == "steps":
        trace = _steps(days, step_seconds, seed=shape_seed)
    else:
        trace = diurnal(days, step_seconds, base_rps=0.15 * top, peak_rps=top, seed=shape_seed)
    noise = np.ones(trace.steps)
    if kind in ("noisy-diurnal", "flash-crowd"):
        noise = _noise(trace.steps, SYNTHETIC_NOISE_CV, noise_seed)
        trace = Trace(trace.name, trace.step_seconds, trace.rps * noise)
    if kind == "flash-crowd":
        rng = np.random.default_rng(event_seed)
        # Start where the load is already high, as real flash crowds hit busy hours.
        busy = np.flatnonzero(trace.rps >= 0.5 * trace.peak)
        start = float(trace.times_seconds[int(rng.choice(busy))])
        trace = flash_crowd(
            trace,
            at_seconds=start,
            multiplier=float(rng.uniform(3.0, 6.0)),
            rise_seconds=float(rng.uniform(60.0, 600.0)),
            decay_seconds=float(rng.uniform(600.0, 2400.0)),
        )
    return Trace(f"synthetic:{kind}", trace.step_seconds, trace.rescaled(top).rps), noise


def _steps(days: float, step_seconds: float, *, seed: int) -> Trace:
    span = _finite(days, "days", minimum=0.0, strict=True)
    step = _finite(step_seconds, "step_seconds", minimum=0.0, strict=True)
    rng = np.random.default_rng(seed)
    n = max(1, round(span * _SECONDS_PER_DAY / step))
    rps = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        hold = max(1, round(rng.uniform(900.0, 10_800.0) / step))
        rps[i : i + hold] = rng.uniform(0.1, 1.0)
        i += hold
    return Trace("steps", step, rps)


# --- one entry point ---------------------------------------------------------------------


def resolve_trace(
    spec: str,
    *,
    peak_rps: float | None = None,
    step_seconds: float | None = None,
    seed: int = 0,
) -> Trace:
    """A trace from "builtin:NAME", "synthetic:KIND[:DAYS]" or a CSV file path.

    The trace is resampled to `step_seconds` and then rescaled to `peak_rps` when they are
    given (in that order, so the peak holds at the simulated step). Synthetic traces
    default to 2 days, 60 s steps and a 100 req/s peak; `seed` only affects them.
    """
    if spec.startswith("builtin:"):
        trace = load_builtin_trace(spec.removeprefix("builtin:"))
    elif spec.startswith("synthetic:"):
        parts = spec.split(":")
        if len(parts) > 3 or not parts[1]:
            raise TraceError(f"bad trace spec {spec!r}; expected synthetic:KIND[:DAYS]")
        days = DEFAULT_SYNTHETIC_DAYS
        if len(parts) == 3:
            try:
                days = float(parts[2])
            except ValueError:
                raise TraceError(
                    f"bad trace spec {spec!r}: days {parts[2]!r} is not a number"
                ) from None
        trace = synthetic(
            parts[1],
            days,
            DEFAULT_SYNTHETIC_STEP_SECONDS if step_seconds is None else step_seconds,
            DEFAULT_SYNTHETIC_PEAK_RPS if peak_rps is None else peak_rps,
            seed,
        )
    else:
        scheme = _SCHEME.match(spec)
        if scheme and not Path(spec).exists():
            # A typo such as "bultin:x" deserves better than "file not found".
            raise TraceError(
                f"unknown trace source {scheme.group(1)!r} in {spec!r}; expected "
                "builtin:NAME, synthetic:KIND[:DAYS] or a CSV file path"
            )
        trace = load_trace_csv(spec)
    if step_seconds is not None:
        trace = trace.resampled(step_seconds)
    if peak_rps is not None:
        trace = trace.rescaled(peak_rps)
    return trace


def _finite(value: float, what: str, *, minimum: float, strict: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise TraceError(f"{what} must be a finite number {bound}, got {value!r}")
    return v
