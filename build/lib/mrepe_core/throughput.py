"""How long one (item, r_e) row takes on this machine: measured while jobs run, used to say how long
the next job will take before it starts.

A job times its batches with a :class:`RowClock`; when it ends (or is cancelled) the clock's rate is
remembered per model for this process (:func:`remember`), so the next estimate for that model says
"measured here". Before anything was measured, a preset's stored sweep timings give a labelled
guess (:func:`rate_from_summary`): they were taken on the machine that computed the preset.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

_RATES: dict[str, float] = {}
_RATES_LOCK = threading.Lock()
# Batches of calibration before the first estimate: the sweep interleaves behaviour and
# helpfulness batches, whose rows cost differently, so one batch of each.
CALIBRATION_BATCHES = 2


@dataclass(frozen=True)
class Rate:
    """Seconds per row and where the number comes from, in words."""

    seconds_per_row: float
    source: str

    def seconds(self, rows: int) -> float:
        return self.seconds_per_row * max(rows, 0)


def remember(model: str, seconds_per_row: float) -> None:
    """Keep a measured rate for ``model`` (a model spec or name) for later estimates."""
    if math.isfinite(seconds_per_row) and seconds_per_row > 0:
        with _RATES_LOCK:
            _RATES[model] = float(seconds_per_row)


def measured(model: str) -> Rate | None:
    """The rate measured on this server for ``model`` during an earlier job, if any."""
    with _RATES_LOCK:
        value = _RATES.get(model)
    return None if value is None else Rate(value, "measured on this server during an earlier job with this model")


def rate_from_summary(summary: dict | None, n_rows: int | None = None) -> Rate | None:
    """A rate from a stored sweep's timings (``summary["timings"]``): its measuring seconds over its rows."""
    timings = (summary or {}).get("timings") or {}
    seconds = sum(float(timings.get(k) or 0.0) for k in ("behavior_s", "helpfulness_s"))
    if n_rows is None:
        grid = int(((summary or {}).get("config") or {}).get("r_steps") or 0)
        items = int((summary or {}).get("n_behavior_prompts") or 0) + int((summary or {}).get("n_questions") or 0)
        n_rows = grid * items
    if seconds <= 0 or not n_rows:
        return None
    return Rate(seconds / n_rows, "from the preset's stored sweep, timed on the machine that computed it")


def describe_seconds(seconds: float) -> str:
    """'40 s', '3.5 min', '1.2 h'."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class RowClock:
    """Times the batches of a job: call ``start()`` before a batch and ``add(rows)`` after it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.rows = 0
        self.batches = 0
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def add(self, rows: int) -> None:
        if self._t0 is None or rows <= 0:
            return
        self.seconds += time.perf_counter() - self._t0
        self.rows += rows
        self.batches += 1
        self._t0 = time.perf_counter()

    def rate(self) -> Rate | None:
        if self.rows == 0:
            return None
        return Rate(self.seconds / self.rows, f"timed on the first {self.rows} rows of this job here")

    @property
    def calibrated(self) -> bool:
        return self.batches >= CALIBRATION_BATCHES
