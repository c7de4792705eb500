"""One-call functions: rows of texts with one coefficient each, and unsteered layer states."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..limits import check_cancel
from ..models import LoadedModel, exclusive
from . import plain
from .packed import BATCH_TOKENS, PackedRunner, packed_stack
from .scorers import ChoiceScorer, NextTokenScorer
from .tree import PackedUnit, pack_units

if TYPE_CHECKING:
    from ..vectors import SteeringVector


def next_token_logits(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float] | float,
    columns: Sequence[int] | None = None,
) -> torch.Tensor:
    """Logits of the next token after each text, steered with one coefficient per row.

    Only the last position goes through the unembedding; ``columns`` restricts the returned
    vocabulary slice (the full row is still needed for a softmax, so callers that normalise over
    the vocabulary pass None).
    """
    coeff = plain.row_coefficients(coefficients, len(texts))
    keys = [float(c) for c in coeff]
    # One item per row; rows share a packed tree only when their coefficients are equal.
    scorer = NextTokenScorer(loaded, texts, vector, layers, plain_batch_rows=len(texts), keys=keys)
    if scorer.packed:
        out_rows, logits = scorer.run([(u, keys[items[0]]) for u, items in enumerate(scorer.units)])
        order = torch.tensor([i for i, _ in out_rows])
        logits = logits[torch.argsort(order)]
    else:
        logits = plain.next_token_logits(loaded, texts, vector, layers, coeff)
    if columns is not None:
        logits = logits[:, list(columns)]
    return logits


def choice_logliks(
    loaded: LoadedModel,
    prefixes: Sequence[str],
    choices: Sequence[Sequence[str]],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log-probabilities of each choice text after its prefix, and its token count.

    Each prefix is computed once and shared by its choices (in a packed prefix tree, or through
    the KV cache on the plain path), so a question with four choices costs one prefix plus four
    short continuations, not four full passes.
    """
    coeff = plain.row_coefficients(coefficients, len(prefixes))
    keys = [float(c) for c in coeff]
    scorer = ChoiceScorer(loaded, prefixes, choices, vector, layers, plain_batch_rows=len(prefixes), keys=keys)
    if scorer.packed:
        out_rows, sums, lengths = scorer.run([(u, keys[items[0]]) for u, items in enumerate(scorer.units)])
        order = np.argsort([i for i, _ in out_rows])
        return sums[order], lengths[order]
    sums, lengths = plain.choice_logliks(loaded, prefixes, scorer.choice_ids, vector, layers, coeff)
    return sums, lengths


def next_token_states(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float] | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden state (after the last norm, the input of the unembedding) and next-token
    logits after each text, steered with one coefficient per row: float32 [n, d] and [n, vocab]."""
    coeff = plain.row_coefficients(coefficients, len(texts))
    keys = [float(c) for c in coeff]
    scorer = NextTokenScorer(loaded, texts, vector, layers, plain_batch_rows=len(texts), keys=keys)
    out_rows, logits, states = scorer.run(
        [(u, keys[items[0]]) for u, items in enumerate(scorer.units)], return_states=True
    )
    order = torch.argsort(torch.tensor([i for i, _ in out_rows]))
    return states[order].float().cpu(), logits[order].float().cpu()


def next_token_states_grid(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector | None,
    layers,
    r_grid: Sequence[float],
    rows_per_call: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``next_token_states`` of every text at every coefficient of ``r_grid``: float32
    [n_r, n, d] and [n_r, n, vocab]. On the packed path the layers up to the first steered one
    run once per text, not once per (text, r_e)."""
    grid = [float(r) for r in r_grid]
    scorer = NextTokenScorer(loaded, texts, vector, layers, plain_batch_rows=rows_per_call)
    n = len(scorer.texts)
    states = torch.empty((len(grid), n, loaded.hidden_size), dtype=torch.float32)
    logits = None
    todo = [(u, r) for r in grid for u in range(len(scorer.units))]
    slot = {r: k for k, r in enumerate(grid)}
    for start in range(0, len(todo), rows_per_call):
        out_rows, lg, st = scorer.run(todo[start : start + rows_per_call], return_states=True)
        if logits is None:
            logits = torch.empty((len(grid), n, lg.shape[-1]), dtype=torch.float32)
        for j, (i, r) in enumerate(out_rows):
            states[slot[r], i] = st[j].float().cpu()
            logits[slot[r], i] = lg[j].float().cpu()
    assert logits is not None  # the grid and the texts are non-empty
    return states, logits


def layer_states(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_tokens: int = BATCH_TOKENS,
    plain_batch_rows: int = 16,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Unsteered last-token output of every decoder layer: float32 [n_texts, n_layers, d].

    Each block's output at the last position (the last block before the final norm, where steering
    adds the vector; for the others ``hidden_states[l + 1]``); texts sharing a prefix (contrast
    pairs differ only in their last few tokens) share its computation on the packed path.
    The model is held only for one forward pass at a time, and ``cancel`` is checked between them:
    another visitor's request waits at most one batch.
    """
    if not texts:
        raise ValueError("No texts to read hidden states from.")
    ids = loaded.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    if any(len(s) == 0 for s in ids):
        raise ValueError("A text is empty (no tokens).")
    stack = packed_stack(loaded, max(len(s) for s in ids))
    if stack is None:
        return plain.layer_states(loaded, list(texts), plain_batch_rows, cancel)
    units = []
    for items, tree, nodes in pack_units([[s] for s in ids]):
        unit = PackedUnit(items, tree)
        unit.reads = [seq_nodes[0][-1] for seq_nodes in nodes]
        units.append(unit)
    packed = PackedRunner(loaded, stack, loaded.n_layers, None, None, units, batch_tokens)
    out = torch.empty((len(texts), loaded.n_layers, loaded.hidden_size), dtype=torch.float32)
    for chunk in packed.chunks(range(len(units))):
        check_cancel(cancel, "Extraction")
        with torch.inference_mode(), exclusive(loaded.model):
            for u, states in packed.layer_states(chunk).items():
                out[units[u].items] = states.float().cpu()
    return out
