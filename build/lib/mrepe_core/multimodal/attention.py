"""Attention-based intervention (eq. 7): an additive bias on the attention logits of chosen keys.

``softmax((QK^T + M_c) / sqrt(d_k)) V`` with ``M_c`` non-zero only on the columns of the keys that
carry the concept (a span of a prompt, or concept-relevant image patches). ``strength`` is the bias
*after* the ``1/sqrt(d_k)`` scaling, i.e. ``M_c = strength * sqrt(d_k)``: every query's attention
weight on a span key is multiplied by ``exp(strength)`` before renormalisation (PASTA, Zhang et al.
2023, with its down-weighting coefficient ``exp(-strength)``). Negative strength suppresses.

The bias is injected through a forward pre-hook on each chosen attention module that rewrites the
``attention_mask`` keyword argument as an additive float mask. This works for the eager and SDPA
attention functions of transformers 5 (both add a float mask to the logits). Hooks exist only inside
the context; strength 0 registers none, so the forward pass is the unmodified one, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import hooks

SUPPORTED_ATTENTION = ("eager", "sdpa")


class AttentionBiasError(ValueError):
    """The attention bias cannot be applied as asked; the message says what to change."""


def attention_module(layer: nn.Module) -> nn.Module:
    """The self-attention submodule of a transformer block (Llama, GPT-2, CLIP, ...)."""
    for attr in ("self_attn", "attn", "attention", "self_attention"):
        module = getattr(layer, attr, None)
        if isinstance(module, nn.Module):
            return module
    raise AttentionBiasError(f"{type(layer).__name__} has no self-attention submodule (self_attn/attn/attention).")


def _layer_list(target: nn.Module | Sequence[nn.Module]) -> Sequence[nn.Module]:
    if isinstance(target, (nn.ModuleList, list, tuple)):
        return list(target)
    from ..models import decoder_layers

    assert isinstance(target, nn.Module)
    return list(decoder_layers(target))


def _num_heads(module: nn.Module) -> int:
    heads = getattr(module, "num_heads", None) or getattr(getattr(module, "config", None), "num_attention_heads", None)
    if not heads:
        raise AttentionBiasError(f"Cannot tell the number of heads of {type(module).__name__}; pass heads=None.")
    return int(heads)


def _check_implementation(module: nn.Module) -> None:
    impl = getattr(getattr(module, "config", None), "_attn_implementation", None)
    if impl is not None and impl not in SUPPORTED_ATTENTION:
        raise AttentionBiasError(
            f"The attention bias needs eager or sdpa attention; this model uses {impl!r}. "
            "Load it with attn_implementation='sdpa' (or 'eager')."
        )


def _as_key_mask(key_mask: torch.Tensor | Sequence[bool] | np.ndarray) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(key_mask) if not isinstance(key_mask, torch.Tensor) else key_mask)
    if mask.dtype != torch.bool:
        mask = mask != 0
    if mask.ndim == 1:
        mask = mask.unsqueeze(0)
    if mask.ndim != 2:
        raise AttentionBiasError("key_mask must be [seq] or [batch, seq] booleans over key positions.")
    return mask


def _bias_rewrite(
    key_mask: torch.Tensor, strength: float, head_select: torch.Tensor | None, layer_idx: int, is_causal: bool
):
    """The keyword rewrite of one attention module: its mask plus the bias on the span's keys."""

    def rewrite(args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden is None:
            raise AttentionBiasError("The attention module was called without hidden states.")
        if "attention_mask" not in kwargs and len(args) > 1:
            raise AttentionBiasError(
                "This attention module receives its mask positionally; the bias supports keyword masks only."
            )
        batch, q_len = hidden.shape[0], hidden.shape[1]
        dtype, device = hidden.dtype, hidden.device
        min_value = torch.finfo(dtype).min
        mask = kwargs.get("attention_mask")
        if mask is None:
            cache = kwargs.get("cache")
            past = int(cache.get_seq_length(layer_idx)) if cache is not None else 0
            k_len = past + q_len
            causal = kwargs.get("is_causal", is_causal)
            if causal:
                q_pos = torch.arange(past, past + q_len, device=device)[:, None]
                allowed = (torch.arange(k_len, device=device)[None, :] <= q_pos).view(1, 1, q_len, k_len)
            else:
                allowed = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
            base = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, min_value)
        elif mask.dtype == torch.bool:
            allowed = mask
            base = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, min_value)
        else:
            base = mask.to(dtype)
            allowed = base > min_value / 2
        k_len = base.shape[-1]
        keys = key_mask.to(device)
        if keys.shape[-1] > k_len:
            raise AttentionBiasError(
                f"The span mask covers {keys.shape[-1]} positions but the layer sees {k_len} keys."
            )
        if keys.shape[0] not in (1, batch):
            raise AttentionBiasError(f"The span mask has {keys.shape[0]} rows for a batch of {batch}.")
        # Keys past the marked prompt (generated tokens) are never biased.
        keys = torch.nn.functional.pad(keys, (0, k_len - keys.shape[-1]), value=False)
        bias = keys.to(dtype).mul(strength).view(keys.shape[0], 1, 1, k_len)
        if head_select is not None:
            bias = bias * head_select.to(device=device, dtype=dtype).view(1, -1, 1, 1)
        kwargs["attention_mask"] = base + torch.where(allowed, bias, torch.zeros((), dtype=dtype, device=device))
        return args, kwargs

    return rewrite


