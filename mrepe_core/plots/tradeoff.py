"""Alignment / helpfulness / coherence trade-off figures (paper figs. 4, 5 and 1), pure functions of
sweep aggregates: behaviour, helpfulness and coherence against r_e here, the trade-off chart
(helpfulness against behaviour) in :mod:`mrepe_core.plots.tradeoff_chart`.

Input ``agg`` is the tidy aggregate table of a sweep (``SweepResult.aggregates``): columns
``r_e, task, metric, subject, value, stderr, n``. Tasks read here:

* ``behavior``: ``behavior_expectation`` (B, the headline), optionally ``behavior_proxy`` (drawn
  dashed beside it) and ``covered_mass`` (not drawn);
* ``helpfulness``: ``helpfulness`` (P(correct)) or ``accuracy`` per MMLU subject, plus ``mean``;
* ``coherence``: ``coherent`` (share of coherent answers, 0..1);
* ``baseline`` (r_e = 0 only): the unsteered model asked with a behaviour-specific system prompt
  (metrics ``behavior_expectation``, ``helpfulness``, ``coherent``), drawn as one reference point
  on each chart. Every part may be missing: figures draw what the table has.

The parts: curves and input checks in :mod:`~mrepe_core.plots.curve_data`, axes fitted to what is
drawn, colours and names in :mod:`~mrepe_core.plots.curve_style`, the current-r_e marker and its
table of frames for the slider (``layout.meta["marker_frames"]``, format documented there) in
:mod:`~mrepe_core.plots.markers`. A fit that must not be shown as numbers is a legend entry in
words (``no_fit`` argument). The names this module held before it was split are still importable
from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..bounds import AlignmentFit, HelpfulnessFit
from .curve_data import (
    REQUIRED_COLUMNS,
    Curve,
    PlotDataError,
    baseline_values,
    chance_level,
    check_agg,
    has_rows,
    interpolate_at,
    mean_curve,
    merged_curve,
    r_span,
    subject_curves,
)
from .curve_style import (
    B_AXIS_TITLE,
    BASELINE_HOVER,
    BASELINE_NAME,
    BEHAVIOR_PALETTE,
    C_AXIS_TITLE,
    COHERENCE_FLOOR,
    COLORS,
    HEIGHT,
    LABEL_AREA_PX,
    LABEL_FONT_PX,
    MARKER_LINE_NAME,
    MARKER_NAME,
    MAX_SUBJECT_LEGEND_ENTRIES,
    N_DENSE,
    P_AXIS_TITLE,
    R_AXIS_TITLE,
    TEMPLATE,
    baseline_trace,
    build_figure,
    chance_trace,
    fitted_range,
    fmt,
    words_trace,
)
from .markers import MARKER_FRAME_KEYS, MAX_MARKER_FRAMES, add_marker, check_marker, marker_frames, marker_traces
from .tradeoff_chart import thin_labels, tradeoff_figure

__all__ = [
    # the figures of this module
    "behavior_figure",
    "coherence_figure",
    "helpfulness_figure",
    # defined in curve_data, curve_style, markers and tradeoff_chart; importable from here as before the split
    "B_AXIS_TITLE",
    "BASELINE_HOVER",
    "BASELINE_NAME",
    "BEHAVIOR_PALETTE",
    "C_AXIS_TITLE",
    "COHERENCE_FLOOR",
    "COLORS",
    "Curve",
    "HEIGHT",
    "LABEL_AREA_PX",
    "LABEL_FONT_PX",
    "MARKER_FRAME_KEYS",
    "MARKER_LINE_NAME",
    "MARKER_NAME",
    "MAX_MARKER_FRAMES",
    "MAX_SUBJECT_LEGEND_ENTRIES",
    "N_DENSE",
    "P_AXIS_TITLE",
    "PlotDataError",
    "REQUIRED_COLUMNS",
    "R_AXIS_TITLE",
    "TEMPLATE",
    "baseline_values",
    "fitted_range",
    "has_rows",
    "interpolate_at",
    "marker_frames",
    "thin_labels",
    "tradeoff_figure",
]


# ---------------------------------------------------------------------------------------------
# Behaviour B against r_e
# ---------------------------------------------------------------------------------------------


def _measured_b_traces(curves: dict[str, Curve]) -> tuple[list[dict], list]:
    """One curve with error bars per behaviour, and the values its axis must hold (the error bars)."""
    traces: list[dict] = []
    span_values: list = []
    for k, (subject, (r, v, e)) in enumerate(curves.items()):
        traces.append(
            dict(
                type="scatter",
                x=r,
                y=v,
                mode="lines+markers",
                name="measured B" if len(curves) == 1 else f"measured B ({subject})",
                error_y=dict(type="data", array=e, visible=True, thickness=1, width=3),
                line=dict(color=BEHAVIOR_PALETTE[k % len(BEHAVIOR_PALETTE)], width=2),
                marker=dict(size=6),
                hovertemplate="r_e = %{x:.3g}<br>B = %{y:.3f}<extra>" + subject + "</extra>",
            )
        )
        span_values += [v - e, v + e]
    return traces, span_values


def _second_b_traces(agg: pd.DataFrame, metric: str, n_behaviors: int) -> tuple[list[dict], list]:
    """The other measure of B, dashed beside the headline ``metric`` when the table has it (the
    sequence proxy beside B from answers, or the reverse), and its values for the axis."""
    second = "behavior_proxy" if metric == "behavior_expectation" else "behavior_expectation"
    traces: list[dict] = []
    span_values: list = []
    if has_rows(agg, "behavior", second):
        for subject, (r, v, _) in subject_curves(agg, "behavior", second).items():
            name = "sequence proxy" if second == "behavior_proxy" else "B from answers (coarse grid)"
            traces.append(
                dict(
                    type="scatter",
                    x=r,
                    y=v,
                    mode="lines",
                    name=name if n_behaviors == 1 else f"{name} ({subject})",
                    line=dict(color=COLORS["proxy"], width=1.5, dash="dash"),
                    hovertemplate="r_e = %{x:.3g}<br>" + name + " = %{y:.3f}<extra>" + subject + "</extra>",
                )
            )
            span_values.append(v)
    return traces, span_values


def _alignment_fit_trace(fit: AlignmentFit, curves: dict[str, Curve]) -> tuple[dict, np.ndarray]:
    """The Theorem 1 fit over the measured r_e span, and its values."""
    dense = np.linspace(*r_span(curves), N_DENSE)
    predicted = fit.predict(dense)
    trace = dict(
        type="scatter",
        x=dense,
        y=predicted,
        mode="lines",
        line=dict(color=COLORS["fit"], width=2, dash="dot"),
        name=f"Theorem 1 fit, R²={fmt(fit.r2)}",
        hovertemplate=(
            f"r_e = %{{x:.3g}}<br>fit B = %{{y:.3f}}<br>Δλ={fmt(fit.delta_lambda)}, B0={fmt(fit.b0)}, "
            f"R²={fmt(fit.r2)}<extra></extra>"
        ),
    )
    return trace, predicted


def behavior_figure(
    agg: pd.DataFrame,
    fit: AlignmentFit | None = None,
    marker_r_e: float | None = None,
    marker_grid: Sequence[float] | None = None,
    no_fit: str | None = None,
    title: str | None = None,
    metric: str = "behavior_expectation",
) -> go.Figure:
    """Measured behaviour expectation B vs r_e (one curve per behaviour), the sequence proxy when
    measured, Theorem 1 fit (or ``no_fit`` in words), the prompting baseline, current-r_e marker.
    ``metric`` is the headline B (``behavior_proxy`` when a sweep measured B with the proxy only)."""
    marker_r_e = check_marker(marker_r_e)
    agg = check_agg(agg)
    curves = subject_curves(agg, "behavior", metric)
    traces, span_values = _measured_b_traces(curves)
    second_traces, second_values = _second_b_traces(agg, metric, len(curves))
    traces += second_traces
    span_values += second_values
    if fit is not None:
        fit_trace, predicted = _alignment_fit_trace(fit, curves)
        traces.append(fit_trace)
        span_values.append(predicted)
    elif no_fit:
        traces.append(words_trace(f"Theorem 1: no fit ({no_fit})"))
    base = baseline_values(agg).get("behavior_expectation")
    if base is not None:
        traces.append(baseline_trace(0.0, base, "B", BASELINE_HOVER))
    y_range = fitted_range(span_values, include=[base] if base is not None else (), bounds=(-1.05, 1.05))

    def marker_at(x: float) -> list[dict]:
        return marker_traces(x, [interpolate_at(r, v, x) for r, v, _ in curves.values()], y_range, "B")

    meta = add_marker(traces, marker_at, marker_r_e, marker_grid)
    return build_figure(traces, "behavior", R_AXIS_TITLE, B_AXIS_TITLE, y_range=y_range, meta=meta, title=title)


# ---------------------------------------------------------------------------------------------
# Helpfulness P(correct) against r_e
# ---------------------------------------------------------------------------------------------


def _subject_traces(curves: dict[str, Curve], subjects: list[str], grouped: bool) -> list[dict]:
    """Thin per-subject curves behind one legend entry (none for a single subject without a mean)."""
    traces: list[dict] = []
    if len(subjects) > 1 or "mean" in curves:
        for k, subject in enumerate(subjects):
            r, v, _ = curves[subject]
            traces.append(
                dict(
                    type="scatter",
                    x=r,
                    y=v,
                    mode="lines",
                    opacity=0.7,
                    # One legend entry for all subjects; past a handful they are hidden until
                    # clicked (15 noisy 7-question curves would hide the mean).
                    name=f"{len(subjects)} subjects" + (" (click to show)" if grouped else ""),
                    showlegend=k == 0,
                    visible="legendonly" if grouped else True,
                    line=dict(width=1, color=COLORS["subject"]),
                    legendgroup="subjects",
                    hovertemplate="r_e = %{x:.3g}<br>%{y:.3f}<extra>" + subject + "</extra>",
                )
            )
    return traces


def _mean_trace(r: np.ndarray, v: np.ndarray, e: np.ndarray, name: str) -> dict:
    """The mean over subjects, bold, with error bars."""
    return dict(
        type="scatter",
        x=r,
        y=v,
        mode="lines+markers",
        name=name,
        error_y=dict(type="data", array=e, visible=True, thickness=1, width=3),
        line=dict(color=COLORS["mean"], width=3),
        marker=dict(size=6),
        hovertemplate="r_e = %{x:.3g}<br>mean = %{y:.3f}<extra></extra>",
    )


def _helpfulness_fit_trace(fit: HelpfulnessFit, lo: float, hi: float) -> tuple[dict, np.ndarray]:
    """The Theorem 2 fit from r_e = ``lo`` to ``hi``, and its values."""
    dense = np.linspace(lo, hi, N_DENSE)
    predicted = fit.predict(dense)
    trace = dict(
        type="scatter",
        x=dense,
        y=predicted,
        mode="lines",
        line=dict(color=COLORS["fit"], width=2, dash="dash"),
        name=f"Theorem 2 fit, R²={fmt(fit.r2)}",
        hovertemplate=(
            f"r_e = %{{x:.3g}}<br>fit = %{{y:.3f}}<br>P0={fmt(fit.p0)}, α={fmt(fit.alpha)} (held), "
            f"λσβ={fmt(fit.lambda_sigma_beta)}, R²={fmt(fit.r2)}<extra></extra>"
        ),
    )
    return trace, predicted


def helpfulness_figure(
    agg: pd.DataFrame,
    fit: HelpfulnessFit | None = None,
    n_choices: int | None = 4,
    marker_r_e: float | None = None,
    metric: str = "helpfulness",
    marker_grid: Sequence[float] | None = None,
    no_fit: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """P(correct) against r_e: the mean over subjects (bold, with error bars), per-subject curves
    (thin; hidden behind one legend entry past a handful of subjects), chance 1/N, Theorem 2 fit (or
    ``no_fit`` in words), the prompting baseline, marker. The y axis is fitted to the mean, its
    errors, the fit, the baseline and the chance line."""
    marker_r_e = check_marker(marker_r_e)
    agg = check_agg(agg)
    curves = subject_curves(agg, "helpfulness", metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    subjects = [s for s in curves if s != "mean"]
    # Past a handful of subjects one legend entry stands for them all, hidden until clicked: 15
    # noisy 7-question curves would otherwise hide the mean and stretch the axis.
    grouped = len(subjects) > MAX_SUBJECT_LEGEND_ENTRIES
    traces = _subject_traces(curves, subjects, grouped)
    r_mean, v_mean, e_mean, mean_name = mean_curve(curves)
    traces.append(_mean_trace(r_mean, v_mean, e_mean, mean_name))
    # The axis holds the curves (not their error bars, which may run off it): the mean moves by a
    # few hundredths and must not look flat.
    span_values: list = [v_mean]
    if not grouped:
        span_values += [curves[s][1] for s in subjects]
    include: list[float] = []
    lo, hi = r_span(curves)
    chance = chance_level(n_choices)
    if chance is not None:
        include.append(chance)
        traces.append(chance_trace([lo, hi], chance))
    if fit is not None:
        fit_trace, predicted = _helpfulness_fit_trace(fit, lo, hi)
        span_values.append(predicted)
        traces.append(fit_trace)
    elif no_fit:
        traces.append(words_trace(f"Theorem 2: no fit ({no_fit})"))
    base = baseline_values(agg).get(metric if metric == "helpfulness" else "")
    if base is not None:
        include.append(base)
        traces.append(baseline_trace(0.0, base, y_title, BASELINE_HOVER))
    y_range = fitted_range(span_values, include=include, min_span=0.04, bounds=(0.0, 1.02))

    def marker_at(x: float) -> list[dict]:
        return marker_traces(x, [interpolate_at(r_mean, v_mean, x)], y_range, y_title)

    meta = add_marker(traces, marker_at, marker_r_e, marker_grid)
    return build_figure(traces, "helpfulness", R_AXIS_TITLE, y_title, y_range=y_range, meta=meta, title=title)


# ---------------------------------------------------------------------------------------------
# Coherence against r_e
# ---------------------------------------------------------------------------------------------


def coherence_figure(
    agg: pd.DataFrame,
    marker_r_e: float | None = None,
    marker_grid: Sequence[float] | None = None,
    floor: float | None = COHERENCE_FLOOR,
    title: str | None = None,
) -> go.Figure:
    """Share of coherent answers (task ``coherence``, metric ``coherent``) against r_e, the floor
    below which the efficient regime stops, the prompting baseline and the marker."""
    marker_r_e = check_marker(marker_r_e)
    agg = check_agg(agg)
    r, v, e = merged_curve(agg, "coherence", "coherent")
    traces: list[dict] = [
        dict(
            type="scatter",
            x=r,
            y=v,
            mode="lines+markers",
            name="coherent answers",
            error_y=dict(type="data", array=e, visible=True, thickness=1, width=3),
            line=dict(color=COLORS["coherence"], width=2),
            marker=dict(size=6),
            hovertemplate="r_e = %{x:.3g}<br>coherent = %{y:.0%}<extra></extra>",
        )
    ]
    include: list[float] = [1.0]
    if floor is not None and math.isfinite(floor):
        include.append(float(floor))
        traces.append(
            dict(
                type="scatter",
                x=[float(r.min()), float(r.max())],
                y=[floor, floor],
                mode="lines",
                name=f"floor {floor:.0%} (the regime stops below)",
                line=dict(color=COLORS["chance"], dash="dot", width=1.5),
                hoverinfo="skip",
            )
        )
    base = baseline_values(agg).get("coherent")
    if base is not None:
        include.append(base)
        traces.append(baseline_trace(0.0, base, "coherent", BASELINE_HOVER))
    y_range = fitted_range([v - e, v + e], include=include, min_span=0.1, bounds=(-0.02, 1.04))

    def marker_at(x: float) -> list[dict]:
        return marker_traces(x, [interpolate_at(r, v, x)], y_range, "coherent")

    meta = add_marker(traces, marker_at, marker_r_e, marker_grid)
    return build_figure(traces, "coherence", R_AXIS_TITLE, C_AXIS_TITLE, y_range=y_range, meta=meta, title=title)
