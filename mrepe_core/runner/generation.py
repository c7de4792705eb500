"""Generation: greedy (or sampled) continuations, each row steered with its own coefficient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..models import LoadedModel
from ..steering import steer

if TYPE_CHECKING:
    from ..vectors import SteeringVector


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
    new = out[:, enc["input_ids"].shape[1] :]
    return [tok.decode(row, skip_special_tokens=True) for row in new]
