"""The "Concept maps & diagnostics" tab: hidden states on a 2-D map with steered points travelling
along the r_e slider, the paper's assumption checks (appendix A.3), and the layer x coefficient scan.

Thin by design: states, maps, frames, checks and scans come from ``mrepe_core`` (``concept_maps``,
``projection``, ``diagnostics``, ``layer_scan``); figures from ``mrepe_core.plots``. Handlers are
module-level functions so tests can call them without a browser.

* Diagnostics charts open instantly from a preset's stored results (no model).
* The concept map needs the model (loaded lazily, in the shared model queue). All frames for the
  slider are computed when the map is drawn, so moving the slider only re-reads them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mrepe_core import concept_maps as cm
from mrepe_core import projection
from mrepe_core.config import SweepConfig
from mrepe_core.diagnostics import compare_with_fits, run_diagnostics
from mrepe_core.layer_scan import layer_windows, scan_layers
from mrepe_core.models import load_model, resolve_layers
from mrepe_core.plots import (
    DiagnosticsPlotError,
    MapPlotError,
    comparison_figure,
    comparison_table,
    concept_map_figure,
    final_shift_figure,
    layer_map_figure,
    logit_noise_figure,
    noise_histogram_figure,
    separation_figure,
)
from mrepe_core.plots.diagnostics import FINAL_SHIFT_HEIGHT
from mrepe_core.presets import PRESETS_DIR, Preset, list_presets
from mrepe_core.result import SweepResult
from mrepe_core.sweep import diagnostic_grid, prepare

from .common import MODEL_QUEUE, chart_value, fmt, gpu, message_figure, plotly_chart, upload_path, user_errors

PROJECTIONS = [("PCA (exact, instant)", "pca"), ("UMAP (umap-learn)", "umap")]
STEERABLE_SETS = [
    ("held-out behaviour prompts", "eval"),
    ("helpfulness questions", "helpfulness"),
    ("contrast examples", "contrast"),
    ("your inputs", "user"),
]
DEFAULT_STEERED = ["eval", "user"]
DEFAULT_N_PER_SET = 12
# Without a stored vector for the model, one is extracted on the spot from this many contrast pairs
# (two forward passes each; the sweep's own vector uses the preset's n_pairs).
EXTRACT_PAIRS = 32
MEASURE_NOW_ITEMS = 8  # questions and prompts for "measure the checks now" (its own forward passes)
DEFAULT_LAYER_COUNT = 30  # SmolLM2-135M; replaced as soon as a model or result is known
MAX_UPLOADS = 8
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
CHART_IDS = {
    "map": "concept-map-plot",
    "final_shift": "final-shift-plot",
    "noise": "logit-noise-plot",
    "histogram": "noise-histogram-plot",
    "separation": "separation-plot",
    "comparison": "fit-comparison-plot",
    "scan_b": "layer-scan-b-plot",
    "scan_h": "layer-scan-h-plot",
    "encoder": "encoder-map-plot",
}
MAP_HEIGHT = 520


# ---------------------------------------------------------------------------------------------
# Session state
# ---------------------------------------------------------------------------------------------


@dataclass
class MapsSession:
    """One browser session's map and checks: the collected states (reused across layers and
    projections), the fitted map, its frames, and the diagnostics on screen."""

    key: tuple | None = None
    inputs: cm.MapInputs | None = None
    loaded: object = None
    behavior: object = None
    model_spec: str = ""
    preset: str = ""
    vector: object = None
    vector_note: str = ""
    steer_layers: list[int] = field(default_factory=list)
    sweep_grid: list[float] = field(default_factory=list)
    concept_map: cm.ConceptMap | None = None
    frames: cm.Frames | None = None
    measured: dict = field(default_factory=dict)  # (layer, steered rows) -> {r: [m, d]}
    r_e: float = 0.0
    diag_rows: pd.DataFrame | None = None
    diag_estimates: dict | None = None
    noise_samples: dict = field(default_factory=dict)
    diag_label: str = ""

    def __deepcopy__(self, memo) -> MapsSession:
        # gr.State copies its initial value per session; the stored result tables are shared read-only.
        return MapsSession(
            diag_rows=self.diag_rows,
            diag_estimates=self.diag_estimates,
            noise_samples=dict(self.noise_samples),
            diag_label=self.diag_label,
            preset=self.preset,
        )


def _session(value) -> MapsSession:
    return value if isinstance(value, MapsSession) else MapsSession()


# ---------------------------------------------------------------------------------------------
# Presets (read-only, shared by all sessions)
# ---------------------------------------------------------------------------------------------


def presets_dir() -> Path:
    return Path(os.environ.get("MREPE_PRESETS_DIR") or PRESETS_DIR)


def available_presets() -> dict[str, Preset]:
    return {p.name: p for p in list_presets(presets_dir())}


_RESULTS: dict[tuple, SweepResult | None] = {}
_RESULTS_LOCK = threading.Lock()


def preset_result(preset: Preset) -> SweepResult | None:
    """A preset's stored results, read once per file version."""
    marker = preset.results_dir / "results.csv" if preset.results_dir else None
    key = (
        str(preset.path),
        preset.path.stat().st_mtime,
        marker.stat().st_mtime if marker is not None and marker.is_file() else None,
    )
    with _RESULTS_LOCK:
        if key not in _RESULTS:
            _RESULTS[key] = preset.load_results()
        return _RESULTS[key]


