"""Eq. 1 (prototypes, membership, the threshold tau) and eq. 6 (concept directions): pure tensor
functions over unit embeddings, no encoder and no files."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class ConceptError(ValueError):
    """A concept cannot be built from the given examples; the message says what is missing."""


def prototype(embeddings: torch.Tensor) -> torch.Tensor:
    """Prototype of a concept side: the normalised mean of its unit embeddings."""
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ConceptError("A prototype needs at least one embedding.")
    return torch.nn.functional.normalize(embeddings.float().mean(0), dim=0)


def similarity(embeddings: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row with the prototype."""
    return torch.nn.functional.normalize(embeddings.float(), dim=-1) @ torch.nn.functional.normalize(
        proto.float(), dim=0
    )


def membership(embeddings: torch.Tensor, proto: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1: ``r`` belongs to ``R_c`` when ``sim(r, prototype_c) > tau_c``."""
    return similarity(embeddings, proto) > tau


@dataclass(frozen=True)
class ThresholdFit:
    tau: float
    balanced_accuracy: float
    n_pos: int
    n_neg: int


def fit_threshold(sims_pos: np.ndarray, sims_neg: np.ndarray) -> ThresholdFit:
    """The ``tau`` that best separates positives (above) from negatives (below) by balanced accuracy.

    Candidates are midpoints between consecutive sorted similarities, so the result is exact for
    the given examples; it is an in-sample fit (say so when reporting it)."""
    pos, neg = np.asarray(sims_pos, float), np.asarray(sims_neg, float)
    if pos.size == 0 or neg.size == 0:
        raise ConceptError("Fitting tau needs examples of both sides.")
    values = np.unique(np.concatenate([pos, neg]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    scores = [((pos > t).mean() + (neg <= t).mean()) / 2 for t in candidates]
    best = int(np.argmax(scores))
    return ThresholdFit(
        tau=float(candidates[best]), balanced_accuracy=float(scores[best]), n_pos=int(pos.size), n_neg=int(neg.size)
    )


@dataclass(frozen=True)
class ConceptDirection:
    """``Delta_c`` of eq. 6 in one encoder's joint space, with what it was computed from."""

    delta: torch.Tensor
    modality: str
    concept: str
    encoder: str
    n_pos: int
    n_neg: int
    prototype_pos: torch.Tensor | None = field(repr=False, default=None)
    prototype_neg: torch.Tensor | None = field(repr=False, default=None)

    @property
    def norm(self) -> float:
        return float(self.delta.norm())

    @property
    def unit(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.delta, dim=0)


def concept_direction(
    pos: torch.Tensor, neg: torch.Tensor, modality: str = "", concept: str = "", encoder: str = ""
) -> ConceptDirection:
    """Eq. 6: ``Delta_c = mean(S+) - mean(S-)`` over unit embeddings."""
    if pos.ndim != 2 or neg.ndim != 2 or pos.shape[0] == 0 or neg.shape[0] == 0:
        raise ConceptError("The concept direction needs at least one positive and one negative example.")
    if pos.shape[1] != neg.shape[1]:
        raise ConceptError("Positive and negative embeddings come from different spaces.")
    delta = pos.float().mean(0) - neg.float().mean(0)
    return ConceptDirection(
        delta=delta,
        modality=modality,
        concept=concept,
        encoder=encoder,
        n_pos=int(pos.shape[0]),
        n_neg=int(neg.shape[0]),
        prototype_pos=prototype(pos),
        prototype_neg=prototype(neg),
    )


def leave_one_out_directions(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``Delta_c`` recomputed without each example in turn: rows follow ``cat([pos, neg])``.

    Evaluating an example with a direction it did not help build keeps the concept score honest
    on the small built-in sets. A side with a single example keeps its full mean (nothing to leave).
    """
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    sum_pos, sum_neg = pos.float().sum(0), neg.float().sum(0)
    mean_pos, mean_neg = sum_pos / n_pos, sum_neg / n_neg
    rows = []
    for i in range(n_pos):
        m = (sum_pos - pos[i]) / (n_pos - 1) if n_pos > 1 else mean_pos
        rows.append(m - mean_neg)
    for i in range(n_neg):
        m = (sum_neg - neg[i]) / (n_neg - 1) if n_neg > 1 else mean_neg
        rows.append(mean_pos - m)
    return torch.stack(rows)
