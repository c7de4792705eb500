"""Causal effect of a representation (eq. 2) by activation patching on a causal language model.

``CE(r, y) = E[y | do(r = r')] - E[y | do(r = r0)]``: run the concept-negative prompt, but set the
output of decoder layer ``l`` (at the last position, or at every position) to what it was on the
concept-positive prompt (``r'``), and compare the behaviour metric ``y`` with the unpatched
negative run (``r0``). ``y`` is the next-token logit difference between the aligned and the
misaligned answer starts, ``logsumexp(logits[aligned]) - logsumexp(logits[misaligned])`` = the
log-odds ``log P(aligned) / P(misaligned)``. A forward pass patches several layers: row ``i`` of the
batch patches layer ``layers[i]``; a few layers per pass, the model held for one pass at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .. import hooks
from ..models import decoder_layers, resolve_layers
from .jobs import forward_pass

POSITIONS = ("last", "all")
ROWS_PER_PASS = 4  # patched layers per forward pass: the model is held for one pass at a time (~2 s on 2 cores)


class PatchingError(ValueError):
    """Patching cannot run as asked; the message says what to change."""


def logit_difference(logits: torch.Tensor, aligned_ids: Sequence[int], misaligned_ids: Sequence[int]) -> torch.Tensor:
    """Behaviour metric per row: ``logsumexp(aligned) - logsumexp(misaligned)`` of next-token logits."""
    aligned, misaligned = list(aligned_ids), list(misaligned_ids)
    if not aligned or not misaligned:
        raise PatchingError("Give at least one aligned and one misaligned answer token id.")
    if set(aligned) & set(misaligned):
        raise PatchingError("A token id is on both sides; aligned and misaligned ids must differ.")
    logits = logits.float()
    return torch.logsumexp(logits[:, aligned], -1) - torch.logsumexp(logits[:, misaligned], -1)


@contextmanager
def record_layer_outputs(
    model: torch.nn.Module, layers: Sequence[int], positions: slice | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """Record the output hidden states of chosen decoder layers (at ``positions`` only, if given)
    during forward passes in the context."""
    blocks = decoder_layers(model)
    select = (lambda hidden: hidden[:, positions].clone()) if positions is not None else None
    with hooks.record_outputs({layer: blocks[layer] for layer in layers}, model=model, select=select) as store:
        yield store


@contextmanager
def patch_layer_outputs(
    model: torch.nn.Module, patches: dict[int, tuple[torch.Tensor, torch.Tensor, slice]]
) -> Iterator[None]:
    """Overwrite decoder-layer outputs inside the context.

    ``patches[layer] = (rows, values, positions)``: batch rows to patch, the replacement states
    ``[len(rows), len(positions), hidden]`` and the sequence positions (a slice). Hooks are removed
    on exit, also on error.
    """
    blocks = decoder_layers(model)

    def overwrite(rows, values, positions):
        def patch(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.clone()
            hidden[rows.to(hidden.device), positions] = values.to(device=hidden.device, dtype=hidden.dtype)
            return hidden

        return patch

    with hooks.patch_outputs({blocks[layer]: overwrite(*spec) for layer, spec in patches.items()}, model=model):
        yield


@dataclass
class PatchingResult:
    """Per-layer causal effects of patching the positive run into the negative run."""

    layers: list[int]
    effects: np.ndarray  # CE per layer, in logit-difference units
    positive_metric: float  # y on the concept-positive prompt
    negative_metric: float  # y on the unpatched concept-negative prompt
    position: str

    @property
    def total_effect(self) -> float:
        return self.positive_metric - self.negative_metric

    @property
    def normalized(self) -> np.ndarray:
        """Effect as a share of the total positive-negative gap (1 = the layer carries all of it)."""
        gap = self.total_effect
        return self.effects / gap if abs(gap) > 1e-12 else np.full_like(self.effects, np.nan)

    def best_layers(self, k: int = 3) -> list[int]:
        order = np.argsort(-np.abs(self.effects))
        return [self.layers[i] for i in order[:k]]

    def to_rows(self) -> list[dict]:
        norm = self.normalized
        return [
            dict(layer=l, effect=float(e), normalized_effect=float(n), position=self.position)
            for l, e, n in zip(self.layers, self.effects, norm)
        ]


def _last_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits of the last position only (full-sequence logits of a batch of long prompts
    would be rows x positions x vocabulary floats: gigabytes)."""
    return model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1, :]


