"""Alignment / helpfulness / coherence trade-off figures (paper figs. 4, 5 and 1), pure functions of
sweep aggregates.

Input ``agg`` is the tidy aggregate table of a sweep (``SweepResult.aggregates``): columns
``r_e, task, metric, subject, value, stderr, n``. Tasks read here:

* ``behavior``: ``behavior_expectation`` (B, the headline), optionally ``behavior_proxy`` (drawn
  dashed beside it) and ``covered_mass`` (not drawn);
* ``helpfulness``: ``helpfulness`` (P(correct)) or ``accuracy`` per MMLU subject, plus ``mean``;
* ``coherence``: ``coherent`` (share of coherent answers, 0..1);
* ``baseline`` (r_e = 0 only): the unsteered model asked with a behaviour-specific system prompt
  (metrics ``behavior_expectation``, ``helpfulness``, ``coherent``), drawn as one reference point
  on each chart. Every part may be missing: figures draw what the table has.

Axes are fitted to what is drawn (error bars, fits, baseline, the chance line 1/N on the
helpfulness axes), so a curve that moves by 0.04 does not look flat on a 0-1 axis. The trade-off
chart's r_e labels are thinned so that no two overlap (``thin_labels``). A fit or a regime that
must not be shown as numbers is a legend entry in words (``no_fit`` / ``no_regime`` arguments).

Marker frames
-------------
Every figure puts its current-r_e marker in its LAST trace(s). Given ``marker_grid`` (the
slider's positions) a figure also carries the marker for every position in
``layout.meta["marker_frames"]``, so a browser moves the marker by table lookup, without asking
the server. The format (plain JSON)::

    {"r":      [r_0, r_1, ..., r_{n-1}],   # slider positions, finite, in the slider's order
     "traces": [i_0, ..., i_{k-1}],        # indices in fig.data of the k marker traces (the last k)
     "frames": [[f_00, ..., f_0k], ...]}   # n lists of k dicts: the fields of each marker trace at r_j

Each ``f`` holds the fields that change with r_e: ``x``, ``y`` (lists, possibly empty when the
marker falls outside the measured grid) and ``hovertemplate``. To show position ``v``: find the
``j`` with ``r[j] == v`` (to 1e-6 of the span; no match means "ask the server"), then set
``data[traces[m]] = {...data[traces[m]], ...frames[j][m]}`` for every m. The dashboard adds its
own keys beside ``marker_frames`` in ``layout.meta`` (``readouts``: one readout per position, on
the behaviour chart), see ``mrepe_ui/static/mrepe.js``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ..bounds import AlignmentFit, HelpfulnessFit
from ..tradeoff import EfficientRegime

REQUIRED_COLUMNS = ("r_e", "task", "metric", "subject", "value", "stderr")
MAX_SUBJECT_LEGEND_ENTRIES = 6
# plotly_white's 2-D cartesian layout part as a plain dict: a template *name* would reach plotly.js
# unexpanded when validation is off (see _figure), and the per-trace-type defaults and polar/geo/3-D
# parts are irrelevant to these scatter plots but would be deep-copied on every rebuild.
_TEMPLATE_KEYS = (
    "autotypenumbers",
    "colorway",
    "font",
    "hovermode",
    "hoverlabel",
    "paper_bgcolor",
    "plot_bgcolor",
    "xaxis",
    "yaxis",
    "shapedefaults",
    "annotationdefaults",
    "title",
)
TEMPLATE = {
    "layout": {k: v for k, v in pio.templates["plotly_white"].to_plotly_json()["layout"].items() if k in _TEMPLATE_KEYS}
}
HEIGHT = 330
R_AXIS_TITLE = "r_e (steering coefficient)"
B_AXIS_TITLE = "behavior expectation B"
P_AXIS_TITLE = "P(correct)"
C_AXIS_TITLE = "coherent answers (share)"
MARKER_NAME = "current r_e"
MARKER_LINE_NAME = "r_e marker"
BASELINE_NAME = "prompting baseline"
BEHAVIOR_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")
COLORS = {
    "measured": "#1f77b4",
    "proxy": "#6baed6",
    "fit": "#ff7f0e",
    "mean": "#d62728",
    "chance": "#7f7f7f",
    "marker": "#2ca02c",
    "regime": "#2ca02c",
    "subject": "#9aa5b1",
    "coherence": "#8c564b",
    "baseline": "#e377c2",
}
N_DENSE = 200
COHERENCE_FLOOR = 0.5
# Geometry assumed when thinning the trade-off chart's r_e labels: the smallest plot area the
# dashboard gives a chart (a third of a 1280 px wide page, minus margins) and the label font.
LABEL_AREA_PX = (300.0, 180.0)
LABEL_FONT_PX = 10


class PlotDataError(ValueError):
    """The aggregate table cannot be plotted (empty, missing columns or rows)."""


def interpolate_at(agg_curve_r: Sequence[float], agg_curve_v: Sequence[float], r: float) -> float:
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
# Data selection
# ---------------------------------------------------------------------------------------------


def _check_agg(agg) -> pd.DataFrame:
    if not isinstance(agg, pd.DataFrame):
        raise PlotDataError(f"Expected a pandas DataFrame of sweep aggregates, got {type(agg).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in agg.columns]
    if missing:
        raise PlotDataError(f"Aggregate table lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}.")
    if agg.empty:
        raise PlotDataError("The aggregate table is empty: run (or load) a sweep first.")
    return agg


Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # r_e (sorted), value, stderr


def has_rows(agg, task: str, metric: str | None = None) -> bool:
    """Whether ``agg`` holds rows of ``task`` (and ``metric``)."""
    if not isinstance(agg, pd.DataFrame) or agg.empty or "task" not in agg.columns:
        return False
    sel = agg["task"].to_numpy() == task
    if metric is not None:
        sel &= agg["metric"].to_numpy() == metric
    return bool(sel.any())


def _curves(agg: pd.DataFrame, task: str, metric: str) -> dict[str, Curve]:
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


def _mean_curve(curves: dict[str, Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
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


def _merged_curve(agg: pd.DataFrame, task: str, metric: str) -> Curve:
    """One curve for (task, metric): the ``mean`` subject when there is one, else the mean of subjects."""
    r, v, e, _ = _mean_curve(_curves(agg, task, metric))
    return r, v, e


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


def _r_span(curves: dict[str, Curve]) -> tuple[float, float]:
    return (float(min(np.nanmin(c[0]) for c in curves.values())), float(max(np.nanmax(c[0]) for c in curves.values())))


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def fitted_range(
    values: Sequence,
    include: Sequence[float] = (),
    pad: float = 0.1,
    min_span: float = 0.05,
    bounds: tuple[float, float] | None = None,
) -> list[float]:
    """An axis range that holds every finite value of the arrays in ``values`` and of ``include``,
    with ``pad`` (share of the span) on both sides, at least ``min_span`` wide, clipped to ``bounds``."""
    parts = [np.ravel(np.asarray(v, dtype=float)) for v in values]
    parts.append(np.asarray([float(x) for x in include], dtype=float))
    allv = np.concatenate(parts)
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        lo, hi = bounds if bounds is not None else (0.0, 1.0)
        return [float(lo), float(hi)]
    lo, hi = float(allv.min()), float(allv.max())
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2.0
    lo, hi = min(lo, mid - span / 2.0), max(hi, mid + span / 2.0)
    lo, hi = lo - pad * span, hi + pad * span
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return [float(lo), float(hi)]


def _words(text: str, color: str = "#8a5a00") -> dict:
    """A legend entry that says something in words (no data): "no fit" and why, "no efficient
    regime". In the legend it never covers the data, whatever its shape."""
    short = " ".join(str(text).split())
    if len(short) > 70:
        short = short[:69].rstrip() + "…"
    return dict(
        type="scatter",
        x=[None],
        y=[None],
        mode="lines",
        name=short,
        line=dict(color=color, width=1, dash="dot"),
        hoverinfo="skip",
        showlegend=True,
    )