def _preset(name: str) -> Preset:
    presets = available_presets()
    if name not in presets:
        raise gr.Error(f"Unknown preset {name!r}. Available: {', '.join(presets) or 'none (presets/ is empty)'}.")
    return presets[name]


def default_preset_name(names: list[str]) -> str | None:
    for preferred in ("harmless-smollm2", "harmless"):
        if preferred in names:
            return preferred
    return names[0] if names else None


def _layer_count(result: SweepResult | None) -> int:
    model = ((result.summary or {}).get("model") or {}) if result is not None else {}
    return int(model.get("n_layers") or DEFAULT_LAYER_COUNT)


# ---------------------------------------------------------------------------------------------
# Pure view helpers
# ---------------------------------------------------------------------------------------------


def _or_message(build, empty: str) -> go.Figure:
    try:
        return build()
    except (DiagnosticsPlotError, MapPlotError) as exc:
        return message_figure(f"{empty}<br><sub>{exc}</sub>")


def diagnostics_figures(session: MapsSession) -> tuple[go.Figure, ...]:
    """Final shift, logit noise, noise histogram, separation and comparison charts for the session."""
    rows, est = session.diag_rows, session.diag_estimates or {}
    if rows is None or rows.empty:
        msg = "No assumption checks in these results.<br>Press 'Measure the checks now' (needs the model)."
        return tuple(message_figure(msg) for _ in range(5))
    final = _or_message(lambda: final_shift_figure(rows, est), "No final-shift rows.")
    noise = _or_message(lambda: logit_noise_figure(rows, est), "No logit-noise rows.")
    separation = _or_message(lambda: separation_figure(rows, est), "No separation rows.")
    comparison = _or_message(lambda: comparison_figure(est), "No estimates to compare with the fits.")
    if session.noise_samples:
        normality = est.get("noise_normality") or {}
        r_e = normality.get("r_e")
        if r_e not in session.noise_samples:
            r_e = max(session.noise_samples, key=abs)
        histogram = _or_message(
            lambda: noise_histogram_figure(session.noise_samples[r_e], r_e), "Too few noise samples."
        )
    else:
        histogram = message_figure(
            "The stored results keep the noise's standard deviation, not its samples.<br>"
            "Press 'Measure the checks now' to draw its distribution."
        )
    return final, noise, histogram, separation, comparison


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
        lines.append(
            f"Logit noise at r_e = {fmt(normality.get('r_e'))} (n = {normality.get('n')}): skew "
            f"{fmt(normality.get('skew'))}, excess kurtosis {fmt(normality.get('excess_kurtosis'))}, "
            f"normality p = {fmt(p)}"
            + (
                ""
                if p is None
                else (" (no evidence against normality)" if p >= 0.05 else " (evidence against normality)")
            )
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


def map_figure(session: MapsSession) -> go.Figure:
    """The concept map with the steered points at the session's r_e (cheap: no model)."""
    inputs, concept_map, frames = session.inputs, session.concept_map, session.frames
    if inputs is None or concept_map is None:
        return message_figure("No map yet: press 'Draw the map' (loads the model).", MAP_HEIGHT)
    names = [cm.SET_TITLES.get(s, s) for s in inputs.sets]
    layer_text = "" if inputs.n_layers == 1 else f" after layer {concept_map.layer}"
    title = f"{inputs.space}{layer_text} · {concept_map.method.upper()}"
    kwargs = {}
    if frames is not None:
        r = frames.nearest(session.r_e)
        kwargs = dict(steered_2d=frames.positions[r], steered_index=frames.index, r_e=r)
        title += f" · steered points at r_e = {r:g}" + (" (translation approximation)" if frames.approximate else "")
    return concept_map_figure(
        concept_map.points_2d,
        names,
        inputs.sides,
        title=title,
        hover_text=inputs.hover,
        axis_titles=concept_map.axis_titles,
        **kwargs,
    )


def r_slider_update(session: MapsSession) -> dict:
    frames = session.frames
    if frames is None:
        return gr.update()
    values = frames.r_values
    lo, hi = values[0], values[-1]
    step = round(float(np.min(np.diff(values))), 6) if len(values) > 1 else 1.0
    session.r_e = frames.nearest(session.r_e)
    return gr.update(
        minimum=lo, maximum=hi if hi > lo else lo + step, step=step, value=session.r_e, interactive=len(values) > 1
    )


def map_status(session: MapsSession) -> str:
    inputs, frames = session.inputs, session.frames
    if inputs is None:
        return ""
    counts = ", ".join(f"{n} {cm.SET_TITLES.get(s, s)}" for s, n in inputs.counts().items())
    parts = [
        f"Model `{session.model_spec}` · steering {session.vector_note} on layers "
        f"{cm.layer_span(session.steer_layers)} · points: {counts}."
    ]
    if frames is not None:
        parts.append(frames.note)
    return "\n\n".join(parts)


def umap_status() -> str:
    if projection.umap_ready():
        return "UMAP ready."
    error = projection.umap_warmup_error()
    if error is not None:
        return f"UMAP unavailable ({type(error).__name__}: {error}); PCA works."
    return "UMAP not ready yet: umap-learn loads and compiles in the background (under a minute); PCA works now."


# ---------------------------------------------------------------------------------------------
# Model-side work (model queue)
# ---------------------------------------------------------------------------------------------


def _config_for(preset_name: str, model_spec: str) -> tuple[SweepConfig, SweepResult | None, str]:
    preset = _preset(preset_name)
    config = preset.config
    spec = (model_spec or "").strip() or config.model
    with user_errors(f"Preset {preset_name}"):
        result = preset_result(preset)
    if spec != config.model:
        config = dataclasses.replace(config, model=spec, dtype="auto")
    return config, result, spec


def _steer_layers(text: str, config: SweepConfig, n_layers: int) -> list[int]:
    spec = (text or "").strip() or config.layers
    try:
        return resolve_layers(spec, n_layers)
    except ValueError as exc:
        raise gr.Error(
            f"Steered layers {spec!r}: {exc} Use 'start:stop' (stop exclusive) or a comma list; "
            f"the model has {n_layers} layers (0–{n_layers - 1})."
        ) from exc


@gpu
def _load(config: SweepConfig):
    return load_model(config.model, device=config.device, dtype=config.dtype)


def _progress_fn(progress, what: str):
    def report(done: int, total: int) -> None:
        progress(done / max(total, 1), desc=f"{what} ({done}/{total})")

    return report


def _check_projection(method: str) -> str | None:
    """None when ``method`` can run now; else the reason (UMAP still warming: started here)."""
    if method not in ("pca", "umap"):
        raise gr.Error(f"Unknown projection {method!r}; choose PCA or UMAP.")
    if method == "umap" and not projection.umap_ready():
        projection.warm_umap_in_background()
        return umap_status()
    return None


@gpu
def _measure(loaded, texts, vector, layers, grid, read_layer, report):
    return cm.steered_states(loaded, texts, vector, layers, grid, read_layer, progress=report)


def _draw(session: MapsSession, layer, method: str, steer_sets, measure: bool, progress) -> MapsSession:
    """Fit the map at ``layer`` and precompute the steered points' frames on the sweep grid."""
    inputs = session.inputs
    index = cm._layer_index(layer, inputs.n_layers)
    rows = inputs.rows(steer_sets or [])
    if rows.size == 0:
        raise gr.Error("None of the chosen sets has points to steer; tick a set that is on the map.")
    progress(0.05, desc=f"Fitting the {method.upper()} map")
    concept_map = cm.build_map(inputs.at_layer(index), method, layer=index)
    measure_fn = None
    if measure:

        def measure_fn(texts, grid):
            key = (index, tuple(rows.tolist()), tuple(grid))
            if key not in session.measured:
                session.measured[key] = _measure(
                    session.loaded,
                    texts,
                    session.vector,
                    session.steer_layers,
                    grid,
                    index,
                    _progress_fn(progress, f"Measuring steered states after layer {index}"),
                )
            return session.measured[key]

    frames = cm.frames_on_grid(
        concept_map, inputs, rows, session.vector, session.steer_layers, session.sweep_grid, measure=measure_fn
    )
    session.concept_map, session.frames = concept_map, frames
    return session


def build_map_view(
    preset_name,
    model_spec,
    steer_layers_text,
    n_per_set,
    user_texts,
    layer,
    method,
    steer_sets,
    measure,
    session,
    progress=gr.Progress(),
):
    """API ``/maps_build``: (session, map chart, layer slider, r_e slider, status, projection, timer).

    Loads the model, collects the states of every set once (reused for other layers and
    projections), fits the map at ``layer`` and precomputes the frames for the r_e slider.
    """
    session = _session(session)
    config, result, spec = _config_for(preset_name, model_spec)
    waiting = _check_projection(method)
    if waiting is not None:
        gr.Warning(waiting)
        method = "pca"
    try:
        n = int(n_per_set)
    except (TypeError, ValueError):
        raise gr.Error("Points per set must be a whole number.") from None
    with user_errors("Concept map"):
        users = cm.clean_user_texts(user_texts)
        progress(0.0, desc=f"Loading {spec}")
        loaded = _load(config)
        chosen = _steer_layers(steer_layers_text, config, loaded.n_layers)
        key = (loaded.fingerprint, preset_name, n, tuple(users))
        if session.key != key or session.inputs is None:
            progress(0.1, desc="Loading the behaviour and questions")
            _, behavior, questions = prepare(config, loaded)
            progress(0.2, desc="Reading hidden states of every set")
            inputs = _collect(loaded, behavior, questions, users, n, config.helpfulness_format)
            session.key, session.inputs, session.measured = key, inputs, {}
            session.loaded, session.behavior = loaded, behavior
        behavior = session.behavior
        stored = result.vector if result is not None else None
        progress(0.5, desc="Steering vector")
        session.vector, session.vector_note = cm.vector_for_model(
            loaded, behavior, chosen, stored, config.method, n_pairs=EXTRACT_PAIRS
        )
        if session.steer_layers != chosen:
            session.measured = {}
        session.steer_layers, session.model_spec, session.preset = chosen, spec, preset_name
        session.sweep_grid = config.r_grid()
        if layer is None or not 0 <= int(layer) < loaded.n_layers:
            layer = min(chosen)
        best = (
            ((result.summary or {}).get("efficient_regime") or {}).get("best_r_e")
            if result is not None and spec == _preset(preset_name).config.model
            else None
        )
        session.r_e = float(best) if best is not None and math.isfinite(float(best)) else max(session.sweep_grid)
        session = _draw(session, int(layer), method, steer_sets, bool(measure), progress)
    layer_update = gr.update(maximum=loaded.n_layers - 1, value=int(layer))
    return (
        session,
        chart_value(map_figure(session)),
        layer_update,
        r_slider_update(session),
        map_status(session),
        gr.update(value=method),
        gr.Timer(active=waiting is not None),
    )


@gpu
def _collect(loaded, behavior, questions, users, n, question_format):
    return cm.collect_map_inputs(loaded, behavior, questions, users, n, question_format)


def redraw_map(layer, method, steer_sets, measure, session, progress=gr.Progress()):
    """Another layer, projection or steered set: refit from the collected states (the model only
    runs when steered states must be measured)."""
    session = _session(session)
    if session.inputs is None:
        raise gr.Error("Draw the map first (press 'Draw the map').")
    waiting = _check_projection(method)
    if waiting is not None:
        gr.Warning(waiting)
        return (
            session,
            gr.skip(),
            gr.skip(),
            gr.skip(),
            gr.update(value=session.concept_map.method if session.concept_map else "pca"),
            gr.Timer(active=True),
        )
    with user_errors("Concept map"):
        session = _draw(session, int(layer), method, steer_sets, bool(measure), progress)
    return (
        session,
        chart_value(map_figure(session)),
        r_slider_update(session),
        map_status(session),
        gr.update(value=method),
        gr.Timer(active=False),
    )


def move_points(r_e, session):
    """The r_e slider: the steered points at the nearest precomputed coefficient (no model)."""
    session = _session(session)
    if session.frames is None or r_e is None:
        return gr.skip()
    session.r_e = float(r_e)
    return chart_value(map_figure(session))


def umap_tick():
    """Timer while UMAP warms up: report, and stop ticking once it is ready (or failed)."""
    done = projection.umap_ready() or projection.umap_warmup_error() is not None
    return gr.update(info=umap_status()), gr.Timer(active=not done)


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


def open_preset(preset_name, session):
    """Stored assumption checks of a preset (no model) and its steering layers for the map form."""
    session = _session(session)
    preset = _preset(preset_name)
    with user_errors(f"Preset {preset_name}"):
        result = preset_result(preset)
    session = show_stored_diagnostics(session, preset_name, result)
    n_layers = _layer_count(result)
    return (
        *diagnostics_outputs(session),
        gr.update(placeholder=preset.config.model),
        gr.update(value=preset.config.layers),
        gr.update(maximum=n_layers - 1),
    )


@gpu(duration=300)
def _run_checks(loaded, vector, layers, questions, behavior, grid, helpfulness_format):
    return run_diagnostics(loaded, vector, layers, questions, behavior, grid, helpfulness_format=helpfulness_format)


def measure_diagnostics(preset_name, model_spec, steer_layers_text, session, progress=gr.Progress()):
    """Run the assumption checks now on the model (gives the noise histogram the stored results lack)."""
    session = _session(session)
    config, result, spec = _config_for(preset_name, model_spec)
    with user_errors("Assumption checks"):
        progress(0.0, desc=f"Loading {spec}")
        loaded = _load(config)
        chosen = _steer_layers(steer_layers_text, config, loaded.n_layers)
        _, behavior, questions = prepare(config, loaded)
        vector, note = cm.vector_for_model(
            loaded, behavior, chosen, result.vector if result else None, config.method, n_pairs=EXTRACT_PAIRS
        )
        # Here the checks run their own forward passes (the stored sweep kept its states), so few items.
        n = min(config.n_diagnostics or MEASURE_NOW_ITEMS, MEASURE_NOW_ITEMS)
        subset = dataclasses.replace(behavior, eval_prompts=list(behavior.eval_prompts)[:n])
        progress(
            0.3,
            desc=f"Measuring the checks on {min(n, len(questions))} questions and {len(subset.eval_prompts)} prompts",
        )
        res = _run_checks(
            loaded,
            vector,
            chosen,
            list(questions)[:n],
            subset,
            diagnostic_grid(config.r_grid()),
            config.helpfulness_format,
        )
    same_model = (
        result is not None
        and spec == _preset(preset_name).config.model
        and chosen == list((result.summary or {}).get("layers") or [])
    )
    summary = (result.summary or {}) if same_model else {}
    estimates = dict(res.estimates)
    estimates["comparison_with_fits"] = compare_with_fits(
        estimates, summary.get("alignment_fit"), summary.get("helpfulness_fit")
    )
    session.diag_rows, session.diag_estimates = res.rows, estimates
    session.noise_samples = {float(r): np.asarray(v) for r, v in res.noise_samples.items()}
    session.diag_label = f"Measured now on `{spec}` ({note}, layers {cm.layer_span(chosen)})" + (
        "" if same_model else "; no bound fits for this model/layers, so nothing to compare"
    )
    return diagnostics_outputs(session)


@gpu(duration=900)
def _scan(config, width, stride, r_steps, loaded, report):
    return scan_layers(config, width=width, stride=stride, r_steps=r_steps, loaded=loaded, progress=report)


def scan_layers_view(preset_name, model_spec, width, stride, r_steps, n_eval, n_questions, progress=gr.Progress()):
    """API ``/maps_scan_layers``: heat maps of B and helpfulness over layer window x r_e, from one
    coarse sweep per window (cached like any sweep), plus a status line."""
    config, _, spec = _config_for(preset_name, model_spec)
    try:
        width, r_steps, n_eval, n_questions = int(width), int(r_steps), int(n_eval), int(n_questions)
        stride = int(stride) if stride else None
    except (TypeError, ValueError):
        raise gr.Error("Window width, stride, r_e steps and sizes must be whole numbers.") from None
    if not 2 <= r_steps <= 21:
        raise gr.Error("r_e steps for the scan must be between 2 and 21.")
    with user_errors("Layer scan"):
        config = dataclasses.replace(config, n_eval=n_eval, n_questions_per_subject=n_questions, n_diagnostics=0)
        progress(0.0, desc=f"Loading {spec}")
        loaded = _load(config)
        windows = layer_windows(loaded.n_layers, width, stride)
        progress(0.02, desc=f"Sweeping {len(windows)} layer windows")
        df = _scan(
            dataclasses.replace(config, device=str(loaded.device)),
            width,
            stride,
            r_steps,
            loaded,
            _progress_fn(progress, "Layer windows"),
        )
    b = _or_message(lambda: layer_map_figure(df, "behavior_expectation"), "No behaviour rows.")
    h = _or_message(lambda: layer_map_figure(df, "helpfulness"), "No helpfulness rows (the preset has no subjects).")
    status = (
        f"`{spec}`: {len(windows)} windows of {width} layers × {r_steps} coefficients in "
        f"[{fmt(config.r_min)}, {fmt(config.r_max)}]; {n_eval} behaviour prompts, {n_questions} questions per subject."
    )
    return chart_value(b), chart_value(h), status


# ---------------------------------------------------------------------------------------------
# Encoder space (CLIP / CLAP)
# ---------------------------------------------------------------------------------------------


def _uploads(files) -> list[Path]:
    files = [f for f in (files or []) if f is not None]
    if len(files) > MAX_UPLOADS:
        raise gr.Error(f"{len(files)} files uploaded; the map takes at most {MAX_UPLOADS}.")
    paths = []
    for f in files:
        path = upload_path(f)
        if path is None or not path.is_file():
            raise gr.Error("An upload could not be read; upload it again.")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise gr.Error(f"{path.name} is larger than {MAX_UPLOAD_BYTES >> 20} MB.")
        paths.append(path)
    return paths


@gpu
def _encoder_inputs(kind, spec, paths, user_texts):
    from mrepe_core.multimodal.concepts import upload_items
    from mrepe_core.multimodal.encoders import load_encoder

    encoder = load_encoder(kind, (spec or "").strip() or None)
    modality = "image" if kind == "clip" else "audio"
    uploads = upload_items(modality, [str(p) for p in paths], "user") if paths else ()
    return encoder.describe(), cm.collect_encoder_inputs(encoder, cm.builtin_encoder_items(kind), user_texts, uploads)


def encoder_map_view(kind, encoder_spec, files, user_texts, method):
    """Map of a CLIP / CLAP joint space: shipped examples by theme, the user's uploads and texts."""
    if kind not in ("clip", "clap"):
        raise gr.Error("Choose CLIP (images) or CLAP (audio).")
    waiting = _check_projection(method)
    if waiting is not None:
        gr.Warning(waiting)
        method = "pca"
    paths = _uploads(files)
    with user_errors(f"{kind.upper()} map"):
        description, inputs = _encoder_inputs(kind, encoder_spec, paths, user_texts)
        concept_map = cm.build_map(inputs.at_layer(0), method, layer=0)
        names = ["your inputs" if s == "user" else s for s in inputs.sets]
        fig = concept_map_figure(
            concept_map.points_2d,
            names,
            inputs.sides,
            hover_text=inputs.hover,
            title=f"{inputs.space} · {method.upper()} · colour = theme, marker = modality",
            axis_titles=concept_map.axis_titles,
        )
    status = (
        f"{description} · {inputs.n_points} points ({len(paths)} uploads, "
        f"{sum(1 for s in inputs.sets if s == 'user') - len(paths)} texts of yours)."
    )
    return chart_value(fig), status


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def build_maps_tab() -> None:
    """Build the tab's components and events inside the caller's ``gr.Tab`` context."""
    presets = available_presets()
    names = list(presets)
    initial_name = default_preset_name(names)
    initial = MapsSession()
    notice = ""
    result = None
    if initial_name is not None:
        try:
            result = preset_result(presets[initial_name])
        except ValueError as exc:
            notice = f"⚠ Preset {initial_name}: {exc}"
        show_stored_diagnostics(initial, initial_name, result)
    else:
        notice = f"⚠ No presets found in {presets_dir()}."
    config0 = presets[initial_name].config if initial_name else SweepConfig()
    n_layers0 = _layer_count(result)
    first0 = resolve_layers(config0.layers, n_layers0)[0] if n_layers0 > 0 else 0
    private = dict(api_visibility="private")
    slow = dict(concurrency_id=MODEL_QUEUE, concurrency_limit=1)

    state = gr.State(initial, time_to_live=3 * 3600)
    gr.Markdown(
        "Hidden states of the contrast examples, held-out behaviour prompts, helpfulness questions and your "
        "own inputs, projected to 2-D; steered points (★) move with r_e. Below: the paper's assumption checks "
        "(Wolf et al., appendix A.3) and a layer × coefficient scan to choose where to steer."
    )
    with gr.Row(equal_height=True):
        preset_choice = gr.Dropdown(
            names,
            value=initial_name,
            label="Preset",
            scale=2,
            elem_id="maps-preset",
            info="Model, behaviour, steered layers and r_e grid; stored results for the checks",
        )
        model = gr.Textbox(
            "",
            label="Model (blank = the preset's)",
            placeholder=config0.model,
            scale=2,
            elem_id="maps-model",
            info="Another model: a local folder, .gguf or hub id (its vector is extracted on the fly)",
        )
        steer_layers = gr.Textbox(
            config0.layers,
            label="Steered layers",
            scale=1,
            elem_id="maps-steer-layers",
            info="'start:stop' (stop exclusive) or '3,5,7'",
        )
    if notice:
        gr.Markdown(notice)

    with gr.Accordion("Concept map", open=True, elem_id="maps-concept"):
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                layer = gr.Slider(
                    0,
                    n_layers0 - 1,
                    value=first0,
                    step=1,
                    label="Layer",
                    elem_id="map-layer-slider",
                    info="Hidden states after this decoder layer (release to redraw)",
                )
                method = gr.Radio(
                    PROJECTIONS, value="pca", label="Projection", elem_id="map-projection", info=umap_status()
                )
                steer_sets = gr.CheckboxGroup(STEERABLE_SETS, value=DEFAULT_STEERED, label="Steer these points")
                measure = gr.Checkbox(
                    True,
                    label="Measure steered states past the first steered layer",
                    info="Off: draw the translation x + r_e·v there (a labelled approximation)",
                )
                n_per_set = gr.Slider(4, 64, value=DEFAULT_N_PER_SET, step=4, label="Points per set")
                user_texts = gr.Textbox(
                    "",
                    lines=3,
                    label=f"Your inputs (one per line, ≤ {cm.MAX_USER_TEXTS})",
                    max_length=cm.MAX_USER_TEXTS * (cm.MAX_USER_CHARS + 1),
                    elem_id="map-user-texts",
                )
                draw_btn = gr.Button("Draw the map", variant="primary", elem_id="map-draw")
            with gr.Column(scale=3):
                map_chart = plotly_chart(
                    message_figure("No map yet: press 'Draw the map' (loads the model).", MAP_HEIGHT),
                    label="Concept map",
                    elem_id=CHART_IDS["map"],
                    height=MAP_HEIGHT,
                )
                r_slider = gr.Slider(
                    config0.r_min,
                    config0.r_max,
                    value=config0.r_max,
                    step=1.0,
                    label="r_e (steering coefficient)",
                    elem_id="map-re-slider",
                    interactive=False,
                    info="Moves the steered points between precomputed frames",
                )
                status = gr.Markdown(elem_id="map-status")
        umap_timer = gr.Timer(2.0, active=False)

    with gr.Accordion("Diagnostics: the paper's assumption checks", open=True, elem_id="maps-diagnostics"):
        figs0 = diagnostics_figures(initial)
        diag_notes = gr.Markdown(diagnostics_notes(initial), elem_id="diag-notes")
        with gr.Row():
            final_chart = plotly_chart(
                figs0[0], label="|δr| vs r_e (λ)", elem_id=CHART_IDS["final_shift"], height=FINAL_SHIFT_HEIGHT
            )
            noise_chart = plotly_chart(figs0[1], label="Logit noise vs r_e (λσ)", elem_id=CHART_IDS["noise"])
        with gr.Row():
            hist_chart = plotly_chart(figs0[2], label="Logit-noise distribution", elem_id=CHART_IDS["histogram"])
            sep_chart = plotly_chart(figs0[3], label="Separation vs r_e (Δλ)", elem_id=CHART_IDS["separation"])
        with gr.Row():
            cmp_chart = plotly_chart(figs0[4], label="Estimates vs bound fits", elem_id=CHART_IDS["comparison"])
            cmp_table = gr.Dataframe(
                diagnostics_table(initial),
                label="Estimates vs bound fits",
                interactive=False,
                wrap=True,
                elem_id="diag-table",
            )
        measure_btn = gr.Button("Measure the checks now (loads the model)", size="sm", elem_id="diag-measure")

    with gr.Accordion("Layer scan: where to steer", open=False, elem_id="maps-layer-scan"):
        gr.Markdown(
            "One coarse sweep per window of steered layers (cached). Large models and many windows take "
            "minutes on a CPU: keep the sizes small."
        )
        with gr.Row():
            width = gr.Number(6, label="Window width (layers)", precision=0, minimum=1)
            stride = gr.Number(3, label="Stride", precision=0, minimum=1)
            r_steps = gr.Number(5, label="r_e steps", precision=0, minimum=2, maximum=21)
            n_eval = gr.Number(16, label="Behaviour prompts", precision=0, minimum=1, maximum=200)
            n_questions = gr.Number(5, label="Questions per subject", precision=0, minimum=0, maximum=100)
        scan_btn = gr.Button("Scan layers", elem_id="scan-layers")
        scan_status = gr.Markdown(elem_id="scan-status")
        with gr.Row():
            scan_b = plotly_chart(None, label="B over layer window × r_e", elem_id=CHART_IDS["scan_b"])
            scan_h = plotly_chart(None, label="Helpfulness over layer window × r_e", elem_id=CHART_IDS["scan_h"])

    with gr.Accordion("Encoder space (CLIP images / CLAP audio)", open=False, elem_id="maps-encoder"):
        gr.Markdown(
            "The joint embedding space of a multimodal encoder: the shipped examples by theme, with your "
            "uploads and your inputs above (as texts). Needs encoder weights (set MREPE_CLIP_MODEL / "
            "MREPE_CLAP_MODEL or give a local folder)."
        )
        with gr.Row():
            encoder_kind = gr.Radio(
                [("CLIP (images)", "clip"), ("CLAP (audio)", "clap")], value="clip", label="Encoder"
            )
            encoder_spec = gr.Textbox("", label="Encoder weights (folder or hub id; blank = environment variable)")
        media = gr.File(
            label=f"Your images or audio (≤ {MAX_UPLOADS} files, ≤ {MAX_UPLOAD_BYTES >> 20} MB each)",
            file_count="multiple",
            type="filepath",
        )
        encoder_btn = gr.Button("Map the encoder space", size="sm")
        encoder_status = gr.Markdown()
        encoder_chart = plotly_chart(None, label="Encoder space", elem_id=CHART_IDS["encoder"], height=MAP_HEIGHT)

    diag_outputs = [state, final_chart, noise_chart, hist_chart, sep_chart, cmp_chart, cmp_table, diag_notes]
    preset_choice.change(
        open_preset,
        [preset_choice, state],
        [*diag_outputs, model, steer_layers, layer],
        concurrency_limit=None,
        show_progress="hidden",
        **private,
    )

    draw_btn.click(
        build_map_view,
        [preset_choice, model, steer_layers, n_per_set, user_texts, layer, method, steer_sets, measure, state],
        [state, map_chart, layer, r_slider, status, method, umap_timer],
        api_name="maps_build",
        show_progress="full",
        show_progress_on=[status],
        **slow,
    )
    redraw_inputs = [layer, method, steer_sets, measure, state]
    redraw_outputs = [state, map_chart, r_slider, status, method, umap_timer]
    layer.release(
        redraw_map,
        redraw_inputs,
        redraw_outputs,
        trigger_mode="always_last",
        show_progress="minimal",
        **private,
        **slow,
    )
    for trigger in (method.input, steer_sets.input, measure.input):
        trigger(
            redraw_map,
            redraw_inputs,
            redraw_outputs,
            trigger_mode="always_last",
            show_progress="minimal",
            **private,
            **slow,
        )
    # The slider only re-reads precomputed frames: no queue, no model.
    r_slider.input(
        move_points,
        [r_slider, state],
        [map_chart],
        queue=False,
        trigger_mode="always_last",
        show_progress="hidden",
        **private,
    )
    umap_timer.tick(umap_tick, None, [method, umap_timer], queue=False, show_progress="hidden", **private)

    measure_btn.click(
        measure_diagnostics,
        [preset_choice, model, steer_layers, state],
        diag_outputs,
        show_progress="full",
        show_progress_on=[diag_notes],
        **private,
        **slow,
    )
    scan_btn.click(
        scan_layers_view,
        [preset_choice, model, width, stride, r_steps, n_eval, n_questions],
        [scan_b, scan_h, scan_status],
        api_name="maps_scan_layers",
        show_progress="full",
        show_progress_on=[scan_status],
        **slow,
    )
    encoder_btn.click(
        encoder_map_view,
        [encoder_kind, encoder_spec, media, user_texts, method],
        [encoder_chart, encoder_status],
        show_progress="minimal",
        **private,
        **slow,
    )
