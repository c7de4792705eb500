"""The "Concept maps & diagnostics" tab: hidden states on a 2-D map with steered points travelling
along the r_e slider, the paper's assumption checks (appendix A.3), and the layer x coefficient scan.

Thin by design, in four modules:

* ``maps_tab`` (this one): components and events;
* ``maps_handlers`` / ``maps_scan``: event handlers (checked inputs, engine calls, cancel switches);
* ``maps_views``: the session state and what it shows;
* ``maps_inputs`` / ``maps_jobs``: input checks for public endpoints, cancel switches per session.

The pipeline itself is ``mrepe_core.map_explorer`` (map), ``mrepe_core.live_checks`` (checks now)
and ``mrepe_core.layer_scan`` (scan). Diagnostics open instantly from a preset's stored results (no
model). Long jobs (drawing the map, measuring the checks, the scan) stream their progress, have a
Cancel button, stop when the visitor leaves, and run outside the model queue: the engine holds the
model one batch at a time, so other visitors' generations run in between.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.context import Context

from mrepe_core import projection
from mrepe_core.concept_map_inputs import max_user_texts
from mrepe_core.config import SweepConfig
from mrepe_core.models import resolve_layers
from mrepe_core.plots.diagnostics import FINAL_SHIFT_HEIGHT

from .common import MODEL_QUEUE, message_figure, plotly_chart
from .maps_encoder import MAX_UPLOAD_BYTES, MAX_UPLOADS, encoder_map_view
from .maps_handlers import (
    build_map_view,
    cancel_job,
    measure_diagnostics,
    move_points,
    open_preset,
    redraw_map,
    umap_hint_on_load,
    umap_tick,
)
from .maps_inputs import log
from .maps_jobs import CHECKS, MAP, SCAN, end_session
from .maps_scan import DEFAULTS, scan_layers_view, scan_plan_view
from .maps_views import (
    MAP_HEIGHT,
    NO_MAP,
    MapsSession,
    diagnostics_figures,
    diagnostics_notes,
    diagnostics_table,
    show_stored_diagnostics,
    umap_status,
)
from .presets import available_presets, default_preset_name, preset_layer_count, preset_result

PROJECTIONS = [("PCA (exact, instant)", "pca"), ("UMAP (umap-learn)", "umap")]
STEERABLE_SETS = [
    ("held-out behaviour prompts", "eval"),
    ("helpfulness questions", "helpfulness"),
    ("contrast examples", "contrast"),
    ("your inputs", "user"),
]
DEFAULT_STEERED = ["eval", "user"]
DEFAULT_N_PER_SET = 12
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
# Long jobs of this tab run here, not in the model queue: the engine holds the model per batch, so
# a visitor's scan never makes another visitor's generation wait for more than one batch.
LONG_QUEUE = "maps-long"
SCAN_QUEUE = "maps-scan"

__all__ = [
    "CHART_IDS",
    "MapsSession",
    "build_map_view",
    "build_maps_tab",
    "encoder_map_view",
    "measure_diagnostics",
    "move_points",
    "open_preset",
    "redraw_map",
    "scan_layers_view",
    "scan_plan_view",
    "umap_tick",
]


def _initial_state():
    """The session state the page opens with (the default preset's stored checks) and its form values."""
    presets = available_presets()
    names = list(presets)
    name = default_preset_name(names)
    initial = MapsSession()
    notice, result = "", None
    if name is not None:
        try:
            result = preset_result(presets[name])
        except (ValueError, OSError) as exc:
            log.warning("maps: preset %s: stored results unreadable: %s", name, str(exc)[:300])
            notice = f"⚠ Preset {name}: its stored results could not be read (the server log says why)."
        show_stored_diagnostics(initial, name, result)
    else:
        notice = "⚠ No presets found: the presets folder is empty."
    config = presets[name].config if name else SweepConfig()
    n_layers = preset_layer_count(result)
    return names, name, initial, notice, config, n_layers


def _preset_row(names, name, config):
    with gr.Row(equal_height=True):
        preset_choice = gr.Dropdown(
            names,
            value=name,
            label="Preset",
            scale=2,
            elem_id="maps-preset",
            info="Model, behaviour, steered layers and r_e grid; stored results for the checks",
        )
        model = gr.Textbox(
            "",
            label="Model (blank = the preset's)",
            placeholder=config.model,
            scale=2,
            max_length=256,
            elem_id="maps-model",
            info="Another model: a hub id (a local folder or .gguf on your own machine); its vector is extracted",
        )
        steer_layers = gr.Textbox(
            config.layers,
            label="Steered layers",
            scale=1,
            max_length=256,
            elem_id="maps-steer-layers",
            info="'start:stop' (stop exclusive) or '3,5,7'",
        )
    return preset_choice, model, steer_layers


def _map_section(config, n_layers):
    first = resolve_layers(config.layers, n_layers)[0] if n_layers > 0 else 0
    c: dict = {}
    with gr.Accordion("Concept map", open=True, elem_id="maps-concept"):
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                c["layer"] = gr.Slider(
                    0,
                    n_layers - 1,
                    value=first,
                    step=1,
                    label="Layer",
                    elem_id="map-layer-slider",
                    info="Hidden states after this decoder layer (release to redraw)",
                )
                c["method"] = gr.Radio(
                    PROJECTIONS, value="pca", label="Projection", elem_id="map-projection", info=umap_status()
                )
                c["steer_sets"] = gr.CheckboxGroup(STEERABLE_SETS, value=DEFAULT_STEERED, label="Steer these points")
                c["measure"] = gr.Checkbox(
                    True,
                    label="Measure steered states past the first steered layer",
                    info="Off: draw the translation x + r_e·v there (a labelled approximation)",
                )
                c["n_per_set"] = gr.Slider(4, 64, value=DEFAULT_N_PER_SET, step=4, label="Points per set")
                c["user_texts"] = gr.Textbox(
                    "",
                    lines=3,
                    label=f"Your inputs (one per line, ≤ {max_user_texts()})",
                    elem_id="map-user-texts",
                )
                with gr.Row():
                    c["draw"] = gr.Button("Draw the map", variant="primary", elem_id="map-draw", scale=3)
                    c["cancel"] = gr.Button("Cancel", size="sm", elem_id="map-cancel", scale=1)
            with gr.Column(scale=3):
                c["chart"] = plotly_chart(
                    message_figure(NO_MAP, MAP_HEIGHT), label="Concept map", elem_id=CHART_IDS["map"], height=MAP_HEIGHT
                )
                c["r_slider"] = gr.Slider(
                    config.r_min,
                    config.r_max,
                    value=config.r_max,
                    step=1.0,
                    label="r_e (steering coefficient)",
                    elem_id="map-re-slider",
                    interactive=False,
                    info="Moves the steered points between precomputed frames",
                )
                c["status"] = gr.Markdown(elem_id="map-status")
        c["timer"] = gr.Timer(2.0, active=projection.umap_state() == projection.WARMING)
    return c


def _diagnostics_section(initial):
    figs = diagnostics_figures(initial)
    c: dict = {}
    with gr.Accordion("Diagnostics: the paper's assumption checks", open=True, elem_id="maps-diagnostics"):
        c["notes"] = gr.Markdown(diagnostics_notes(initial), elem_id="diag-notes")
        with gr.Row():
            c["final"] = plotly_chart(
                figs[0], label="|δr| vs r_e (λ)", elem_id=CHART_IDS["final_shift"], height=FINAL_SHIFT_HEIGHT
            )
            c["noise"] = plotly_chart(figs[1], label="Logit noise vs r_e (λσ)", elem_id=CHART_IDS["noise"])
        with gr.Row():
            c["hist"] = plotly_chart(figs[2], label="Logit-noise distribution", elem_id=CHART_IDS["histogram"])
            c["sep"] = plotly_chart(figs[3], label="Separation vs r_e (Δλ)", elem_id=CHART_IDS["separation"])
        with gr.Row():
            c["cmp"] = plotly_chart(figs[4], label="Estimates vs bound fits", elem_id=CHART_IDS["comparison"])
            c["table"] = gr.Dataframe(
                diagnostics_table(initial),
                label="Estimates vs bound fits",
                interactive=False,
                wrap=True,
                column_widths=["20%", "13%", "11%", "11%", "45%"],
                elem_id="diag-table",
            )
        with gr.Row():
            c["measure"] = gr.Button("Measure the checks now (loads the model)", size="sm", elem_id="diag-measure")
            c["cancel"] = gr.Button("Cancel", size="sm", elem_id="diag-cancel")
    return c


def _scan_section():
    c: dict = {}
    with gr.Accordion("Layer scan: where to steer", open=False, elem_id="maps-layer-scan"):
        gr.Markdown(
            "One coarse sweep per window of steered layers (cached). The plan below counts its rows and says "
            "how long it will take here before you start; Cancel stops it within one batch."
        )
        with gr.Row():
            c["width"] = gr.Number(DEFAULTS["width"], label="Window width (layers)", precision=0, minimum=1)
            c["stride"] = gr.Number(DEFAULTS["stride"], label="Stride", precision=0, minimum=1)
            c["r_steps"] = gr.Number(DEFAULTS["r_steps"], label="r_e steps", precision=0, minimum=2, maximum=21)
            c["n_eval"] = gr.Number(DEFAULTS["n_eval"], label="Behaviour prompts", precision=0, minimum=1, maximum=200)
            c["n_questions"] = gr.Number(
                DEFAULTS["n_questions"], label="Questions per subject", precision=0, minimum=0, maximum=100
            )
        c["plan"] = gr.Markdown(elem_id="scan-plan")
        with gr.Row():
            c["run"] = gr.Button("Scan layers", elem_id="scan-layers", variant="primary", scale=3)
            c["cancel"] = gr.Button("Cancel", elem_id="scan-cancel", scale=1)
        c["status"] = gr.Markdown(elem_id="scan-status")
        with gr.Row():
            empty = message_figure("No scan yet: press 'Scan layers'.")
            c["b"] = plotly_chart(empty, label="B over layer window × r_e", elem_id=CHART_IDS["scan_b"])
            c["h"] = plotly_chart(empty, label="Helpfulness over layer window × r_e", elem_id=CHART_IDS["scan_h"])
    return c


def _encoder_section():
    c: dict = {}
    with gr.Accordion("Encoder space (CLIP images / CLAP audio)", open=False, elem_id="maps-encoder"):
        gr.Markdown(
            "The joint embedding space of a multimodal encoder: the shipped examples by theme, with your "
            "uploads and your inputs above (as texts). Needs encoder weights (set MREPE_CLIP_MODEL / "
            "MREPE_CLAP_MODEL, or give a hub id; a local folder on your own machine)."
        )
        with gr.Row():
            c["kind"] = gr.Radio([("CLIP (images)", "clip"), ("CLAP (audio)", "clap")], value="clip", label="Encoder")
            c["spec"] = gr.Textbox(
                "", label="Encoder weights (hub id or folder; blank = environment variable)", max_length=256
            )
        c["media"] = gr.File(
            label=f"Your images or audio (≤ {MAX_UPLOADS} files, ≤ {MAX_UPLOAD_BYTES >> 20} MB each)",
            file_count="multiple",
            type="filepath",
        )
        c["run"] = gr.Button("Map the encoder space", size="sm")
        c["status"] = gr.Markdown()
        c["chart"] = plotly_chart(None, label="Encoder space", elem_id=CHART_IDS["encoder"], height=MAP_HEIGHT)
    return c


def build_maps_tab() -> None:
    """Build the tab's components and events inside the caller's ``gr.Tab`` context."""
    names, name, initial, notice, config, n_layers = _initial_state()
    state = gr.State(initial, time_to_live=3 * 3600)
    gr.Markdown(
        "Hidden states of the contrast examples, held-out behaviour prompts, helpfulness questions and your "
        "own inputs, projected to 2-D; steered points (★) move with r_e. Below: the paper's assumption checks "
        "(Wolf et al., appendix A.3) and a layer × coefficient scan to choose where to steer."
    )
    preset_choice, model, steer_layers = _preset_row(names, name, config)
    if notice:
        gr.Markdown(notice)
    m = _map_section(config, n_layers)
    d = _diagnostics_section(initial)
    s = _scan_section()
    e = _encoder_section()
    _wire(state, preset_choice, model, steer_layers, m, d, s, e)


def _wire(state, preset_choice, model, steer_layers, m, d, s, e) -> None:
    # Inputs reach the handlers unprocessed: they check every value themselves (maps_inputs), and
    # Gradio's own checks of a dropdown or radio would repeat a long invalid value back in full.
    raw: dict[str, Any] = dict(preprocess=False)
    private: dict[str, Any] = dict(api_visibility="private", **raw)
    model_slot: dict[str, Any] = dict(concurrency_id=MODEL_QUEUE, concurrency_limit=1)
    long_job: dict[str, Any] = dict(concurrency_id=LONG_QUEUE, concurrency_limit=2)
    scan_job: dict[str, Any] = dict(concurrency_id=SCAN_QUEUE, concurrency_limit=1)
    instant: dict[str, Any] = dict(queue=False, show_progress="hidden", **private)

    diag_outputs = [state, d["final"], d["noise"], d["hist"], d["sep"], d["cmp"], d["table"], d["notes"]]
    preset_choice.change(
        open_preset,
        [preset_choice, state],
        [*diag_outputs, model, steer_layers, m["layer"]],
        concurrency_limit=None,
        show_progress="hidden",
        **private,
    )

    drawn = m["draw"].click(
        build_map_view,
        [preset_choice, model, steer_layers, m["n_per_set"], m["user_texts"], m["layer"], m["method"]]
        + [m["steer_sets"], m["measure"], state],
        [state, m["chart"], m["layer"], m["r_slider"], m["status"], m["method"], m["timer"]],
        api_name="maps_build",
        show_progress="full",
        show_progress_on=[m["status"]],
        **raw,
        **long_job,
    )
    redraw_inputs = [m["layer"], m["method"], m["steer_sets"], m["measure"], state]
    redraw_outputs = [state, m["chart"], m["r_slider"], m["status"], m["method"], m["timer"]]
    for trigger in (m["layer"].release, m["method"].input, m["steer_sets"].input, m["measure"].input):
        trigger(
            redraw_map,
            redraw_inputs,
            redraw_outputs,
            trigger_mode="always_last",
            show_progress="minimal",
            **private,
            **long_job,
        )
    m["cancel"].click(cancel_job(MAP), [state], None, **instant)
    # The slider only re-reads precomputed frames: no queue, no model.
    m["r_slider"].input(move_points, [m["r_slider"], state], [m["chart"]], trigger_mode="always_last", **instant)
    m["timer"].tick(umap_tick, None, [m["method"], m["timer"]], **instant)

    d["measure"].click(
        measure_diagnostics,
        [preset_choice, model, steer_layers, state],
        diag_outputs,
        show_progress="full",
        show_progress_on=[d["notes"]],
        **private,
        **long_job,
    )
    d["cancel"].click(cancel_job(CHECKS), [state], None, **instant)

    plan_inputs = [preset_choice, model, s["width"], s["stride"], s["r_steps"], s["n_eval"], s["n_questions"]]
    for component in plan_inputs:
        component.change(scan_plan_view, [*plan_inputs, state], [s["plan"]], **instant)
    scanned = s["run"].click(
        scan_layers_view,
        [*plan_inputs, state],
        [s["b"], s["h"], s["status"]],
        api_name="maps_scan_layers",
        show_progress="minimal",
        show_progress_on=[s["status"]],
        **raw,
        **scan_job,
    )
    s["cancel"].click(cancel_job(SCAN), [state], None, **instant)
    # After a map (the model's depth is known now) or a scan (its rows were timed) the plan says so.
    for done in (drawn, scanned):
        done.then(scan_plan_view, [*plan_inputs, state], [s["plan"]], **instant)

    e["run"].click(
        encoder_map_view,
        [e["kind"], e["spec"], e["media"], m["user_texts"], m["method"]],
        [e["chart"], e["status"]],
        show_progress="minimal",
        **private,
        **model_slot,
    )
    root = Context.root_block
    if isinstance(root, gr.Blocks):
        # Page load: the scan plan and the UMAP hint as they are now; leaving: stop this visitor's jobs.
        root.load(scan_plan_view, [*plan_inputs, state], [s["plan"]], **instant)
        root.load(umap_hint_on_load, None, [m["method"], m["timer"]], **instant)
        root.unload(end_session)
