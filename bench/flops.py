"""Model FLOPs that a piece of steering work needs: 2 x (matrix parameters of the layers run) x tokens.

Counted by layer range: embedding lookups are free (a gather, no matmul), a decoder layer costs
2 x its weight-matrix parameters per token it processes (norm weights and biases, a few thousandths
of a layer, are left out; so are the attention scores, which grow with context length rather than
with parameters and are small at the packed rows' <= 256 tokens), and the LM head costs
2 x vocab x hidden per position whose logits are computed.

``packed_work(scorer, n_coefficients)`` counts what the engine's packed runner does for a scorer's
units (``runner.NextTokenScorer`` / ``runner.ChoiceScorer``), one pass over every (unit, r_e):
the layers up to and including the first steered one once per unit, the layers above it once per
(unit, r_e), the read-only last layer's keys and values at every node but the rest of it only at
the read nodes, and the head at the read nodes. Padding inside a batch is not needed work and is
not counted (it is part of what the engine's time pays for). ``sequence_work`` counts a plain full
forward pass over token sequences (the naive and peer loops).

``model_matmul_shapes(model, tokens)`` lists the (m, k, n) shapes of one decoder layer's matmuls at
``tokens`` rows, the input of ``hardware.matmul_flops`` for the attainable rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from mrepe_core.models import decoder_layers


def matrix_params(module: torch.nn.Module) -> int:
    """Parameters of ``module`` that multiply activations in a matmul (its 2-D weights)."""
    return sum(p.numel() for p in module.parameters() if p.ndim >= 2)


def layer_params(model: torch.nn.Module) -> list[int]:
    """Matrix parameters of each decoder layer."""
    return [matrix_params(layer) for layer in decoder_layers(model)]


def head_params(model: torch.nn.Module) -> int:
    """Matrix parameters of the LM head (vocab x hidden; counted even when tied to the embedding)."""
    head = model.get_output_embeddings()
    return int(head.weight.numel()) if head is not None else 0


def last_layer_split(layer: torch.nn.Module) -> tuple[int, int] | None:
    """(key/value projection parameters, all other matrix parameters) of a Llama-family layer, or None."""
    attn = getattr(layer, "self_attn", None)
    if attn is None or not all(hasattr(attn, a) for a in ("k_proj", "v_proj")):
        return None
    kv = matrix_params(attn.k_proj) + matrix_params(attn.v_proj)
    return kv, matrix_params(layer) - kv


@dataclass
class Work:
    """FLOPs of some work, by part, and the tokens (tree nodes or sequence tokens) the layers processed."""

    flops: float = 0.0
    tokens: int = 0  # token positions through decoder layers (a node counted once per time it is run)
    logits: int = 0  # positions whose logits were computed
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, flops: float) -> None:
        self.flops += flops
        self.parts[part] = self.parts.get(part, 0.0) + flops

    def __add__(self, other: Work) -> Work:
        out = Work(self.flops + other.flops, self.tokens + other.tokens, self.logits + other.logits, dict(self.parts))
        for k, v in other.parts.items():
            out.parts[k] = out.parts.get(k, 0.0) + v
        return out

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / 1e9:.4g}" for k, v in self.parts.items())
        return f"{self.flops / 1e9:.4g} GFLOP ({parts}); {self.tokens} layer-tokens, {self.logits} logit rows"


def _range_name(start: int, stop: int) -> str:
    return f"layers {start}-{stop - 1}" if stop - start > 1 else f"layer {start}"


def packed_work(scorer, n_coefficients: int) -> Work:
    """FLOPs the engine's packed runner needs for every unit of ``scorer`` at ``n_coefficients`` r_e.

    Falls back to ``plain_scorer_work`` when the scorer runs the plain path.
    """
    if not getattr(scorer, "packed", False):
        return plain_scorer_work(scorer, n_coefficients)
    runner = scorer._runner
    model = runner.loaded.model
    params = layer_params(model)
    n_layers = len(params)
    cached = runner.cached_layers
    head = head_params(model)
    split = last_layer_split(decoder_layers(model)[n_layers - 1])
    last_at_reads = bool(runner._last_layer_mirrorable) and split is not None
    per_r_stop = n_layers - 1 if last_at_reads else n_layers
    once_params = sum(params[:cached])
    per_r_params = sum(params[cached:per_r_stop])
    work = Work()
    for unit in runner.units:
        nodes, reads = len(unit), len(unit.reads)
        if cached:
            work.add(f"{_range_name(0, cached)} once per unit", 2.0 * nodes * once_params)
            work.tokens += nodes * cached
        if per_r_stop > cached:
            work.add(f"{_range_name(cached, per_r_stop)} per r_e", 2.0 * nodes * per_r_params * n_coefficients)
            work.tokens += nodes * (per_r_stop - cached) * n_coefficients
        if last_at_reads:
            kv, rest = split
            work.add(f"layer {n_layers - 1} at reads per r_e", 2.0 * (nodes * kv + reads * rest) * n_coefficients)
            work.tokens += nodes * n_coefficients  # every node passes its keys/values
        work.add("head at reads per r_e", 2.0 * reads * head * n_coefficients)
        work.logits += reads * n_coefficients
    return work


def sequence_work(
    model: torch.nn.Module, lengths: Iterable[int], logits_per_sequence: Sequence[int] | int | None = None
) -> Work:
    """FLOPs of full forward passes over sequences of ``lengths`` tokens, all layers, with logits at
    ``logits_per_sequence`` positions of each (None: every position, as a forward without
    ``logits_to_keep`` computes them)."""
    params = sum(layer_params(model))
    head = head_params(model)
    lengths = list(lengths)
    if logits_per_sequence is None:
        logits = lengths
    elif isinstance(logits_per_sequence, int):
        logits = [logits_per_sequence] * len(lengths)
    else:
        logits = list(logits_per_sequence)
    work = Work()
    work.add("all layers", 2.0 * params * sum(lengths))
    work.add("head", 2.0 * head * sum(logits))
    work.tokens = sum(lengths) * len(decoder_layers(model))
    work.logits = sum(logits)
    return work


def plain_scorer_work(scorer, n_coefficients: int) -> Work:
    """FLOPs of a scorer on the runner's plain path (left-padded batches, no layer skip), per r_e:
    next-token scorers run each text once with one logit row; choice scorers run each prefix once
    and its choices' tokens as continuations (KV cache), with logits at every choice position."""
    model = scorer.loaded.model
    tok = scorer.loaded.tokenizer
    if hasattr(scorer, "choice_ids"):
        prefix_lengths = [len(ids) for ids in tok(scorer.prefixes, add_special_tokens=False)["input_ids"]]
        lengths, logits = [], []
        for p, row in zip(prefix_lengths, scorer.choice_ids):
            lengths.append(p + sum(len(c) for c in row))
            logits.append(1 + sum(len(c) - 1 for c in row))
    else:
        lengths = [len(ids) for ids in tok(scorer.texts, add_special_tokens=False)["input_ids"]]
        logits = [1] * len(lengths)
    one = sequence_work(model, lengths, logits)
    return Work(
        one.flops * n_coefficients,
        one.tokens * n_coefficients,
        one.logits * n_coefficients,
        {k: v * n_coefficients for k, v in one.parts.items()},
    )


def model_matmul_shapes(model: torch.nn.Module, tokens: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every linear map of one decoder layer at ``tokens`` rows (the bulk of the work)."""
    layer = decoder_layers(model)[0]
    return [
        (int(tokens), int(m.in_features), int(m.out_features))
        for m in layer.modules()
        if isinstance(m, torch.nn.Linear)
    ]
