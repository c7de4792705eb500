"""Figures of the paper's assumption checks (Wolf et al., appendix A.3) and of the layer scan.

Pure functions of data: ``rows`` is the tidy table of ``diagnostics.run_diagnostics`` (also
``SweepResult.diagnostics``; columns ``r_e, check, statistic, value``) and ``estimates`` the
parameter estimates (``summary["diagnostics"]`` of a sweep). Every fitted line is drawn through
the origin with the slope the engine estimated, solid over the coefficients the fit used
(``|r_e| <= linear_range``) and dotted beyond.

Only scatter and bar traces (plus layout shapes) are used: the dashboard draws charts with
plotly's basic bundle, which has no histogram or heatmap trace. The histogram is therefore binned
here (``numpy.histogram``) and drawn as bars, and the layer map's cells are rectangles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from scipy import stats

from .tradeoff import R_AXIS_TITLE, TEMPLATE

HEIGHT = 360
FINAL_SHIFT_HEIGHT = 440  # two panels when |U·δr| was measured
COLORS = {
    "measured": "#1f77b4",
    "second": "#9467bd",
    "fit": "#ff7f0e",
    "mean": "#7f7f7f",
    "normal": "#d62728",
    "estimate": "#1f77b4",
    "bound_fit": "#ff7f0e",
}
ROW_COLUMNS = ("r_e", "check", "statistic", "value")
LAYER_COLUMNS = ("layer_start", "layer_stop", "r_e", "metric", "value")
METRIC_TITLES = {"behavior_expectation": "behaviour expectation B", "helpfulness": "helpfulness P(correct)"}
# Diverging for B (-1 .. +1, 0 = indifferent), sequential for probabilities.
METRIC_SCALES = {"behavior_expectation": ("RdBu", -1.0, 1.0), "helpfulness": ("Viridis", None, None)}
N_LINE = 60
MIN_NORMALITY_SAMPLES = 20  # scipy's D'Agostino-Pearson test needs at least 20 values


class DiagnosticsPlotError(ValueError):
    """The diagnostics data cannot be drawn (missing columns or rows, non-finite numbers)."""


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _fmt(x, digits: int = 3) -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"


def _finite(x) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check_rows(rows) -> pd.DataFrame:
    if not isinstance(rows, pd.DataFrame):
        raise DiagnosticsPlotError(f"Expected the diagnostics table (a DataFrame), got {type(rows).__name__}.")
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise DiagnosticsPlotError(f"The diagnostics table lacks columns {missing}; expected {list(ROW_COLUMNS)}.")
    return rows


def _series(rows: pd.DataFrame, check: str, statistic: str) -> tuple[np.ndarray, np.ndarray]:
    sel = rows[(rows["check"] == check) & (rows["statistic"] == statistic)]
    sel = sel[np.isfinite(sel["r_e"].to_numpy(float)) & np.isfinite(sel["value"].to_numpy(float))]
    sel = sel.sort_values("r_e")
    return sel["r_e"].to_numpy(float), sel["value"].to_numpy(float)


def _need(r: np.ndarray, what: str) -> None:
    if r.size == 0:
        raise DiagnosticsPlotError(
            f"No {what} rows: this result was computed without that check "
            "(the sweep's n_diagnostics was 0, or it had no questions / behaviour prompts)."
        )


def _layout(title: str, y_title: str, **extra) -> dict:
    layout = dict(
        template=TEMPLATE,
        height=HEIGHT,
        autosize=True,
        title=dict(text=title, font=dict(size=13)),
        margin=dict(l=60, r=20, t=60, b=50),
        hovermode="closest",
        legend=dict(orientation="h", x=0, y=-0.22, font=dict(size=11)),
        xaxis=dict(title=dict(text=R_AXIS_TITLE), zeroline=True, zerolinecolor="#bbb"),
        yaxis=dict(title=dict(text=y_title), zeroline=True, zerolinecolor="#bbb"),
    )
    layout.update(extra)
    return layout


def _line_through_origin(
    slope: float,
    r_lo: float,
    r_hi: float,
    linear_range: float | None,
    name: str,
    color: str,
    absolute: bool,
    yaxis: str = "y",
) -> list[dict]:
    """The line ``slope·|r|`` (or ``slope·r``): solid within the fitted range, dotted beyond it."""
    # Samples include 0 (the corner of slope·|r|) and ±linear_range, where solid turns dotted.
    breaks = [0.0] + ([] if linear_range is None else [linear_range, -linear_range])
    r = np.unique(np.concatenate([np.linspace(r_lo, r_hi, N_LINE), [b for b in breaks if r_lo <= b <= r_hi]]))
    y = slope * (np.abs(r) if absolute else r)
    if linear_range is None:
        inside, outside = np.ones_like(r, dtype=bool), np.zeros_like(r, dtype=bool)
    else:
        # The break points belong to both pieces, so the line is continuous.
        inside = np.abs(r) <= linear_range + 1e-12
        outside = np.abs(r) >= linear_range - 1e-12
    traces = []
    for part, mask, dash, show in (("fit", inside, "solid", True), ("extrapolated", outside, "dot", False)):
        if not mask.any():
            continue
        # Keep the two pieces as separate runs by blanking the other part.
        xs = [float(a) if m else None for a, m in zip(r, mask)]
        ys = [float(b) if m else None for b, m in zip(y, mask)]
        traces.append(
            dict(
                type="scatter",
                mode="lines",
                name=name if part == "fit" else f"{name} (extrapolated)",
                x=xs,
                y=ys,
                yaxis=yaxis,
                legendgroup=name,
                showlegend=show or not inside.any(),
                line=dict(color=color, width=2, dash=dash),
                hoverinfo="skip",
                connectgaps=False,
            )
        )
    return traces


def _span(r: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(r)), float(np.max(r))
    return min(lo, 0.0), max(hi, 0.0)


# ---------------------------------------------------------------------------------------------
# Assumption 1: |δr| = λ|r_e|
# ---------------------------------------------------------------------------------------------


def final_shift_figure(rows: pd.DataFrame, estimates: Mapping | None = None) -> go.Figure:
    """Mean ``|δr_e(q)|`` (top panel) and ``|U·δr_e(q)|`` (bottom panel, when measured) against
    r_e, with the fitted lines ``λ|r_e|`` and ``λ_U|r_e|`` (assumption 1, the paper's figures 7-8).

    Two panels rather than two y-axes: U is linear, so the two curves are nearly proportional
    and would lie on top of each other."""
    rows = _check_rows(rows)
    estimates = estimates or {}
    r, norm = _series(rows, "final_shift", "norm_delta_r")
    _need(r, "final-layer shift (final_shift)")
    r_u, norm_u = _series(rows, "final_shift", "norm_U_delta_r")
    lo, hi = _span(r)
    linear = _finite(estimates.get("linear_range"))
    # Markers only: |δr| is a V with its corner at r_e = 0, which a line between the grid points would hide.
    traces = [
        dict(
            type="scatter",
            mode="markers",
            name="|δr| measured",
            x=r.tolist(),
            y=norm.tolist(),
            marker=dict(color=COLORS["measured"], size=8),
            hovertemplate="r_e %{x:.3g}<br>|δr| %{y:.4g}<extra></extra>",
        )
    ]
    lam = _finite(estimates.get("lambda"))
    if lam is not None:
        traces += _line_through_origin(lam, lo, hi, linear, f"λ|r_e|, λ = {_fmt(lam)}", COLORS["fit"], True)
    r2 = _finite(estimates.get("lambda_r2"))
    title = "Assumption 1: final-layer change |δr| vs r_e"
    if lam is not None:
        title += f"<br><sub>λ = {_fmt(lam)} (R² {_fmt(r2)}) fitted on |r_e| ≤ {_fmt(linear)}</sub>"
    layout = _layout(title, "|δr| (final hidden state)")
    layout["yaxis"]["rangemode"] = "tozero"
    if r_u.size:
        traces.append(
            dict(
                type="scatter",
                mode="markers",
                name="|U·δr| measured (logit change)",
                x=r_u.tolist(),
                y=norm_u.tolist(),
                yaxis="y2",
                marker=dict(color=COLORS["second"], size=7, symbol="diamond"),
                hovertemplate="r_e %{x:.3g}<br>|U·δr| %{y:.4g}<extra></extra>",
            )
        )
        lam_u = _finite(estimates.get("lambda_U"))
        if lam_u is not None:
            traces += _line_through_origin(
                lam_u, lo, hi, linear, f"λ_U|r_e|, λ_U = {_fmt(lam_u)}", COLORS["fit"], True, yaxis="y2"
            )
        layout["height"] = FINAL_SHIFT_HEIGHT
        layout["xaxis"]["anchor"] = "y2"
        layout["yaxis"].update(domain=[0.54, 1.0], title=dict(text="|δr|"))
        layout["yaxis2"] = dict(
            domain=[0.0, 0.44],
            anchor="x",
            rangemode="tozero",
            zeroline=True,
            zerolinecolor="#bbb",
            title=dict(text="|U·δr| (logits)"),
        )
        layout["legend"] = dict(layout["legend"], y=-0.18)
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# Assumption 3: logit noise
# ---------------------------------------------------------------------------------------------


def logit_noise_figure(rows: pd.DataFrame, estimates: Mapping | None = None) -> go.Figure:
    """Standard deviation (and mean) of ``<δr, U^T(e_i - e_correct)>`` over the top-10 tokens
    against r_e, with the line ``λσ|r_e|`` (assumption 3, the paper's figure 9c-d)."""
    rows = _check_rows(rows)
    estimates = estimates or {}
    r, std = _series(rows, "logit_noise", "std")
    _need(r, "logit-noise (logit_noise)")
    r_m, mean = _series(rows, "logit_noise", "mean")
    lo, hi = _span(r)
    traces = [
        dict(
            type="scatter",
            mode="markers",
            name="std of the logit noise",
            x=r.tolist(),
            y=std.tolist(),
            marker=dict(color=COLORS["measured"], size=8),
            hovertemplate="r_e %{x:.3g}<br>std %{y:.4g}<extra></extra>",
        )
    ]
    if r_m.size:
        traces.append(
            dict(
                type="scatter",
                mode="markers",
                name="mean of the logit noise",
                x=r_m.tolist(),
                y=mean.tolist(),
                marker=dict(color=COLORS["mean"], size=6, symbol="x"),
                hovertemplate="r_e %{x:.3g}<br>mean %{y:.4g}<extra></extra>",
            )
        )
    lam_sigma = _finite(estimates.get("lambda_sigma"))
    linear = _finite(estimates.get("linear_range"))
    if lam_sigma is not None:
        traces += _line_through_origin(
            lam_sigma, lo, hi, linear, f"λσ|r_e|, λσ = {_fmt(lam_sigma)}", COLORS["fit"], True
        )
    title = "Assumption 3: logit noise on the top-10 tokens vs r_e"
    if lam_sigma is not None:
        beta = _finite(estimates.get("lambda_sigma_beta_estimate"))
        title += (
            f"<br><sub>λσ = {_fmt(lam_sigma)} (R² {_fmt(estimates.get('lambda_sigma_r2'))}) → "
            f"λσβ ≈ 0.8·λσ = {_fmt(beta)}</sub>"
        )
    return go.Figure(data=traces, layout=_layout(title, "<δr, Uᵀ(e_i − e_correct)>"))


def noise_normality(samples: Sequence[float]) -> dict:
    """Skew, excess kurtosis and D'Agostino-Pearson p-value of standardised samples (p needs ≥ 20)."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 3:
        raise DiagnosticsPlotError(f"Need at least 3 finite noise samples; got {values.size}.")
    spread = values.std(ddof=1)
    z = (values - values.mean()) / (spread if spread > 0 else 1.0)
    p = float(stats.normaltest(z).pvalue) if values.size >= MIN_NORMALITY_SAMPLES else None
    return {
        "n": int(values.size),
        "skew": float(stats.skew(z)),
        "excess_kurtosis": float(stats.kurtosis(z)),
        "dagostino_pearson_p": p,
    }


def noise_histogram_figure(samples: Sequence[float], r_e: float, bins: int | str = "auto") -> go.Figure:
    """Histogram (density) of the pooled logit noise at one r_e, with the normal density of the
    same mean and standard deviation, and the normality test in the title."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 3:
        raise DiagnosticsPlotError(f"Need at least 3 finite noise samples for a histogram; got {values.size}.")
    counts, edges = np.histogram(values, bins=bins, density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    mu, sigma = float(values.mean()), float(values.std(ddof=1))
    traces = [
        dict(
            type="bar",
            name=f"noise at r_e = {_fmt(r_e)} (n = {values.size})",
            x=centres.tolist(),
            y=counts.tolist(),
            width=np.diff(edges).tolist(),
            marker=dict(color=COLORS["measured"], opacity=0.6, line=dict(color="white", width=1)),
            hovertemplate="%{x:.3g}: density %{y:.3g}<extra></extra>",
        )
    ]
    if sigma > 0:
        x = np.linspace(edges[0], edges[-1], 200)
        traces.append(
            dict(
                type="scatter",
                mode="lines",
                name=f"normal (μ = {_fmt(mu)}, σ = {_fmt(sigma)})",
                x=x.tolist(),
                y=stats.norm.pdf(x, mu, sigma).tolist(),
                line=dict(color=COLORS["normal"], width=2),
                hoverinfo="skip",
            )
        )
    test = noise_normality(values)
    p = test["dagostino_pearson_p"]
    verdict = (
        "too few samples for a normality test"
        if p is None
        else f"D'Agostino-Pearson p = {_fmt(p)} "
        f"({'no evidence against' if p >= 0.05 else 'evidence against'} normality)"
    )
    title = (
        f"Logit noise at r_e = {_fmt(r_e)}<br><sub>{verdict}; skew {_fmt(test['skew'])}, "
        f"excess kurtosis {_fmt(test['excess_kurtosis'])}</sub>"
    )
    layout = _layout(title, "density", bargap=0)
    layout["xaxis"] = dict(title=dict(text="<δr, Uᵀ(e_i − e_correct)> (logits)"), zeroline=True, zerolinecolor="#bbb")
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# Assumption 2: separation
# ---------------------------------------------------------------------------------------------


def separation_figure(rows: pd.DataFrame, estimates: Mapping | None = None) -> go.Figure:
    """Mean ``<δr, U^T(e_good - e_bad)>`` on the behaviour prompts against r_e, with the line
    ``Δλ·r_e`` (assumption 2, the paper's figures 11-12)."""
    rows = _check_rows(rows)
    estimates = estimates or {}
    r, sep = _series(rows, "separation", "mean_good_minus_bad")
    _need(r, "separation")
    lo, hi = _span(r)
    traces = [
        dict(
            type="scatter",
            mode="markers+lines",
            name="good − bad answer tokens",
            x=r.tolist(),
            y=sep.tolist(),
            marker=dict(color=COLORS["measured"], size=8),
            line=dict(color=COLORS["measured"], width=1),
            hovertemplate="r_e %{x:.3g}<br>separation %{y:.4g}<extra></extra>",
        )
    ]
    delta = _finite(estimates.get("delta_lambda_estimate"))
    if delta is not None:
        traces += _line_through_origin(
            delta, lo, hi, _finite(estimates.get("linear_range")), f"Δλ·r_e, Δλ = {_fmt(delta)}", COLORS["fit"], False
        )
    title = "Assumption 2: separation of aligned and misaligned answer tokens vs r_e"
    if delta is not None:
        title += f"<br><sub>Δλ ≈ {_fmt(delta)} (R² {_fmt(estimates.get('delta_lambda_r2'))})"
        tokens = estimates.get("separation_tokens") or {}
        if tokens.get("good") and tokens.get("bad"):
            good = ", ".join(repr(t) for t in list(tokens["good"])[:4])
            bad = ", ".join(repr(t) for t in list(tokens["bad"])[:4])
            title += f"; good {good} vs bad {bad}"
        title += "</sub>"
    return go.Figure(data=traces, layout=_layout(title, "<δr, Uᵀ(e_good − e_bad)> (logits)"))


# ---------------------------------------------------------------------------------------------
# Estimates against the bound fits
# ---------------------------------------------------------------------------------------------

COMPARISON_COLUMNS = ["parameter", "direct estimate", "bound fit", "fit / estimate", "from"]


def comparison_table(diagnostics_summary: Mapping | None) -> pd.DataFrame:
    """The direct estimates next to the bound fits' free parameters (as in the paper's section 4).

    ``diagnostics_summary`` is ``summary["diagnostics"]`` of a sweep: the estimates plus
    ``comparison_with_fits``. Parameters without a fitted counterpart (λ, λ_U, λσ) show the
    estimate alone.
    """
    if not diagnostics_summary:
        raise DiagnosticsPlotError(
            "This result has no assumption-check estimates (run the sweep with n_diagnostics > 0)."
        )
    summary = dict(diagnostics_summary)
    comparison = summary.get("comparison_with_fits") or {}
    rows = []

    def fitted(key: str):
        entry = comparison.get(key) or {}
        return _finite(entry.get("fit")), _finite(entry.get("ratio_fit_to_estimate"))

    fit_dl, ratio_dl = fitted("delta_lambda")
    fit_lsb, ratio_lsb = fitted("lambda_sigma_beta")
    specs = (
        ("Δλ (alignment)", summary.get("delta_lambda_estimate"), fit_dl, ratio_dl, "separation slope vs Theorem 1 fit"),
        (
            "λσβ (helpfulness)",
            summary.get("lambda_sigma_beta_estimate"),
            fit_lsb,
            ratio_lsb,
            "0.8·λσ from the logit noise vs Theorem 2 fit",
        ),
        ("λ", summary.get("lambda"), None, None, "slope of |δr| (assumption 1)"),
        ("λ_U", summary.get("lambda_U"), None, None, "slope of |U·δr|"),
        ("λσ", summary.get("lambda_sigma"), None, None, "slope of the logit-noise std (assumption 3)"),
    )
    for name, estimate, fit, ratio, source in specs:
        if _finite(estimate) is None and fit is None:
            continue
        rows.append(
            {
                "parameter": name,
                "direct estimate": _finite(estimate),
                "bound fit": fit,
                "fit / estimate": ratio,
                "from": source,
            }
        )
    if not rows:
        raise DiagnosticsPlotError("The assumption-check summary holds no finite estimate.")
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparison_figure(diagnostics_summary: Mapping | None) -> go.Figure:
    """Grouped bars of Δλ and λσβ: direct estimate against the bound fit's parameter."""
    table = comparison_table(diagnostics_summary)
    paired = table[table["parameter"].isin(["Δλ (alignment)", "λσβ (helpfulness)"])]
    if paired.empty:
        raise DiagnosticsPlotError("Neither Δλ nor λσβ was estimated in this result.")
    names = paired["parameter"].tolist()
    traces = []
    for column, color, label in (
        ("direct estimate", COLORS["estimate"], "direct estimate (appendix A.3)"),
        ("bound fit", COLORS["bound_fit"], "free parameter of the bound fit"),
    ):
        values = [
            None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in paired[column].tolist()
        ]
        traces.append(
            dict(
                type="bar",
                name=label,
                x=names,
                y=values,
                marker=dict(color=color),
                text=[_fmt(v) for v in values],
                textposition="outside",
                hovertemplate="%{x}: %{y:.3g}<extra>" + label + "</extra>",
            )
        )
    ratios = [f"{n}: fit/estimate = {_fmt(r)}" for n, r in zip(names, paired["fit / estimate"].tolist())]
    title = "Direct estimates vs bound fits<br><sub>" + "; ".join(ratios) + "</sub>"
    layout = _layout(title, "value", barmode="group")
    layout["xaxis"] = dict(title=dict(text="parameter"), type="category")
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# Layer x coefficient map
# ---------------------------------------------------------------------------------------------


def _window_label(start: int, stop: int) -> str:
    return f"{start}" if stop - start == 1 else f"{start}–{stop - 1}"


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Cell boundaries halfway between neighbouring centres (ends mirrored)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mids = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[centres[0] - (mids[0] - centres[0])], mids, [centres[-1] + (centres[-1] - mids[-1])]])


def layer_map_figure(df: pd.DataFrame, metric: str = "behavior_expectation") -> go.Figure:
    """Heat map of ``metric`` over layer window (rows) x r_e (columns) from ``layer_scan.scan_layers``.

    Cells are layout rectangles coloured from the colour scale (the basic plotly bundle has no
    heatmap trace); an invisible marker per cell carries the hover text and the colour bar.
    """
    if not isinstance(df, pd.DataFrame):
        raise DiagnosticsPlotError(f"Expected the layer-scan table (a DataFrame), got {type(df).__name__}.")
    missing = [c for c in LAYER_COLUMNS if c not in df.columns]
    if missing:
        raise DiagnosticsPlotError(f"The layer-scan table lacks columns {missing}; expected {list(LAYER_COLUMNS)}.")
    sel = df[df["metric"] == metric]
    sel = sel[np.isfinite(sel["value"].to_numpy(float)) & np.isfinite(sel["r_e"].to_numpy(float))]
    if sel.empty:
        raise DiagnosticsPlotError(f"The layer scan has no {metric!r} values.")
    windows = sorted({(int(a), int(b)) for a, b in zip(sel["layer_start"], sel["layer_stop"])})
    r_values = np.array(sorted(set(sel["r_e"].astype(float))))
    grid = np.full((len(windows), r_values.size), np.nan)
    row_of = {w: i for i, w in enumerate(windows)}
    col_of = {float(r): j for j, r in enumerate(r_values)}
    for a, b, r, v in zip(sel["layer_start"], sel["layer_stop"], sel["r_e"], sel["value"]):
        grid[row_of[(int(a), int(b))], col_of[float(r)]] = float(v)
    scale, vmin, vmax = METRIC_SCALES.get(metric, ("Viridis", None, None))
    finite = grid[np.isfinite(grid)]
    lo = float(finite.min()) if vmin is None else vmin
    hi = float(finite.max()) if vmax is None else vmax
    if hi <= lo:
        hi = lo + 1e-9
    x_edges = _cell_edges(r_values)
    shapes, xs, ys, colours, texts = [], [], [], [], []
    for i, (start, stop) in enumerate(windows):
        for j, r in enumerate(r_values):
            value = grid[i, j]
            if not np.isfinite(value):
                continue
            colour = sample_colorscale(scale, [min(max((value - lo) / (hi - lo), 0.0), 1.0)])[0]
            shapes.append(
                dict(
                    type="rect",
                    xref="x",
                    yref="y",
                    x0=float(x_edges[j]),
                    x1=float(x_edges[j + 1]),
                    y0=i - 0.5,
                    y1=i + 0.5,
                    fillcolor=colour,
                    line=dict(width=0.5, color="white"),
                    layer="below",
                )
            )
            xs.append(float(r))
            ys.append(i)
            colours.append(float(value))
            texts.append(f"layers {_window_label(start, stop)}, r_e {r:.3g}: {value:.3g}")
    title_metric = METRIC_TITLES.get(metric, metric)
    traces = [
        dict(
            type="scatter",
            mode="markers",
            name=title_metric,
            x=xs,
            y=ys,
            text=texts,
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
            marker=dict(
                size=14,
                opacity=0,
                color=colours,
                colorscale=scale,
                cmin=lo,
                cmax=hi,
                showscale=True,
                colorbar=dict(title=dict(text=title_metric.split(" ")[0]), thickness=12),
            ),
        )
    ]
    layout = _layout(
        f"Layer scan: {title_metric}<br><sub>one coarse sweep per window of steered layers</sub>", "steered layers"
    )
    layout["shapes"] = shapes
    layout["xaxis"] = dict(
        title=dict(text=R_AXIS_TITLE), range=[float(x_edges[0]), float(x_edges[-1])], zeroline=False, showgrid=False
    )
    layout["yaxis"] = dict(
        title=dict(text="steered layers"),
        tickmode="array",
        tickvals=list(range(len(windows))),
        ticktext=[_window_label(a, b) for a, b in windows],
        range=[-0.5, len(windows) - 0.5],
        zeroline=False,
        showgrid=False,
    )
    layout["margin"] = dict(l=70, r=20, t=60, b=50)
    return go.Figure(data=traces, layout=layout)
