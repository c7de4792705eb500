"""Decoding many rows together: one token per row per step, each row with its own coefficient.

A ``DecodeBatch`` holds the rows being written: their key/value cache (left-padded), attention
mask, next positions, coefficients, token budgets and the tokens written so far. ``step()`` runs
one forward pass for every live row; rows that finish (end of sequence, or their budget) leave the
batch at once, so the last steps cost only what is still being written. ``merge()`` lets rows
prefilled later join between two steps (continuous batching: a visitor who arrives while others
are being served waits for one step, not for their whole answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models import LoadedModel
from ..steering import steer
from ..vectors import SteeringVector


def new_cache(loaded: LoadedModel):
    from transformers import DynamicCache

    return DynamicCache(config=loaded.model.config)


def eos_ids(loaded: LoadedModel) -> set[int]:
    ids = set()
    configured = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    for value in configured if isinstance(configured, (list, tuple)) else [configured]:
        if value is not None:
            ids.add(int(value))
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


@dataclass
class Prefill:
    """Prefilled rows: first-token logits [R, V], their cache, the 2-D mask and each row's next position."""

    logits: torch.Tensor
    cache: object
    mask: torch.Tensor
    positions: torch.Tensor


def pick(logits: torch.Tensor, do_sample: bool, temperature: float, generator) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits / max(float(temperature), 1e-6), dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


def _layers_kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """Pad [R, H, L, D] (or [R, L]) on the left of its sequence axis to ``length``."""
    missing = length - t.shape[-2 if t.ndim == 4 else -1]
    if missing <= 0:
        return t
    if t.ndim == 4:
        pad = torch.zeros((t.shape[0], t.shape[1], missing, t.shape[3]), dtype=t.dtype, device=t.device)
        return torch.cat([pad, t], dim=2)
    return torch.cat([torch.zeros((t.shape[0], missing), dtype=t.dtype, device=t.device), t], dim=1)


@dataclass
class DecodeBatch:
    """Rows being decoded (module docstring). ``ids`` name the rows for the caller."""

    loaded: LoadedModel
    vector: SteeringVector | None
    layers: Sequence[int] | str | None
    ids: list = field(default_factory=list)
    coeff: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    budgets: list[int] = field(default_factory=list)
    written: list[list[int]] = field(default_factory=list)
    # Empty until the first merge; ``ids`` being empty is what marks an empty batch.
    token: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    cache: Any = None  # a transformers DynamicCache once rows are in
    mask: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 0), dtype=torch.long))
    positions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    do_sample: bool = False
    temperature: float = 1.0
    generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @torch.inference_mode()
    def merge(self, prefill: Prefill, ids: list, coeff: torch.Tensor, budgets: list[int]) -> dict:
        """Add prefilled rows (their first token is picked here); returns ``{id: tokens}`` of the
        rows already finished (end of sequence at once, or a budget of one token)."""
        token = pick(prefill.logits, self.do_sample, self.temperature, self.generator)
        if not self.ids:
            self.cache, self.mask, self.positions, self.token = prefill.cache, prefill.mask, prefill.positions, token
            self.ids, self.coeff, self.budgets = list(ids), coeff.clone(), list(budgets)
            self.written = [[] for _ in ids]
        else:
            length = max(self.mask.shape[1], prefill.mask.shape[1])
            merged = new_cache(self.loaded)
            for layer, ((k1, v1), (k2, v2)) in enumerate(zip(_layers_kv(self.cache), _layers_kv(prefill.cache))):
                merged.update(
                    torch.cat([_left_pad(k1, length), _left_pad(k2, length)]),
                    torch.cat([_left_pad(v1, length), _left_pad(v2, length)]),
                    layer,
                )
            self.cache = merged
            self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(prefill.mask, length)])
            self.positions = torch.cat([self.positions, prefill.positions])
            self.token = torch.cat([self.token, token])
            self.ids += list(ids)
            self.coeff = torch.cat([self.coeff, coeff])
            self.budgets += list(budgets)
            self.written += [[] for _ in ids]
        return self._record()

    def _record(self) -> dict:
        """Append each row's newest token and drop the rows that finished: ``{id: tokens}`` of those."""
        eos = eos_ids(self.loaded)
        keep, finished = [], []
        for k, t in enumerate(self.token.tolist()):
            if t not in eos:
                self.written[k].append(t)
            if t in eos or len(self.written[k]) >= self.budgets[k]:
                finished.append(k)
            else:
                keep.append(k)
        done = {self.ids[k]: self.written[k] for k in finished}
        if finished:
            self.drop(keep)
        return done

    @torch.inference_mode()
    def drop(self, keep: list[int]) -> None:
        """Keep only the rows at these positions (others finished, or their visitor left)."""
        if len(keep) == len(self.ids):
            return
        if not keep:
            self.ids, self.budgets, self.written, self.cache = [], [], [], None
            return
        idx = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.positions, self.token = self.mask[idx], self.positions[idx], self.token[idx]
        self.coeff = self.coeff[idx.cpu()]
        self.ids = [self.ids[k] for k in keep]
        self.budgets = [self.budgets[k] for k in keep]
        self.written = [self.written[k] for k in keep]
        self._trim_padding()

    def _trim_padding(self) -> None:
        """Cut the cache columns that no remaining row attends to (left padding of rows that left).

        The batch keeps running while visitors keep arriving, and every step adds a column; without
        this the cache would grow with the batch's age rather than with its oldest live row (a
        server under steady load ran out of memory). Positions are explicit, so results do not change."""
        used = self.mask.bool().any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.mask.shape[1]
        if first == 0:
            return
        trimmed = new_cache(self.loaded)
        for layer, (k, v) in enumerate(_layers_kv(self.cache)):
            trimmed.update(k[:, :, first:, :].contiguous(), v[:, :, first:, :].contiguous(), layer)
        self.cache, self.mask = trimmed, self.mask[:, first:].contiguous()

    @torch.inference_mode()  # callers such as the serving batcher need not remember it
    def step(self) -> dict:
        """One token for every live row; returns ``{id: tokens}`` of the rows that finished."""
        if not self.ids:
            return {}
        ones = torch.ones((len(self.ids), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        with steer(self.loaded.model, self.vector, self.layers, self.coeff):
            out = self.loaded.model(
                input_ids=self.token[:, None],
                attention_mask=self.mask,
                position_ids=self.positions[:, None],
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.positions = self.positions + 1
        self.token = pick(out.logits[:, -1, :].float(), self.do_sample, self.temperature, self.generator)
        return self._record()