@contextmanager
def attention_bias(
    target: nn.Module | Sequence[nn.Module],
    key_mask: torch.Tensor | Sequence[bool] | np.ndarray,
    strength: float,
    layers: Sequence[int] | str | None = None,
    heads: Sequence[int] | None = None,
) -> Iterator[None]:
    """Add ``strength`` to the attention logits of the keys in ``key_mask`` inside the context.

    ``target`` is a causal LM (its decoder layers are found with ``models.decoder_layers``) or a list
    of transformer blocks (e.g. a CLIP encoder's ``layers``). ``key_mask`` is ``[seq]`` or
    ``[batch, seq]`` over the input positions; later positions (generated tokens) get no bias.
    ``layers`` defaults to all blocks; ``heads`` to all heads.
    """
    strength = float(strength)
    if not np.isfinite(strength):
        raise AttentionBiasError("The attention strength must be a finite number.")
    if abs(strength) > 50:
        raise AttentionBiasError(
            f"Strength {strength} is absurd: exp({strength}) saturates the softmax. Use |s| <= 50."
        )
    blocks = _layer_list(target)
    mask = _as_key_mask(key_mask)
    from ..models import resolve_layers

    chosen = resolve_layers(layers, len(blocks))
    with ExitStack() as stack:
        if isinstance(target, nn.Module) and not isinstance(target, nn.ModuleList):
            from ..models import exclusive

            # Hooks are global to the module: hold the model so concurrent requests cannot see them.
            stack.enter_context(exclusive(target))
        rewrites = {}
        if strength != 0.0 and bool(mask.any()):
            for idx in chosen:
                module = attention_module(blocks[idx])
                _check_implementation(module)
                head_select = None
                if heads is not None:
                    n_heads = _num_heads(module)
                    bad = [h for h in heads if not 0 <= int(h) < n_heads]
                    if bad or not heads:
                        raise AttentionBiasError(f"Heads {list(heads)} are out of range for {n_heads} heads.")
                    head_select = torch.zeros(n_heads, dtype=torch.bool)
                    head_select[list(int(h) for h in heads)] = True
                rewrites[module] = _bias_rewrite(
                    mask,
                    strength,
                    head_select,
                    getattr(module, "layer_idx", idx),
                    bool(getattr(module, "is_causal", False)),
                )
        stack.enter_context(hooks.rewrite_kwargs(rewrites))
        yield


def active_bias_hooks(target: nn.Module | Sequence[nn.Module]) -> int:
    """Number of our hooks on the attention modules (0 outside any ``attention_bias``)."""
    return hooks.count(attention_module(block) for block in _layer_list(target))


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Temporarily switch a transformers model to eager attention so it can return attention weights.

    SDPA computes the same function but never materialises the weights. The original implementation
    is restored on exit, also on error.
    """
    config = getattr(model, "config", None)
    original = getattr(config, "_attn_implementation", None)
    if original is None or original == "eager":
        yield
        return
    if not hasattr(model, "set_attn_implementation"):
        raise AttentionBiasError(f"{type(model).__name__} cannot switch to eager attention.")
    from ..models import exclusive

    switch: Any = model.set_attn_implementation  # transformers' method (nn.Module attributes are untyped)
    with exclusive(model):
        switch("eager")
        try:
            yield
        finally:
            switch(original)


def span_token_mask(offsets: Sequence[tuple[int, int]], start: int, end: int) -> np.ndarray:
    """Tokens whose character range overlaps ``[start, end)`` (offsets from a fast tokenizer)."""
    if not 0 <= start < end:
        raise AttentionBiasError("The span is empty; mark at least one character.")
    return np.array([(s < end and e > start and e > s) for s, e in offsets], dtype=bool)
