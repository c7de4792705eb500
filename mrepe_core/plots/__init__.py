"""Plotly figures built from data by pure functions (one module per dashboard concern)."""

from .curve_data import PlotDataError, baseline_values, has_rows, interpolate_at
from .curve_style import fitted_range
from .diagnostics import (
    DiagnosticsPlotError,
    final_shift_figure,
    logit_noise_figure,
    noise_histogram_figure,
    separation_figure,
)
from .fit_comparison import comparison_figure, comparison_table
from .layer_scan import layer_map_figure
from .maps import MapPlotError, concept_map_figure, set_colors
from .markers import marker_frames
from .tradeoff import behavior_figure, coherence_figure, helpfulness_figure
from .tradeoff_chart import thin_labels, tradeoff_figure

__all__ = [
    "DiagnosticsPlotError",
    "MapPlotError",
    "PlotDataError",
    "baseline_values",
    "behavior_figure",
    "coherence_figure",
    "comparison_figure",
    "comparison_table",
    "concept_map_figure",
    "final_shift_figure",
    "fitted_range",
    "has_rows",
    "helpfulness_figure",
    "interpolate_at",
    "marker_frames",
    "layer_map_figure",
    "logit_noise_figure",
    "noise_histogram_figure",
    "separation_figure",
    "set_colors",
    "thin_labels",
    "tradeoff_figure",
]
