"""Generation: greedy (or sampled) continuations of many (prompt, r_e) rows, each with its own coefficient.

Two phases, both batched over rows:

* **prefill**. On the packed path (Llama-family) the prompts are merged into prefix trees (a chat
  template's system prompt is computed once per tree, not once per prompt), the layers up to the
  first steered one run once per tree (their output does not depend on r_e), and only the layers
  above run once per (tree, r_e); the keys and values of every layer are kept and gathered into an
  ordinary left-padded cache per row. Other families prefill through the model's own forward.
* **decode**. One token per row per step through the model's own forward with the cache and a
  steering hook carrying one coefficient per row; rows that finish (end of sequence or their own
  token budget) leave the batch, so the last steps cost only what is still being written.

The numbers equal one-row-at-a-time generation (``tests/unit/test_generation.py``). The model is
held for one forward pass at a time, so another request waits at most one step, and ``cancel`` is
checked between steps.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..limits import check_cancel
from ..models import LoadedModel, exclusive
from ..steering import steer
from .decode import DecodeBatch, Prefill, new_cache
from .packed import KVRecorder, PackedRunner, first_steered_layer, packed_stack
from .plain import encode_left_padded, row_coefficients
from .tree import PackedUnit, pack_units

if TYPE_CHECKING:
    from ..vectors import SteeringVector

# Key/value memory one decode batch may hold (rows are split into batches under it).
KV_BUDGET_BYTES = 768 * 2**20
# Packed prefill: tokens per forward pass in the per-coefficient stage.
PREFILL_BATCH_TOKENS = 4096


def _kv_bytes_per_token(loaded: LoadedModel) -> int:
    config = loaded.model.config
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", None) or 1
    head_dim = getattr(config, "head_dim", None) or loaded.hidden_size // max(
        getattr(config, "num_attention_heads", 1) or 1, 1
    )
    return 2 * loaded.n_layers * int(heads) * int(head_dim) * torch.tensor([], dtype=loaded.dtype).element_size()


def _plain_prefill(loaded: LoadedModel, texts: list[str], vector, layers, coeff: torch.Tensor) -> Prefill:
    enc = encode_left_padded(loaded, texts)
    cache = new_cache(loaded)
    with steer(loaded.model, vector, layers, coeff):
        out = loaded.model(**enc, cache=cache, use_cache=True, logits_to_keep=1)
    positions = enc["attention_mask"].sum(-1)
    return Prefill(out.logits[:, -1, :].float(), cache, enc["attention_mask"], positions)


def _packed_prefill(
    loaded: LoadedModel, stack, ids: list[list[int]], vector, layers, coeff: torch.Tensor, cancel
) -> Prefill:
    """Rows are (text, coefficient); texts sharing a prefix share a tree, coefficients share the
    layers below the first steered one. Keys and values are gathered per row into a left-padded cache."""
    texts = sorted(set(map(tuple, ids)))
    index = {t: k for k, t in enumerate(texts)}
    units = []
    for items, tree, nodes in pack_units([[list(t)] for t in texts]):
        unit = PackedUnit(items, tree)
        unit.reads = [seq_nodes[0][-1] for seq_nodes in nodes]
        unit.paths = [seq_nodes[0] for seq_nodes in nodes]  # type: ignore[attr-defined]
        units.append(unit)
    runner = PackedRunner(
        loaded, stack, first_steered_layer(loaded, vector, layers), vector, layers, units, PREFILL_BATCH_TOKENS
    )
    runner.record_kv = True
    where = {item: (u, slot) for u, unit in enumerate(units) for slot, item in enumerate(unit.items)}
    rows_of: dict[tuple[int, float], list[tuple[int, int]]] = {}  # (unit, r_e) -> [(row, slot)]
    for row, (seq, c) in enumerate(zip(ids, coeff.tolist())):
        u, slot = where[index[tuple(seq)]]
        rows_of.setdefault((u, float(c)), []).append((row, slot))
    wanted = sorted(rows_of)
    n_rows, n_layers = len(ids), loaded.n_layers
    longest = max(len(s) for s in ids)
    lengths = torch.tensor([len(s) for s in ids])
    kv_shape = None
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    logits = None
    for batch in runner.batches(wanted):
        check_cancel(cancel, "Generation")
        recorder = KVRecorder()
        with exclusive(loaded.model):
            states = runner.read_states(batch, recorder)
        for b, (u, c) in enumerate(batch):
            head = runner.head(states[b]).float()
            for row, slot in rows_of[(u, c)]:
                if logits is None:
                    logits = torch.empty((n_rows, head.shape[-1]), dtype=torch.float32, device=head.device)
                logits[row] = head[slot]
                path = torch.tensor(units[u].paths[slot], device=head.device)  # type: ignore[attr-defined]
                start = longest - len(path)
                for layer in range(n_layers):
                    k, v = recorder.kv[layer] if layer in recorder.kv else runner.lower_kv[u][layer]
                    k, v = (k[b], v[b]) if layer in recorder.kv else (k, v)
                    if kv_shape is None:
                        kv_shape = (n_rows, k.shape[0], longest, k.shape[-1])
                        keys = [torch.zeros(kv_shape, dtype=k.dtype, device=k.device) for _ in range(n_layers)]
                        values = [torch.zeros(kv_shape, dtype=v.dtype, device=v.device) for _ in range(n_layers)]
                    keys[layer][row, :, start:] = k[:, path]
                    values[layer][row, :, start:] = v[:, path]
    if logits is None:  # every row is in some batch, so only an empty input gets here
        raise ValueError("prefill needs at least one row")
    cache = new_cache(loaded)
    for layer in range(n_layers):
        cache.update(keys[layer], values[layer], layer)
    mask = (torch.arange(longest)[None, :] >= (longest - lengths)[:, None]).long().to(loaded.device)
    return Prefill(logits, cache, mask, lengths.to(loaded.device))


@torch.inference_mode()  # no autograd graph: a caller outside inference mode kept every step's activations
def prefill_rows(loaded: LoadedModel, texts: list[str], vector, layers, coeff: torch.Tensor, cancel=None) -> Prefill:
    """Prefill rows for decoding: the packed path where the model's family allows it, else the
    model's own forward (both leave an ordinary left-padded cache)."""
    ids = loaded.tokenizer(texts, add_special_tokens=False)["input_ids"]
    if any(len(s) == 0 for s in ids):
        raise ValueError("A prompt is empty (no tokens).")
    stack = packed_stack(loaded, max(len(s) for s in ids) + 512)
    check_cancel(cancel, "Generation")
    if stack is not None:
        return _packed_prefill(loaded, stack, ids, vector, layers, coeff, cancel)
    return _plain_prefill(loaded, texts, vector, layers, coeff)


