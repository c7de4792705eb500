"""The Multimodal tab: the language-model panels (attention intervention eq. 7, activation patching
eq. 2, safety compliance eq. 10) first, since they run on the embedded default model; then concepts
in CLIP / CLAP joint spaces (eqs. 1, 5-7), the alpha trade-off, cross-modal alignment (eqs. 3-4, 8)
and robustness (eq. 11), which need encoder weights.

Thin by design: every number comes from ``mrepe_core.multimodal``; handlers are module-level
functions (in ``multimodal_lm`` and ``multimodal_encoders``, re-exported here) so tests can call
them without a browser. Without encoder weights the encoder section is one compact card and its
buttons are off.
"""

from __future__ import annotations

import gradio as gr

from mrepe_core.multimodal import concepts as mm_concepts
from mrepe_core.multimodal.encoders import EXAMPLE_IDS
from mrepe_core.multimodal.interventions import MODES

from .multimodal_encoders import (  # noqa: F401  (re-exported: the tab's handlers)
    ALIGNMENT_PAIRS,
    ALPHA_RANGE,
    AR_EPS,
    ATTENTION_RANGE,
    CONCEPT_SOURCES,
    ENCODER_QUEUE,
    EPOCH_RANGE,
    MultimodalSession,
    build_concept,
    card_text,
    decode_input,
    encoders_configured,
    load_encoders,
    modality_changed,
    redraw,
    run_alignment,
    run_analysis,
    run_robustness,
    source_changed,
)
from .multimodal_jobs import JOBS, cancel_handler, end_session, register_unload  # noqa: F401
from .multimodal_lm import (  # noqa: F401
    ATTENTION_EXAMPLE,
    PATCHING_PRESETS,
    build_lm_panels,
    patching_preset,
    run_lm_attention,
    run_patching,
    run_scr,
    use_layers,
)

PRIVATE = dict(api_visibility="private")


def build_multimodal_tab(state: dict | None = None) -> None:
    """Create the tab's components and events inside the caller's ``gr.Tab`` context.

    ``state`` may hold ``"model_spec"``: a component with the language-model spec shared with other
    tabs; otherwise the tab has its own model field.
    """
    state = state or {}
    register_unload()
    build_lm_panels(state.get("model_spec"))
    _encoder_section()


def _cancel_button(name: str) -> gr.Button:
    return gr.Button("Cancel", variant="stop", scale=1, min_width=100, elem_id=f"mm-{name}-cancel")


def _status_line(cancel: gr.Button, name: str) -> None:
    """The panel's status line (below its button row), where Cancel says what it did."""
    status = gr.Markdown(elem_id=f"mm-{name}-status")
    cancel.click(cancel_handler(name), None, [status], queue=False, **PRIVATE)


def _card():
    configured = encoders_configured()
    gr.Markdown(
        "### Concepts in CLIP / CLAP spaces\nPrototypes and membership (eq. 1), concept direction (eq. 6), "
        "direct (eq. 5) and attention (eq. 7) interventions, with the alpha trade-off measured like the "
        "text engine's sweep.",
        elem_id="mm-encoder-intro",
    )
    with gr.Group(elem_id="mm-encoder-card"):
        status = gr.Markdown(card_text(), padding=True, elem_id="mm-encoder-status")
        with gr.Row(equal_height=True):
            clip_spec = gr.Textbox(
                label="CLIP weights (hub id or folder)",
                value=configured["clip"],
                placeholder=f"e.g. {EXAMPLE_IDS['clip']}",
                max_lines=1,
                scale=3,
                elem_id="mm-clip-path",
            )
            clap_spec = gr.Textbox(
                label="CLAP weights (hub id or folder)",
                value=configured["clap"],
                placeholder=f"e.g. {EXAMPLE_IDS['clap']}",
                max_lines=1,
                scale=3,
                elem_id="mm-clap-path",
            )
            load_btn = gr.Button("Load", scale=1, elem_id="mm-load-encoders")
    return status, clip_spec, clap_spec, load_btn, any(configured.values())


