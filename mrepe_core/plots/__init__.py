"""Plotly figures built from data by pure functions (one module per dashboard concern)."""

from .tradeoff import (
    PlotDataError,
    behavior_figure,
    helpfulness_figure,
    interpolate_at,
    tradeoff_figure,
)

__all__ = ["PlotDataError", "behavior_figure", "helpfulness_figure", "interpolate_at", "tradeoff_figure"]
