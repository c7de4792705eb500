"""Layer x coefficient map: a coarse sweep over windows of layers, to choose where to steer.

Peers' users picked layers and coefficients by trial and error; this runs the same sweep engine
once per layer window (one vector for every layer, extracted once or taken from the preset) on a
small grid and returns a tidy table the UI draws as heat maps of behaviour expectation and
helpfulness.

A scan is bounded and stoppable, for a server shared by strangers:

* :func:`plan_scan` counts its (item, r_e, window) rows before anything runs, and
  :func:`check_scan` refuses more than ``limits().scan_rows``;
* :func:`iter_scan` yields :class:`ScanEvent` s: stages, an estimate of the time left (from a rate
  measured here before, then from the scan's own first batches), progress after every batch and
  the table so far after every window;
* ``cancel`` (a ``threading.Event``) is checked between batches: the scan raises
  ``limits.Cancelled`` within one batch, and batches are small (``SCAN_BATCH_SIZE``). The model is
  held per batch only, so other requests run in between.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass

import pandas as pd

from . import throughput
from .concept_map_steering import vector_for_model
from .config import SweepConfig
from .limits import Cancelled, InputError, check_cancel, check_rows, limits
from .models import LoadedModel
from .plan import coarse_grid
from .result import SweepResult
from .sweep import SweepCancelled, iter_sweep, prepare
from .vectors import SteeringVector

COLUMNS = ["layer_start", "layer_stop", "r_e", "metric", "value"]
# Rows per forward pass in a scan: small batches, so a cancel (or another visitor) waits little.
SCAN_BATCH_SIZE = 2


def layer_windows(n_layers: int, width: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Half-open windows ``[start, stop)`` covering the depth; the last one ends at ``n_layers``."""
    if not 1 <= width <= n_layers:
        raise ValueError(f"Window width must be between 1 and {n_layers}.")
    stride = stride or max(1, width // 2)
    if stride < 1:
        raise ValueError("The stride must be at least 1.")
    starts = list(range(0, n_layers - width + 1, stride))
    if starts[-1] + width < n_layers:
        starts.append(n_layers - width)
    return [(s, s + width) for s in starts]


@dataclass(frozen=True)
class ScanPlan:
    """What a scan will evaluate: its windows, coefficients and items, hence its rows."""

    windows: tuple[tuple[int, int], ...]
    r_steps: int
    n_behavior: int
    n_questions: int

    @property
    def rows_per_window(self) -> int:
        """Proxy and helpfulness on every coefficient, plus the answers at the coarse coefficients
        (the proxy's openings) and their coherence: what a proxy-mode sweep of the window counts."""
        # (the coarse subset of a grid around 0, as the r_e ranges of the presets and the form are)
        grid = [-1.0 + 2.0 * k / max(self.r_steps - 1, 1) for k in range(self.r_steps)]
        n_coarse = len(coarse_grid(grid)) if self.r_steps else 0
        return self.r_steps * (self.n_behavior + self.n_questions) + 2 * n_coarse * self.n_behavior

    @property
    def rows(self) -> int:
        return len(self.windows) * self.rows_per_window

    def describe(self) -> str:
        windows = "window" if len(self.windows) == 1 else "windows"
        prompts = "prompt" if self.n_behavior == 1 else "prompts"
        questions = "question" if self.n_questions == 1 else "questions"
        return (
            f"{len(self.windows)} {windows} × ({self.r_steps} r_e × ({self.n_behavior} behaviour {prompts} + "
            f"{self.n_questions} {questions}) + answers at the coarse r_e) = {self.rows:,} rows"
        )


def plan_scan(
    n_layers: int, width: int, stride: int | None, r_steps: int, n_behavior: int, n_questions: int
) -> ScanPlan:
    """The plan of a scan over ``n_layers`` layers (no model needed)."""
    windows = layer_windows(n_layers, width, stride)
    return ScanPlan(tuple(windows), int(r_steps), int(n_behavior), int(n_questions))


def check_scan(plan: ScanPlan, cap: int | None = None, rate: throughput.Rate | None = None) -> None:
    """Refuse a scan over ``cap`` rows (default ``limits().scan_rows``), saying what to shrink."""
    cap = limits().scan_rows if cap is None else cap
    try:
        check_rows(plan.rows, "The layer scan", cap, rate.seconds_per_row if rate else None)
    except InputError:
        eta = f", about {throughput.describe_seconds(rate.seconds(plan.rows))} here" if rate else ""
        raise InputError(
            f"The layer scan would evaluate {plan.describe()}{eta}; this server allows {cap:,} rows per scan. "
            "Use a larger stride or window width (fewer windows), fewer r_e steps, fewer behaviour prompts or "
            "fewer questions per subject. On your own machine MREPE_MAX_SCAN_ROWS raises the cap."
        ) from None


@dataclass
class ScanEvent:
    """One step of a scan: ``kind`` is ``stage`` (a named step starts), ``estimate`` (the time
    left, once the scan's first batches were timed), ``progress`` (rows done of total, after every
    batch), ``window`` (a window finished: ``table`` holds every row so far) or ``done``."""

    kind: str
    message: str = ""
    done: int = 0
    total: int = 0
    plan: ScanPlan | None = None
    rate: throughput.Rate | None = None
    seconds_left: float | None = None
    table: pd.DataFrame | None = None


def _window_rows(result, behavior_name: str, start: int, stop: int) -> list[dict]:
    """The window's B and mean helpfulness per r_e; B is the metric the sweep fits (its summary says
    which: answers' B, or a proxy's), drawn as ``behavior_expectation``."""
    agg = result.aggregates
    fitted = (result.summary or {}).get("behavior_metric")
    names = [m for m in (fitted, "behavior_expectation", "behavior_proxy") if m]
    behaviour = next((m for m in names if ((agg.metric == m) & (agg.task == "behavior")).any()), names[0])
    rows = []
    for metric, shown, task, subject in (
        (behaviour, "behavior_expectation", "behavior", behavior_name),
        ("helpfulness", "helpfulness", "helpfulness", "mean"),
    ):
        sel = agg[(agg.metric == metric) & (agg.task == task) & (agg.subject == subject)]
        for r, v in zip(sel.r_e, sel.value):
            rows.append(dict(layer_start=start, layer_stop=stop, r_e=float(r), metric=shown, value=float(v)))
    return rows


def iter_scan(
    config: SweepConfig,
    width: int = 6,
    stride: int | None = None,
    r_steps: int = 5,
    loaded: LoadedModel | None = None,
    stored: SteeringVector | None = None,
    cancel: threading.Event | None = None,
    use_cache: bool = True,
    max_rows: int | None = None,
    batch_size: int | None = SCAN_BATCH_SIZE,
) -> Generator[ScanEvent, None, None]:
    """Run a scan, yielding its events; the last one is ``done`` with the whole table.

    ``stored``: a vector for every layer (e.g. the preset's), used when it was extracted from this
    very model; otherwise one is extracted from the behaviour's pairs. ``batch_size`` overrides the
    config's (None keeps it). Raises ``limits.InputError`` over ``max_rows`` (default
    ``limits().scan_rows``) and ``limits.Cancelled`` when ``cancel`` is set.
    """
    yield ScanEvent("stage", "Loading the model and the data")
    loaded, behavior, questions = prepare(config, loaded)
    plan = plan_scan(loaded.n_layers, width, stride, r_steps, len(behavior.eval_prompts), len(questions))
    known = throughput.measured(loaded.name)
    check_scan(plan, max_rows, known)
    yield ScanEvent("stage", "Steering vector for every layer", 0, plan.rows, plan, known)
    vector_all, _ = vector_for_model(loaded, behavior, None, stored, config.method, cancel=cancel)
    yield ScanEvent("stage", "Sweeping the layer windows", 0, plan.rows, plan, known)
    clock = throughput.RowClock()
    rows: list[dict] = []
    done = 0
    try:
        for k, (start, stop) in enumerate(plan.windows):
            check_cancel(cancel, "The layer scan")
            # The scan draws B from the sequence proxy (answers at the coarse coefficients give its
            # openings) and skips the prompting baseline: a map to choose layers, not a full sweep.
            cfg = dataclasses.replace(
                config,
                layers=f"{start}:{stop}",
                r_steps=r_steps,
                n_diagnostics=0,
                behavior_mode="proxy",
                baseline=False,
            )
            if batch_size is not None:
                cfg = dataclasses.replace(cfg, batch_size=int(batch_size))
            vec = SteeringVector(vector_all.directions, list(range(start, stop)), dict(vector_all.metadata))
            result = yield from _window_events(cfg, loaded, behavior, vec, cancel, use_cache, clock, done, plan)
            done += plan.rows_per_window
            rows += _window_rows(result, behavior.name, start, stop)
            message = f"Window {k + 1} of {len(plan.windows)} (layers {start}–{stop - 1}) done"
            table = pd.DataFrame(rows, columns=COLUMNS)
            rate = clock.rate()
            left = rate.seconds(plan.rows - done) if rate is not None else None
            yield ScanEvent("window", message, done, plan.rows, plan, rate, left, table)
    except SweepCancelled:
        raise Cancelled("The layer scan was cancelled.") from None
    finally:
        if clock.rows:
            throughput.remember(loaded.name, clock.seconds / clock.rows)
    yield ScanEvent("done", "Done", plan.rows, plan.rows, plan, clock.rate(), 0.0, pd.DataFrame(rows, columns=COLUMNS))


def _window_events(
    cfg, loaded, behavior, vec, cancel, use_cache, clock, done_before: int, plan: ScanPlan
) -> Generator[ScanEvent, None, SweepResult]:
    """One window's sweep as scan events (progress with the time left, one ``estimate`` once the
    clock is calibrated); returns the window's sweep result."""
    window_done = 0
    for event in iter_sweep(cfg, loaded=loaded, behavior=behavior, vector=vec, use_cache=use_cache, cancel=cancel):
        if event.kind == "stage":
            # Batches follow a stage event; its count includes rows an earlier, cancelled run measured.
            window_done = event.done
            clock.start()
        elif event.kind == "progress":
            was_calibrated = clock.calibrated
            clock.add(event.done - window_done)
            window_done = event.done
            rate = clock.rate()
            left = rate.seconds(plan.rows - done_before - window_done) if rate else None
            if clock.calibrated and not was_calibrated:
                yield ScanEvent("estimate", "", done_before + window_done, plan.rows, plan, rate, left)
            yield ScanEvent("progress", "", done_before + window_done, plan.rows, plan, rate, left)
        elif event.kind == "done" and event.result is not None:
            return event.result
    raise RuntimeError("The window's sweep ended without a result.")  # pragma: no cover


def scan_layers(
    config: SweepConfig,
    width: int = 6,
    stride: int | None = None,
    r_steps: int = 5,
    loaded: LoadedModel | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
    cancel: threading.Event | None = None,
    stored: SteeringVector | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Rows ``layer_start, layer_stop, r_e, metric, value`` for behaviour expectation and mean
    helpfulness, one small sweep per window (cached like any sweep); ``progress(windows done,
    windows)`` after each window. :func:`iter_scan` to its end."""
    for event in iter_scan(config, width, stride, r_steps, loaded, stored, cancel, use_cache, None, batch_size):
        if event.kind == "window" and progress is not None and event.plan is not None:
            progress(event.done // max(event.plan.rows_per_window, 1), len(event.plan.windows))
        if event.kind == "done":
            assert event.table is not None
            return event.table
    raise RuntimeError("The scan ended without a result.")  # pragma: no cover
