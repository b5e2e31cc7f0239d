"""Spot prices that move: a multiplier over time from a price-series CSV.

The catalog's spot price is an average. A series such as ../shared/data/
gcp-spot-price-weekly.csv (columns date, machine_type, region, spot_hourly, ...) says how
real spot prices moved: one (machine type, region) series, divided by its own mean,
scales every spot pool's price over simulated time, so the level stays the catalog's and
the movement is real. `speedup` replays the series faster than real time (weekly points
barely move inside a 2-day run; a speed-up of 7 shows a week per simulated day).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class PriceSeriesError(ValueError):
    """A price file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SpotPriceSeries:
    """Picklable: simulations run in worker processes."""

    seconds: NDArray[np.float64]  # from the series' first point
    multiplier: NDArray[np.float64]  # mean 1
    speedup: float = 1.0
    label: str = ""

    def __call__(self, sim_seconds: float) -> float:
        return float(np.interp(sim_seconds * self.speedup, self.seconds, self.multiplier))


def load_spot_prices(
    path: str | Path,
    *,
    machine_type: str | None = None,
    region: str | None = None,
    speedup: float = 1.0,
) -> SpotPriceSeries:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise PriceSeriesError(f"{path}: cannot read: {e.strerror}") from None
    need = {"date", "machine_type", "region", "spot_hourly"}
    if not rows or not need <= set(rows[0]):
        raise PriceSeriesError(f"{path}: expected columns {', '.join(sorted(need))}")
    machine_type = machine_type or rows[0]["machine_type"]
    region = region or rows[0]["region"]
    points: list[tuple[date, float]] = []
    for i, row in enumerate(rows, start=2):
        if row["machine_type"] != machine_type or row["region"] != region:
            continue
        try:
            points.append((date.fromisoformat(row["date"]), float(row["spot_hourly"])))
        except ValueError:
            raise PriceSeriesError(f"{path}: row {i}: bad date or spot_hourly") from None
    if len(points) < 2:
        raise PriceSeriesError(f"{path}: fewer than two points for {machine_type} in {region}")
    points.sort()
    start = points[0][0]
    seconds = np.array([(d - start).days * 86400.0 for d, _ in points])
    prices = np.array([p for _, p in points])
    if (prices <= 0).any():
        raise PriceSeriesError(f"{path}: spot_hourly must be > 0")
    if speedup <= 0:
        raise PriceSeriesError("speed-up must be > 0")
    return SpotPriceSeries(
        seconds, prices / prices.mean(), speedup, f"{machine_type} {region} from {start}"
    )