@torch.no_grad()
def layer_patching_effects(
    model: torch.nn.Module,
    positive_ids: torch.Tensor,
    negative_ids: torch.Tensor,
    aligned_ids: Sequence[int],
    misaligned_ids: Sequence[int],
    layers: Sequence[int] | str | None = None,
    position: str = "last",
    cancel: threading.Event | None = None,
    rows_per_pass: int = ROWS_PER_PASS,
    on_progress: Callable[[int, int], None] | None = None,
) -> PatchingResult:
    """Eq. 2 for every chosen layer: patch the positive run's layer output into the negative run.

    ``positive_ids`` / ``negative_ids`` are ``[1, T]`` token ids (no padding). ``position='last'``
    patches the final position only (prompts may differ in length); ``'all'`` patches every position
    and needs equal lengths. Row ``i`` of a patched pass patches one layer; ``rows_per_pass`` layers
    go in one forward pass, each pass holds the model on its own and ``cancel`` is checked at every
    decoder layer of every pass (``limits.Cancelled``).
    """
    if position not in POSITIONS:
        raise PatchingError(f"position must be one of {POSITIONS}.")
    if positive_ids.ndim != 2 or negative_ids.ndim != 2 or positive_ids.shape[0] != 1 or negative_ids.shape[0] != 1:
        raise PatchingError("Pass one prompt per side as [1, T] token ids.")
    if position == "all" and positive_ids.shape[1] != negative_ids.shape[1]:
        raise PatchingError(
            f"Patching all positions needs prompts of equal token length ({positive_ids.shape[1]} vs "
            f"{negative_ids.shape[1]}); use position='last' or rephrase."
        )
    chosen = resolve_layers(layers, len(decoder_layers(model)))
    device = next(model.parameters()).device
    pos_ids, neg_ids = positive_ids.to(device), negative_ids.to(device)
    positions = slice(-1, None) if position == "last" else slice(None)
    what = "Activation patching"
    total = 2 + -(-len(chosen) // max(1, rows_per_pass))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logit_difference(logits, aligned_ids, misaligned_ids)

    with forward_pass(model, cancel, what), record_layer_outputs(model, chosen, positions) as clean:
        positive_metric = float(metric(_last_logits(model, pos_ids))[0])
    if on_progress:
        on_progress(1, total)
    with forward_pass(model, cancel, what):
        negative_metric = float(metric(_last_logits(model, neg_ids))[0])
    if on_progress:
        on_progress(2, total)
    patched = []
    for start in range(0, len(chosen), max(1, rows_per_pass)):
        chunk = chosen[start : start + max(1, rows_per_pass)]
        patches = {layer: (torch.tensor([row]), clean[layer], positions) for row, layer in enumerate(chunk)}
        with forward_pass(model, cancel, what), patch_layer_outputs(model, patches):
            patched.append(metric(_last_logits(model, neg_ids.expand(len(chunk), -1))).cpu().numpy())
        if on_progress:
            on_progress(3 + start // max(1, rows_per_pass), total)
    return PatchingResult(
        layers=chosen,
        effects=np.concatenate(patched).astype(np.float64) - negative_metric,
        positive_metric=positive_metric,
        negative_metric=negative_metric,
        position=position,
    )


def patching_for_prompts(
    loaded,
    positive_prompt: str,
    negative_prompt: str,
    aligned: Sequence[str],
    misaligned: Sequence[str],
    layers=None,
    position: str = "last",
    use_chat_template: bool = True,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PatchingResult:
    """Text front end: render both prompts (chat template if the model has one), take the first
    tokens of the answer starts, and run :func:`layer_patching_effects`."""
    from ..metrics import answer_token_sets
    from ..prompts import render_chat

    for name, text in (("positive", positive_prompt), ("negative", negative_prompt)):
        if not (text or "").strip():
            raise PatchingError(f"The {name} prompt is empty.")
    tok = loaded.tokenizer
    chat = use_chat_template and loaded.has_chat_template

    def encode(prompt: str) -> torch.Tensor:
        text = render_chat(tok, prompt) if chat else prompt
        return tok(text, return_tensors="pt", add_special_tokens=not chat)["input_ids"]

    aligned_ids, misaligned_ids = answer_token_sets(tok, list(aligned), list(misaligned))
    return layer_patching_effects(
        loaded.model,
        encode(positive_prompt),
        encode(negative_prompt),
        aligned_ids,
        misaligned_ids,
        layers=layers,
        position=position,
        cancel=cancel,
        on_progress=on_progress,
    )
