"""The last decoder layer at the read nodes only: a mirror of the Llama-family layer.

When the last layer is not steered, only a few of its outputs are read (answer positions, choice
tokens), so its queries, attention output and MLP are computed at those nodes; keys and values are
still computed at every node. This mirrors transformers' own layer code, so
``tests/unit/test_runner_fast.py`` compares it with transformers' forward on tiny models of every
packed family (Llama, Mistral, Qwen2, Qwen3): a change in transformers fails a test, not a user.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.models.llama.modeling_llama import rotate_half  # shared by the families here

_ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")


def mirrorable(layer) -> bool:
    """Whether ``layer`` has the Llama-family shape that ``output_at_reads`` mirrors."""
    attn = getattr(layer, "self_attn", None)
    return all(hasattr(layer, a) for a in ("input_layernorm", "post_attention_layernorm", "mlp")) and all(
        hasattr(attn, a) for a in _ATTENTION_PARTS
    )


def output_at_reads(
    layer, hidden: torch.Tensor, rotary, mask: torch.Tensor, reads: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """The last decoder layer's output at each row's read nodes, [reads, d] per row.

    Mirrors the Llama-family layer (pre-norm attention with rotary embeddings and grouped
    key/value heads, Qwen3's per-head q/k norms, then the pre-norm MLP), with queries taken at
    the read nodes only: every other node's output would be thrown away.
    """
    attn = layer.self_attn
    rows, width, _ = hidden.shape
    index = torch.zeros((rows, max(len(x) for x in reads)), dtype=torch.long)
    for r, x in enumerate(reads):
        index[r, : len(x)] = torch.tensor(x)  # shorter rows repeat node 0; those outputs are dropped
    index = index.to(hidden.device)

    def at_reads(t: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, 1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    x = layer.input_layernorm(hidden)
    q = attn.q_proj(at_reads(x)).view(rows, index.shape[1], -1, attn.head_dim)
    k = attn.k_proj(x).view(rows, width, -1, attn.head_dim)
    v = attn.v_proj(x).view(rows, width, -1, attn.head_dim).transpose(1, 2)
    if getattr(attn, "q_norm", None) is not None:  # Qwen3
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    cos, sin = rotary
    q = q * at_reads(cos).unsqueeze(1) + rotate_half(q) * at_reads(sin).unsqueeze(1)
    k = k * cos.unsqueeze(1) + rotate_half(k) * sin.unsqueeze(1)
    query_mask = torch.gather(mask, 2, index[:, None, :, None].expand(-1, 1, -1, width))
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=query_mask, scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1]
    )
    h = at_reads(hidden) + attn.o_proj(out.transpose(1, 2).reshape(rows, index.shape[1], -1))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return [h[r, : len(x)] for r, x in enumerate(reads)]
