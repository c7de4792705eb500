"""The trade-off chart (paper fig. 1): mean helpfulness against behaviour expectation B, one point
per r_e, and the placement of its r_e labels.

The r_e labels are thinned so that no two overlap (``thin_labels``); every point still names its
r_e on hover. The efficient regime is the highlighted segment, or, when there is none to show as
numbers, a legend entry in words (``no_regime`` argument). Input and marker as for the other
trade-off figures (:mod:`mrepe_core.plots.tradeoff`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..tradeoff import EfficientRegime
from .curve_data import Floats, baseline_values, chance_level, check_agg, interpolate_at, paired_curve
from .curve_style import (
    B_AXIS_TITLE,
    BASELINE_HOVER,
    COLORS,
    LABEL_AREA_PX,
    LABEL_FONT_PX,
    MARKER_NAME,
    P_AXIS_TITLE,
    baseline_trace,
    build_figure,
    chance_trace,
    fitted_range,
    words_trace,
)
from .markers import add_marker, check_marker

# ---------------------------------------------------------------------------------------------
# r_e labels
# ---------------------------------------------------------------------------------------------


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
    x: Floats,
    y: Floats,
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


# ---------------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------------


def _sweep_trace(r: np.ndarray, b: np.ndarray, h: np.ndarray, labels: list[str]) -> dict:
    """The measured points (B, P), joined in r_e order and labelled by r_e."""
    return dict(
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


def _regime_trace(regime: EfficientRegime, r: np.ndarray, b: np.ndarray, h: np.ndarray) -> dict:
    """The efficient regime as a broad segment of the curve from r_min to r_max."""
    inside = (r >= regime.r_min) & (r <= regime.r_max)
    # Endpoints interpolated so the highlight spans exactly [r_min, r_max], not just grid points inside it.
    seg_r = np.unique(np.concatenate([[regime.r_min, regime.r_max], r[inside]]))
    seg_b = np.array([interpolate_at(r, b, x) for x in seg_r])
    seg_h = np.array([interpolate_at(r, h, x) for x in seg_r])
    ok = np.isfinite(seg_b) & np.isfinite(seg_h)
    return dict(
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


def _marker_traces(r: np.ndarray, b: np.ndarray, h: np.ndarray, x: float) -> list[dict]:
    """The current-r_e point at r_e = ``x``, interpolated on both curves (none outside the grid)."""
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


# ---------------------------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------------------------


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
    marker_r_e = check_marker(marker_r_e)
    agg = check_agg(agg)
    r, b, h, behavior = paired_curve(agg, behavior, metric, behavior_metric)
    y_title = P_AXIS_TITLE if metric == "helpfulness" else metric
    base = baseline_values(agg)
    base_b, base_h = base.get("behavior_expectation"), base.get("helpfulness") if metric == "helpfulness" else None
    chance = chance_level(n_choices)
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
    traces: list[dict] = [_sweep_trace(r, b, h, labels)]
    if chance is not None:
        traces.append(chance_trace(list(x_range), chance))
    if regime is not None:
        traces.append(_regime_trace(regime, r, b, h))
    elif no_regime:
        traces.append(words_trace(no_regime[:1].upper() + no_regime[1:]))
    if base_b is not None and base_h is not None:
        # The baseline star at (B, P): its hover names B above P.
        traces.append(baseline_trace(base_b, base_h, "P", f"{BASELINE_HOVER}<br>B = %{{x:.3f}}"))

    def marker_at(x: float) -> list[dict]:
        return _marker_traces(r, b, h, x)

    meta = add_marker(traces, marker_at, marker_r_e, marker_grid)
    return build_figure(
        traces,
        "tradeoff",
        B_AXIS_TITLE,
        y_title,
        x_range=x_range,
        y_range=y_range,
        meta=meta,
        title=title,
    )
