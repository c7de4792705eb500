"""Concept maps: 2-D projections of hidden states, coloured by set and marked by side.

Pure functions of arrays. Points of each (set, side) pair form one trace: colour says the set
(contrast examples, held-out prompts, helpfulness questions, the user's inputs...), the marker
symbol says the side (positive / negative / none). Steered points at the current r_e form their
own trace, with arrows from where each point started. Figures are rebuilt on every slider move,
so they are assembled without plotly's per-property validation (tests re-validate them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .curve_style import TEMPLATE

HEIGHT = 520
# Plotly's D3 / Tableau 10 colours: one per set, in the order the sets first appear.
SET_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
SIDE_SYMBOLS = {"positive": "circle", "negative": "x", "": "diamond"}
OTHER_SIDE_SYMBOLS = ("square", "triangle-up", "cross", "triangle-down", "hexagon")
STEERED_NAME = "steered"
ARROWS_NAME = "steering path"
STEERED_COLOR = "#000000"


class MapPlotError(ValueError):
    """The map data cannot be drawn (wrong shapes, mismatched lengths, non-finite values)."""


def _points(array, name: str) -> np.ndarray:
    try:
        points = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise MapPlotError(f"{name} must be numeric: {error}") from error
    if points.ndim != 2 or points.shape[1] != 2:
        raise MapPlotError(f"{name} must have shape [n, 2]; got {points.shape}.")
    if not np.isfinite(points).all():
        raise MapPlotError(f"{name} contains NaN or infinite values.")
    return points


def set_colors(sets: Sequence[str]) -> dict[str, str]:
    """Colour of each set, by order of first appearance (so the UI legend can match)."""
    colors: dict[str, str] = {}
    for name in sets:
        if name not in colors:
            colors[name] = SET_PALETTE[len(colors) % len(SET_PALETTE)]
    return colors


def side_symbols(sides: Sequence[str]) -> dict[str, str]:
    """Marker symbol of each side: fixed ones for positive / negative / none, then a cycle."""
    symbols: dict[str, str] = {}
    others = 0
    for side in sides:
        if side in symbols:
            continue
        if side in SIDE_SYMBOLS:
            symbols[side] = SIDE_SYMBOLS[side]
        else:
            symbols[side] = OTHER_SIDE_SYMBOLS[others % len(OTHER_SIDE_SYMBOLS)]
            others += 1
    return symbols


def _steered_traces(
    steered: np.ndarray,
    base: np.ndarray,
    steered_index: np.ndarray | None,
    point_colors: list[str] | None,
    r_e: float | None,
    scatter_type: str,
) -> list[dict]:
    label = STEERED_NAME if r_e is None else f"{STEERED_NAME} (r_e = {r_e:g})"
    traces = []
    if steered_index is not None:
        starts = base[steered_index]
        # One line trace for all arrows: segments separated by None are drawn far faster than shapes.
        xs = np.full(3 * len(steered), np.nan)
        ys = np.full(3 * len(steered), np.nan)
        xs[0::3], xs[1::3] = starts[:, 0], steered[:, 0]
        ys[0::3], ys[1::3] = starts[:, 1], steered[:, 1]
        traces.append(
            dict(
                type=scatter_type,
                mode="lines",
                name=ARROWS_NAME,
                hoverinfo="skip",
                showlegend=False,
                x=[None if math.isnan(v) else v for v in xs.tolist()],
                y=[None if math.isnan(v) else v for v in ys.tolist()],
                line=dict(color="rgba(0,0,0,0.35)", width=1),
            )
        )
    marker = dict(
        symbol="star",
        size=11,
        color=point_colors if point_colors else STEERED_COLOR,
        line=dict(color=STEERED_COLOR, width=1),
    )
    traces.append(
        dict(
            type=scatter_type,
            mode="markers",
            name=label,
            x=steered[:, 0].tolist(),
            y=steered[:, 1].tolist(),
            marker=marker,
            hovertemplate=f"{label}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
        )
    )
    return traces


def _point_traces(
    points: np.ndarray, sets: list[str], sides: list[str], hover_text: Sequence[str] | None, scatter_type: str
) -> list[dict]:
    """One marker trace per (set, side): colour = set, symbol = side."""
    colors = set_colors(sets)
    symbols = side_symbols(sides)
    set_array = np.asarray(sets, dtype=object)
    side_array = np.asarray(sides, dtype=object)
    texts = None if hover_text is None else np.asarray([str(t) for t in hover_text], dtype=object)
    traces: list[dict] = []
    for set_name in colors:
        for side in symbols:
            rows = np.flatnonzero((set_array == set_name) & (side_array == side))
            if rows.size == 0:
                continue
            name = f"{set_name} · {side}" if side else set_name
            trace = dict(
                type=scatter_type,
                mode="markers",
                name=name,
                legendgroup=set_name,
                x=points[rows, 0].tolist(),
                y=points[rows, 1].tolist(),
                customdata=rows.tolist(),
                marker=dict(
                    color=colors[set_name],
                    symbol=symbols[side],
                    size=7,
                    opacity=0.75,
                    line=dict(width=0.5, color=colors[set_name]),
                ),
            )
            if texts is not None:
                trace["text"] = texts[rows].tolist()
                trace["hovertemplate"] = f"{name}<br>%{{text}}<extra></extra>"
            else:
                trace["hovertemplate"] = f"{name}<br>point %{{customdata}}<extra></extra>"
            traces.append(trace)
    return traces


def _steered_rows(steered_index, n_points: int) -> np.ndarray:
    index = np.asarray(steered_index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise MapPlotError("steered_index must be a 1-D sequence of integer row numbers.")
    if index.size and (index.min() < 0 or index.max() >= n_points):
        raise MapPlotError(f"steered_index must lie in [0, {n_points}).")
    return index


def _map_layout(title: str, axis_titles: tuple[str, str], equal_aspect: bool) -> dict:
    yaxis: dict = dict(title=dict(text=axis_titles[1]), zeroline=False)
    if equal_aspect:
        yaxis.update(scaleanchor="x", scaleratio=1)
    return dict(
        template=TEMPLATE,
        height=HEIGHT,
        autosize=True,
        uirevision="concept-map",
        title=dict(text=title, font=dict(size=14)),
        # Top margin: the dashboard's chart label sits over the plot's top-left corner.
        margin=dict(l=50, r=20, t=80 if title else 40, b=50),
        legend=dict(orientation="v", x=1.02, y=1, font=dict(size=11)),
        hovermode="closest",
        xaxis=dict(title=dict(text=axis_titles[0]), zeroline=False),
        yaxis=yaxis,
    )


def concept_map_figure(
    points_2d,
    sets: Sequence[str],
    sides: Sequence[str],
    steered_2d=None,
    steered_index: Sequence[int] | np.ndarray | None = None,
    r_e: float | None = None,
    title: str = "",
    hover_text: Sequence[str] | None = None,
    axis_titles: tuple[str, str] = ("component 1", "component 2"),
    equal_aspect: bool = True,
    animation_frames: Mapping[float, np.ndarray] | None = None,
) -> go.Figure:
    """Scatter of ``points_2d`` ``[n, 2]``, one trace per (set, side), plus steered points.

    ``steered_2d`` ``[m, 2]`` are the steered positions at ``r_e``; with ``steered_index`` (which
    row of ``points_2d`` each one started from) they get their set's colour and an arrow from the
    start. ``animation_frames`` (``{r: [m, 2]}``, e.g. from ``projection.project_frames``) adds
    plotly frames and a slider that moves the steered trace client-side. ``equal_aspect`` keeps
    one unit equally long on both axes, so PCA distances and arrow lengths read true.
    """
    points = _points(points_2d, "points_2d")
    n_points = len(points)
    if n_points == 0:
        raise MapPlotError("No points to draw.")
    sets = [str(s) for s in sets]
    sides = ["" if s is None else str(s) for s in sides]
    if len(sets) != n_points or len(sides) != n_points:
        raise MapPlotError(f"sets ({len(sets)}) and sides ({len(sides)}) must label every one of {n_points} points.")
    if hover_text is not None and len(hover_text) != n_points:
        raise MapPlotError(f"hover_text has {len(hover_text)} entries for {n_points} points.")
    if r_e is not None and not math.isfinite(float(r_e)):
        raise MapPlotError(f"r_e must be finite; got {r_e!r}.")
    # SVG scatter only: the dashboard ships plotly's basic bundle, which has no scattergl, and
    # concept maps stay at a few thousand points at most.
    scatter_type = "scatter"
    traces = _point_traces(points, sets, sides, hover_text, scatter_type)

    index = None
    point_colors = None
    if (steered_2d is not None or animation_frames) and steered_index is not None:
        index = _steered_rows(steered_index, n_points)
        colors = set_colors(sets)
        point_colors = [colors[sets[i]] for i in index.tolist()]
    if steered_2d is not None:
        steered = _points(steered_2d, "steered_2d")
        if index is not None and len(index) != len(steered):
            raise MapPlotError(f"steered_index has {len(index)} rows for {len(steered)} steered points.")
        traces.extend(_steered_traces(steered, points, index, point_colors, r_e, scatter_type))

    layout = _map_layout(title, axis_titles, equal_aspect)
    frames = None
    if animation_frames:
        frames, layout = _with_animation(
            animation_frames, points, index, point_colors, scatter_type, len(traces), steered_2d is not None, layout
        )
        if steered_2d is None:
            # The frames replace the steered traces, so the first frame's traces must exist.
            first = next(iter(frames))
            traces.extend(first["data"])
    return go.Figure(data=traces, layout=layout, frames=frames, _validate=False)


def _with_animation(
    animation_frames: Mapping[float, np.ndarray],
    points: np.ndarray,
    index: np.ndarray | None,
    point_colors: list[str] | None,
    scatter_type: str,
    n_traces: int,
    has_steered: bool,
    layout: dict,
) -> tuple[list[dict], dict]:
    """Plotly frames over r that redraw the steered traces, and a slider to play them."""
    r_values = sorted(float(r) for r in animation_frames)
    by_value = {float(r): frame for r, frame in animation_frames.items()}
    n_steered = 2 if index is not None else 1
    first_steered = n_traces - n_steered if has_steered else n_traces
    target = list(range(first_steered, first_steered + n_steered))
    frames = []
    for r in r_values:
        steered = _points(by_value[r], f"animation_frames[{r:g}]")
        if index is not None and len(index) != len(steered):
            raise MapPlotError(f"animation_frames[{r:g}] has {len(steered)} points for {len(index)} in steered_index.")
        frames.append(
            dict(
                name=f"{r:g}",
                traces=target,
                data=_steered_traces(steered, points, index, point_colors, r, scatter_type),
            )
        )
    steps = [
        dict(
            method="animate",
            label=f"{r:g}",
            args=[
                [f"{r:g}"],
                dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0)),
            ],
        )
        for r in r_values
    ]
    layout = dict(layout)
    layout["sliders"] = [dict(active=0, steps=steps, currentvalue=dict(prefix="r_e = "), pad=dict(t=40))]
    layout["margin"] = dict(layout["margin"], b=110)
    return frames, layout
