"""What the multimodal tab computes, as plain functions over an encoder and a concept.

``analyse_concept`` does the slow part once per (encoder, concept): embeddings, the direction
(eq. 6), prototypes and the membership threshold (eq. 1), the alpha sweep and the bound fits.
``analyse_input`` embeds the user's input (with the attention intervention if asked).
``label_probabilities`` is the cheap part the alpha slider calls: eq. 5 + zero-shot on stored
vectors, no model call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..tradeoff import Tradeoff, fit_tradeoff
from .concepts import ConceptSpec, EmbeddingBank, fit_threshold, label_texts, similarity, zero_shot_prompt
from .interventions import (
    ConceptEvalSet,
    InterventionError,
    alpha_sweep,
    build_eval_set,
    direct_intervention,
    intervene_embeddings,
    zero_shot_probs,
)

DEFAULT_ALPHAS = tuple(float(a) for a in np.round(np.linspace(-4, 4, 17), 2))


@dataclass
class ConceptAnalysis:
    concept: ConceptSpec
    eval_set: ConceptEvalSet
    agg: pd.DataFrame
    fits: Tradeoff | None
    fit_error: str
    tau: float
    tau_balanced_accuracy: float
    sims_pos: np.ndarray
    sims_neg: np.ndarray
    display_labels: tuple[str, ...]
    display_label_embeddings: torch.Tensor = field(repr=False)

    @property
    def delta(self) -> torch.Tensor:
        return self.eval_set.delta

    def summary(self) -> str:
        es = self.eval_set
        lines = [
            f"**{self.concept.name}** ({self.concept.modality}, {self.concept.source}): |S+| = {es.pos.shape[0]}, "
            f"|S-| = {es.neg.shape[0]}, ||Delta_c|| = {float(es.delta.norm()):.3f} (eq. 6).",
            f"Membership (eq. 1): tau = {self.tau:.3f} separates the examples with balanced accuracy "
            f"{self.tau_balanced_accuracy:.2f} (in-sample).",
            f"Concept score = P({self.concept.positive_label}) - P({self.concept.negative_label}) over the "
            f"{es.pos.shape[0] + es.neg.shape[0]} examples, each shifted along its leave-one-out direction. "
            + self.concept.notes,
        ]
        if self.fits is None or self.fit_error:
            lines.append(f"Bound fits unavailable: {self.fit_error}")
        if self.concept.source == "built-in":
            items = self.concept.positives + self.concept.negatives + self.concept.off_target
            credits = list(dict.fromkeys(it.credit for it in items))
            lines.append(
                f"<details><summary>Credits ({len(credits)} sources)</summary>\n\n"
                + "; ".join(credits)
                + ".\n\n</details>"
            )
        return "\n\n".join(lines)


def _display_labels(concept: ConceptSpec) -> tuple[str, ...]:
    labels = [concept.positive_label, concept.negative_label] + list(concept.off_target_labels)
    if concept.source == "upload":
        labels += list(label_texts(concept.modality))
    return tuple(dict.fromkeys(labels))


def analyse_concept(
    bank: EmbeddingBank,
    concept: ConceptSpec,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    cancel: threading.Event | None = None,
) -> ConceptAnalysis:
    """Embed the concept's data and compute its direction, membership threshold, sweep and fits.
    The embedding is the slow part; ``cancel`` is checked between its encoder batches."""
    eval_set = build_eval_set(bank, concept, cancel)
    agg = alpha_sweep(eval_set, alphas)
    fits, fit_error = None, ""
    if eval_set.off_target.shape[0]:
        try:
            fits = fit_tradeoff(agg, n_choices=eval_set.n_choices)
        except ValueError as exc:  # a flat or degenerate curve: show the data, say why there is no fit
            fit_error = str(exc)
        else:
            fit_error = "; ".join(p for p in (fits.alignment_problem, fits.helpfulness_problem) if p)
    else:
        fit_error = "no off-target items."
    proto = torch.nn.functional.normalize(eval_set.pos.mean(0), dim=0)
    sims_pos, sims_neg = similarity(eval_set.pos, proto).numpy(), similarity(eval_set.neg, proto).numpy()
    threshold = fit_threshold(sims_pos, sims_neg)
    labels = _display_labels(concept)
    label_embs = bank.texts([zero_shot_prompt(concept.modality, label) for label in labels], cancel)
    return ConceptAnalysis(
        concept=concept,
        eval_set=eval_set,
        agg=agg,
        fits=fits,
        fit_error=fit_error,
        tau=threshold.tau,
        tau_balanced_accuracy=threshold.balanced_accuracy,
        sims_pos=sims_pos,
        sims_neg=sims_neg,
        display_labels=labels,
        display_label_embeddings=label_embs,
    )


@dataclass
class InputAnalysis:
    embedding: torch.Tensor  # [d], after the attention intervention when one was asked for
    mode: str
    attention_strength: float
    prototype_similarity: float
    member: bool


def analyse_input(
    encoder,
    modality: str,
    content,
    analysis: ConceptAnalysis,
    mode: str = "direct",
    attention_strength: float = 0.0,
    cancel: threading.Event | None = None,
) -> InputAnalysis:
    """Embed one decoded input (image, waveform or text) in the concept's space."""
    if modality != analysis.concept.modality:
        raise InterventionError(
            f"The input is {modality} but the concept {analysis.concept.name!r} is {analysis.concept.modality}."
        )
    emb = intervene_embeddings(
        encoder,
        modality,
        [content],
        analysis.delta,
        mode=mode,
        alpha=0.0,
        attention_strength=attention_strength if mode != "direct" else 0.0,
        cancel=cancel,
    )[0]
    proto = torch.nn.functional.normalize(analysis.eval_set.pos.mean(0), dim=0)
    sim = float(similarity(emb.view(1, -1), proto)[0])
    return InputAnalysis(
        embedding=emb,
        mode=mode,
        attention_strength=float(attention_strength),
        prototype_similarity=sim,
        member=sim > analysis.tau,
    )


def label_probabilities(embedding: torch.Tensor, analysis: ConceptAnalysis, alpha: float) -> np.ndarray:
    """Zero-shot probabilities over the display labels after ``r + alpha * Delta_c`` (eq. 5)."""
    shifted = direct_intervention(embedding.view(1, -1), analysis.delta, alpha)
    return zero_shot_probs(shifted, analysis.display_label_embeddings, analysis.eval_set.logit_scale)[0].numpy()
