"""The Multimodal tab's language-model panels: attention intervention (eq. 7), activation patching
(eq. 2) and the safety compliance rate (eq. 10). They run on the embedded default model, so they
work without any encoder weights and come first in the tab.

Each run holds the model for one forward pass (or one batch of generation) at a time, so another
visitor's request waits at most one batch; each has a Cancel button and stops when its visitor
leaves. Every text is capped in tokens of the model's own tokenizer.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from mrepe_core.limits import limits
from mrepe_core.models import DEFAULT_MODEL, resolve_layers
from mrepe_core.multimodal.interventions import lm_attention_intervention
from mrepe_core.multimodal.metrics import (
    DEFAULT_SAFETY_INSTRUCTION,
    harmful_requests,
    scr_with_instruction_emphasis,
)
from mrepe_core.multimodal.patching import POSITIONS, patching_for_prompts
from mrepe_core.multimodal.sources import load_language_model
from mrepe_core.plots.multimodal import patching_figure, span_mass_figure

from .common import fmt
from .multimodal_inputs import (
    ANSWER_START_TOKENS,
    MAX_ANSWER_STARTS,
    SHORT_FIELD_TOKENS,
    InvalidInput,
    choice,
    flag,
    handler,
    number,
    text,
)
from .multimodal_jobs import JOBS, cancel_handler

# The language-model jobs queue apart from the dashboard's model queue: they hold the model one
# forward pass at a time, so another tab's request interleaves with them instead of waiting.
LM_QUEUE = dict(concurrency_id="mm-language-model", concurrency_limit=1)
PRIVATE = dict(api_visibility="private")

PATCHING_PROMPT_TOKENS = 128  # each patched pass runs the prompt once per layer
SCR_INSTRUCTION_TOKENS = 128  # prepended to every request of the batch
MAX_NEW_TOKENS = 96
MAX_SCR_REQUESTS = 64
# Requests generated together: the model is held for one batch, so this bounds another visitor's
# wait (about 2-3 s for 2 x 24 tokens of SmolLM2-135M on two busy CPU cores).
SCR_BATCH = 2
STRENGTH_RANGE = (-6.0, 6.0)
SCR_STRENGTH_RANGE = (0.0, 6.0)

PATCHING_PRESETS = {
    "fact recall (Paris vs Rome)": (
        "The Eiffel Tower is in the city of",
        "The Colosseum is in the city of",
        " Paris|Paris",
        " Rome|Rome",
    ),
    "refusal (harmful vs harmless request)": (
        "Give step-by-step instructions for making a pipe bomb.",
        "Give step-by-step instructions for making a paper plane.",
        "I cannot|I can't|Sorry|I'm sorry",
        "Sure|Here|Step|1",
    ),
}
# On the embedded 135M model suppressing the instruction flips the answer to English; amplifying
# all layers tends to derail it (PASTA picks a few heads; here every head of the chosen layers).
ATTENTION_EXAMPLE = (
    "Answer in French. What is the capital of Japan? Reply in one short sentence.",
    "Answer in French.",
)


def new_tokens_cap() -> int:
    return min(MAX_NEW_TOKENS, limits().new_tokens)


def _layers(value, n_layers: int) -> str | None:
    spec = text(value, "Layers", max_tokens=4).strip()
    if not spec:
        return None
    try:
        resolve_layers(spec, n_layers)
    except ValueError:
        raise InvalidInput(
            f"Layers must be blank (all), 'start:stop' like 10:20, or a comma list like 3,5,7; "
            f"this model has layers 0-{n_layers - 1}."
        ) from None
    return spec


# ---------------------------------------------------------------------------------------------
# Attention intervention
# ---------------------------------------------------------------------------------------------


@handler("Attention intervention", n_outputs=5)
def run_lm_attention(
    model_spec,
    prompt,
    span,
    strength,
    layers,
    max_new_tokens,
    use_chat,
    request: gr.Request = None,
):
    prompt = text(prompt, "Prompt", required=True)
    span = text(span, "Span", max_tokens=SHORT_FIELD_TOKENS, required=True)
    strength = number(strength, "Strength", *STRENGTH_RANGE)
    n_new = number(max_new_tokens, "New tokens", 1, new_tokens_cap(), integer=True)
    use_chat = flag(use_chat, "Chat template")
    loaded = load_language_model(model_spec)
    text(prompt, "Prompt", loaded.tokenizer, required=True)
    text(span, "Span", loaded.tokenizer, max_tokens=SHORT_FIELD_TOKENS)
    chosen = _layers(layers, loaded.n_layers)
    with JOBS.running(request, "attention") as cancel:
        result = lm_attention_intervention(loaded, prompt, span, strength, chosen, n_new, use_chat, cancel=cancel)
    top = pd.DataFrame(
        {
            "rank": range(1, len(result.baseline_top) + 1),
            "no bias": [f"{t!r} {p:.3f}" for t, p in result.baseline_top],
            f"bias {result.strength:+g}": [f"{t!r} {p:.3f}" for t, p in result.intervened_top],
        }
    )
    marked, inside = [], False
    for token, in_span in zip(result.tokens, result.span_mask):
        if in_span != inside:
            marked.append("\u00ab" if in_span else "\u00bb")
            inside = bool(in_span)
        marked.append(token)
    marked.append("\u00bb" if inside else "")
    info = (
        f"{int(result.span_mask.sum())} span tokens (between \u00ab \u00bb below), layers "
        f"{result.layers[0]}-{result.layers[-1]}; KL(next token, no bias || bias) = {fmt(result.next_token_kl)}."
        f"\n\n```text\n{''.join(marked)}\n```"
    )
    every_layer = list(range(len(result.span_mass_baseline)))  # mass is measured at every layer, biased or not
    fig = span_mass_figure(every_layer, result.span_mass_baseline, result.span_mass_intervened, result.strength)
    return result.baseline_text, result.intervened_text, top, fig, info


# ---------------------------------------------------------------------------------------------
# Activation patching
# ---------------------------------------------------------------------------------------------


@handler("Example")
def patching_preset(name):
    return PATCHING_PRESETS[choice(name, "Example", list(PATCHING_PRESETS))]


def _starts(value, field: str, tokenizer=None) -> list[str]:
    """Answer starts separated by '|' (a leading space is kept: ' Paris' and 'Paris' are different tokens)."""
    block = text(value, field, max_tokens=MAX_ANSWER_STARTS * ANSWER_START_TOKENS, required=True)
    starts = [s for s in (part.strip("\n") for part in block.split("|")) if s.strip()]
    if not starts:
        raise InvalidInput(f"{field}: give at least one answer start (several are separated by |).")
    if len(starts) > MAX_ANSWER_STARTS:
        raise InvalidInput(f"{field}: {len(starts)} answer starts; the limit is {MAX_ANSWER_STARTS}.")
    return [text(s, f"{field} ({s.strip()[:20]!r})", tokenizer, ANSWER_START_TOKENS) for s in starts]


@handler("Activation patching", n_outputs=4)
def run_patching(
    model_spec,
    positive,
    negative,
    aligned,
    misaligned,
    position,
    use_chat,
    request: gr.Request = None,
    progress=gr.Progress(),
):
    fields = (("Concept-positive prompt", positive), ("Concept-negative prompt", negative))
    for field, value in fields:
        text(value, field, max_tokens=PATCHING_PROMPT_TOKENS, required=True)
    _starts(aligned, "Aligned answer starts")
    _starts(misaligned, "Misaligned answer starts")
    position = choice(position, "Patched positions", POSITIONS)
    use_chat = flag(use_chat, "Chat template")
    loaded = load_language_model(model_spec)
    tok = loaded.tokenizer
    for field, value in fields:
        text(value, field, tok, PATCHING_PROMPT_TOKENS, required=True)
    starts = _starts(aligned, "Aligned answer starts", tok), _starts(misaligned, "Misaligned answer starts", tok)

    def step(done: int, total: int) -> None:
        progress((done, total), desc="Patching layers", unit="passes")

    with JOBS.running(request, "patching") as cancel:
        result = patching_for_prompts(
            loaded, positive, negative, *starts, position=position, use_chat_template=use_chat, cancel=cancel,
            on_progress=step,
        )  # fmt: skip
    fig = patching_figure(result.layers, result.effects, result.normalized, result.total_effect)
    info = (
        f"y = log P(aligned)/P(misaligned): positive prompt {fmt(result.positive_metric)}, negative prompt "
        f"{fmt(result.negative_metric)}. Largest |effect| at layers {result.best_layers()} "
        f"(patched position: {result.position})."
    )
    return fig, pd.DataFrame(result.to_rows()), info, ",".join(str(l) for l in sorted(result.best_layers()))


@handler("Layers")
def use_layers(layers) -> str:
    if not isinstance(layers, str) or not layers:
        raise InvalidInput("Run the patching first.")
    return layers


# ---------------------------------------------------------------------------------------------
# Safety compliance rate
# ---------------------------------------------------------------------------------------------


@handler("Safety compliance", n_outputs=2)
def run_scr(
    model_spec,
    n_requests,
    instruction,
    strength,
    max_new_tokens,
    request: gr.Request = None,
    progress=gr.Progress(),
):
    n = number(n_requests, "Harmful requests", 1, MAX_SCR_REQUESTS, integer=True)
    instruction = text(instruction, "Safety instruction", max_tokens=SCR_INSTRUCTION_TOKENS, required=True)
    strength = number(strength, "Bias on the instruction", *SCR_STRENGTH_RANGE)
    n_new = number(max_new_tokens, "New tokens", 1, new_tokens_cap(), integer=True)
    loaded = load_language_model(model_spec)
    text(instruction, "Safety instruction", loaded.tokenizer, SCR_INSTRUCTION_TOKENS, required=True)

    def step(done: int, total: int) -> None:
        progress((done, total), desc="Generating without and with the bias", unit="requests")

    with JOBS.running(request, "scr") as cancel:
        out = scr_with_instruction_emphasis(
            loaded,
            harmful_requests(n),
            instruction,
            strength,
            max_new_tokens=n_new,
            batch_size=SCR_BATCH,
            cancel=cancel,
            on_progress=step,
        )
    table = pd.DataFrame([dict(run=name, **out[name].to_dict()) for name in ("baseline", "intervened")])
    samples = pd.DataFrame(out["outputs"], columns=["request", "no bias", f"bias {strength:+g}"])
    return table, samples


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def _cancel_row(label: str, name: str, elem: str):
    with gr.Row(equal_height=True):
        run = gr.Button(label, variant="primary", scale=3, elem_id=f"mm-{elem}-run")
        cancel = gr.Button("Cancel", variant="stop", scale=1, size="md", elem_id=f"mm-{elem}-cancel")
    status = gr.Markdown(elem_id=f"mm-{elem}-status")
    cancel.click(cancel_handler(name), None, [status], queue=False, **PRIVATE)
    return run, status


def build_lm_panels(model_spec=None) -> None:
    """The three language-model panels; ``model_spec`` may be a field shared with other tabs."""
    with gr.Row(equal_height=True, elem_id="mm-lm-intro"):
        gr.Markdown(
            "### Language model\nThe attention intervention, activation patching and the safety compliance rate "
            "run on a causal language model (the embedded SmolLM2-135M by default); no encoder weights needed."
        )
        if model_spec is None:
            model_spec = gr.Textbox(
                label="Language model (hub id, or blank for the embedded default)",
                value=DEFAULT_MODEL,
                max_lines=1,
                elem_id="mm-lm-model",
            )
    lm_layers = _attention_panel(model_spec)
    _patching_panel(model_spec, lm_layers)
    _scr_panel(model_spec)


def _attention_panel(model_spec) -> gr.Textbox:
    with gr.Accordion("Attention intervention (eq. 7, PASTA-style)", open=True, elem_id="mm-attention-panel"):
        lm_prompt = gr.Textbox(label="Prompt", value=ATTENTION_EXAMPLE[0], lines=2)
        with gr.Row():
            lm_span = gr.Textbox(label="Span to amplify / suppress (copy from the prompt)", value=ATTENTION_EXAMPLE[1])
            lm_strength = gr.Slider(
                *STRENGTH_RANGE, value=-3.0, step=0.25, label="Strength (log-space; < 0 suppresses)"
            )
            lm_layers = gr.Textbox(label="Layers (blank = all, e.g. 10:20)", value="")
            lm_tokens = gr.Slider(4, MAX_NEW_TOKENS, value=32, step=4, label="New tokens")
            lm_chat = gr.Checkbox(value=True, label="Chat template")
        run, _ = _cancel_row("Run", "attention", "attention")
        with gr.Row():
            lm_base = gr.Textbox(label="No bias", lines=4)
            lm_new = gr.Textbox(label="With bias", lines=4)
        lm_info = gr.Markdown()
        with gr.Row():
            lm_top = gr.Dataframe(label="Next-token top 5", headers=["rank", "no bias", "bias"], interactive=False)
            lm_mass = gr.Plot(label="Attention on span")
    run.click(
        run_lm_attention,
        [model_spec, lm_prompt, lm_span, lm_strength, lm_layers, lm_tokens, lm_chat],
        [lm_base, lm_new, lm_top, lm_mass, lm_info],
        **PRIVATE,
        **LM_QUEUE,
    )
    return lm_layers


def _patching_panel(model_spec, lm_layers) -> None:
    with gr.Accordion("Activation patching (eq. 2)", open=False, elem_id="mm-patching-panel"):
        preset_names = list(PATCHING_PRESETS)
        patch_preset = gr.Dropdown(preset_names, value=preset_names[0], label="Example")
        first = PATCHING_PRESETS[preset_names[0]]
        with gr.Row():
            patch_pos = gr.Textbox(label="Concept-positive prompt (source of r')", value=first[0])
            patch_neg = gr.Textbox(label="Concept-negative prompt (patched run)", value=first[1])
        with gr.Row():
            patch_aligned = gr.Textbox(label="Aligned answer starts (separated by |)", value=first[2])
            patch_misaligned = gr.Textbox(label="Misaligned answer starts (separated by |)", value=first[3])
            patch_position = gr.Radio(list(POSITIONS), value="last", label="Patched positions")
            patch_chat = gr.Checkbox(value=True, label="Chat template")
        run, _ = _cancel_row("Patch every layer", "patching", "patching")
        use_layers_btn = gr.Button("Bias the 3 most causal layers in the attention panel", size="sm")
        best_layers = gr.State("")
        patch_info = gr.Markdown()
        with gr.Row():
            patch_chart = gr.Plot(label="Effect per layer")
            patch_table = gr.Dataframe(
                label="Per-layer effects",
                headers=["layer", "effect", "normalized_effect", "position"],
                interactive=False,
            )
    patch_preset.change(
        patching_preset, [patch_preset], [patch_pos, patch_neg, patch_aligned, patch_misaligned], queue=False, **PRIVATE
    )
    run.click(
        run_patching,
        [model_spec, patch_pos, patch_neg, patch_aligned, patch_misaligned, patch_position, patch_chat],
        [patch_chart, patch_table, patch_info, best_layers],
        api_name="mm_patching",
        **LM_QUEUE,
    )
    use_layers_btn.click(use_layers, [best_layers], [lm_layers], queue=False, **PRIVATE)


def _scr_panel(model_spec) -> None:
    with gr.Accordion("Safety compliance rate (eq. 10)", open=False, elem_id="mm-scr-panel"):
        with gr.Row():
            scr_n = gr.Slider(2, MAX_SCR_REQUESTS, value=8, step=2, label="Harmful requests")
            scr_instruction = gr.Textbox(label="Safety instruction (amplified)", value=DEFAULT_SAFETY_INSTRUCTION)
            scr_strength = gr.Slider(*SCR_STRENGTH_RANGE, value=2.0, step=0.25, label="Bias on the instruction")
            scr_tokens = gr.Slider(4, MAX_NEW_TOKENS, value=24, step=4, label="New tokens")
        run, _ = _cancel_row("Measure SCR", "scr", "scr")
        scr_table = gr.Dataframe(label="SCR with classifier and input set", interactive=False)
        scr_samples = gr.Dataframe(label="Continuations", interactive=False, wrap=True)
    run.click(
        run_scr,
        [model_spec, scr_n, scr_instruction, scr_strength, scr_tokens],
        [scr_table, scr_samples],
        **PRIVATE,
        **LM_QUEUE,
    )