def _figure(
    traces: list[dict],
    uirevision: str,
    x_title: str,
    y_title: str,
    x_range=None,
    y_range=None,
    meta: dict | None = None,
    title: str | None = None,
) -> go.Figure:
    """Assemble the figure without plotly's per-property validation.

    Validation costs ~5 ms per trace and these figures are rebuilt on every slider move (budget: all
    of them in < 30 ms). The traces here are fixed, known-valid shapes; tests re-validate every
    figure with ``go.Figure(fig.to_dict())`` so a bad property still fails loudly.
    """
    layout = dict(
        template=TEMPLATE,
        height=HEIGHT,
        autosize=True,
        uirevision=uirevision,
        margin=dict(l=56, r=14, t=60 if title else 34, b=46),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, font=dict(size=10)),
        hovermode="closest",
        xaxis=dict(title=dict(text=x_title, standoff=6), zeroline=True),
        yaxis=dict(title=dict(text=y_title, standoff=4)),
    )
    if title:
        layout["title"] = dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top", font=dict(size=13))
    if x_range is not None:
        layout["xaxis"]["range"] = list(x_range)
    if y_range is not None:
        layout["yaxis"]["range"] = list(y_range)
    if meta is not None:
        layout["meta"] = meta
    return go.Figure(data=traces, layout=layout, _validate=False)


