"""Handlers of the maps tab: check the visitor's inputs, call the engine, return component values.

The science lives in ``mrepe_core`` (``map_explorer``, ``live_checks``, ``layer_scan``); these
functions only validate (``maps_inputs``), run it with a cancel switch (``maps_jobs``) and draw
(``maps_views``). Long jobs are generators: they stream their progress, stop within one batch of a
Cancel (or of the visitor leaving) and never hold the model between batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import gradio as gr
import numpy as np

from mrepe_core import projection
from mrepe_core.concept_map_inputs import SETS, clean_user_texts
from mrepe_core.concept_maps import (
    layer_span,
    vector_for_model,
)
from mrepe_core.config import SweepConfig
from mrepe_core.diagnostics import compare_with_fits
from mrepe_core.limits import Cancelled, InputError, public_deployment
from mrepe_core.live_checks import MEASURE_NOW_ITEMS, measure_checks
from mrepe_core.map_explorer import EXTRACT_PAIRS, MAP_METHODS, initial_r_e
from mrepe_core.models import LoadedModel, load_model, resolve_layers
from mrepe_core.presets import Preset
from mrepe_core.result import SweepResult
from mrepe_core.sweep import diagnostic_grid, prepare

from .common import chart_value, gpu
from .maps_inputs import (
    PUBLIC_MODEL_HINT,
    choice,
    choices,
    finite_number,
    flag,
    log,
    maps_errors,
    model_spec,
    shown,
    spec_text,
    whole_number,
)
from .maps_jobs import CHECKS, JOBS, MAP, CancelSwitch, session_key
from .maps_views import (
    MAP_HEIGHT,
    MapsSession,
    as_session,
    diagnostics_outputs,
    map_figure,
    map_status,
    r_slider_update,
    show_stored_diagnostics,
    umap_status,
    umap_timer,
)
from .presets import available_presets, get_preset, preset_layer_count, preset_result

MAX_LAYERS = 1024  # a layer number beyond any model's depth is refused before anything loads
N_PER_SET = (1, 64)


# ---------------------------------------------------------------------------------------------
# Presets, models, jobs
# ---------------------------------------------------------------------------------------------


def config_for(preset_name, model_text) -> tuple[Preset, SweepConfig, SweepResult | None, str]:
    """The preset, its config for the chosen model (blank = the preset's), its stored results, the model spec."""
    preset = get_preset(preset_name)
    result = preset_result(preset)
    allowed = [p.config.model for p in available_presets().values()]
    spec = model_spec(model_text, preset.config.model, allowed)
    config = preset.config
    if spec != config.model:
        config = dataclasses.replace(config, model=spec, dtype="auto")
    return preset, config, result, spec


def same_model(preset: Preset, spec: str) -> bool:
    return spec == preset.config.model


def steer_layers_for(text: str, config: SweepConfig, n_layers: int) -> list[int]:
    spec = text or config.layers
    try:
        return resolve_layers(spec, n_layers)
    except ValueError as exc:
        raise InputError(
            f"Steered layers {shown(spec)}: {exc} Use 'start:stop' (stop exclusive) or a comma list; "
            f"the model has {n_layers} layers (0–{n_layers - 1})."
        ) from None


@gpu
def _load(config: SweepConfig) -> LoadedModel:
    return load_model(config.model, device=config.device, dtype=config.dtype)


def load_model_for(config: SweepConfig) -> LoadedModel:
    """The model, with a load failure's details kept in the log on a public deployment."""
    try:
        return _load(config)
    except (ValueError, OSError) as exc:
        if not public_deployment():
            raise
        log.info("maps: model %s did not load: %s", shown(config.model), str(exc)[:300])
        raise InputError(f"Model {shown(config.model)} could not be loaded. {PUBLIC_MODEL_HINT}") from None


def _report(progress):
    def report(fraction: float, message: str) -> None:
        progress(fraction, desc=message)

    return report


def cancelled_note(switch: CancelSwitch, what: str) -> str:
    took = switch.seconds_since_request()
    after = f" {took:.1f} s after Cancel" if took is not None else ""
    log.info("maps: %s cancelled, stopped%s", what, after)
    return f"✗ {what} cancelled: stopped{after}."


def cancel_job(kind: str):
    """A Cancel button's handler for jobs of ``kind`` (queue-free: it runs while the job runs). It
    only sets the switch and has no output: the job itself says when it stopped (two writers of one
    status line would race)."""

    def cancel(session, request: gr.Request | None = None) -> None:
        n = JOBS.cancel(session_key(request, session), kind)
        log.info("maps: cancel %s requested (%d running)", kind, n)

    return cancel


def check_projection(method: str) -> str | None:
    """None when ``method`` can run now; else why not (UMAP still warming up: started here)."""
    if method == "umap" and projection.umap_state() != projection.READY:
        projection.warm_umap_in_background()
        return umap_status()
    return None


# ---------------------------------------------------------------------------------------------
# Concept map
# ---------------------------------------------------------------------------------------------


def _map_request(preset_name, model_text, steer_layers_text, n_per_set, user_texts, layer, method, steer_sets, measure):
    """Every input of 'Draw the map', checked (the texts' tokens once the model's tokenizer is known)."""
    preset, config, result, spec = config_for(preset_name, model_text)
    checked = dict(
        n=whole_number(n_per_set, "Points per set", *N_PER_SET),
        layer=None if layer is None else whole_number(layer, "Layer", -MAX_LAYERS, MAX_LAYERS),
        method=choice(method, "Projection", MAP_METHODS),
        sets=choices(steer_sets, "Steer these points", SETS),
        measure=flag(measure, "Measure steered states"),
        layers_text=spec_text(steer_layers_text, "Steered layers"),
        users=clean_user_texts(user_texts),
    )
    return preset, config, result, spec, checked


def build_map_view(
    preset_name,
    model_text,
    steer_layers_text,
    n_per_set,
    user_texts,
    layer,
    method,
    steer_sets,
    measure,
    session,
    progress=gr.Progress(),
    request: gr.Request | None = None,
) -> Iterator[tuple]:
    """API ``/maps_build``: (session, map chart, layer slider, r_e slider, status, projection, timer),
    streamed. Loads the model, collects the states of every set once (reused for other layers and
    projections), fits the map at ``layer`` and precomputes the frames for the r_e slider."""
    session = as_session(session)
    with maps_errors("Concept map"):
        preset, config, result, spec, req = _map_request(
            preset_name, model_text, steer_layers_text, n_per_set, user_texts, layer, method, steer_sets, measure
        )
    waiting = check_projection(req["method"])
    if waiting is not None:
        gr.Warning(waiting)
        req["method"] = "pca"
    key = session_key(request, session)
    switch = JOBS.start(key, MAP)
    skip = gr.skip()
    try:
        yield (session, skip, skip, skip, f"Running: loading `{spec}` and reading its hidden states…", skip, skip)
        with maps_errors("Concept map"):
            loaded = load_model_for(config)
            chosen = steer_layers_for(req["layers_text"], config, loaded.n_layers)
            stored = result.vector if result is not None else None
            report = _report(progress)
            session.explorer.prepare(loaded, config, chosen, req["n"], req["users"], stored, switch, report)
            target = req["layer"]
            if target is None or not -loaded.n_layers <= target < loaded.n_layers:
                target = min(chosen)
            summary = result.summary if result is not None and same_model(preset, spec) else None
            session.r_e = initial_r_e(session.explorer.sweep_grid, summary)
            view = session.explorer.draw(target, req["method"], req["sets"], req["measure"], switch, report)
        session.model_spec, session.preset = spec, preset.name
        layer_update = gr.update(maximum=loaded.n_layers - 1, value=view.concept_map.layer)
        yield (
            session,
            chart_value(map_figure(session)),
            layer_update,
            r_slider_update(session),
            map_status(session),
            gr.update(value=req["method"]),
            umap_timer(),
        )
    except Cancelled:
        yield (session, skip, skip, skip, cancelled_note(switch, "Drawing the map"), skip, skip)
    finally:
        JOBS.finish(key, MAP, switch)


def redraw_map(layer, method, steer_sets, measure, session, progress=gr.Progress(), request: gr.Request | None = None):
    """Another layer, projection or steered set: refit from the collected states (the model only
    runs when steered states must be measured). Streams (session, chart, r_e slider, status,
    projection, timer)."""
    session = as_session(session)
    skip = gr.skip()
    with maps_errors("Concept map"):
        layer = whole_number(layer, "Layer", -MAX_LAYERS, MAX_LAYERS)
        method = choice(method, "Projection", MAP_METHODS)
        sets = choices(steer_sets, "Steer these points", SETS)
        measure = flag(measure, "Measure steered states")
        if session.explorer.inputs is None:
            raise InputError("Draw the map first (press 'Draw the map').")
    waiting = check_projection(method)
    if waiting is not None:
        gr.Warning(waiting)
        shown_method = session.explorer.view.concept_map.method if session.explorer.view else "pca"
        yield (session, skip, skip, skip, gr.update(value=shown_method), umap_timer())
        return
    key = session_key(request, session)
    switch = JOBS.start(key, MAP)
    try:
        with maps_errors("Concept map"):
            session.explorer.draw(layer, method, sets, measure, switch, _report(progress))
        yield (
            session,
            chart_value(map_figure(session)),
            r_slider_update(session),
            map_status(session),
            gr.update(value=method),
            umap_timer(),
        )
    except Cancelled:
        yield (session, skip, skip, cancelled_note(switch, "Drawing the map"), skip, skip)
    finally:
        JOBS.finish(key, MAP, switch)


def move_points(r_e, session):
    """The r_e slider: the steered points at the nearest precomputed coefficient (no model)."""
    session = as_session(session)
    with maps_errors("r_e slider"):
        r = finite_number(r_e, "r_e", -1e4, 1e4)
    if session.explorer.view is None:
        return gr.skip()
    session.r_e = r
    return chart_value(map_figure(session))


def umap_tick():
    """The UMAP hint: its current state, and whether to keep checking (until ready or failed)."""
    return gr.update(info=umap_status()), umap_timer()


def umap_hint_on_load():
    """Page load: the hint as it is now, and the timer running while UMAP warms up."""
    return gr.update(info=umap_status()), umap_timer()


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


def open_preset(preset_name, session):
    """Stored assumption checks of a preset (no model) and its steering layers for the map form."""
    session = as_session(session)
    with maps_errors("Preset"):
        preset = get_preset(preset_name)
        result = preset_result(preset)
    session = show_stored_diagnostics(session, preset.name, result)
    return (
        *diagnostics_outputs(session),
        gr.update(placeholder=preset.config.model),
        gr.update(value=preset.config.layers),
        gr.update(maximum=preset_layer_count(result) - 1),
    )


def _checks_label(spec, note, chosen, same: bool) -> str:
    return f"Measured now on `{spec}` ({note}, layers {layer_span(chosen)})" + (
        "" if same else "; no bound fits for this model/layers, so nothing to compare"
    )


@gpu(duration=300)
def measure_diagnostics(
    preset_name, model_text, steer_layers_text, session, progress=gr.Progress(), request: gr.Request | None = None
):
    """Run the assumption checks now on the model (gives the noise histogram the stored results
    lack); streams the diagnostics outputs, cancellable."""
    session = as_session(session)
    with maps_errors("Assumption checks"):
        preset, config, result, spec = config_for(preset_name, model_text)
        layers_text = spec_text(steer_layers_text, "Steered layers")
    key = session_key(request, session)
    switch = JOBS.start(key, CHECKS)
    note_only = (gr.skip(),) * 7
    try:
        yield (session, *note_only[:6], f"Running: loading `{spec}`…")
        with maps_errors("Assumption checks"):
            loaded = load_model_for(config)
            chosen = steer_layers_for(layers_text, config, loaded.n_layers)
            _, behavior, questions = prepare(config, loaded)
            stored = result.vector if result else None
            vector, note = vector_for_model(
                loaded, behavior, chosen, stored, config.method, EXTRACT_PAIRS, cancel=switch
            )
            # Here the checks run their own forward passes (the stored sweep kept its states), so few items.
            n = min(config.n_diagnostics or MEASURE_NOW_ITEMS, MEASURE_NOW_ITEMS)
            subset = dataclasses.replace(behavior, eval_prompts=list(behavior.eval_prompts)[:n])
            qs = list(questions)[:n]
            progress(0.3, desc=f"Measuring the checks on {len(qs)} questions and {len(subset.eval_prompts)} prompts")
            res = measure_checks(
                loaded,
                vector,
                chosen,
                qs,
                subset,
                diagnostic_grid(config.r_grid()),
                config.helpfulness_format,
                cancel=switch,
                progress=lambda d, t: progress((d, t), desc="Assumption checks", unit="passes"),
            )
        same = result is not None and same_model(preset, spec)
        same = same and chosen == list((result.summary or {}).get("layers") or [])  # type: ignore[union-attr]
        summary = (result.summary or {}) if same and result is not None else {}
        estimates = dict(res.estimates)
        estimates["comparison_with_fits"] = compare_with_fits(
            estimates, summary.get("alignment_fit"), summary.get("helpfulness_fit")
        )
        session.diag_rows, session.diag_estimates = res.rows, estimates
        session.noise_samples = {float(r): np.asarray(v) for r, v in res.noise_samples.items()}
        session.diag_label = _checks_label(spec, note, chosen, same)
        yield diagnostics_outputs(session)
    except Cancelled:
        yield (session, *note_only[:6], cancelled_note(switch, "Measuring the checks"))
    finally:
        JOBS.finish(key, CHECKS, switch)


__all__ = [
    "MAP_HEIGHT",
    "MapsSession",
    "build_map_view",
    "cancel_job",
    "measure_diagnostics",
    "move_points",
    "open_preset",
    "redraw_map",
    "umap_hint_on_load",
    "umap_tick",
]
