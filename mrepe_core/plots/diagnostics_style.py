"""Shared look of the diagnostics and layer-scan figures: colours, sizes, number formatting, layout."""

from __future__ import annotations

import math

from .curve_style import R_AXIS_TITLE, TEMPLATE

HEIGHT = 360
COLORS = {
    "measured": "#1f77b4",
    "second": "#9467bd",
    "fit": "#ff7f0e",
    "mean": "#7f7f7f",
    "normal": "#d62728",
    "estimate": "#1f77b4",
    "bound_fit": "#ff7f0e",
}


class DiagnosticsPlotError(ValueError):
    """The diagnostics data cannot be drawn (missing columns or rows, non-finite numbers)."""


def fmt_number(x, digits: int = 3) -> str:
    """A number for a chart label: ``digits`` significant digits, 'n/a' when missing or not finite."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"


def finite_or_none(x) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def chart_layout(title: str, y_title: str, **extra) -> dict:
    """Layout of a diagnostics chart: r_e on x, legend below, room for a two-line title."""
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