def _encoder_section() -> None:
    status, clip_spec, clap_spec, load_btn, ready = _card()
    session = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            modality = gr.Radio(["image", "audio", "text"], value="image", label="Modality")
            media_file = gr.File(
                label="Image or audio file", file_count="single", type="filepath", elem_id="mm-media-file"
            )
            text_in = gr.Textbox(label="Text", lines=2, visible=False)
            source = gr.Radio(list(CONCEPT_SOURCES), value="built-in", label="Concept")
            builtin = gr.Dropdown(
                mm_concepts.builtin_concept_names("image"), value="animals vs vehicles", label="Built-in concept"
            )
            with gr.Group(visible=False) as upload_group:
                with gr.Row():
                    pos_label = gr.Textbox(label="c+ label", placeholder="e.g. a dog")
                    neg_label = gr.Textbox(label="c- label", placeholder="e.g. a cat")
                with gr.Row():
                    pos_files = gr.File(label="c+ examples", file_count="multiple", type="filepath")
                    neg_files = gr.File(label="c- examples", file_count="multiple", type="filepath")
                pos_texts = gr.Textbox(label="c+ texts (one per line)", lines=3, visible=False)
                neg_texts = gr.Textbox(label="c- texts (one per line)", lines=3, visible=False)
            mode = gr.Radio(list(MODES), value="direct", label="Intervention")
            attention_strength = gr.Slider(
                *ATTENTION_RANGE, value=2.0, step=0.25, label="Attention strength (eq. 7, CLIP only)"
            )
            with gr.Row(equal_height=True):
                analyse_btn = gr.Button("Analyse", variant="primary", scale=3, interactive=ready, elem_id="mm-analyse")
                cancel = _cancel_button("analysis")
            _status_line(cancel, "analysis")
            alpha = gr.Slider(*ALPHA_RANGE, value=0.0, step=0.1, label="alpha (eq. 5)", elem_id="mm-alpha-slider")
        with gr.Column(scale=2):
            summary = gr.Markdown("*Analyse a concept to see its direction, membership and label probabilities.*")
            with gr.Column(visible=False, elem_id="mm-results") as results:
                bars = gr.Plot(label="Zero-shot labels")
                readout = gr.JSON(label="Readout")
                membership = gr.Plot(label="Membership (eq. 1)")
    with gr.Row(visible=False, elem_id="mm-tradeoff-row") as trade_row:
        plots = []
        for caption in (
            "Concept score vs alpha (alpha plotted as r_e)",
            "Off-target P(correct) vs alpha",
            "Trade-off: off-target P(correct) vs concept score",
        ):
            with gr.Column(min_width=300):
                gr.Markdown(f"**{caption}**")  # above the chart: Gradio's label badge would cover its legend
                plots.append(gr.Plot(label=caption, show_label=False))
        beh_plot, help_plot, trade_plot = plots
    align_btn = _alignment_panel(clip_spec, clap_spec, ready)
    ar_btn = _robustness_panel(session, clip_spec, ready)

    load_btn.click(
        load_encoders, [clip_spec, clap_spec], [status, analyse_btn, align_btn, ar_btn], **PRIVATE, **ENCODER_QUEUE
    )
    modality.change(
        modality_changed, [modality], [builtin, media_file, text_in, pos_texts, neg_texts, mode], queue=False, **PRIVATE
    )
    source.change(source_changed, [source], [builtin, upload_group], queue=False, **PRIVATE)
    analysis_inputs = [modality, media_file, text_in, source, builtin, pos_files, neg_files, pos_texts, neg_texts]
    analysis_inputs += [pos_label, neg_label, mode, attention_strength, alpha, clip_spec, clap_spec]
    analysis_outputs = [session, summary, bars, membership, beh_plot, help_plot, trade_plot, readout]
    analyse_btn.click(run_analysis, analysis_inputs, analysis_outputs, api_name="mm_analyse", **ENCODER_QUEUE).success(
        lambda: (gr.update(visible=True), gr.update(visible=True)), None, [results, trade_row], **PRIVATE
    )
    alpha.change(
        redraw,
        [session, alpha],
        [bars, beh_plot, help_plot, trade_plot, readout],
        queue=False,
        show_progress="hidden",
        trigger_mode="always_last",
        **PRIVATE,
    )


def _alignment_panel(clip_spec, clap_spec, ready: bool):
    with gr.Accordion("Cross-modal alignment (eqs. 3, 4, 8)", open=False, elem_id="mm-alignment-panel"):
        with gr.Row():
            pair = gr.Dropdown(list(ALIGNMENT_PAIRS), value=list(ALIGNMENT_PAIRS)[0], label="Pairs")
            epochs = gr.Slider(*EPOCH_RANGE, value=200, step=10, label="Epochs")
            align_btn = gr.Button("Train phi", variant="primary", interactive=ready, elem_id="mm-align")
            cancel = _cancel_button("alignment")
        _status_line(cancel, "alignment")
        align_note = gr.Markdown()
        align_table = gr.Dataframe(label="CMC before / after", interactive=False)
        with gr.Row():
            align_chart = gr.Plot(label="CMC")
            loss_chart = gr.Plot(label="Loss")
        transfer_table = gr.Dataframe(
            label="Concept direction transfer (cosine with the native direction)", interactive=False
        )
    align_btn.click(
        run_alignment,
        [pair, epochs, clip_spec, clap_spec],
        [align_table, align_chart, transfer_table, loss_chart, align_note],
        api_name="mm_alignment",
        **ENCODER_QUEUE,
    )
    return align_btn


def _robustness_panel(session, clip_spec, ready: bool):
    with gr.Accordion("Adversarial robustness (eq. 11)", open=False, elem_id="mm-robustness-panel"):
        with gr.Row():
            pgd_eps = gr.Number(
                value=0.0078, precision=4, label="PGD L-inf radius for images (0 = skip)", minimum=0, maximum=1
            )
            ar_btn = gr.Button(
                "Measure on the concept's examples", interactive=ready, variant="primary", elem_id="mm-robustness"
            )
            cancel = _cancel_button("robustness")
        _status_line(cancel, "robustness")
        ar_table = gr.Dataframe(label="AR with classifier and perturbation set", interactive=False)
        ar_chart = gr.Plot()
    ar_btn.click(run_robustness, [session, pgd_eps, clip_spec], [ar_table, ar_chart], **PRIVATE, **ENCODER_QUEUE)
    return ar_btn
