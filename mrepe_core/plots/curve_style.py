"""The look of the trade-off figures: template, sizes, colours, names, axis ranges fitted to what is
drawn, number formatting, the traces every chart shares (baseline point, chance line, a legend
entry in words) and the figure assembly.

Axes are fitted to what is drawn (error bars, fits, baseline, the chance line 1/N on the
helpfulness axes), so a curve that moves by 0.04 does not look flat on a 0-1 axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

MAX_SUBJECT_LEGEND_ENTRIES = 6
# plotly_white's 2-D cartesian layout part as a plain dict: a template *name* would reach plotly.js
# unexpanded when validation is off (see build_figure), and the per-trace-type defaults and polar/geo/3-D
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
BASELINE_HOVER = "asked with a system prompt, no steering (r_e = 0)"
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


def fmt(x: float | None) -> str:
    """A number in hover texts and legends (3 significant digits), "n/a" when missing or not finite."""
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


def words_trace(text: str, color: str = "#8a5a00") -> dict:
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


def baseline_trace(x: float, y: float, label: str, hover: str) -> dict:
    """The prompting baseline as one star at (``x``, ``y``); ``label`` names the y value on hover."""
    return dict(
        type="scatter",
        x=[x],
        y=[y],
        mode="markers",
        name=BASELINE_NAME,
        marker=dict(color=COLORS["baseline"], size=11, symbol="star", line=dict(color="#7a1f5c", width=1)),
        hovertemplate=f"{hover}<br>{label} = %{{y:.3f}}<extra>{BASELINE_NAME}</extra>",
    )


def chance_trace(x: list[float], chance: float) -> dict:
    """The chance level 1/N as a dotted horizontal line over ``x`` (its two ends)."""
    return dict(
        type="scatter",
        x=x,
        y=[chance, chance],
        mode="lines",
        name=f"chance 1/N = {chance:.3g}",
        line=dict(color=COLORS["chance"], dash="dot", width=1.5),
        hoverinfo="skip",
    )


def build_figure(
    traces: list[dict],
    uirevision: str,
    x_title: str,
    y_title: str,
    x_range: Sequence[float] | None = None,
    y_range: Sequence[float] | None = None,
    meta: dict | None = None,
    title: str | None = None,
) -> go.Figure:
    """Assemble the figure without plotly's per-property validation.

    Validation costs ~5 ms per trace and these figures are rebuilt on every slider move (budget: all
    of them in < 30 ms). The traces here are fixed, known-valid shapes; tests re-validate every
    figure with ``go.Figure(fig.to_dict())`` so a bad property still fails loudly.
    """
    layout: dict[str, Any] = dict(
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
