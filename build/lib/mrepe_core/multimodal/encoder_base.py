"""What every joint-embedding encoder shares: the errors, the eq. 7 request (``ConceptAttention``),
the ``Encoder`` protocol and ``BaseEncoder`` (modality dispatch, batching, one batch at a time).

All ``embed_*`` methods return L2-normalised float32 tensors ``[n, dimensions]`` on the CPU, so
cosine similarity is a dot product. ``BaseEncoder.embed`` holds the encoder's lock for one batch
at a time and checks a cancel switch between batches, so a long embedding job (hundreds of
uploads) neither blocks other visitors for its whole length nor outlives a Cancel.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..limits import check_cancel

BATCH_SIZE = 16


class EncoderLoadError(ValueError):
    """The encoder spec points at something that cannot be used; the message says what to fix."""


class WeightsMissing(EncoderLoadError):
    """No weights are available for an encoder; the message says how to supply them."""


class UnsupportedModality(ValueError):
    """The encoder does not embed this modality (e.g. audio with CLIP)."""


@dataclass(frozen=True)
class ConceptAttention:
    """Eq. 7 inside an encoder: bias every query toward the keys most aligned with a concept.

    The relevant keys are the ``top_fraction`` of patch (or text) tokens whose projected final
    state has the highest cosine with ``direction``; ``strength`` is the post-scaling logit bias.
    ``layers`` defaults to the second half of the encoder, where tokens carry semantic content.
    """

    direction: torch.Tensor
    strength: float
    top_fraction: float = 0.25
    layers: Sequence[int] | str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError("top_fraction must be in (0, 1].")


@runtime_checkable
class Encoder(Protocol):
    kind: str
    name: str
    dimensions: int
    modalities: frozenset[str]
    logit_scale: float

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor: ...

    def embed_image(self, images: Sequence) -> torch.Tensor: ...

    def embed_audio(self, waveforms: Sequence[np.ndarray]) -> torch.Tensor: ...


def normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.detach().float().cpu(), dim=-1)


def batches(items: Sequence, size: int = BATCH_SIZE) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BaseEncoder:
    """Shared plumbing: modality dispatch, batching, a lock so one batch uses the model at a time."""

    kind = ""
    modalities: frozenset[str] = frozenset()

    def __init__(self, name: str, source: str, dimensions: int, logit_scale: float, device: torch.device):
        self.name = name
        self.source = source
        self.dimensions = int(dimensions)
        self.logit_scale = float(logit_scale)
        self.device = device
        self.lock = threading.RLock()
        self.fingerprint = hashlib.sha256(f"{self.kind}|{name}|{source}".encode()).hexdigest()[:16]

    @property
    def tokenizer(self):
        """The text tokenizer (for token caps on user texts); None when the backend has none."""
        return getattr(getattr(self, "processor", None), "tokenizer", None)

    @property
    def text_window(self) -> int | None:
        """How many tokens of a text the text tower reads (longer texts would be cut)."""
        return None

    def embed(
        self,
        modality: str,
        items: Sequence,
        attention: ConceptAttention | None = None,
        cancel: threading.Event | None = None,
    ) -> torch.Tensor:
        """Embed ``items`` of one modality, one batch at a time (``cancel`` is checked between batches)."""
        if modality not in self.modalities:
            hint = {"audio": "CLAP", "image": "CLIP"}.get(modality)
            raise UnsupportedModality(
                f"{self.name} embeds {', '.join(sorted(self.modalities))}, not {modality}"
                + (f"; load a {hint} model for {modality}." if hint else ".")
            )
        if len(items) == 0:
            return torch.zeros(0, self.dimensions)
        fn: Callable[..., torch.Tensor] = {  # type: ignore[assignment]  # bound methods of one signature
            "text": self.embed_text,
            "image": self.embed_image,
            "audio": self.embed_audio,
        }[modality]
        out = []
        for chunk in batches(list(items)):
            check_cancel(cancel, "Embedding")
            out.append(fn(chunk, attention=attention) if attention is not None else fn(chunk))
        return torch.cat(out)

    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed text.")

    def embed_image(self, images: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed images; load a CLIP model for images.")

    def embed_audio(self, waveforms: Sequence[np.ndarray], attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed audio; load a CLAP model for audio.")

    def describe(self) -> str:
        return (
            f"{self.kind.upper()} {self.name}: {', '.join(sorted(self.modalities))} -> "
            f"{self.dimensions}-d joint space on {self.device}"
        )


def relevance_mask(tokens: torch.Tensor, valid: torch.Tensor, direction: torch.Tensor, fraction: float) -> torch.Tensor:
    """Top ``fraction`` of the valid tokens of each row by cosine with ``direction``."""
    sims = normalise(tokens) @ torch.nn.functional.normalize(direction.float(), dim=0)
    sims = sims.masked_fill(~valid, float("-inf"))
    mask = torch.zeros_like(valid)
    for row in range(sims.shape[0]):
        n_valid = int(valid[row].sum())
        k = max(1, int(round(fraction * n_valid)))
        mask[row, sims[row].topk(k).indices] = True
    return mask & valid


def default_layers(n_layers: int, layers) -> Sequence[int] | str:
    return layers if layers is not None else list(range(n_layers // 2, n_layers))
