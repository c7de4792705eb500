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
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..limits import check_cancel
from ..paths import ASSETS
from .directions import (  # noqa: F401  (re-exported: eq. 1 and eq. 6 were defined here)
    ConceptDirection,
    ConceptError,
    ThresholdFit,
    concept_direction,
    fit_threshold,
    leave_one_out_directions,
    membership,
    prototype,
    similarity,
)
from .media import CLAP_SAMPLE_RATE, MAX_AUDIO_SECONDS, MediaError, clean_text, decode_audio, decode_image

MEDIA = ASSETS / "media"
BATCH_SIZE = 16  # items decoded and embedded together
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
        images = {it.path.name: it for it in builtin_items("image") if it.path is not None}
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
    return decode_audio(
        item.path,
        target_sr=sample_rate or CLAP_SAMPLE_RATE,
        max_seconds=max_seconds or MAX_AUDIO_SECONDS,
    ).waveform


class EmbeddingBank:
    """Embeddings of items and label prompts for one encoder, computed once and kept (at most
    ``max_entries`` of each kind; the oldest are dropped first, built-in items are recomputed if needed)."""

    def __init__(self, encoder, max_entries: int = 4096):
        self.encoder = encoder
        self.max_entries = int(max_entries)
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._texts: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def _keep(self, store: OrderedDict, pairs) -> None:
        with self._lock:
            store.update(pairs)
            while len(store) > self.max_entries:
                store.popitem(last=False)

    def items(self, items: Sequence[MediaItem], cancel: threading.Event | None = None) -> torch.Tensor:
        """Embeddings of ``items`` (rows in order). Files are decoded one encoder batch at a time, so
        memory holds at most one batch of decoded images or clips; ``cancel`` is checked between batches."""
        found: dict[str, torch.Tensor] = {}
        with self._lock:
            found.update({it.key: self._items[it.key] for it in items if it.key in self._items})
        missing = [it for it in dict.fromkeys(items) if it.key not in found]
        rate = getattr(self.encoder, "sample_rate", None)
        # Decode only what the encoder will look at (CLAP: its 10 s window).
        window = getattr(self.encoder, "max_samples", None)
        seconds = window / rate if window and rate else None
        for modality in MODALITIES:
            todo = [it for it in missing if it.modality == modality]
            for start in range(0, len(todo), BATCH_SIZE):
                check_cancel(cancel, "Embedding")
                chunk = todo[start : start + BATCH_SIZE]
                embs = self.encoder.embed(modality, [load_item(it, rate, seconds) for it in chunk])
                pairs = {it.key: e for it, e in zip(chunk, embs)}
                found.update(pairs)
                self._keep(self._items, pairs)
        if not items:
            return torch.zeros(0, self.encoder.dimensions)
        return torch.stack([found[it.key] for it in items])

    def texts(self, texts: Sequence[str], cancel: threading.Event | None = None) -> torch.Tensor:
        found: dict[str, torch.Tensor] = {}
        with self._lock:
            found.update({t: self._texts[t] for t in texts if t in self._texts})
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            pairs = dict(zip(missing, self.encoder.embed("text", missing, cancel=cancel)))
            found.update(pairs)
            self._keep(self._texts, pairs)
        if not texts:
            return torch.zeros(0, self.encoder.dimensions)
        return torch.stack([found[t] for t in texts])