def _check_marker(marker_r_e) -> float | None:
    if marker_r_e is None:
        return None
    try:
        r = float(marker_r_e)
    except (TypeError, ValueError):
        raise PlotDataError(f"marker_r_e must be a number, got {type(marker_r_e).__name__}.") from None
    if not math.isfinite(r):
        raise PlotDataError("marker_r_e must be a finite number.")
    return r


def _marker_traces(r_marker: float, points_y: list[float], y_span: Sequence[float], label: str) -> list[dict]:
    """Dashed vertical line at r_marker and the measured value(s) there; NaN values (outside the grid) are omitted."""
    ys = [y for y in points_y if math.isfinite(y)]
    line = dict(
        type="scatter",
        x=[r_marker, r_marker],
        y=[float(y_span[0]), float(y_span[1])],
        mode="lines",
        name=MARKER_LINE_NAME,
        line=dict(color=COLORS["marker"], dash="dash", width=1.5),
        hoverinfo="skip",
        showlegend=False,
    )
    point = dict(
        type="scatter",
        x=[r_marker] * len(ys),
        y=ys,
        mode="markers",
        name=MARKER_NAME,
        showlegend=False,
        marker=dict(color=COLORS["marker"], size=12, symbol="diamond", line=dict(color="white", width=1)),
        hovertemplate=f"r_e = {r_marker:.3g}<br>{label} = %{{y:.3f}}<extra></extra>",
    )
    return [line, point]


def _baseline_trace(x: float, y: float, label: str, hover: str) -> dict:
    return dict(
        type="scatter",
        x=[x],
        y=[y],
        mode="markers",
        name=BASELINE_NAME,
        marker=dict(color=COLORS["baseline"], size=11, symbol="star", line=dict(color="#7a1f5c", width=1)),
        hovertemplate=f"{hover}<br>{label} = %{{y:.3f}}<extra>{BASELINE_NAME}</extra>",
    )


BASELINE_HOVER = "asked with a system prompt, no steering (r_e = 0)"

MARKER_FRAME_KEYS = ("x", "y", "hovertemplate")
MAX_MARKER_FRAMES = 2001


def _marker_meta(n_traces: int, marker_at, grid) -> dict | None:
    """``{"marker_frames": {"r", "traces", "frames"}}`` (format: module docstring): for every r of
    ``grid`` the changing fields of the marker traces, which are the last ``len(marker_at(r))`` traces."""
    if grid is None:
        return None
    r_values = [float(r) for r in grid]
    if not r_values or len(r_values) > MAX_MARKER_FRAMES or not all(math.isfinite(r) for r in r_values):
        raise PlotDataError(f"marker_grid must hold 1-{MAX_MARKER_FRAMES} finite values.")
    frames = [[{k: t[k] for k in MARKER_FRAME_KEYS if k in t} for t in marker_at(r)] for r in r_values]
    n_marker = len(frames[0])
    return {"marker_frames": {"r": r_values, "traces": list(range(n_traces - n_marker, n_traces)), "frames": frames}}


