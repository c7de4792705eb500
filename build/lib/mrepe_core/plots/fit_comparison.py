"""Estimates vs bound fits: the direct estimates of the assumption checks next to the free parameters
of the Theorem 1 / 2 fits (the paper's section 4), as a table and as grouped bars."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from .diagnostics_style import COLORS, DiagnosticsPlotError, chart_layout, finite_or_none, fmt_number

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
        return finite_or_none(entry.get("fit")), finite_or_none(entry.get("ratio_fit_to_estimate"))

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
        if finite_or_none(estimate) is None and fit is None:
            continue
        rows.append(
            {
                "parameter": name,
                "direct estimate": finite_or_none(estimate),
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
                text=[fmt_number(v) for v in values],
                textposition="outside",
                hovertemplate="%{x}: %{y:.3g}<extra>" + label + "</extra>",
            )
        )
    ratios = [f"{n}: fit/estimate = {fmt_number(r)}" for n, r in zip(names, paired["fit / estimate"].tolist())]
    title = "Direct estimates vs bound fits<br><sub>" + "; ".join(ratios) + "</sub>"
    layout = chart_layout(title, "value", barmode="group")
    layout["xaxis"] = dict(title=dict(text="parameter"), type="category")
    return go.Figure(data=traces, layout=layout)
