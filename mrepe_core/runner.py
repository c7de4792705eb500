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

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .hooks import foreign_hooks
from .models import LoadedModel, resolve_layers
from .steering import steer, steering_term

if TYPE_CHECKING:  # vectors may import this module for packed extraction
    from .vectors import SteeringVector

# Packed rows hold up to this many tree nodes: longer rows share more prefix but pay a quadratic
# (dense, mostly masked) attention cost; measured on a 2-core CPU with SmolLM2-135M.
MAX_ROW_TOKENS = 256
# Tokens per forward pass in the per-coefficient stage (rows x padded length).
BATCH_TOKENS = 4096
# Rows of the vocabulary projection computed at once (bounds memory: rows x vocab floats).
HEAD_CHUNK = 256

# Decoder families whose base model is embed_tokens -> rotary_emb -> layers -> norm, with layers
# called as layer(hidden, attention_mask, position_ids, position_embeddings) (transformers 5).
PACKED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


# ---------------------------------------------------------------------------------------------
# Plain path (reference-shaped; also the fallback for other families)
# ---------------------------------------------------------------------------------------------


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


def _row_coefficients(coefficients, n: int) -> torch.Tensor:
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    if coeff.ndim == 0:
        coeff = coeff.expand(n).clone()
    if coeff.shape != (n,):
        raise ValueError(f"{coeff.numel()} coefficients for {n} rows; give one per row (or a scalar).")
    return coeff


@torch.inference_mode()
def _plain_next_token_logits(
    loaded: LoadedModel, texts: Sequence[str], vector, layers, coeff: torch.Tensor
) -> torch.Tensor:
    enc = encode_left_padded(loaded, texts)
    with steer(loaded.model, vector, layers, coeff):
        out = loaded.model(**enc, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1, :].float()