def marker_frames(fig: go.Figure | dict) -> dict | None:
    """The marker table of a figure built with ``marker_grid`` (None otherwise); format in the module docstring."""
    layout = fig["layout"] if isinstance(fig, dict) else fig.layout.to_plotly_json()
    meta = layout.get("meta")
    return meta.get("marker_frames") if isinstance(meta, dict) else None


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


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
    marker_r_e = _check_marker(marker_r_e)
    agg = _check_agg(agg)
    curves = _curves(agg, "behavior", metric)
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
    second = "behavior_proxy" if metric == "behavior_expectation" else "behavior_expectation"
    if has_rows(agg, "behavior", second):
        for subject, (r, v, _) in _curves(agg, "behavior", second).items():
            name = "sequence proxy" if second == "behavior_proxy" else "B from answers (coarse grid)"
            traces.append(
                dict(
                    type="scatter",
                    x=r,
                    y=v,
                    mode="lines",
                    name=name if len(curves) == 1 else f"{name} ({subject})",
                    line=dict(color=COLORS["proxy"], width=1.5, dash="dash"),
                    hovertemplate="r_e = %{x:.3g}<br>" + name + " = %{y:.3f}<extra>" + subject + "</extra>",
                )
            )
            span_values.append(v)
    if fit is not None:
        dense = np.linspace(*_r_span(curves), N_DENSE)
        predicted = fit.predict(dense)
        traces.append(
            dict(
                type="scatter",
                x=dense,
                y=predicted,
                mode="lines",
                line=dict(color=COLORS["fit"], width=2, dash="dot"),
                name=f"Theorem 1 fit, R²={_fmt(fit.r2)}",
                hovertemplate=(
                    f"r_e = %{{x:.3g}}<br>fit B = %{{y:.3f}}<br>Δλ={_fmt(fit.delta_lambda)}, B0={_fmt(fit.b0)}, "
                    f"R²={_fmt(fit.r2)}<extra></extra>"
                ),
            )
        )
        span_values.append(predicted)
    elif no_fit:
        traces.append(_words(f"Theorem 1: no fit ({no_fit})"))
    base = baseline_values(agg).get("behavior_expectation")
    if base is not None:
        traces.append(_baseline_trace(0.0, base, "B", BASELINE_HOVER))
    y_range = fitted_range(span_values, include=[base] if base is not None else (), bounds=(-1.05, 1.05))

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(x, [interpolate_at(r, v, x) for r, v, _ in curves.values()], y_range, "B")

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "behavior", R_AXIS_TITLE, B_AXIS_TITLE, y_range=y_range, meta=meta, title=title)


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
    marker_r_e = _check_marker(marker_r_e)
    agg = _check_agg(agg)
    curves = _curves(agg, "helpfulness", metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    traces: list[dict] = []
    subjects = [s for s in curves if s != "mean"]
    # Past a handful of subjects one legend entry stands for them all, hidden until clicked: 15
    # noisy 7-question curves would otherwise hide the mean and stretch the axis.
    grouped = len(subjects) > MAX_SUBJECT_LEGEND_ENTRIES
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
    r_mean, v_mean, e_mean, mean_name = _mean_curve(curves)
    traces.append(
        dict(
            type="scatter",
            x=r_mean,
            y=v_mean,
            mode="lines+markers",
            name=mean_name,
            error_y=dict(type="data", array=e_mean, visible=True, thickness=1, width=3),
            line=dict(color=COLORS["mean"], width=3),
            marker=dict(size=6),
            hovertemplate="r_e = %{x:.3g}<br>mean = %{y:.3f}<extra></extra>",
        )
    )
    # The axis holds the curves (not their error bars, which may run off it): the mean moves by a
    # few hundredths and must not look flat.
    span_values: list = [v_mean]
    if not grouped:
        span_values += [curves[s][1] for s in subjects]
    include: list[float] = []
    lo, hi = _r_span(curves)
    if n_choices is not None:
        if isinstance(n_choices, bool) or not isinstance(n_choices, (int, np.integer)) or n_choices < 2:
            raise PlotDataError(f"n_choices must be an integer >= 2, got {n_choices!r}.")
        chance = 1.0 / int(n_choices)
        include.append(chance)
        traces.append(
            dict(
                type="scatter",
                x=[lo, hi],
                y=[chance, chance],
                mode="lines",
                name=f"chance 1/N = {chance:.3g}",
                line=dict(color=COLORS["chance"], dash="dot", width=1.5),
                hoverinfo="skip",
            )
        )
    if fit is not None:
        dense = np.linspace(lo, hi, N_DENSE)
        predicted = fit.predict(dense)
        span_values.append(predicted)
        traces.append(
            dict(
                type="scatter",
                x=dense,
                y=predicted,
                mode="lines",
                line=dict(color=COLORS["fit"], width=2, dash="dash"),
                name=f"Theorem 2 fit, R²={_fmt(fit.r2)}",
                hovertemplate=(
                    f"r_e = %{{x:.3g}}<br>fit = %{{y:.3f}}<br>P0={_fmt(fit.p0)}, α={_fmt(fit.alpha)} (held), "
                    f"λσβ={_fmt(fit.lambda_sigma_beta)}, R²={_fmt(fit.r2)}<extra></extra>"
                ),
            )
        )
    elif no_fit:
        traces.append(_words(f"Theorem 2: no fit ({no_fit})"))
    base = baseline_values(agg).get(metric if metric == "helpfulness" else "")
    if base is not None:
        include.append(base)
        traces.append(_baseline_trace(0.0, base, y_title, BASELINE_HOVER))
    y_range = fitted_range(span_values, include=include, min_span=0.04, bounds=(0.0, 1.02))

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(x, [interpolate_at(r_mean, v_mean, x)], y_range, y_title)

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "helpfulness", R_AXIS_TITLE, y_title, y_range=y_range, meta=meta, title=title)


