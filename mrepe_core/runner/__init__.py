"""Batched steered forward passes: many (item, r_e) rows per forward, logits only where read.

Every function here takes a ``LoadedModel`` and returns plain arrays; the sweep decides what to
run. Two ways to compute the same numbers:

* **packed** (Llama-family decoders: Llama, Mistral, Qwen2, Qwen3). Token sequences are merged
  into a prefix tree and laid out as one packed row whose 4-D attention mask lets each token see
  exactly its own ancestors, with each token's position id equal to its depth. A shared prefix
  (a chat system prompt, an MMLU subject header, a question shared by its answer choices) is
  therefore computed once per row instead of once per sequence, and rows carry no padding. The
  decoder layers up to and including the first steered one do not depend on the coefficient (the
  vector is added to that layer's output), so they run once per row; the steering term is added
  to the cached output and only the layers above it run once per (row, r_e). The decoder-layer
  modules are called directly, so ``steer`` hooks fire as in a plain forward pass. The last
  layer's output is only read at a few nodes (the answer positions, the choice tokens), so when it
  is not steered it computes keys and values for every node but queries, attention output and MLP
  only at those nodes.
* **plain** (every other family, or attention implementations that ignore 4-D masks). Left-padded
  batches through the model's own forward, with the cloze prefix shared through the KV cache.

Both keep the full-vocabulary normaliser wherever a probability is read, and both are tested
against one-sequence-at-a-time full forward passes (``tests/test_runner_fast.py``).
"""

from .calls import choice_logliks, layer_states, next_token_logits, next_token_states, next_token_states_grid
from .decode import DecodeBatch, Prefill
from .generation import generate, prefill_rows
from .packed import BATCH_TOKENS, HEAD_CHUNK, MAX_ROW_TOKENS, PACKED_MODEL_TYPES, PackedRunner
from .plain import choice_token_ids, encode_left_padded
from .scorers import ChoiceScorer, NextTokenScorer
from .tree import PackedUnit, TokenTree, pack_units

__all__ = [
    "BATCH_TOKENS",
    "HEAD_CHUNK",
    "MAX_ROW_TOKENS",
    "PACKED_MODEL_TYPES",
    "ChoiceScorer",
    "DecodeBatch",
    "NextTokenScorer",
    "PackedRunner",
    "PackedUnit",
    "Prefill",
    "TokenTree",
    "choice_logliks",
    "choice_token_ids",
    "encode_left_padded",
    "generate",
    "layer_states",
    "next_token_logits",
    "next_token_states",
    "next_token_states_grid",
    "pack_units",
    "prefill_rows",
]
