"""Layer x coefficient heat maps from ``layer_scan``: one row per window of steered layers.

Cells are layout rectangles coloured from the colour scale (the dashboard's basic plotly bundle has
no heatmap trace); an invisible marker per cell carries the hover text and the colour bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .curve_style import R_AXIS_TITLE
from .diagnostics_style import DiagnosticsPlotError, chart_layout

LAYER_COLUMNS = ("layer_start", "layer_stop", "r_e", "metric", "value")
METRIC_TITLES = {"behavior_expectation": "behaviour expectation B", "helpfulness": "helpfulness P(correct)"}
# Diverging for B (-1 .. +1, 0 = indifferent), sequential for probabilities.
METRIC_SCALES = {"behavior_expectation": ("RdBu", -1.0, 1.0), "helpfulness": ("Viridis", None, None)}


def _window_label(start: int, stop: int) -> str:
    return f"{start}" if stop - start == 1 else f"{start}–{stop - 1}"


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Cell boundaries halfway between neighbouring centres (ends mirrored)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mids = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[centres[0] - (mids[0] - centres[0])], mids, [centres[-1] + (centres[-1] - mids[-1])]])


def _scan_grid(df: pd.DataFrame, metric: str) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """Windows (rows), r_e values (columns) and the metric's values ``[windows, r_e]`` (NaN where missing)."""
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
    return windows, r_values, grid


def _cells(windows, r_values: np.ndarray, grid: np.ndarray, scale: str, lo: float, hi: float):
    """One coloured rectangle per finite cell, and the cell centres, values and hover texts."""
    x_edges = _cell_edges(r_values)
    shapes, xs, ys, values, texts = [], [], [], [], []
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
            values.append(float(value))
            texts.append(f"layers {_window_label(start, stop)}, r_e {r:.3g}: {value:.3g}")
    return shapes, xs, ys, values, texts


def layer_map_figure(df: pd.DataFrame, metric: str = "behavior_expectation") -> go.Figure:
    """Heat map of ``metric`` over layer window (rows) x r_e (columns) from ``layer_scan.scan_layers``.

    Cells are layout rectangles coloured from the colour scale (the basic plotly bundle has no
    heatmap trace); an invisible marker per cell carries the hover text and the colour bar.
    """
    windows, r_values, grid = _scan_grid(df, metric)
    scale, vmin, vmax = METRIC_SCALES.get(metric, ("Viridis", None, None))
    finite = grid[np.isfinite(grid)]
    lo = float(finite.min()) if vmin is None else vmin
    hi = float(finite.max()) if vmax is None else vmax
    if hi <= lo:
        hi = lo + 1e-9
    shapes, xs, ys, values, texts = _cells(windows, r_values, grid, scale, lo, hi)
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
                color=values,
                colorscale=scale,
                cmin=lo,
                cmax=hi,
                showscale=True,
                colorbar=dict(title=dict(text=title_metric.split(" ")[0]), thickness=12),
            ),
        )
    ]
    layout = chart_layout(
        f"Layer scan: {title_metric}<br><sub>one coarse sweep per window of steered layers</sub>", "steered layers"
    )
    x_edges = _cell_edges(r_values)
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
