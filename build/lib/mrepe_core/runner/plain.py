"""Plain path: left-padded batches through the model's own forward (every family; the reference shape).

Also the fallback of the packed path for families or attention kernels it does not cover.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import hooks
from ..limits import check_cancel
from ..models import LoadedModel, decoder_layers
from ..steering import steer


def encode_left_padded(loaded: LoadedModel, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = loaded.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    mask = enc["attention_mask"]
    # HF models number positions 0..T-1 regardless of left padding unless told otherwise.
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return {
        "input_ids": enc["input_ids"].to(loaded.device),
        "attention_mask": mask.to(loaded.device),
        "position_ids": position_ids.to(loaded.device),
    }


def row_coefficients(coefficients, n: int) -> torch.Tensor:
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    if coeff.ndim == 0:
        coeff = coeff.expand(n).clone()
    if coeff.shape != (n,):
        raise ValueError(f"{coeff.numel()} coefficients for {n} rows; give one per row (or a scalar).")
    return coeff


@torch.inference_mode()
def next_token_logits(loaded: LoadedModel, texts: Sequence[str], vector, layers, coeff: torch.Tensor) -> torch.Tensor:
    enc = encode_left_padded(loaded, texts)
    with steer(loaded.model, vector, layers, coeff):
        out = loaded.model(**enc, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1, :].float()


@torch.inference_mode()
def final_states(
    loaded: LoadedModel, texts: Sequence[str], vector, layers, coeff: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    enc = encode_left_padded(loaded, texts)
    with steer(loaded.model, vector, layers, coeff):
        hidden = loaded.model.base_model(**enc, use_cache=False).last_hidden_state[:, -1, :]
    return hidden, loaded.model.get_output_embeddings()(hidden).float()


@torch.inference_mode()
def layer_states(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 16, cancel=None) -> torch.Tensor:
    """Last-token output of every decoder block (the last one before the final norm), read with hooks."""
    blocks = decoder_layers(loaded.model)
    out = []
    for start in range(0, len(texts), batch_size):
        check_cancel(cancel, "Extraction")
        enc = encode_left_padded(loaded, texts[start : start + batch_size])
        last_position = lambda h: h[:, -1, :].float().cpu()  # noqa: E731
        with hooks.record_outputs(dict(enumerate(blocks)), model=loaded.model, select=last_position) as seen:
            loaded.model(**enc, use_cache=False, logits_to_keep=1)
        out.append(torch.stack([seen[k] for k in range(len(blocks))], dim=1))
    return torch.cat(out)


def choice_token_ids(tokenizer, choices: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Each choice as it continues 'Answer:' (leading space); an empty choice scores the EOS token."""
    return [
        [tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for c in row]
        for row in choices
    ]


@torch.inference_mode()
def choice_logliks(
    loaded: LoadedModel, prefixes: Sequence[str], choice_ids: list[list[list[int]]], vector, layers, coeff: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Each prefix runs once; its key/value cache is repeated for the choices."""
    tok, model = loaded.tokenizer, loaded.model
    n_rows, n_choices = len(prefixes), len(choice_ids[0])
    enc = encode_left_padded(loaded, prefixes)
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
    cache = pre.cache
    cache.batch_repeat_interleave(n_choices)
    mask = torch.cat([enc["attention_mask"].repeat_interleave(n_choices, 0), cont_mask], dim=1)
    start = enc["position_ids"][:, -1:].repeat_interleave(n_choices, 0) + 1
    pos = start + torch.arange(width, device=loaded.device).view(1, -1)
    with steer(model, vector, layers, coeff.repeat_interleave(n_choices)):
        hidden = base(
            input_ids=cont, attention_mask=mask, position_ids=pos, cache=cache, use_cache=False
        ).last_hidden_state
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