def coherence_figure(
    agg: pd.DataFrame,
    marker_r_e: float | None = None,
    marker_grid: Sequence[float] | None = None,
    floor: float | None = COHERENCE_FLOOR,
    title: str | None = None,
) -> go.Figure:
    """Share of coherent answers (task ``coherence``, metric ``coherent``) against r_e, the floor
    below which the efficient regime stops, the prompting baseline and the marker."""
    marker_r_e = _check_marker(marker_r_e)
    agg = _check_agg(agg)
    r, v, e = _merged_curve(agg, "coherence", "coherent")
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
        traces.append(_baseline_trace(0.0, base, "coherent", BASELINE_HOVER))
    y_range = fitted_range([v - e, v + e], include=include, min_span=0.1, bounds=(-0.02, 1.04))

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(x, [interpolate_at(r, v, x)], y_range, "coherent")

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "coherence", R_AXIS_TITLE, C_AXIS_TITLE, y_range=y_range, meta=meta, title=title)


def _paired_curve(agg: pd.DataFrame, behavior: str | None, metric: str, b_metric: str = "behavior_expectation"):
    bcurves = _curves(agg, "behavior", b_metric)
    behaviors = list(bcurves)
    if behavior is None:
        if len(behaviors) > 1:
            raise PlotDataError(f"Several behaviours in the table ({', '.join(behaviors)}): pass behavior=<name>.")
        behavior = behaviors[0]
    elif behavior not in behaviors:
        raise PlotDataError(f"No behaviour {behavior!r} in the table; available: {', '.join(behaviors)}.")
    rb, vb, _ = bcurves[behavior]
    rh, vh, _, _ = _mean_curve(_curves(agg, "helpfulness", metric))
    common, ib, ih = np.intersect1d(rb, rh, return_indices=True)
    if common.size == 0:
        raise PlotDataError(
            "Behaviour and helpfulness rows share no r_e values; they must come from the same sweep grid."
        )
    return common, vb[ib], vh[ih], behavior


