"""The Multimodal tab's encoder panels: concepts in CLIP / CLAP joint spaces (eqs. 1, 5-7), the alpha
trade-off, cross-modal alignment (eqs. 3-4, 8) and robustness (eq. 11).

They need encoder weights. Without them the section is one short card saying how to supply them,
and every button that would need weights is off (its handler refuses too, if called over HTTP).
On a public deployment the default hub ids load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd
import torch

from mrepe_core.limits import limits
from mrepe_core.multimodal import concepts as mm_concepts
from mrepe_core.multimodal.alignment import AlignmentConfig, builtin_alignment
from mrepe_core.multimodal.concepts import EmbeddingBank
from mrepe_core.multimodal.encoders import (
    ENV_VARS,
    EXAMPLE_IDS,
    EncoderLoadError,
    default_spec,
    load_encoder,
    loaded_encoder,
)
from mrepe_core.multimodal.explorer import (
    ConceptAnalysis,
    InputAnalysis,
    analyse_concept,
    analyse_input,
    label_probabilities,
)
from mrepe_core.multimodal.interventions import MODES
from mrepe_core.multimodal.media import decode_audio, decode_image, decode_text_file
from mrepe_core.multimodal.metrics import embedding_adversarial_robustness, pgd_image_robustness
from mrepe_core.plots import behavior_figure, helpfulness_figure, tradeoff_figure
from mrepe_core.plots.multimodal import cmc_figure, loss_figure, membership_figure, robustness_figure, zero_shot_bars

from .common import message_figure
from .multimodal_inputs import SHORT_FIELD_TOKENS, InvalidInput, choice, files, handler, lines, number, text
from .multimodal_jobs import JOBS

ENCODER_QUEUE = dict(concurrency_id="mm-encoders", concurrency_limit=1)
PRIVATE = dict(api_visibility="private")
ENCODER_FOR = {"image": "clip", "text": "clip", "audio": "clap"}
MODALITIES = tuple(ENCODER_FOR)
CONCEPT_SOURCES = ("built-in", "upload")
ALIGNMENT_PAIRS = {
    "captions -> images (CLIP)": ("text", "image", "clip"),
    "descriptions -> sound clips (CLAP)": ("text", "audio", "clap"),
}
AR_EPS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
ALPHA_RANGE = (-4.0, 4.0)
ATTENTION_RANGE = (-5.0, 5.0)
EPOCH_RANGE = (10, 400)
MAX_PGD_IMAGES = 32


@dataclass
class MultimodalSession:
    """What the alpha slider needs to redraw without a model call."""

    analysis: ConceptAnalysis
    input: InputAnalysis | None = None
    input_name: str = ""


# ---------------------------------------------------------------------------------------------
# Encoders and the card
# ---------------------------------------------------------------------------------------------


def _encoder(kind: str, spec):
    return load_encoder(kind, spec)


def encoders_configured() -> dict[str, str]:
    """Spec per kind that loads without typing anything (environment, or the public defaults)."""
    return {kind: default_spec(kind) for kind in ("clip", "clap")}


def card_text(lines_by_kind: dict[str, str] | None = None) -> str:
    """The compact card: what is loaded or will load, and how to supply weights otherwise."""
    configured = encoders_configured()
    rows = []
    for kind in ("clip", "clap"):
        name, what = kind.upper(), "images" if kind == "clip" else "audio"
        current = loaded_encoder(kind)
        if lines_by_kind and kind in lines_by_kind:
            rows.append(f"**{name}** ({what}): {lines_by_kind[kind]}")
        elif current is not None:
            rows.append(f"**{name}** ({what}): loaded, {current.describe()}")
        elif configured[kind]:
            rows.append(f"**{name}** ({what}): `{configured[kind]}`, loads on first use")
    if any(configured.values()) or lines_by_kind:
        return "  \n".join(rows)
    return (
        "**No encoder weights are loaded**, so the buttons below are off: CLIP for images and texts, CLAP for "
        f"audio. Give a Hugging Face id (`{EXAMPLE_IDS['clip']}`, `{EXAMPLE_IDS['clap']}`) or a folder saved with "
        f"`save_pretrained`, then **Load**; or start the app with `{ENV_VARS['clip']}` / `{ENV_VARS['clap']}` set."
    )


@handler("Encoders", n_outputs=4)
def load_encoders(clip_spec, clap_spec):
    """Load what the fields name; the card says what happened; buttons follow what is loaded."""
    specs = {
        "clip": text(clip_spec, "CLIP weights", max_tokens=SHORT_FIELD_TOKENS),
        "clap": text(clap_spec, "CLAP weights", max_tokens=SHORT_FIELD_TOKENS),
    }
    result, loaded = {}, 0
    for kind, spec in specs.items():
        if not spec.strip() and not default_spec(kind):
            result[kind] = "not loaded (the field is empty)"
            continue
        try:
            result[kind] = "loaded, " + _encoder(kind, spec).describe()
            loaded += 1
        except EncoderLoadError as exc:
            result[kind] = f"not loaded. {exc}"
    button = gr.update(interactive=loaded > 0)
    return card_text(result), button, button, button


# ---------------------------------------------------------------------------------------------
# Concept + input analysis (slow) and the alpha redraw (cheap)
# ---------------------------------------------------------------------------------------------


def _texts(block, uploads, field: str, tokenizer, window) -> list[str]:
    texts = lines(block, field, tokenizer=tokenizer, max_tokens=window)
    for path in files(uploads, f"{field} files"):
        texts += [text(t, f"{field} ({path.name})", tokenizer, window) for t in decode_text_file(path)]
    cap = limits().texts_per_request
    if len(texts) > cap:
        raise InvalidInput(f"{field}: {len(texts)} texts; the limit is {cap}. Remove some.")
    return texts


def build_concept(modality, source, builtin_name, pos_files, neg_files, pos_texts, neg_texts, pos_label, neg_label,
                  tokenizer=None, window=None) -> mm_concepts.ConceptSpec:  # fmt: skip
    if source == "built-in":
        names = mm_concepts.builtin_concept_names(modality)
        return mm_concepts.builtin_concept(choice(builtin_name, "Built-in concept", names), modality)
    labels = [text(v, f"c{s} label", tokenizer, SHORT_FIELD_TOKENS) for v, s in ((pos_label, "+"), (neg_label, "-"))]
    if modality == "text":
        pos = _texts(pos_texts, pos_files, "c+ texts", tokenizer, window)
        neg = _texts(neg_texts, neg_files, "c- texts", tokenizer, window)
    else:
        pos, neg = files(pos_files, "c+ examples"), files(neg_files, "c- examples")
    return mm_concepts.custom_concept("", modality, pos, neg, *labels)


def decode_input(modality: str, media_file, value, tokenizer=None, window=None):
    """The decoded user input (or None) and a name for it."""
    if modality == "text":
        value = text(value, "Text", tokenizer, window)
        return (" ".join(value.split()), "text") if value.strip() else (None, "")
    paths = files(media_file, "Image or audio file", max_files=1)
    if not paths:
        return None, ""
    if modality == "image":
        return decode_image(paths[0]), paths[0].name
    return decode_audio(paths[0]).waveform, paths[0].name


def _figures(session: MultimodalSession | None, alpha: float):
    """Label bars, three trade-off charts and a JSON readout for the current alpha."""
    if not isinstance(session, MultimodalSession):
        return None, None, None, None, {}
    an = session.analysis
    fits = an.fits
    marker = float(alpha)
    beh = behavior_figure(an.agg, fits.shown_alignment if fits else None, marker)
    helpful = helpfulness_figure(an.agg, fits.shown_helpfulness if fits else None, an.eval_set.n_choices, marker)
    trade = tradeoff_figure(an.agg, fits.regime if fits else None, marker)
    bars = message_figure("Upload an image or audio clip (or type a text) to see its zero-shot labels here.", 300)
    readout = {"concept": an.concept.name, "alpha": marker}
    if session.input is not None:
        effective = 0.0 if session.input.mode == "attention" else marker
        probs = label_probabilities(session.input.embedding, an, effective)
        base = label_probabilities(session.input.embedding, an, 0.0)
        title = f"Zero-shot labels of {session.input_name} ({session.input.mode})"
        bars = zero_shot_bars(an.display_labels, probs, base, effective, title=title)
        readout.update(
            input=session.input_name,
            mode=session.input.mode,
            attention_strength=session.input.attention_strength,
            probabilities={l: round(float(p), 4) for l, p in zip(an.display_labels, probs)},
            prototype_similarity=round(session.input.prototype_similarity, 4),
            tau=round(an.tau, 4),
            member_of_concept=bool(session.input.member),
        )
    return bars, beh, helpful, trade, readout


def _bank(encoder) -> EmbeddingBank:
    """One embedding cache per loaded encoder (dropped with it), shared by sessions."""
    bank = getattr(encoder, "_mrepe_bank", None)
    if bank is None:
        bank = encoder._mrepe_bank = EmbeddingBank(encoder)
    return bank


@handler("Multimodal analysis", n_outputs=8)
def run_analysis(modality, media_file, text_in, source, builtin_name, pos_files, neg_files, pos_texts, neg_texts,
                 pos_label, neg_label, mode, attention_strength, alpha, clip_spec, clap_spec,
                 request: gr.Request = None):  # fmt: skip
    """Slow path (model calls): embed the concept data and the input, sweep alpha, fit the bounds."""
    modality = choice(modality, "Modality", MODALITIES)
    source = choice(source, "Concept", CONCEPT_SOURCES)
    mode = choice(mode, "Intervention", MODES)
    strength = number(attention_strength, "Attention strength", *ATTENTION_RANGE)
    alpha = number(alpha, "alpha", *ALPHA_RANGE)
    kind = ENCODER_FOR[modality]
    if mode != "direct" and kind != "clip":
        raise InvalidInput("The attention intervention runs inside CLIP only; use mode 'direct' for audio.")
    encoder = _encoder(kind, clip_spec if kind == "clip" else clap_spec)
    tok, window = encoder.tokenizer, encoder.text_window
    content, name = decode_input(modality, media_file, text_in, tok, window)  # a broken upload fails first
    concept = build_concept(modality, source, builtin_name, pos_files, neg_files, pos_texts, neg_texts, pos_label,
                            neg_label, tok, window)  # fmt: skip
    with JOBS.running(request, "analysis") as cancel:
        analysis = analyse_concept(_bank(encoder), concept, cancel=cancel)
        session = MultimodalSession(analysis=analysis)
        if content is not None:
            session.input = analyse_input(encoder, modality, content, analysis, mode, strength, cancel=cancel)
            session.input_name = name
    membership = membership_figure(
        analysis.sims_pos,
        analysis.sims_neg,
        analysis.tau,
        session.input.prototype_similarity if session.input else None,
        concept.positive_label,
    )
    bars, beh, helpful, trade, readout = _figures(session, alpha)
    return session, analysis.summary(), bars, membership, beh, helpful, trade, readout


@handler("Redraw", n_outputs=5)
def redraw(session, alpha):
    return _figures(session, number(alpha, "alpha", *ALPHA_RANGE))


@handler("Modality")
def modality_changed(modality):
    modality = choice(modality, "Modality", MODALITIES)
    names = mm_concepts.builtin_concept_names(modality)
    is_text = modality == "text"
    return (
        gr.update(choices=names, value=names[0] if names else None),
        gr.update(visible=not is_text),
        gr.update(visible=is_text),
        gr.update(visible=is_text),
        gr.update(visible=is_text),
        gr.update(value="direct") if modality == "audio" else gr.update(),
    )


@handler("Concept")
def source_changed(source):
    source = choice(source, "Concept", CONCEPT_SOURCES)
    return gr.update(visible=source == "built-in"), gr.update(visible=source == "upload")


# ---------------------------------------------------------------------------------------------
# Alignment and robustness
# ---------------------------------------------------------------------------------------------


@handler("Alignment", n_outputs=5)
def run_alignment(pair, epochs, clip_spec, clap_spec, request: gr.Request = None):
    source, target, kind = ALIGNMENT_PAIRS[choice(pair, "Pairs", list(ALIGNMENT_PAIRS))]
    epochs = number(epochs, "Epochs", *EPOCH_RANGE, integer=True)
    encoder = _encoder(kind, clip_spec if kind == "clip" else clap_spec)
    with JOBS.running(request, "alignment") as cancel:
        report = builtin_alignment(_bank(encoder), source, target, AlignmentConfig(epochs=epochs), cancel=cancel)
    table = pd.DataFrame(report.table()).round(3)
    transfer = pd.DataFrame(report.transfer).round(3)
    config = report.result.config
    note = (
        f"phi_{{{source}->{target}}} trained with InfoNCE (tau = {config.tau}, {config.epochs} epochs, seed "
        f"{config.seed}) on {report.n_train} pairs; {report.n_heldout} held-out pairs (one {target} per theme, "
        "never seen in training). 'before (raw)' is the encoder's own cosine; CMC is eq. 8 with sim = cosine."
    )
    return table, cmc_figure(report.table()), transfer, loss_figure(report.result.losses), note


@handler("Robustness", n_outputs=2)
def run_robustness(session, pgd_eps, clip_spec, request: gr.Request = None):
    if not isinstance(session, MultimodalSession):
        raise InvalidInput("Run the analysis first: robustness is measured on the concept's examples.")
    pgd_eps = number(pgd_eps, "PGD radius", 0.0, 1.0)
    an = session.analysis
    es = an.eval_set
    embs = torch.cat([es.pos, es.neg])
    labels = (an.concept.positive_label, an.concept.negative_label)
    results = embedding_adversarial_robustness(
        embs, es.side_label_embeddings, AR_EPS, f"{embs.shape[0]} examples of {an.concept.name}", labels
    )
    rows = [r.to_dict() for r in results]
    if an.concept.modality == "image" and pgd_eps > 0:
        encoder = _encoder("clip", clip_spec)
        items = (an.concept.positives + an.concept.negatives)[:MAX_PGD_IMAGES]
        with JOBS.running(request, "robustness") as cancel:
            images = [mm_concepts.load_item(it) for it in items]
            rows.append(
                pgd_image_robustness(
                    encoder,
                    images,
                    es.side_label_embeddings,
                    eps=pgd_eps,
                    input_set=f"{len(images)} example images of {an.concept.name}",
                    label_names=labels,
                    cancel=cancel,
                ).to_dict()
            )
    fig = robustness_figure(
        list(AR_EPS),
        [r.value for r in results],
        [r.ci_low for r in results],
        [r.ci_high for r in results],
        "AR (eq. 11), exact: L2 perturbation of the unit embedding",
        "eps (L2 radius)",
    )
    return pd.DataFrame(rows), fig
