"""The maps tab's session state and what it shows: figures, tables and notes from data (no model).

Handlers (``maps_handlers``) change a ``MapsSession``; these functions turn it into component values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mrepe_core import projection
from mrepe_core.map_explorer import MapExplorer
from mrepe_core.plots import (
    DiagnosticsPlotError,
    MapPlotError,
    comparison_figure,
    comparison_table,
    final_shift_figure,
    logit_noise_figure,
    noise_histogram_figure,
    separation_figure,
)
from mrepe_core.result import SweepResult

from .common import chart_value, fmt, message_figure

MAP_HEIGHT = 520
NO_MAP = "No map yet: press 'Draw the map' (loads the model)."


@dataclass
class MapsSession:
    """One browser session's map and checks: the map explorer (collected states, reused across
    layers and projections; the fitted map and its frames), the slider's r_e and the checks shown."""

    model_spec: str = ""
    preset: str = ""
    r_e: float = 0.0
    diag_rows: pd.DataFrame | None = None
    diag_estimates: dict | None = None
    noise_samples: dict = field(default_factory=dict)
    diag_label: str = ""

    def __post_init__(self) -> None:
        # Not a dataclass field: gr.State deep-copies fields for its config, and the explorer holds
        # a lock and the model.
        self.explorer: MapExplorer = MapExplorer()

    def __deepcopy__(self, memo) -> MapsSession:
        # gr.State copies its initial value per session; the stored result tables are shared read-only.
        return MapsSession(
            diag_rows=self.diag_rows,
            diag_estimates=self.diag_estimates,
            noise_samples=dict(self.noise_samples),
            diag_label=self.diag_label,
            preset=self.preset,
        )


def as_session(value) -> MapsSession:
    return value if isinstance(value, MapsSession) else MapsSession()


def or_message(build, empty: str) -> go.Figure:
    """``build()``, or a chart that says why there is nothing to draw."""
    try:
        return build()
    except (DiagnosticsPlotError, MapPlotError) as exc:
        return message_figure(f"{empty}<br><sub>{exc}</sub>")


# ---------------------------------------------------------------------------------------------
# Assumption checks
# ---------------------------------------------------------------------------------------------


def _histogram(session: MapsSession, est: dict) -> go.Figure:
    if not session.noise_samples:
        return message_figure(
            "The stored results keep the noise's standard deviation, not its samples.<br>"
            "Press 'Measure the checks now' to draw its distribution."
        )
    stored = (est.get("noise_normality") or {}).get("r_e")
    r_e = (
        float(stored) if stored is not None and stored in session.noise_samples else max(session.noise_samples, key=abs)
    )
    return or_message(lambda: noise_histogram_figure(session.noise_samples[r_e], r_e), "Too few noise samples.")


def diagnostics_figures(session: MapsSession) -> tuple[go.Figure, ...]:
    """Final shift, logit noise, noise histogram, separation and comparison charts for the session."""
    rows, est = session.diag_rows, session.diag_estimates or {}
    if rows is None or rows.empty:
        msg = "No assumption checks in these results.<br>Press 'Measure the checks now' (needs the model)."
        return tuple(message_figure(msg) for _ in range(5))
    final = or_message(lambda: final_shift_figure(rows, est), "No final-shift rows.")
    noise = or_message(lambda: logit_noise_figure(rows, est), "No logit-noise rows.")
    separation = or_message(lambda: separation_figure(rows, est), "No separation rows.")
    comparison = or_message(lambda: comparison_figure(est), "No estimates to compare with the fits.")
    return final, noise, _histogram(session, est), separation, comparison


def diagnostics_table(session: MapsSession) -> pd.DataFrame:
    try:
        table = comparison_table(session.diag_estimates)
    except DiagnosticsPlotError:
        return pd.DataFrame(columns=["parameter", "direct estimate", "bound fit", "fit / estimate", "from"])
    for column in ("direct estimate", "bound fit", "fit / estimate"):
        table[column] = [fmt(v) for v in table[column]]
    return table