@torch.inference_mode()
def _plain_final_states(
    loaded: LoadedModel, texts: Sequence[str], vector, layers, coeff: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    enc = encode_left_padded(loaded, texts)
    with steer(loaded.model, vector, layers, coeff):
        hidden = loaded.model.base_model(**enc, use_cache=False).last_hidden_state[:, -1, :]
    return hidden, loaded.model.get_output_embeddings()(hidden).float()


@torch.inference_mode()
def _plain_layer_states(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), batch_size):
        enc = encode_left_padded(loaded, texts[start : start + batch_size])
        res = loaded.model(**enc, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        out.append(torch.stack(res.hidden_states[1:], dim=1)[:, :, -1, :].float().cpu())
    return torch.cat(out)


def choice_token_ids(tokenizer, choices: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Each choice as it continues 'Answer:' (leading space); an empty choice scores the EOS token."""
    return [
        [tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for c in row]
        for row in choices
    ]


@torch.inference_mode()
def _plain_choice_logliks(
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


# ---------------------------------------------------------------------------------------------
# Packed path: prefix trees in one row, 4-D ancestor masks, layer skip up to the first steered layer
# ---------------------------------------------------------------------------------------------


class TokenTree:
    """Token sequences merged into a prefix tree, nodes in insertion order (parents first).

    Node ``i`` is token ``tokens[i]`` at position ``positions[i]`` (its depth); it attends to its
    ancestors and itself, which is exactly the causal context it has in its own sequence.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.parents: list[int] = []
        self._children: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def count_new(self, seqs: Sequence[Sequence[int]]) -> int:
        """Nodes that inserting all of ``seqs`` would add (shared prefixes among them count once)."""
        added: dict[tuple[int, int], int] = {}
        for seq in seqs:
            node = -1
            for token in seq:
                key = (node, int(token))
                nxt = self._children.get(key)
                if nxt is None:
                    nxt = added.setdefault(key, -2 - len(added))  # placeholder ids, never real nodes
                node = nxt
        return len(added)

    def insert(self, seq: Sequence[int]) -> list[int]:
        """Add a sequence; returns the node index of each of its tokens."""
        node, nodes = -1, []
        for depth, token in enumerate(seq):
            nxt = self._children.get((node, int(token)))
            if nxt is None:
                nxt = len(self.tokens)
                self.tokens.append(int(token))
                self.positions.append(depth)
                self.parents.append(node)
                self._children[(node, int(token))] = nxt
            nodes.append(nxt)
            node = nxt
        return nodes

    def ancestor_mask(self) -> torch.Tensor:
        """Boolean [n, n]: entry (i, j) is True when node j is node i or one of its ancestors."""
        n = len(self.tokens)
        mask = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                mask[i] = mask[parent]
            mask[i, i] = True
        return torch.from_numpy(mask)


@dataclass
class PackedUnit:
    """Items evaluated together in one packed row: their tree, and which nodes' outputs are read."""

    items: list[int]
    tree: TokenTree
    reads: list[int] = field(default_factory=list)  # node indices whose next-token logits are read
    answer_reads: list[int] = field(default_factory=list)  # per item: index into ``reads`` of its answer position
    # Log-likelihood terms: (item slot in ``items``, choice, index into ``reads``, target token).
    terms: list[tuple[int, int, int, int]] = field(default_factory=list)
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.tree)


def _packed_stack(loaded: LoadedModel, longest: int):
    """(base model, final norm, head) when the packed path applies to this model, else None."""
    model = loaded.model
    config = getattr(model, "config", None)
    base = getattr(model, "model", None)
    if config is None or base is None or getattr(config, "model_type", None) not in PACKED_MODEL_TYPES:
        return None
    if getattr(config, "_attn_implementation", "eager") not in ("sdpa", "eager"):
        return None  # flash / flex kernels do not take an arbitrary 4-D mask
    if not all(hasattr(base, a) for a in ("embed_tokens", "rotary_emb", "layers", "norm")):
        return None
    head = model.get_output_embeddings()
    if head is None:
        return None
    # A sliding window only matters for sequences longer than the window; the packed mask has none.
    window = getattr(config, "sliding_window", None)
    sliding = "sliding_attention" in (getattr(config, "layer_types", None) or ()) or (
        config.model_type == "mistral" and window is not None
    )
    if sliding and window is not None and longest > window:
        return None
    return base, base.norm, head


def _first_steered_layer(loaded: LoadedModel, vector: SteeringVector | None, layers) -> int:
    if vector is None:
        return loaded.n_layers
    return min(resolve_layers(layers if layers is not None else vector.layers, loaded.n_layers))


def pack_units(
    item_sequences: Sequence[Sequence[Sequence[int]]],
    max_tokens: int = MAX_ROW_TOKENS,
    keys: Sequence[Hashable] | None = None,
) -> list[tuple[list[int], TokenTree, list[list[list[int]]]]]:
    """Greedily pack items (each a list of token sequences) into prefix trees of <= max_tokens nodes.

    Items are visited in lexicographic order of their first sequence, so items sharing a prefix
    land in the same tree. An item is never split across trees; one larger than ``max_tokens``
    gets a tree of its own. Items with different ``keys`` never share a tree. Returns, per tree,
    its item indices, the tree, and each item's per-sequence node indices.
    """
    order = sorted(
        range(len(item_sequences)),
        key=lambda i: (repr(keys[i]) if keys is not None else "", list(item_sequences[i][0])),
    )
    packed: list[tuple[list[int], TokenTree, list[list[list[int]]]]] = []
    current: tuple[list[int], TokenTree, list] | None = None
    current_key = None
    for i in order:
        seqs = item_sequences[i]
        key = keys[i] if keys is not None else None
        if current is not None and (key != current_key or len(current[1]) + current[1].count_new(seqs) > max_tokens):
            current = None
        if current is None:
            current = ([], TokenTree(), [])
            current_key = key
            packed.append(current)
        current[0].append(i)
        current[2].append([current[1].insert(s) for s in seqs])
    return packed


class _PackedRunner:
    """Shared machinery: units, cached pre-steering states, per-coefficient forward passes."""

    def __init__(
        self, loaded: LoadedModel, stack, first_layer: int, vector, layers, units: list[PackedUnit], batch_tokens: int
    ) -> None:
        self.loaded, self.vector, self.layers = loaded, vector, layers
        self.base, self.norm, self.head = stack
        self.first_layer = first_layer
        # The first steered layer's own computation does not depend on r_e (the vector is added to
        # its output), so it runs once with the layers below it; each coefficient starts above it.
        self.cached_layers = min(first_layer + 1, loaded.n_layers)
        self.later_layers = (
            []
            if vector is None or first_layer >= loaded.n_layers
            else [
                l
                for l in resolve_layers(layers if layers is not None else vector.layers, loaded.n_layers)
                if l != first_layer
            ]
        )
        self.units = units
        self.batch_tokens = batch_tokens
        self._states: dict[int, torch.Tensor] = {}  # unit -> unsteered output of the first steered layer
        last = self.base.layers[loaded.n_layers - 1]
        attn = getattr(last, "self_attn", None)
        # The last layer runs per coefficient, unsteered, with the Llama-family shape that
        # _last_layer_at_reads mirrors.
        self._last_layer_mirrorable = (
            self.cached_layers < loaded.n_layers - 1
            and loaded.n_layers - 1 not in self.later_layers
            and all(hasattr(last, a) for a in ("input_layernorm", "post_attention_layernorm", "mlp"))
            and all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling"))
        )
        for unit in units:
            unit.mask = unit.tree.ancestor_mask()

    def _batch_inputs(self, unit_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Position ids [R, L] and additive 4-D mask [R, 1, L, L] for padded packed rows."""
        width = max(len(self.units[u]) for u in unit_ids)
        dev, dtype = self.loaded.device, self.loaded.dtype
        allowed = torch.eye(width, dtype=torch.bool).repeat(len(unit_ids), 1, 1)  # pads see themselves
        positions = torch.zeros((len(unit_ids), width), dtype=torch.long)
        for r, u in enumerate(unit_ids):
            n = len(self.units[u])
            allowed[r, :n, :n] = self.units[u].mask
            positions[r, :n] = torch.tensor(self.units[u].tree.positions)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return positions.to(dev), mask.unsqueeze(1).to(dev), width

    def _run_layers(
        self, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, start: int, stop: int, rotary=None
    ) -> torch.Tensor:
        rotary = rotary if rotary is not None else self.base.rotary_emb(hidden, positions)
        for layer in self.base.layers[start:stop]:
            out = layer(
                hidden,
                attention_mask=mask,
                position_ids=positions,
                cache=None,
                use_cache=False,
                position_embeddings=rotary,
            )
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _embed(self, unit_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions, mask, width = self._batch_inputs(unit_ids)
        ids = torch.zeros((len(unit_ids), width), dtype=torch.long)
        for r, u in enumerate(unit_ids):
            ids[r, : len(self.units[u])] = torch.tensor(self.units[u].tree.tokens)
        return self.base.embed_tokens(ids.to(self.loaded.device)), positions, mask

    def chunks(self, unit_ids: Sequence[int]) -> list[list[int]]:
        """Units grouped into forward passes of about ``batch_tokens`` padded tokens (longest first)."""
        todo = sorted(unit_ids, key=lambda u: -len(self.units[u]))
        out, start = [], 0
        while start < len(todo):
            chunk = [todo[start]]
            width = len(self.units[todo[start]])
            while start + len(chunk) < len(todo) and (len(chunk) + 1) * width <= self.batch_tokens:
                chunk.append(todo[start + len(chunk)])
            start += len(chunk)
            out.append(chunk)
        return out

    def _ensure_states(self, unit_ids: Sequence[int]) -> None:
        """Run the layers up to the first steered one (unsteered), once per unit, for units not yet cached."""
        for chunk in self.chunks(sorted({u for u in unit_ids if u not in self._states})):
            hidden, positions, mask = self._embed(chunk)
            hidden = self._run_layers(hidden, positions, mask, 0, self.cached_layers)
            for r, u in enumerate(chunk):
                self._states[u] = hidden[r, : len(self.units[u])].clone()

    def layer_states(self, unit_ids: Sequence[int]) -> dict[int, torch.Tensor]:
        """Unsteered output of every decoder layer at each unit's read nodes: unit -> [reads, layers, d].

        As in ``output_hidden_states`` of transformers 5, the last layer's entry is after the final norm.
        """
        hidden, positions, mask = self._embed(unit_ids)
        rotary = self.base.rotary_emb(hidden, positions)
        per_layer: list[list[torch.Tensor]] = [[] for _ in unit_ids]
        for k, layer in enumerate(self.base.layers):
            out = layer(
                hidden,
                attention_mask=mask,
                position_ids=positions,
                cache=None,
                use_cache=False,
                position_embeddings=rotary,
            )
            hidden = out[0] if isinstance(out, tuple) else out
            for r, u in enumerate(unit_ids):
                states = hidden[r, self.units[u].reads]
                per_layer[r].append(self.norm(states) if k == len(self.base.layers) - 1 else states)
        return {u: torch.stack(per_layer[r], dim=1) for r, u in enumerate(unit_ids)}

    def _read_states(self, rows: Sequence[tuple[int, float]]) -> list[torch.Tensor]:
        """Final-normed hidden states at each row's read nodes, steered with the row's coefficient."""
        unit_ids = [u for u, _ in rows]
        self._ensure_states(unit_ids)
        positions, mask, width = self._batch_inputs(unit_ids)
        hidden = torch.zeros(
            (len(rows), width, self.loaded.hidden_size), dtype=self.loaded.dtype, device=self.loaded.device
        )
        for r, u in enumerate(unit_ids):
            hidden[r, : len(self.units[u])] = self._states[u]
        coeff = torch.tensor([float(c) for _, c in rows], dtype=torch.float32)
        n = self.loaded.n_layers
        if self.first_layer < n:
            # Exactly the term the steering hook would add to this layer's output.
            hidden = hidden + steering_term(self.vector.directions[self.first_layer], coeff, hidden)
            if self.cached_layers < n:
                rotary = self.base.rotary_emb(hidden, positions)
                with steer(self.loaded.model, self.vector if self.later_layers else None, self.later_layers, coeff):
                    if self._last_layer_at_reads_applies():
                        hidden = self._run_layers(hidden, positions, mask, self.cached_layers, n - 1, rotary)
                        return [self.norm(h) for h in self._last_layer_at_reads(hidden, rotary, mask, unit_ids)]
                    hidden = self._run_layers(hidden, positions, mask, self.cached_layers, n, rotary)
        return [self.norm(hidden[r, self.units[u].reads]) for r, u in enumerate(unit_ids)]

    def _last_layer_at_reads_applies(self) -> bool:
        """Mirrorable, and no one else's hooks on the last layer (they would expect a module call;
        hooks come and go, so this is checked per pass). transformers' own output-capturing hooks
        do not count: they stay on the layer after any ``output_hidden_states`` call and record
        nothing outside such a call."""
        layer = self.base.layers[self.loaded.n_layers - 1]
        return self._last_layer_mirrorable and not foreign_hooks(layer)

    def _last_layer_at_reads(
        self, hidden: torch.Tensor, rotary, mask: torch.Tensor, unit_ids: Sequence[int]
    ) -> list[torch.Tensor]:
        """The last decoder layer's output at each row's read nodes, [reads, d] per row.

        Mirrors the Llama-family layer (pre-norm attention with rotary embeddings and grouped
        key/value heads, Qwen3's per-head q/k norms, then the pre-norm MLP), with queries taken at
        the read nodes only: every other node's output would be thrown away.
        """
        from transformers.models.llama.modeling_llama import rotate_half  # shared by the families here

        layer = self.base.layers[self.loaded.n_layers - 1]
        attn = layer.self_attn
        rows, width, _ = hidden.shape
        reads = [self.units[u].reads for u in unit_ids]
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

    def batches(self, rows: Sequence[tuple[int, float]]) -> list[list[tuple[int, float]]]:
        """Split (unit, r_e) rows into forward passes of about ``batch_tokens`` padded tokens."""
        out, current, width = [], [], 0
        for row in rows:
            w = max(width, len(self.units[row[0]]))
            if current and w * (len(current) + 1) > self.batch_tokens:
                out.append(current)
                current, w = [], len(self.units[row[0]])
            current.append(row)
            width = w
        if current:
            out.append(current)
        return out


# ---------------------------------------------------------------------------------------------
# Scorers: prepared work for many coefficients (the sweep's interface)
# ---------------------------------------------------------------------------------------------


class NextTokenScorer:
    """Next-token logits of many texts at many coefficients, sharing whatever can be shared.

    ``units`` lists the item indices evaluated together; ``run([(unit, r_e), ...])`` returns the
    (item, r_e) of every row it computed and their logits, float32 [n_rows, vocab].
    """

    provides_states = True  # ``run(..., return_states=True)`` works on both paths

    def __init__(
        self,
        loaded: LoadedModel,
        texts: Sequence[str],
        vector: SteeringVector | None,
        layers,
        plain_batch_rows: int = 32,
        max_row_tokens: int = MAX_ROW_TOKENS,
        batch_tokens: int = BATCH_TOKENS,
        keys: Sequence[Hashable] | None = None,
    ) -> None:
        if not texts:
            raise ValueError("No texts to score.")
        self.loaded, self.texts, self.vector, self.layers = loaded, list(texts), vector, layers
        ids = loaded.tokenizer(self.texts, add_special_tokens=False)["input_ids"]
        if any(len(s) == 0 for s in ids):
            raise ValueError("A text to score is empty (no tokens); every prompt needs at least one token.")
        stack = _packed_stack(loaded, max(len(s) for s in ids))
        self.packed = stack is not None
        if self.packed:
            units = []
            for items, tree, nodes in pack_units([[s] for s in ids], max_row_tokens, keys):
                unit = PackedUnit(items, tree)
                unit.reads = [seq_nodes[0][-1] for seq_nodes in nodes]
                units.append(unit)
            self._runner = _PackedRunner(
                loaded, stack, _first_steered_layer(loaded, vector, layers), vector, layers, units, batch_tokens
            )
            self.units = [u.items for u in units]
            longest = max(len(u) for u in units)
            self.units_per_batch = max(1, batch_tokens // longest)
        else:
            self.units = [[i] for i in range(len(self.texts))]
            self.units_per_batch = plain_batch_rows

    def run(self, rows: Sequence[tuple[int, float]], return_states: bool = False):
        """(item, r_e) rows and their logits; with ``return_states`` also the final-normed hidden
        states they were projected from (the input of the unembedding)."""
        out_rows = [(i, r) for u, r in rows for i in self.units[u]]
        if not self.packed:
            texts = [self.texts[i] for i, _ in out_rows]
            coeff = torch.tensor([r for _, r in out_rows], dtype=torch.float32)
            if return_states:
                return (out_rows, *_plain_final_states(self.loaded, texts, self.vector, self.layers, coeff)[::-1])
            return out_rows, _plain_next_token_logits(self.loaded, texts, self.vector, self.layers, coeff)
        logits, states = [], []
        with torch.inference_mode():
            for batch in self._runner.batches(rows):
                final = torch.cat(self._runner._read_states(batch))
                for k in range(0, final.shape[0], HEAD_CHUNK):
                    logits.append(self._runner.head(final[k : k + HEAD_CHUNK]).float())
                if return_states:
                    states.append(final)
        if return_states:
            return out_rows, torch.cat(logits), torch.cat(states)
        return out_rows, torch.cat(logits)


class ChoiceScorer:
    """Summed log-probabilities of each answer choice after its prefix, at many coefficients.

    ``run([(unit, r_e), ...])`` returns the (item, r_e) rows, the sums float64 [n_rows, n_choices]
    and the choices' token counts [n_rows, n_choices].
    """

    def __init__(
        self,
        loaded: LoadedModel,
        prefixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        vector: SteeringVector | None,
        layers,
        plain_batch_rows: int = 8,
        max_row_tokens: int = MAX_ROW_TOKENS,
        batch_tokens: int = BATCH_TOKENS,
        keys: Sequence[Hashable] | None = None,
    ) -> None:
        if not prefixes:
            raise ValueError("No questions to score.")
        if len(choices) != len(prefixes) or len({len(c) for c in choices}) != 1 or not len(choices[0]):
            raise ValueError("Give every prefix the same (non-zero) number of choices.")
        self.loaded, self.prefixes, self.vector, self.layers = loaded, list(prefixes), vector, layers
        tok = loaded.tokenizer
        prefix_ids = tok(self.prefixes, add_special_tokens=False)["input_ids"]
        if any(len(p) == 0 for p in prefix_ids):
            raise ValueError("A question prefix is empty (no tokens); the first choice token needs context.")
        self.choice_ids = choice_token_ids(tok, choices)
        self.n_choices = len(choices[0])
        self.lengths = np.array([[len(c) for c in row] for row in self.choice_ids])
        seqs = [[p + c for c in row] for p, row in zip(prefix_ids, self.choice_ids)]
        stack = _packed_stack(loaded, max(len(s) for row in seqs for s in row))
        self.packed = stack is not None
        if self.packed:
            units = []
            for items, tree, nodes in pack_units(seqs, max_row_tokens, keys):
                unit = PackedUnit(items, tree)
                read_index: dict[int, int] = {}
                for slot, item in enumerate(items):
                    start = len(prefix_ids[item])
                    for j, seq_nodes in enumerate(nodes[slot]):
                        seq = seqs[item][j]
                        for t in range(start - 1, len(seq) - 1):  # node t predicts token t + 1
                            node = seq_nodes[t]
                            if node not in read_index:
                                read_index[node] = len(unit.reads)
                                unit.reads.append(node)
                            unit.terms.append((slot, j, read_index[node], seq[t + 1]))
                    unit.answer_reads.append(read_index[nodes[slot][0][start - 1]])
                units.append(unit)
            self._runner = _PackedRunner(
                loaded, stack, _first_steered_layer(loaded, vector, layers), vector, layers, units, batch_tokens
            )
            self.units = [u.items for u in units]
            self.units_per_batch = max(1, batch_tokens // max(len(u) for u in units))
        else:
            self.units = [[i] for i in range(len(self.prefixes))]
            self.units_per_batch = plain_batch_rows

    @property
    def provides_states(self) -> bool:
        """Whether ``run(..., return_states=True)`` works (the packed path reads them for free)."""
        return self.packed

    def run(self, rows: Sequence[tuple[int, float]], return_states: bool = False):
        """With ``return_states`` also the final-normed hidden state at each row's answer position
        (the end of its prefix, where the first choice token is predicted), [n_rows, d]."""
        out_rows = [(i, r) for u, r in rows for i in self.units[u]]
        lengths = self.lengths[[i for i, _ in out_rows]]
        if return_states and not self.packed:
            raise ValueError("Answer-position states come from the packed path only; this model runs the plain one.")
        if not self.packed:
            coeff = torch.tensor([r for _, r in out_rows], dtype=torch.float32)
            sums, _ = _plain_choice_logliks(
                self.loaded,
                [self.prefixes[i] for i, _ in out_rows],
                [self.choice_ids[i] for i, _ in out_rows],
                self.vector,
                self.layers,
                coeff,
            )
            return out_rows, sums, lengths
        sums = np.zeros((len(out_rows), self.n_choices), dtype=np.float64)
        answer_states = []
        offset = 0
        with torch.inference_mode():
            for batch in self._runner.batches(rows):
                for (u, _), states in zip(batch, self._runner._read_states(batch)):
                    unit = self._runner.units[u]
                    if return_states:
                        answer_states.append(states[unit.answer_reads])
                    logp = torch.empty(len(unit.terms), dtype=torch.float64)
                    term_read = torch.tensor([t[2] for t in unit.terms])
                    term_target = torch.tensor([t[3] for t in unit.terms])
                    for k in range(0, states.shape[0], HEAD_CHUNK):
                        logits = self._runner.head(states[k : k + HEAD_CHUNK]).float()
                        lse = torch.logsumexp(logits, -1)
                        sel = ((term_read >= k) & (term_read < k + HEAD_CHUNK)).nonzero().squeeze(1)
                        local = (term_read[sel] - k).to(logits.device)
                        picked = logits[local, term_target[sel].to(logits.device)] - lse[local]
                        logp[sel] = picked.double().cpu()
                    for (slot, j, _, _), value in zip(unit.terms, logp.tolist()):
                        sums[offset + slot, j] += value
                    offset += len(unit.items)
        if return_states:
            return out_rows, sums, lengths, torch.cat(answer_states)
        return out_rows, sums, lengths


# ---------------------------------------------------------------------------------------------
# One-call functions (rows = texts, one coefficient each)
# ---------------------------------------------------------------------------------------------


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
    coeff = _row_coefficients(coefficients, len(texts))
    keys = [float(c) for c in coeff]
    # One item per row; rows share a packed tree only when their coefficients are equal.
    scorer = NextTokenScorer(loaded, texts, vector, layers, plain_batch_rows=len(texts), keys=keys)
    if scorer.packed:
        out_rows, logits = scorer.run([(u, keys[items[0]]) for u, items in enumerate(scorer.units)])
        order = torch.tensor([i for i, _ in out_rows])
        logits = logits[torch.argsort(order)]
    else:
        logits = _plain_next_token_logits(loaded, texts, vector, layers, coeff)
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
    coeff = _row_coefficients(coefficients, len(prefixes))
    keys = [float(c) for c in coeff]
    scorer = ChoiceScorer(loaded, prefixes, choices, vector, layers, plain_batch_rows=len(prefixes), keys=keys)
    if scorer.packed:
        out_rows, sums, lengths = scorer.run([(u, keys[items[0]]) for u, items in enumerate(scorer.units)])
        order = np.argsort([i for i, _ in out_rows])
        return sums[order], lengths[order]
    sums, lengths = _plain_choice_logliks(loaded, prefixes, scorer.choice_ids, vector, layers, coeff)
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
    coeff = _row_coefficients(coefficients, len(texts))
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
    return states, logits


def layer_states(
    loaded: LoadedModel, texts: Sequence[str], batch_tokens: int = BATCH_TOKENS, plain_batch_rows: int = 16
) -> torch.Tensor:
    """Unsteered last-token output of every decoder layer: float32 [n_texts, n_layers, d].

    Same numbers as ``output_hidden_states=True`` (``hidden_states[1:]`` at the last position,
    the last layer after the final norm), but texts sharing a prefix (contrast pairs differ only
    in their last few tokens) share its computation on the packed path.
    """
    if not texts:
        raise ValueError("No texts to read hidden states from.")
    ids = loaded.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    if any(len(s) == 0 for s in ids):
        raise ValueError("A text is empty (no tokens).")
    stack = _packed_stack(loaded, max(len(s) for s in ids))
    if stack is None:
        return _plain_layer_states(loaded, list(texts), plain_batch_rows)
    units = []
    for items, tree, nodes in pack_units([[s] for s in ids]):
        unit = PackedUnit(items, tree)
        unit.reads = [seq_nodes[0][-1] for seq_nodes in nodes]
        units.append(unit)
    packed = _PackedRunner(loaded, stack, loaded.n_layers, None, None, units, batch_tokens)
    out = torch.empty((len(texts), loaded.n_layers, loaded.hidden_size), dtype=torch.float32)
    with torch.inference_mode():
        for chunk in packed.chunks(range(len(units))):
            for u, states in packed.layer_states(chunk).items():
                out[units[u].items] = states.float().cpu()
    return out


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
