"""Packed path: prefix trees in one row, 4-D ancestor masks, layer skip up to the first steered layer.

Llama-family decoders (Llama, Mistral, Qwen2, Qwen3) whose base model is embed_tokens ->
rotary_emb -> layers -> norm. The decoder-layer modules are called directly, so ``steer`` hooks
fire as in a plain forward pass; ``tests/unit/test_runner_fast.py`` compares every number with
one-sequence-at-a-time forward passes of transformers itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..hooks import foreign_hooks
from ..models import LoadedModel, resolve_layers
from ..steering import steer, steering_term
from . import last_layer
from .tree import MAX_ROW_TOKENS, PackedUnit  # noqa: F401  (MAX_ROW_TOKENS: the packed path's knob)

if TYPE_CHECKING:
    from ..vectors import SteeringVector

# Tokens per forward pass in the per-coefficient stage (rows x padded length).
BATCH_TOKENS = 4096
# Rows of the vocabulary projection computed at once (bounds memory: rows x vocab floats).
HEAD_CHUNK = 256

# Decoder families whose base model is embed_tokens -> rotary_emb -> layers -> norm, with layers
# called as layer(hidden, attention_mask, position_ids, position_embeddings) (transformers 5).
PACKED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def packed_stack(loaded: LoadedModel, longest: int):
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


def first_steered_layer(loaded: LoadedModel, vector: SteeringVector | None, layers) -> int:
    if vector is None:
        return loaded.n_layers
    return min(resolve_layers(layers if layers is not None else vector.layers, loaded.n_layers))


class KVRecorder:
    """Stands in for a transformers cache in a layer call: keeps each layer's keys and values
    (after rotary embedding) as the attention computes them, and changes nothing."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        self.kv[int(layer_idx)] = (key_states, value_states)
        return key_states, value_states


class PackedRunner:
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
        # Generation's prefill also keeps the unsteered layers' keys/values: unit -> layer -> (k, v).
        self.record_kv = False
        self.lower_kv: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        # The last layer runs per coefficient, unsteered, with the Llama-family shape that
        # last_layer.output_at_reads mirrors.
        self._last_layer_mirrorable = (
            self.cached_layers < loaded.n_layers - 1
            and loaded.n_layers - 1 not in self.later_layers
            and last_layer.mirrorable(self.base.layers[loaded.n_layers - 1])
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
            allowed[r, :n, :n] = self.units[u].mask  # type: ignore[assignment]  # set in __init__
            positions[r, :n] = torch.tensor(self.units[u].tree.positions)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return positions.to(dev), mask.unsqueeze(1).to(dev), width

    def _run_layers(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        rotary=None,
        recorder: KVRecorder | None = None,
    ) -> torch.Tensor:
        rotary = rotary if rotary is not None else self.base.rotary_emb(hidden, positions)
        for layer in self.base.layers[start:stop]:
            out = layer(
                hidden,
                attention_mask=mask,
                position_ids=positions,
                cache=recorder,
                use_cache=recorder is not None,
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
        """Run the layers up to the first steered one (unsteered), once per unit, for units not yet
        cached; with ``record_kv`` also keep those layers' keys and values per unit (generation)."""
        for chunk in self.chunks(sorted({u for u in unit_ids if u not in self._states})):
            hidden, positions, mask = self._embed(chunk)
            recorder = KVRecorder() if self.record_kv else None
            hidden = self._run_layers(hidden, positions, mask, 0, self.cached_layers, recorder=recorder)
            for r, u in enumerate(chunk):
                n = len(self.units[u])
                self._states[u] = hidden[r, :n].clone()
                if recorder is not None:
                    self.lower_kv[u] = {l: (k[r, :, :n], v[r, :, :n]) for l, (k, v) in recorder.kv.items()}

    def layer_states(self, unit_ids: Sequence[int]) -> dict[int, torch.Tensor]:
        """Unsteered output of every decoder layer at each unit's read nodes: unit -> [reads, layers, d].

        Every entry is a block's output, the last one before the final norm: where steering adds
        the vector (transformers' ``hidden_states[-1]`` is after the norm).
        """
        hidden, positions, mask = self._embed(unit_ids)
        rotary = self.base.rotary_emb(hidden, positions)
        per_layer: list[list[torch.Tensor]] = [[] for _ in unit_ids]
        for layer in self.base.layers:
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
                per_layer[r].append(hidden[r, self.units[u].reads])
        return {u: torch.stack(per_layer[r], dim=1) for r, u in enumerate(unit_ids)}

    def read_states(self, rows: Sequence[tuple[int, float]], recorder: KVRecorder | None = None) -> list[torch.Tensor]:
        """Final-normed hidden states at each row's read nodes, steered with the row's coefficient.

        With ``recorder`` the keys and values of the per-coefficient layers are kept in it (for the
        decoding that follows a prefill); the last layer then runs whole, since decoding needs its
        keys and values at every node."""
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
                    if recorder is None and self._last_layer_at_reads_applies():
                        hidden = self._run_layers(hidden, positions, mask, self.cached_layers, n - 1, rotary)
                        return [
                            self.norm(h)
                            for h in last_layer.output_at_reads(
                                self.base.layers[n - 1], hidden, rotary, mask, [self.units[u].reads for u in unit_ids]
                            )
                        ]
                    hidden = self._run_layers(hidden, positions, mask, self.cached_layers, n, rotary, recorder)
        return [self.norm(hidden[r, self.units[u].reads]) for r, u in enumerate(unit_ids)]

    def _last_layer_at_reads_applies(self) -> bool:
        """Mirrorable, and no one else's hooks on the last layer (they would expect a module call;
        hooks come and go, so this is checked per pass). transformers' own output-capturing hooks
        do not count: they stay on the layer after any ``output_hidden_states`` call and record
        nothing outside such a call."""
        layer = self.base.layers[self.loaded.n_layers - 1]
        return self._last_layer_mirrorable and not foreign_hooks(layer)

    def batches(self, rows: Sequence[tuple[int, float]]) -> list[list[tuple[int, float]]]:
        """Split (unit, r_e) rows into forward passes of about ``batch_tokens`` padded tokens."""
        out: list[list[tuple[int, float]]] = []
        current: list[tuple[int, float]] = []
        width = 0
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