def diagnostics_notes(session: MapsSession) -> str:
    est = session.diag_estimates
    if not est:
        return f"**{session.diag_label or 'No results'}**: no assumption-check estimates."
    normality = est.get("noise_normality") or {}
    lines = [
        f"**{session.diag_label}** · {est.get('n_questions', '?')} questions, "
        f"{est.get('n_behavior_prompts', '?')} behaviour prompts; "
        f"slopes fitted on |r_e| ≤ {fmt(est.get('linear_range'))}."
    ]
    if normality:
        p = normality.get("dagostino_pearson_p")
        verdict = (
            "" if p is None else (" (no evidence against normality)" if p >= 0.05 else " (evidence against normality)")
        )
        lines.append(
            f"Logit noise at r_e = {fmt(normality.get('r_e'))} (n = {normality.get('n')}): skew "
            f"{fmt(normality.get('skew'))}, excess kurtosis {fmt(normality.get('excess_kurtosis'))}, "
            f"normality p = {fmt(p)}{verdict}"
        )
    lines.append(
        "The paper finds the fitted Δλ several times the direct estimate (the estimate bounds the whole "
        "range, the fit follows where B changes most): read the ratios, not equality."
    )
    return "\n\n".join(lines)


def diagnostics_outputs(session: MapsSession) -> tuple:
    figs = diagnostics_figures(session)
    return (session, *[chart_value(f) for f in figs], diagnostics_table(session), diagnostics_notes(session))


def show_stored_diagnostics(session: MapsSession, name: str, result: SweepResult | None) -> MapsSession:
    session.preset = name
    session.noise_samples = {}
    session.diag_label = f"Preset {name} (stored)"
    if result is None:
        session.diag_rows, session.diag_estimates = None, None
        session.diag_label = f"Preset {name}: no stored results yet"
        return session
    session.diag_rows = result.diagnostics
    session.diag_estimates = (result.summary or {}).get("diagnostics")
    # Results that persist the pooled noise ({r_e: samples}) get their histogram without a model.
    samples = getattr(result, "noise_samples", None) or {}
    session.noise_samples = {float(r): np.asarray(v, dtype=float) for r, v in samples.items()}
    return session


# ---------------------------------------------------------------------------------------------
# Concept map
# ---------------------------------------------------------------------------------------------


def map_figure(session: MapsSession) -> go.Figure:
    """The concept map with the steered points at the session's r_e (cheap: no model)."""
    view = session.explorer.view
    if view is None:
        return message_figure(NO_MAP, MAP_HEIGHT)
    return view.figure(session.r_e)


def r_slider_update(session: MapsSession) -> dict:
    view = session.explorer.view
    if view is None:
        return gr.update()
    values = view.frames.r_values
    lo, hi = values[0], values[-1]
    step = round(float(np.min(np.diff(values))), 6) if len(values) > 1 else 1.0
    session.r_e = view.frames.nearest(session.r_e)
    return gr.update(
        minimum=lo, maximum=hi if hi > lo else lo + step, step=step, value=session.r_e, interactive=len(values) > 1
    )


def map_status(session: MapsSession) -> str:
    view = session.explorer.view
    return "\n\n".join(session.explorer.notes(view.frames if view is not None else None))


def umap_status() -> str:
    state = projection.umap_state()
    if state == projection.READY:
        return "UMAP ready."
    if state == projection.FAILED:
        error = projection.umap_warmup_error()
        return f"UMAP unavailable ({type(error).__name__}); PCA works."
    if state == projection.WARMING:
        return "UMAP not ready yet: umap-learn loads and compiles in the background (under a minute); PCA works now."
    return "UMAP loads when first chosen (under a minute, in the background); PCA works now."


def umap_timer() -> gr.Timer:
    """The hint's timer: it ticks while UMAP warms up, whatever the visitor drew meanwhile (a PCA
    map drawn during the warm-up must not stop the hint from turning to 'ready')."""
    return gr.Timer(active=projection.umap_state() == projection.WARMING)