@torch.inference_mode()
def generate(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float] | float,
    max_new_tokens: int | Sequence[int] = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Greedy (or sampled) continuations, one row per text, each steered with its own coefficient
    and (optionally) its own token budget."""
    texts = list(texts)
    if not texts:
        return []
    coeff = row_coefficients(coefficients, len(texts))
    budgets = (
        [int(max_new_tokens)] * len(texts) if isinstance(max_new_tokens, int) else [int(b) for b in max_new_tokens]
    )
    if len(budgets) != len(texts) or min(budgets) < 1:
        raise ValueError("Give one token budget (>= 1) per text, or one for all.")
    ids = loaded.tokenizer(texts, add_special_tokens=False)["input_ids"]
    if any(len(s) == 0 for s in ids):
        raise ValueError("A prompt is empty (no tokens).")
    stack = packed_stack(loaded, max(len(s) for s in ids) + max(budgets))
    generator = torch.Generator().manual_seed(int(seed)) if do_sample else None
    # Rows sharing a prompt sit together (they share its tree); batches are bounded by cache memory.
    order = sorted(range(len(texts)), key=lambda i: (ids[i], float(coeff[i])))
    per_row = _kv_bytes_per_token(loaded) * (max(len(s) for s in ids) + max(budgets))
    batch_rows = max(1, KV_BUDGET_BYTES // max(per_row, 1))
    results: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_rows):
        rows = order[start : start + batch_rows]
        c = coeff[rows]
        check_cancel(cancel, "Generation")
        if stack is not None:
            prefill = _packed_prefill(loaded, stack, [ids[i] for i in rows], vector, layers, c, cancel)
        else:
            prefill = _plain_prefill(loaded, [texts[i] for i in rows], vector, layers, c)
        batch = DecodeBatch(loaded, vector, layers, do_sample=do_sample, temperature=temperature, generator=generator)
        finished = batch.merge(prefill, rows, c, [budgets[i] for i in rows])
        while len(batch):
            check_cancel(cancel, "Generation")
            finished.update(batch.step())
        for i, toks in finished.items():
            results[i] = loaded.tokenizer.decode(toks, skip_special_tokens=True)
    return results