def _label_order(r: np.ndarray, priority: Sequence[float] = ()) -> list[int]:
    """Indices in the order labels are placed: r_e nearest 0, the ends, ``priority`` values, then a
    coarse-to-fine pass over the grid (so kept labels spread evenly)."""
    n = r.size
    first = [int(np.argmin(np.abs(r))), 0, n - 1]
    for p in priority:
        if p is not None and math.isfinite(p):
            first.append(int(np.argmin(np.abs(r - p))))
    order = list(dict.fromkeys(first))
    step = 1 << max(0, int(math.ceil(math.log2(max(n, 1)))))
    while step >= 1:
        for i in range(0, n, step):
            if i not in order:
                order.append(i)
        step //= 2
    return order


def thin_labels(
    x: Sequence[float],
    y: Sequence[float],
    texts: Sequence[str],
    x_range: Sequence[float],
    y_range: Sequence[float],
    area_px: tuple[float, float] = LABEL_AREA_PX,
    font_px: int = LABEL_FONT_PX,
    order: Sequence[int] | None = None,
    n_free: int = 0,
) -> list[str]:
    """Keep the labels (drawn centred above their points) whose boxes overlap no label kept before
    them (in ``order``), no other point and stay inside the plot area; the others become "". The
    first ``n_free`` labels of ``order`` (r_e = 0 and the ends) only have to miss other labels.
    Boxes are estimated for a plot area of ``area_px`` (width, height) pixels and a ``font_px`` font
    (0.62 em per character); points are 8 px squares."""
    n = len(texts)
    w_px, h_px = area_px
    (x0, x1), (y0, y1) = x_range, y_range
    sx = w_px / (x1 - x0) if x1 > x0 else 0.0
    sy = h_px / (y1 - y0) if y1 > y0 else 0.0
    px = [(float(a) - x0) * sx for a in x]
    py = [(float(b) - y0) * sy for b in y]
    boxes: list[tuple[float, float, float, float]] = []
    kept = [""] * n
    char_w, line_h, gap = 0.62 * font_px, 1.25 * font_px, 2.0

    def hits(box, other) -> bool:
        return box[0] < other[1] and other[0] < box[1] and box[2] < other[3] and other[2] < box[3]

    for rank, i in enumerate(order if order is not None else range(n)):
        if not texts[i] or not (math.isfinite(px[i]) and math.isfinite(py[i])):
            continue
        half = len(texts[i]) * char_w / 2.0
        box = (px[i] - half - gap, px[i] + half + gap, py[i] + 4.0, py[i] + 4.0 + line_h + gap)
        if any(hits(box, b) for b in boxes):
            continue
        if rank >= n_free:
            if box[0] < 0 or box[1] > w_px or box[3] > h_px + line_h:
                continue
            points = (
                (px[j] - 4, px[j] + 4, py[j] - 4, py[j] + 4)
                for j in range(n)
                if j != i and math.isfinite(px[j]) and math.isfinite(py[j])
            )
            if any(hits(box, p) for p in points):
                continue
        boxes.append(box)
        kept[i] = texts[i]
    return kept


