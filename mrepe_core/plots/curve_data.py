"""Curves for the trade-off figures, read from a sweep's tidy aggregate table, and the checks of
the figures' inputs.

``agg`` is ``SweepResult.aggregates``: columns ``r_e, task, metric, subject, value, stderr, n``
(tasks and metrics: :mod:`mrepe_core.plots.tradeoff`). Every failure is a ``PlotDataError`` that
says what is missing or wrong.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("r_e", "task", "metric", "subject", "value", "stderr")

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # r_e (sorted), value, stderr
Floats = Sequence[float] | np.ndarray  # numbers: a list, a tuple or a numpy array


class PlotDataError(ValueError):
    """The aggregate table cannot be plotted (empty, missing columns or rows)."""


def interpolate_at(agg_curve_r: Floats, agg_curve_v: Floats, r: float) -> float:
    """Linear interpolation of a measured curve at ``r``; NaN outside the measured r_e range (no extrapolation)."""
    x = np.asarray(agg_curve_r, dtype=float)
    y = np.asarray(agg_curve_v, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        raise PlotDataError("Cannot interpolate an empty curve.")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    r = float(r)
    if not math.isfinite(r) or r < x[0] or r > x[-1]:
        return float("nan")
    return float(np.interp(r, x, y))


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def check_agg(agg) -> pd.DataFrame:
    """``agg`` itself when it is a non-empty DataFrame with the required columns."""
    if not isinstance(agg, pd.DataFrame):
        raise PlotDataError(f"Expected a pandas DataFrame of sweep aggregates, got {type(agg).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in agg.columns]
    if missing:
        raise PlotDataError(f"Aggregate table lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}.")
    if agg.empty:
        raise PlotDataError("The aggregate table is empty: run (or load) a sweep first.")
    return agg


def chance_level(n_choices: int | None) -> float | None:
    """Chance P(correct) 1/N for questions with ``n_choices`` options (None: no chance line)."""
    if n_choices is None:
        return None
    if isinstance(n_choices, bool) or not isinstance(n_choices, (int, np.integer)) or n_choices < 2:
        raise PlotDataError(f"n_choices must be an integer >= 2, got {n_choices!r}.")
    return 1.0 / int(n_choices)


def has_rows(agg, task: str, metric: str | None = None) -> bool:
    """Whether ``agg`` holds rows of ``task`` (and ``metric``)."""
    if not isinstance(agg, pd.DataFrame) or agg.empty or "task" not in agg.columns:
        return False
    sel = agg["task"].to_numpy() == task
    if metric is not None:
        sel &= agg["metric"].to_numpy() == metric
    return bool(sel.any())


# ---------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------


def subject_curves(agg: pd.DataFrame, task: str, metric: str) -> dict[str, Curve]:
    """Curves per subject for one (task, metric), sorted by r_e; plain numpy because the figures are
    rebuilt on every slider move and per-subject pandas filtering dominated the build time."""
    task_col = agg["task"].to_numpy()
    metric_col = agg["metric"].to_numpy()
    rows = np.flatnonzero((task_col == task) & (metric_col == metric))
    if rows.size == 0:
        raise PlotDataError(f"No rows with task={task!r}, metric={metric!r} in the aggregate table.")
    subject = agg["subject"].to_numpy()[rows].astype(str)
    try:
        r = agg["r_e"].to_numpy(dtype=float)[rows]
        v = agg["value"].to_numpy(dtype=float)[rows]
        e = np.nan_to_num(agg["stderr"].to_numpy(dtype=float)[rows], nan=0.0)
    except (TypeError, ValueError) as exc:
        raise PlotDataError(f"r_e, value and stderr must be numeric ({exc}).") from None
    out: dict[str, Curve] = {}
    for name in sorted(set(subject)):
        m = subject == name
        order = np.argsort(r[m], kind="stable")
        out[name] = (r[m][order], v[m][order], e[m][order])
    return out


def mean_curve(curves: dict[str, Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The "mean" rows of result.aggregate, or the equal-weight mean over subjects when they are absent."""
    if "mean" in curves:
        return (*curves["mean"], "mean")
    if len(curves) == 1:
        ((name, curve),) = curves.items()
        return (*curve, name)
    r_all = np.unique(np.concatenate([c[0] for c in curves.values()]))
    stack = np.full((len(curves), r_all.size), np.nan)
    for k, (r, v, _) in enumerate(curves.values()):
        stack[k, np.searchsorted(r_all, r)] = v
    count = np.sum(np.isfinite(stack), axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is the honest answer
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0, ddof=1) if len(curves) > 1 else np.zeros(r_all.size)
        err = np.nan_to_num(std / np.sqrt(count), nan=0.0)
    return r_all, mean, err, "mean of subjects"


def merged_curve(agg: pd.DataFrame, task: str, metric: str) -> Curve:
    """One curve for (task, metric): the ``mean`` subject when there is one, else the mean of subjects."""
    r, v, e, _ = mean_curve(subject_curves(agg, task, metric))
    return r, v, e


def paired_curve(
    agg: pd.DataFrame, behavior: str | None, metric: str, b_metric: str = "behavior_expectation"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(r_e, B, helpfulness, behaviour name) on the r_e values that both curves measured: B of
    ``behavior`` (the only one when None) and the mean helpfulness ``metric``."""
    bcurves = subject_curves(agg, "behavior", b_metric)
    behaviors = list(bcurves)
    if behavior is None:
        if len(behaviors) > 1:
            raise PlotDataError(f"Several behaviours in the table ({', '.join(behaviors)}): pass behavior=<name>.")
        behavior = behaviors[0]
    elif behavior not in behaviors:
        raise PlotDataError(f"No behaviour {behavior!r} in the table; available: {', '.join(behaviors)}.")
    rb, vb, _ = bcurves[behavior]
    rh, vh, _, _ = mean_curve(subject_curves(agg, "helpfulness", metric))
    common, ib, ih = np.intersect1d(rb, rh, return_indices=True)
    if common.size == 0:
        raise PlotDataError(
            "Behaviour and helpfulness rows share no r_e values; they must come from the same sweep grid."
        )
    return common, vb[ib], vh[ih], behavior


def baseline_values(agg) -> dict[str, float]:
    """The prompting baseline (task ``baseline``) per metric: ``behavior_expectation``,
    ``helpfulness``, ``coherent`` (those present). Helpfulness prefers its ``mean`` subject."""
    if not has_rows(agg, "baseline"):
        return {}
    base = agg[agg["task"] == "baseline"]
    out: dict[str, float] = {}
    for metric, rows in base.groupby("metric"):
        if "mean" in set(rows["subject"].astype(str)):
            rows = rows[rows["subject"].astype(str) == "mean"]
        values = pd.to_numeric(rows["value"], errors="coerce").to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size:
            out[str(metric)] = float(values.mean())
    return out


def r_span(curves: dict[str, Curve]) -> tuple[float, float]:
    """The smallest and largest r_e of the curves."""
    return (float(min(np.nanmin(c[0]) for c in curves.values())), float(max(np.nanmax(c[0]) for c in curves.values())))
