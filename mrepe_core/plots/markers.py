"""The current-r_e marker of the trade-off figures and its table of frames for the slider.

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
from collections.abc import Callable, Sequence

import plotly.graph_objects as go

from .curve_data import PlotDataError
from .curve_style import COLORS, MARKER_LINE_NAME, MARKER_NAME

MARKER_FRAME_KEYS = ("x", "y", "hovertemplate")
MAX_MARKER_FRAMES = 2001

# The marker traces of a figure at one r_e (the same number of traces at every r_e).
MarkerAt = Callable[[float], list[dict]]


def check_marker(marker_r_e) -> float | None:
    """``marker_r_e`` as a float (None stays None); anything else than a finite number is an error."""
    if marker_r_e is None:
        return None
    try:
        r = float(marker_r_e)
    except (TypeError, ValueError):
        raise PlotDataError(f"marker_r_e must be a number, got {type(marker_r_e).__name__}.") from None
    if not math.isfinite(r):
        raise PlotDataError("marker_r_e must be a finite number.")
    return r


def marker_traces(r_marker: float, points_y: list[float], y_span: Sequence[float], label: str) -> list[dict]:
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


def marker_meta(n_traces: int, marker_at: MarkerAt, grid: Sequence[float] | None) -> dict | None:
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


def add_marker(
    traces: list[dict], marker_at: MarkerAt, marker_r_e: float | None, marker_grid: Sequence[float] | None
) -> dict | None:
    """Append the marker at ``marker_r_e`` to ``traces`` (as their last traces) and return the
    layout ``meta`` with its frames over ``marker_grid``; no marker (None) adds nothing, returns None."""
    if marker_r_e is None:
        return None
    traces.extend(marker_at(marker_r_e))
    return marker_meta(len(traces), marker_at, marker_grid)


def marker_frames(fig: go.Figure | dict) -> dict | None:
    """The marker table of a figure built with ``marker_grid`` (None otherwise); format in the module docstring."""
    layout = fig["layout"] if isinstance(fig, dict) else fig.layout.to_plotly_json()
    meta = layout.get("meta")
    return meta.get("marker_frames") if isinstance(meta, dict) else None
