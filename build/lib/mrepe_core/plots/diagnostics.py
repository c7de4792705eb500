"""Figures of the paper's assumption checks (Wolf et al., appendix A.3).

Pure functions of data: ``rows`` is the tidy table of ``diagnostics.run_diagnostics`` (also
``SweepResult.diagnostics``; columns ``r_e, check, statistic, value``) and ``estimates`` the
parameter estimates (``summary["diagnostics"]`` of a sweep). Every fitted line is drawn through
the origin with the slope the engine estimated, solid over the coefficients the fit used
(``|r_e| <= linear_range``) and dotted beyond.

Only scatter and bar traces (plus layout shapes) are used: the dashboard draws charts with
plotly's basic bundle, which has no histogram trace, so the histogram is binned here
(``numpy.histogram``) and drawn as bars. The estimates-vs-fits chart lives in ``fit_comparison``,
the layer scan's heat maps in ``layer_scan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from .diagnostics_style import COLORS, HEIGHT, DiagnosticsPlotError, chart_layout, finite_or_none, fmt_number

__all__ = [
    "FINAL_SHIFT_HEIGHT",
    "HEIGHT",
    "DiagnosticsPlotError",
    "final_shift_figure",
    "logit_noise_figure",
    "noise_histogram_figure",
    "noise_normality",
    "separation_figure",
]

FINAL_SHIFT_HEIGHT = 440  # two panels when |U·δr| was measured
ROW_COLUMNS = ("r_e", "check", "statistic", "value")
N_LINE = 60
MIN_NORMALITY_SAMPLES = 20  # scipy's D'Agostino-Pearson test needs at least 20 values


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


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
    linear = finite_or_none(estimates.get("linear_range"))
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
    lam = finite_or_none(estimates.get("lambda"))
    if lam is not None:
        traces += _line_through_origin(lam, lo, hi, linear, f"λ|r_e|, λ = {fmt_number(lam)}", COLORS["fit"], True)
    r2 = finite_or_none(estimates.get("lambda_r2"))
    title = "Assumption 1: final-layer change |δr| vs r_e"
    if lam is not None:
        title += f"<br><sub>λ = {fmt_number(lam)} (R² {fmt_number(r2)}) fitted on |r_e| ≤ {fmt_number(linear)}</sub>"
    layout = chart_layout(title, "|δr| (final hidden state)")
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
        lam_u = finite_or_none(estimates.get("lambda_U"))
        if lam_u is not None:
            traces += _line_through_origin(
                lam_u, lo, hi, linear, f"λ_U|r_e|, λ_U = {fmt_number(lam_u)}", COLORS["fit"], True, yaxis="y2"
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
    lam_sigma = finite_or_none(estimates.get("lambda_sigma"))
    linear = finite_or_none(estimates.get("linear_range"))
    if lam_sigma is not None:
        traces += _line_through_origin(
            lam_sigma, lo, hi, linear, f"λσ|r_e|, λσ = {fmt_number(lam_sigma)}", COLORS["fit"], True
        )
    title = "Assumption 3: logit noise on the top-10 tokens vs r_e"
    if lam_sigma is not None:
        beta = finite_or_none(estimates.get("lambda_sigma_beta_estimate"))
        title += (
            f"<br><sub>λσ = {fmt_number(lam_sigma)} (R² {fmt_number(estimates.get('lambda_sigma_r2'))}) → "
            f"λσβ ≈ 0.8·λσ = {fmt_number(beta)}</sub>"
        )
    return go.Figure(data=traces, layout=chart_layout(title, "<δr, Uᵀ(e_i − e_correct)>"))


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
            name=f"noise at r_e = {fmt_number(r_e)} (n = {values.size})",
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
                name=f"normal (μ = {fmt_number(mu)}, σ = {fmt_number(sigma)})",
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
        else f"D'Agostino-Pearson p = {fmt_number(p)} "
        f"({'no evidence against' if p >= 0.05 else 'evidence against'} normality)"
    )
    title = (
        f"Logit noise at r_e = {fmt_number(r_e)}<br><sub>{verdict}; skew {fmt_number(test['skew'])}, "
        f"excess kurtosis {fmt_number(test['excess_kurtosis'])}</sub>"
    )
    layout = chart_layout(title, "density", bargap=0)
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
    delta = finite_or_none(estimates.get("delta_lambda_estimate"))
    if delta is not None:
        traces += _line_through_origin(
            delta,
            lo,
            hi,
            finite_or_none(estimates.get("linear_range")),
            f"Δλ·r_e, Δλ = {fmt_number(delta)}",
            COLORS["fit"],
            False,
        )
    title = "Assumption 2: separation of aligned and misaligned answer tokens vs r_e"
    if delta is not None:
        title += f"<br><sub>Δλ ≈ {fmt_number(delta)} (R² {fmt_number(estimates.get('delta_lambda_r2'))})"
        tokens = estimates.get("separation_tokens") or {}
        if tokens.get("good") and tokens.get("bad"):
            good = ", ".join(repr(t) for t in list(tokens["good"])[:4])
            bad = ", ".join(repr(t) for t in list(tokens["bad"])[:4])
            title += f"; good {good} vs bad {bad}"
        title += "</sub>"
    return go.Figure(data=traces, layout=chart_layout(title, "<δr, Uᵀ(e_good − e_bad)> (logits)"))