def tradeoff_figure(
    agg: pd.DataFrame,
    regime: EfficientRegime | None = None,
    marker_r_e: float | None = None,
    behavior: str | None = None,
    metric: str = "helpfulness",
    marker_grid: Sequence[float] | None = None,
    n_choices: int | None = 4,
    no_regime: str | None = None,
    title: str | None = None,
    behavior_metric: str = "behavior_expectation",
) -> go.Figure:
    """Mean helpfulness (y) against behaviour expectation (x), one point per r_e, labelled by r_e
    (thinned so no two labels overlap; every point names its r_e on hover), the efficient regime
    highlighted as the segment with r_min <= r_e <= r_max (or ``no_regime`` in words), chance 1/N,
    the prompting baseline and the marker at the current r_e (interpolated on both curves)."""
    marker_r_e = _check_marker(marker_r_e)
    agg = _check_agg(agg)
    r, b, h, behavior = _paired_curve(agg, behavior, metric, behavior_metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    base = baseline_values(agg)
    base_b, base_h = base.get("behavior_expectation"), base.get("helpfulness") if metric == "helpfulness" else None
    chance = None
    if n_choices is not None:
        if isinstance(n_choices, bool) or not isinstance(n_choices, (int, np.integer)) or n_choices < 2:
            raise PlotDataError(f"n_choices must be an integer >= 2, got {n_choices!r}.")
        chance = 1.0 / int(n_choices)
    x_range = fitted_range([b], include=[base_b] if base_b is not None else (), pad=0.12, bounds=(-1.08, 1.08))
    y_range = fitted_range(
        [h],
        include=[v for v in (chance, base_h) if v is not None],
        pad=0.15,
        min_span=0.04,
        bounds=(0.0, 1.02),
    )
    order = _label_order(r)
    labels = thin_labels(b, h, [f"{x:g}" for x in r], x_range, y_range, order=order, n_free=3)
    traces: list[dict] = [
        dict(
            type="scatter",
            x=b,
            y=h,
            mode="lines+markers+text",
            name="r_e sweep (labels: r_e)",
            text=labels,
            textposition="top center",
            textfont=dict(size=LABEL_FONT_PX, color="#444"),
            cliponaxis=False,
            line=dict(color=COLORS["measured"], width=1.5),
            marker=dict(size=6),
            customdata=r,
            hovertemplate="r_e = %{customdata:.3g}<br>B = %{x:.3f}<br>P = %{y:.3f}<extra></extra>",
        )
    ]
    if chance is not None:
        traces.append(
            dict(
                type="scatter",
                x=list(x_range),
                y=[chance, chance],
                mode="lines",
                name=f"chance 1/N = {chance:.3g}",
                line=dict(color=COLORS["chance"], dash="dot", width=1.5),
                hoverinfo="skip",
            )
        )
    if regime is not None:
        inside = (r >= regime.r_min) & (r <= regime.r_max)
        # Endpoints interpolated so the highlight spans exactly [r_min, r_max], not just grid points inside it.
        seg_r = np.unique(np.concatenate([[regime.r_min, regime.r_max], r[inside]]))
        seg_b = np.array([interpolate_at(r, b, x) for x in seg_r])
        seg_h = np.array([interpolate_at(r, h, x) for x in seg_r])
        ok = np.isfinite(seg_b) & np.isfinite(seg_h)
        traces.append(
            dict(
                type="scatter",
                x=seg_b[ok],
                y=seg_h[ok],
                mode="lines",
                name=f"efficient regime r_e ∈ [{regime.r_min:.3g}, {regime.r_max:.3g}]",
                line=dict(color=COLORS["regime"], width=8),
                opacity=0.35,
                customdata=seg_r[ok],
                hovertemplate="r_e = %{customdata:.3g}<extra>efficient regime</extra>",
            )
        )
    elif no_regime:
        traces.append(_words(no_regime[:1].upper() + no_regime[1:]))
    if base_b is not None and base_h is not None:
        traces.append(
            dict(
                type="scatter",
                x=[base_b],
                y=[base_h],
                mode="markers",
                name=BASELINE_NAME,
                marker=dict(color=COLORS["baseline"], size=11, symbol="star", line=dict(color="#7a1f5c", width=1)),
                hovertemplate=f"{BASELINE_HOVER}<br>B = %{{x:.3f}}<br>P = %{{y:.3f}}<extra>{BASELINE_NAME}</extra>",
            )
        )

    def marker_at(x: float) -> list[dict]:
        mb, mh = interpolate_at(r, b, x), interpolate_at(r, h, x)
        shown = math.isfinite(mb) and math.isfinite(mh)
        return [
            dict(
                type="scatter",
                x=[mb] if shown else [],
                y=[mh] if shown else [],
                mode="markers",
                name=MARKER_NAME,
                showlegend=False,
                marker=dict(color=COLORS["marker"], size=14, symbol="diamond", line=dict(color="white", width=1)),
                hovertemplate=f"r_e = {x:.3g}<br>B = %{{x:.3f}}<br>P = %{{y:.3f}}<extra></extra>",
            )
        ]

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(
        traces,
        "tradeoff",
        B_AXIS_TITLE,
        y_title,
        x_range=x_range,
        y_range=y_range,
        meta=meta,
        title=title,
    )
