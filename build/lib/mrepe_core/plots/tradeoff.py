"""Alignment / helpfulness trade-off figures (paper figs. 4, 5 and 1), pure functions of sweep aggregates.

Input ``agg`` is the tidy aggregate table of ``result.aggregate``: columns
``r_e, task, metric, subject, value, stderr, n``. Every figure puts its current-r_e marker in the
LAST trace(s). Given ``marker_grid`` (the slider's positions), a figure also carries the marker
traces for every position in ``layout.meta["marker_frames"]``, so a browser can move the marker
by table lookup without asking the server (see ``marker_frames``).
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
HEIGHT = 360
R_AXIS_TITLE = "r_e (steering coefficient)"
B_AXIS_TITLE = "behavior expectation B"
P_AXIS_TITLE = "P(correct)"
MARKER_NAME = "current r_e"
MARKER_LINE_NAME = "r_e marker"
BEHAVIOR_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")
COLORS = {
    "measured": "#1f77b4",
    "fit": "#ff7f0e",
    "mean": "#d62728",
    "chance": "#7f7f7f",
    "marker": "#2ca02c",
    "regime": "#2ca02c",
    "subject": "#9aa5b1",
}
N_DENSE = 200
MAX_TEXT_LABELS = 15


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


def _r_span(curves: dict[str, Curve]) -> tuple[float, float]:
    return (float(min(np.nanmin(c[0]) for c in curves.values())), float(max(np.nanmax(c[0]) for c in curves.values())))


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _figure(
    traces: list[dict],
    uirevision: str,
    x_title: str,
    y_title: str,
    x_range=None,
    y_range=None,
    meta: dict | None = None,
) -> go.Figure:
    """Assemble the figure without plotly's per-property validation.

    Validation costs ~5 ms per trace and these figures are rebuilt on every slider move (budget: all
    three in < 30 ms). The traces here are fixed, known-valid shapes; tests re-validate every figure
    with ``go.Figure(fig.to_dict())`` so a bad property still fails loudly.
    """
    layout = dict(
        template=TEMPLATE,
        height=HEIGHT,
        autosize=True,
        uirevision=uirevision,
        margin=dict(l=60, r=20, t=30, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, font=dict(size=11)),
        hovermode="closest",
        xaxis=dict(title=dict(text=x_title), zeroline=True),
        yaxis=dict(title=dict(text=y_title)),
    )
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
        raise PlotDataError(f"marker_r_e must be a number, got {marker_r_e!r}.") from None
    if not math.isfinite(r):
        raise PlotDataError(f"marker_r_e must be finite, got {marker_r_e!r}.")
    return r


def _marker_traces(r_marker: float, points_y: list[float], y_span: tuple[float, float], label: str) -> list[dict]:
    """Dashed vertical line at r_marker and the measured value(s) there; NaN values (outside the grid) are omitted."""
    ys = [y for y in points_y if math.isfinite(y)]
    line = dict(
        type="scatter",
        x=[r_marker, r_marker],
        y=list(y_span),
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
        marker=dict(color=COLORS["marker"], size=12, symbol="diamond", line=dict(color="white", width=1)),
        hovertemplate=f"r_e = {r_marker:.3g}<br>{label} = %{{y:.3f}}<extra></extra>",
    )
    return [line, point]


MARKER_FRAME_KEYS = ("x", "y", "hovertemplate")
MAX_MARKER_FRAMES = 2001


def _marker_meta(n_traces: int, marker_at, grid) -> dict | None:
    """``{"marker_frames": {"r", "traces", "frames"}}``: for every r of ``grid`` the changing fields
    (x, y, hover text) of the marker traces, which are the last ``len(marker_at(r))`` traces."""
    if grid is None:
        return None
    r_values = [float(r) for r in grid]
    if not r_values or len(r_values) > MAX_MARKER_FRAMES or not all(math.isfinite(r) for r in r_values):
        raise PlotDataError(f"marker_grid must hold 1-{MAX_MARKER_FRAMES} finite values.")
    frames = [[{k: t[k] for k in MARKER_FRAME_KEYS if k in t} for t in marker_at(r)] for r in r_values]
    n_marker = len(frames[0])
    return {"marker_frames": {"r": r_values, "traces": list(range(n_traces - n_marker, n_traces)), "frames": frames}}


def marker_frames(fig: go.Figure | dict) -> dict | None:
    """The marker table of a figure built with ``marker_grid`` (None otherwise)."""
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
) -> go.Figure:
    """Measured behaviour expectation B vs r_e (one curve per behaviour), Theorem 1 fit, current-r_e marker."""
    marker_r_e = _check_marker(marker_r_e)
    curves = _curves(_check_agg(agg), "behavior", "behavior_expectation")
    traces: list[dict] = []
    for k, (subject, (r, v, e)) in enumerate(curves.items()):
        traces.append(
            dict(
                type="scatter",
                x=r,
                y=v,
                mode="lines+markers",
                name=f"measured B ({subject})",
                error_y=dict(type="data", array=e, visible=True, thickness=1, width=3),
                line=dict(color=BEHAVIOR_PALETTE[k % len(BEHAVIOR_PALETTE)], width=2),
                marker=dict(size=6),
                hovertemplate="r_e = %{x:.3g}<br>B = %{y:.3f}<extra>" + subject + "</extra>",
            )
        )
    if fit is not None:
        dense = np.linspace(*_r_span(curves), N_DENSE)
        traces.append(
            dict(
                type="scatter",
                x=dense,
                y=fit.predict(dense),
                mode="lines",
                line=dict(color=COLORS["fit"], width=2, dash="dot"),
                name=f"Theorem 1 fit: Δλ={_fmt(fit.delta_lambda)}, B0={_fmt(fit.b0)}, R²={_fmt(fit.r2)}",
                hovertemplate="r_e = %{x:.3g}<br>fit B = %{y:.3f}<extra></extra>",
            )
        )

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(x, [interpolate_at(r, v, x) for r, v, _ in curves.values()], (-1.0, 1.0), "B")

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "behavior", R_AXIS_TITLE, B_AXIS_TITLE, y_range=[-1.05, 1.05], meta=meta)


def helpfulness_figure(
    agg: pd.DataFrame,
    fit: HelpfulnessFit | None = None,
    n_choices: int | None = 4,
    marker_r_e: float | None = None,
    metric: str = "helpfulness",
    marker_grid: Sequence[float] | None = None,
) -> go.Figure:
    """Per-subject P(correct) (thin), their mean (bold, with error bars), chance 1/N, Theorem 2 fit, marker."""
    marker_r_e = _check_marker(marker_r_e)
    curves = _curves(_check_agg(agg), "helpfulness", metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    traces: list[dict] = []
    subjects = [s for s in curves if s != "mean"]
    # Past a handful of subjects one legend entry stands for them all (hover still names each).
    grouped = len(subjects) > MAX_SUBJECT_LEGEND_ENTRIES
    for k, subject in enumerate(subjects):
        r, v, _ = curves[subject]
        traces.append(
            dict(
                type="scatter",
                x=r,
                y=v,
                mode="lines",
                opacity=0.7,
                name=f"{len(subjects)} subjects" if grouped else subject,
                showlegend=not grouped or k == 0,
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
    lo, hi = _r_span(curves)
    if n_choices is not None:
        if isinstance(n_choices, bool) or not isinstance(n_choices, (int, np.integer)) or n_choices < 2:
            raise PlotDataError(f"n_choices must be an integer >= 2, got {n_choices!r}.")
        chance = 1.0 / int(n_choices)
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
        traces.append(
            dict(
                type="scatter",
                x=dense,
                y=fit.predict(dense),
                mode="lines",
                line=dict(color=COLORS["fit"], width=2, dash="dash"),
                name=(
                    f"Theorem 2 fit: P0={_fmt(fit.p0)}, α={_fmt(fit.alpha)}, λσβ={_fmt(fit.lambda_sigma_beta)}, "
                    f"R²={_fmt(fit.r2)}"
                ),
                hovertemplate="r_e = %{x:.3g}<br>fit = %{y:.3f}<extra></extra>",
            )
        )

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(x, [interpolate_at(r_mean, v_mean, x)], (0.0, 1.0), y_title)

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "helpfulness", R_AXIS_TITLE, y_title, y_range=[0.0, 1.02], meta=meta)


def _paired_curve(agg: pd.DataFrame, behavior: str | None, metric: str):
    bcurves = _curves(agg, "behavior", "behavior_expectation")
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


def _sparse_labels(r: np.ndarray, max_labels: int = MAX_TEXT_LABELS) -> list[str]:
    """r_e text labels; on dense grids only every k-th point (plus the ends and r_e nearest 0) is labelled
    so the labels stay legible. Every point still shows its r_e on hover (customdata)."""
    n = r.size
    keep = np.ones(n, dtype=bool)
    if n > max_labels:
        step = math.ceil(n / max_labels)
        keep = np.arange(n) % step == 0
        keep[-1] = True
        keep[int(np.argmin(np.abs(r)))] = True
    return [f"{x:g}" if k else "" for x, k in zip(r, keep)]


def tradeoff_figure(
    agg: pd.DataFrame,
    regime: EfficientRegime | None = None,
    marker_r_e: float | None = None,
    behavior: str | None = None,
    metric: str = "helpfulness",
    marker_grid: Sequence[float] | None = None,
) -> go.Figure:
    """Mean helpfulness (y) against behaviour expectation (x), one point per r_e (labelled), efficient regime
    highlighted as the segment with r_min <= r_e <= r_max, marker at the current r_e (interpolated on both curves)."""
    marker_r_e = _check_marker(marker_r_e)
    r, b, h, behavior = _paired_curve(_check_agg(agg), behavior, metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    labels = _sparse_labels(r)
    traces: list[dict] = [
        dict(
            type="scatter",
            x=b,
            y=h,
            mode="lines+markers+text",
            name=f"r_e sweep ({behavior})",
            text=labels,
            textposition="top center",
            textfont=dict(size=9, color="#555"),
            line=dict(color=COLORS["measured"], width=1.5),
            marker=dict(size=6),
            customdata=r,
            hovertemplate="r_e = %{customdata:.3g}<br>B = %{x:.3f}<br>P = %{y:.3f}<extra></extra>",
        )
    ]
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
                marker=dict(color=COLORS["marker"], size=14, symbol="diamond", line=dict(color="white", width=1)),
                hovertemplate=f"r_e = {x:.3g}<br>B = %{{x:.3f}}<br>P = %{{y:.3f}}<extra></extra>",
            )
        ]

    if marker_r_e is not None:
        traces.extend(marker_at(marker_r_e))
    meta = _marker_meta(len(traces), marker_at, marker_grid) if marker_r_e is not None else None
    return _figure(traces, "tradeoff", B_AXIS_TITLE, y_title, x_range=[-1.05, 1.05], y_range=[0.0, 1.02], meta=meta)
