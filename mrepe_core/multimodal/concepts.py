"""Concept representation identification (section 3.2.1) and concept directions (eq. 6).

A concept is two example sets ``S+`` / ``S-`` in one modality (built-in COCO images, their captions
or sound clips from ``assets/media``, or user uploads) plus the two zero-shot label texts that name
its sides. From their unit embeddings we compute

* the prototype of each side (normalised mean), concept membership ``sim(r, prototype) > tau``
  (eq. 1) and the threshold ``tau`` that best separates the two sides;
* the concept direction ``Delta_c = mean(S+) - mean(S-)`` (eq. 6).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..paths import ASSETS
from .media import MediaError, clean_text, decode_audio, decode_image

MEDIA = ASSETS / "media"
MODALITIES = ("image", "text", "audio")

IMAGE_THEMES = {
    "animals": "animals",
    "people": "people",
    "vehicles": "vehicles",
    "food": "food",
    "indoor": "an indoor room",
    "outdoor": "an outdoor scene",
}
AUDIO_CATEGORIES = {"speech": "speech", "music": "music", "animal": "an animal"}
PROMPT_TEMPLATES = {"image": "a photo of {}", "text": "a photo of {}", "audio": "the sound of {}"}


class ConceptError(ValueError):
    """A concept cannot be built from the given examples; the message says what is missing."""


@dataclass(frozen=True)
class MediaItem:
    """One example: a file (image/audio) or a text, with its theme label and credit line."""

    key: str
    modality: str
    label: str
    path: Path | None = None
    text: str | None = None
    description: str = ""
    credit: str = ""


def _file_key(modality: str, path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{modality}:{digest}"


@lru_cache(maxsize=1)
def _image_catalogue() -> tuple[dict, ...]:
    return tuple(json.loads((MEDIA / "images" / "captions.json").read_text(encoding="utf-8"))["images"])


@lru_cache(maxsize=1)
def _audio_catalogue() -> tuple[dict, ...]:
    return tuple(json.loads((MEDIA / "audio" / "clips.json").read_text(encoding="utf-8"))["clips"])


@lru_cache(maxsize=3)
def builtin_items(modality: str) -> tuple[MediaItem, ...]:
    """All shipped examples of one modality (24 COCO images, their 120 captions, 10 sound clips)."""
    if modality == "image":
        return tuple(
            MediaItem(
                key=f"image:{e['file']}",
                modality="image",
                label=e["theme"],
                path=MEDIA / "images" / e["file"],
                description=e["captions"][0],
                credit=f"COCO {e['coco_id']}, Flickr photo {e['flickr_photo_id']}, CC BY 2.0",
            )
            for e in _image_catalogue()
        )
    if modality == "text":
        return tuple(
            MediaItem(
                key=f"text:{e['file']}#{i}",
                modality="text",
                label=e["theme"],
                text=c,
                description=c,
                credit="COCO captions (Chen et al. 2015), CC BY 4.0",
            )
            for e in _image_catalogue()
            for i, c in enumerate(e["captions"])
        )
    if modality == "audio":
        return tuple(
            MediaItem(
                key=f"audio:{e['file']}",
                modality="audio",
                label=e["category"],
                path=MEDIA / "audio" / e["file"],
                description=e["description"],
                credit=f"{e['credit']}, {e['license']}",
            )
            for e in _audio_catalogue()
        )
    raise ConceptError(f"Unknown modality {modality!r}; use one of {', '.join(MODALITIES)}.")


def paired_items(modality_a: str, modality_b: str) -> list[tuple[MediaItem, MediaItem]]:
    """Semantically equivalent pairs across modalities (the dataset D of eq. 8).

    ``text``/``image``: every COCO caption with its image. ``text``/``audio``: each clip's written
    description with the clip (10 pairs only).
    """
    pair = {modality_a, modality_b}
    if pair == {"text", "image"}:
        images = {it.path.name: it for it in builtin_items("image")}
        pairs = [(t, images[t.key.split(":", 1)[1].split("#")[0]]) for t in builtin_items("text")]
    elif pair == {"text", "audio"}:
        pairs = [
            (
                MediaItem(
                    key=f"text:{a.key}",
                    modality="text",
                    label=a.label,
                    text=a.description,
                    description=a.description,
                    credit="MRepE description",
                ),
                a,
            )
            for a in builtin_items("audio")
        ]
    else:
        raise ConceptError(f"No paired built-in data for {modality_a} and {modality_b}.")
    return [(a, b) if a.modality == modality_a else (b, a) for a, b in pairs]


def label_texts(modality: str) -> dict[str, str]:
    return AUDIO_CATEGORIES if modality == "audio" else IMAGE_THEMES


def zero_shot_prompt(modality: str, label: str) -> str:
    """The text whose embedding stands for ``label`` in zero-shot classification."""
    return PROMPT_TEMPLATES[modality].format(label_texts(modality).get(label, label))


@dataclass(frozen=True)
class ConceptSpec:
    """Concept ``c``: examples of each side, their zero-shot labels, and the off-target task.

    The off-target task (the helpfulness analogue) classifies items that belong to neither side
    among ``off_target_labels``; it measures what an intervention breaks beside its target.
    """

    name: str
    modality: str
    positive_label: str
    negative_label: str
    positives: tuple[MediaItem, ...]
    negatives: tuple[MediaItem, ...]
    off_target: tuple[MediaItem, ...]
    off_target_labels: tuple[str, ...]
    source: str = "built-in"
    notes: str = ""

    @property
    def prompts(self) -> tuple[str, str]:
        return zero_shot_prompt(self.modality, self.positive_label), zero_shot_prompt(
            self.modality, self.negative_label
        )

    @property
    def off_target_prompts(self) -> tuple[str, ...]:
        return tuple(zero_shot_prompt(self.modality, label) for label in self.off_target_labels)


# name -> (modalities, positive label, negative label, off-target labels)
_BUILTIN = {
    "animals vs vehicles": (("image", "text"), "animals", "vehicles", ("people", "food", "indoor", "outdoor")),
    "food vs indoor": (("image", "text"), "food", "indoor", ("animals", "people", "vehicles", "outdoor")),
    "speech vs music": (("audio",), "speech", "music", ("speech", "music", "animal")),
    "animal sounds vs music": (("audio",), "animal", "music", ("speech", "music", "animal")),
}


def builtin_concept_names(modality: str | None = None) -> list[str]:
    return [n for n, spec in _BUILTIN.items() if modality is None or modality in spec[0]]


def builtin_concept(name: str, modality: str) -> ConceptSpec:
    if name not in _BUILTIN:
        raise ConceptError(f"Unknown built-in concept {name!r}; choose one of {', '.join(_BUILTIN)}.")
    modalities, pos, neg, off_labels = _BUILTIN[name]
    if modality not in modalities:
        raise ConceptError(f"{name!r} has no {modality} examples; it is defined for {', '.join(modalities)}.")
    items = builtin_items(modality)
    off = tuple(it for it in items if it.label not in (pos, neg))
    notes = (
        f"Off-target task: the {len(off)} built-in {modality} items outside both sides, classified "
        f"zero-shot among {len(off_labels)} labels ({', '.join(off_labels)})."
    )
    return ConceptSpec(
        name=name,
        modality=modality,
        positive_label=pos,
        negative_label=neg,
        positives=tuple(it for it in items if it.label == pos),
        negatives=tuple(it for it in items if it.label == neg),
        off_target=off,
        off_target_labels=off_labels,
        notes=notes,
    )


def upload_items(modality: str, sources: Sequence, label: str) -> tuple[MediaItem, ...]:
    """Wrap uploaded files (image/audio paths) or texts as items; every file is decoded once here so
    a broken upload fails now, with its name, rather than in the middle of a sweep."""
    items = []
    for src in sources:
        if modality == "text":
            text = clean_text(str(src))
            key = "text:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            items.append(MediaItem(key=key, modality="text", label=label, text=text, description=text, credit="upload"))
            continue
        path = Path(src)
        (decode_image if modality == "image" else decode_audio)(path)
        items.append(
            MediaItem(
                key=_file_key(modality, path),
                modality=modality,
                label=label,
                path=path,
                description=path.name,
                credit="upload",
            )
        )
    return tuple(items)


def custom_concept(
    name: str, modality: str, positives: Sequence, negatives: Sequence, positive_label: str, negative_label: str
) -> ConceptSpec:
    """A concept from uploads: several files (or texts) per side and a short label for each side."""
    if modality not in MODALITIES:
        raise ConceptError(f"Unknown modality {modality!r}.")
    pos_label, neg_label = clean_text(positive_label, 80), clean_text(negative_label, 80)
    if pos_label.lower() == neg_label.lower():
        raise ConceptError("The two sides need different labels.")
    pos = upload_items(modality, positives, pos_label)
    neg = upload_items(modality, negatives, neg_label)
    if not pos or not neg:
        raise ConceptError("Upload at least one example for each side of the concept (two or more is better).")
    shared = {it.key for it in pos} & {it.key for it in neg}
    if shared:
        raise ConceptError(f"{len(shared)} example(s) appear on both sides; each example must belong to one side.")
    off_labels = tuple(label_texts(modality))
    off = builtin_items(modality)
    notes = (
        f"Off-target task: all {len(off)} built-in {modality} items classified among their "
        f"{len(off_labels)} built-in labels (uploaded concepts have no dedicated unrelated set)."
    )
    return ConceptSpec(
        name=name or f"{pos_label} vs {neg_label}",
        modality=modality,
        positive_label=pos_label,
        negative_label=neg_label,
        positives=pos,
        negatives=neg,
        off_target=off,
        off_target_labels=off_labels,
        source="upload",
        notes=notes,
    )


def load_item(item: MediaItem, sample_rate: int | None = None, max_seconds: float | None = None):
    """Decoded content of an item, ready for the encoder."""
    if item.modality == "text":
        return item.text
    if item.path is None:
        raise MediaError(f"{item.key} has no file.")
    if item.modality == "image":
        return decode_image(item.path)
    kwargs = {"target_sr": sample_rate} if sample_rate else {}
    if max_seconds:
        kwargs["max_seconds"] = max_seconds
    return decode_audio(item.path, **kwargs).waveform


class EmbeddingBank:
    """Embeddings of items and label prompts for one encoder, computed once and kept."""

    def __init__(self, encoder):
        self.encoder = encoder
        self._items: dict[str, torch.Tensor] = {}
        self._texts: dict[str, torch.Tensor] = {}

    def items(self, items: Sequence[MediaItem]) -> torch.Tensor:
        missing = [it for it in dict.fromkeys(items) if it.key not in self._items]
        for modality in MODALITIES:
            todo = [it for it in missing if it.modality == modality]
            if todo:
                rate = getattr(self.encoder, "sample_rate", None)
                # Decode only what the encoder will look at (CLAP: its 10 s window).
                window = getattr(self.encoder, "max_samples", None)
                seconds = window / rate if window and rate else None
                embs = self.encoder.embed(modality, [load_item(it, rate, seconds) for it in todo])
                self._items.update({it.key: e for it, e in zip(todo, embs)})
        if not items:
            return torch.zeros(0, self.encoder.dimensions)
        return torch.stack([self._items[it.key] for it in items])

    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            self._texts.update(zip(missing, self.encoder.embed_text(missing)))
        if not texts:
            return torch.zeros(0, self.encoder.dimensions)
        return torch.stack([self._texts[t] for t in texts])


# ---------------------------------------------------------------------------------------------
# Eq. 1 and eq. 6: pure tensor functions.


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
    prototype_pos: torch.Tensor = field(repr=False, default=None)
    prototype_neg: torch.Tensor = field(repr=False, default=None)

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
