"""Batched steered forward passes: many (item, r_e) rows per forward, logits only where read.

Every function here takes a ``LoadedModel`` and returns plain arrays; the sweep decides what to
run. Rows are left-padded with explicit position ids, so a padded row computes exactly what it
would compute alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .models import LoadedModel
from .steering import steer
from .vectors import SteeringVector


def encode_left_padded(loaded: LoadedModel, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = loaded.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    mask = enc["attention_mask"]
    # HF models number positions 0..T-1 regardless of left padding unless told otherwise.
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": enc["input_ids"].to(loaded.device), "attention_mask": mask.to(loaded.device),
            "position_ids": position_ids.to(loaded.device)}


@torch.no_grad()
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
    enc = encode_left_padded(loaded, texts)
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    if coeff.ndim == 0:
        coeff = coeff.expand(len(texts)).clone()
    with steer(loaded.model, vector, layers, coeff):
        out = loaded.model(**enc, use_cache=False, logits_to_keep=1)
    logits = out.logits[:, -1, :]
    if columns is not None:
        logits = logits[:, list(columns)]
    return logits.float()


@torch.no_grad()
def choice_logliks(
    loaded: LoadedModel,
    prefixes: Sequence[str],
    choices: Sequence[Sequence[str]],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log-probabilities of each choice text after its prefix, and its token count.

    Each prefix runs once; its key/value cache is repeated for the choices, so a question with
    four choices costs one prefix plus four short continuations, not four full passes.
    """
    tok, model = loaded.tokenizer, loaded.model
    n_rows, n_choices = len(prefixes), len(choices[0])
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    enc = encode_left_padded(loaded, prefixes)
    choice_ids = [[tok(" " + c.strip(), add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
                   for c in row] for row in choices]
    flat = [ids for row in choice_ids for ids in row]
    width = max(len(ids) for ids in flat)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    # Right-pad the continuations: causal attention means padding after a token cannot change it.
    cont = torch.full((len(flat), width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(flat), width), dtype=torch.long)
    for i, ids in enumerate(flat):
        cont[i, : len(ids)] = torch.tensor(ids)
        cont_mask[i, : len(ids)] = 1
    cont, cont_mask = cont.to(loaded.device), cont_mask.to(loaded.device)
    base = model.base_model
    head = model.get_output_embeddings()
    with steer(model, vector, layers, coeff):
        pre = model(**enc, use_cache=True, logits_to_keep=1)
    first_logp = torch.log_softmax(pre.logits[:, -1, :].float(), -1)  # predicts each choice's first token
    cache = pre.past_key_values
    cache.batch_repeat_interleave(n_choices)
    mask = torch.cat([enc["attention_mask"].repeat_interleave(n_choices, 0), cont_mask], dim=1)
    start = enc["position_ids"][:, -1:].repeat_interleave(n_choices, 0) + 1
    pos = start + torch.arange(width, device=loaded.device).view(1, -1)
    with steer(model, vector, layers, coeff.repeat_interleave(n_choices)):
        hidden = base(input_ids=cont, attention_mask=mask, position_ids=pos, past_key_values=cache,
                      use_cache=False).last_hidden_state
    lengths = cont_mask.sum(-1)
    sums = torch.zeros(len(flat), dtype=torch.float64)
    first_rows = first_logp.repeat_interleave(n_choices, 0)
    sums += first_rows.gather(1, cont[:, :1]).squeeze(1).double().cpu()
    if width > 1:
        # Logits only at the continuation positions that predict a real next token.
        rows, cols = torch.nonzero(cont_mask[:, 1:], as_tuple=True)
        h = hidden[rows, cols]
        logp = torch.log_softmax(head(h).float(), -1)
        target = cont[rows, cols + 1]
        sums.index_add_(0, rows.cpu(), logp.gather(1, target.view(-1, 1)).squeeze(1).double().cpu())
    return sums.view(n_rows, n_choices).numpy(), lengths.view(n_rows, n_choices).cpu().numpy()


@torch.no_grad()
def generate(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector | None,
    layers,
    coefficients: Sequence[float] | float,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Greedy (or sampled) continuations, each row with its own steering coefficient."""
    tok, model = loaded.tokenizer, loaded.model
    enc = loaded.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(loaded.device) for k, v in enc.items()}
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    if coeff.ndim == 0:
        coeff = coeff.expand(len(texts)).clone()
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tok.pad_token_id)
    if do_sample:
        kwargs["temperature"] = temperature
        torch.manual_seed(seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with steer(model, vector, layers, coeff):
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    return [tok.decode(row, skip_special_tokens=True) for row in new]
