"""Scorers: prepared work for many coefficients, the sweep's interface to both paths.

Each scorer groups its items into ``units`` (items evaluated together: one packed tree, or one
item on the plain path); ``run([(unit, r_e), ...])`` computes those rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models import LoadedModel, exclusive
from . import plain
from .packed import BATCH_TOKENS, HEAD_CHUNK, MAX_ROW_TOKENS, PackedRunner, first_steered_layer, packed_stack
from .tree import PackedUnit, pack_units

if TYPE_CHECKING:
    from ..vectors import SteeringVector


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
        stack = packed_stack(loaded, max(len(s) for s in ids))
        self.packed = stack is not None
        if self.packed:
            units = []
            for items, tree, nodes in pack_units([[s] for s in ids], max_row_tokens, keys):
                unit = PackedUnit(items, tree)
                unit.reads = [seq_nodes[0][-1] for seq_nodes in nodes]
                units.append(unit)
            self._runner = PackedRunner(
                loaded, stack, first_steered_layer(loaded, vector, layers), vector, layers, units, batch_tokens
            )
            self.units = [u.items for u in units]
            longest = max(len(u) for u in units)
            self.units_per_batch = max(1, batch_tokens // longest)
        else:
            self.units = [[i] for i in range(len(self.texts))]
            self.units_per_batch = plain_batch_rows

    def run(self, rows: Sequence[tuple[int, float]], return_states: bool = False):
        """``_run`` holding the model: hooks are global to a module, and the packed path's cached
        lower layers run outside ``steer``, so another request's hooks must not be on it meanwhile."""
        with exclusive(self.loaded.model):
            return self._run(rows, return_states)

    def _run(self, rows: Sequence[tuple[int, float]], return_states: bool = False):
        """(item, r_e) rows and their logits; with ``return_states`` also the final-normed hidden
        states they were projected from (the input of the unembedding)."""
        out_rows = [(i, r) for u, r in rows for i in self.units[u]]
        if not self.packed:
            texts = [self.texts[i] for i, _ in out_rows]
            coeff = torch.tensor([r for _, r in out_rows], dtype=torch.float32)
            if return_states:
                return (out_rows, *plain.final_states(self.loaded, texts, self.vector, self.layers, coeff)[::-1])
            return out_rows, plain.next_token_logits(self.loaded, texts, self.vector, self.layers, coeff)
        logits, states = [], []
        with torch.inference_mode():
            for batch in self._runner.batches(rows):
                final = torch.cat(self._runner.read_states(batch))
                for k in range(0, final.shape[0], HEAD_CHUNK):
                    logits.append(self._runner.head(final[k : k + HEAD_CHUNK]).float())
                if return_states:
                    states.append(final)
        if return_states:
            return out_rows, torch.cat(logits), torch.cat(states)
        return out_rows, torch.cat(logits)


class ChoiceScorer:
    """Summed log-probabilities of each continuation after its prefix, at many coefficients.

    Continuations are answer choices given as text (``choices``: each gets a leading space, as it
    follows "Answer:") or as token ids (``choice_ids``: e.g. the openings a model wrote, or whole
    answers); with ``choice_ids`` items may have different numbers of continuations, and the
    missing ones come back as ``-inf``. ``run([(unit, r_e), ...])`` returns the (item, r_e) rows,
    the sums float64 [n_rows, n_choices] and the continuations' token counts [n_rows, n_choices].
    """

    def __init__(
        self,
        loaded: LoadedModel,
        prefixes: Sequence[str],
        choices: Sequence[Sequence[str]] | None,
        vector: SteeringVector | None,
        layers,
        plain_batch_rows: int = 8,
        max_row_tokens: int = MAX_ROW_TOKENS,
        batch_tokens: int = BATCH_TOKENS,
        keys: Sequence[Hashable] | None = None,
        choice_ids: Sequence[Sequence[Sequence[int]]] | None = None,
    ) -> None:
        if not prefixes:
            raise ValueError("No questions to score.")
        self.loaded, self.prefixes, self.vector, self.layers = loaded, list(prefixes), vector, layers
        tok = loaded.tokenizer
        if choices is not None:
            if len(choices) != len(prefixes) or len({len(c) for c in choices}) != 1 or not len(choices[0]):
                raise ValueError("Give every prefix the same (non-zero) number of choices.")
            choice_ids = plain.choice_token_ids(tok, choices)
        if choice_ids is None or len(choice_ids) != len(prefixes) or any(not row or not all(row) for row in choice_ids):
            raise ValueError("Give every prefix at least one non-empty continuation.")
        prefix_ids = tok(self.prefixes, add_special_tokens=False)["input_ids"]
        if any(len(p) == 0 for p in prefix_ids):
            raise ValueError("A question prefix is empty (no tokens); the first choice token needs context.")
        # Ragged rows are padded with copies of their first continuation (the same tree nodes, so no
        # extra work on the packed path); the copies' sums are set to -inf after scoring.
        self.counts = np.array([len(row) for row in choice_ids])
        self.n_choices = int(self.counts.max())
        self.choice_ids = [[list(c) for c in row] + [list(row[0])] * (self.n_choices - len(row)) for row in choice_ids]
        self.lengths = np.array([[len(c) for c in row] for row in self.choice_ids])
        seqs = [[p + c for c in row] for p, row in zip(prefix_ids, self.choice_ids)]
        stack = packed_stack(loaded, max(len(s) for row in seqs for s in row))
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
            self._runner = PackedRunner(
                loaded, stack, first_steered_layer(loaded, vector, layers), vector, layers, units, batch_tokens
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
        """``_run`` holding the model: hooks are global to a module, and the packed path's cached
        lower layers run outside ``steer``, so another request's hooks must not be on it meanwhile."""
        with exclusive(self.loaded.model):
            return self._run(rows, return_states)

    def _run(self, rows: Sequence[tuple[int, float]], return_states: bool = False):
        """With ``return_states`` also the final-normed hidden state at each row's answer position
        (the end of its prefix, where the first choice token is predicted), [n_rows, d]."""
        out_rows = [(i, r) for u, r in rows for i in self.units[u]]
        lengths = self.lengths[[i for i, _ in out_rows]]
        if return_states and not self.packed:
            raise ValueError("Answer-position states come from the packed path only; this model runs the plain one.")
        if not self.packed:
            coeff = torch.tensor([r for _, r in out_rows], dtype=torch.float32)
            sums, _ = plain.choice_logliks(
                self.loaded,
                [self.prefixes[i] for i, _ in out_rows],
                [self.choice_ids[i] for i, _ in out_rows],
                self.vector,
                self.layers,
                coeff,
            )
            return out_rows, self._mask_padding(sums, out_rows), lengths
        sums = np.zeros((len(out_rows), self.n_choices), dtype=np.float64)
        answer_states = []
        offset = 0
        with torch.inference_mode():
            for batch in self._runner.batches(rows):
                for (u, _), states in zip(batch, self._runner.read_states(batch)):
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
        sums = self._mask_padding(sums, out_rows)
        if return_states:
            return out_rows, sums, lengths, torch.cat(answer_states)
        return out_rows, sums, lengths

    def _mask_padding(self, sums: np.ndarray, out_rows) -> np.ndarray:
        counts = self.counts[[i for i, _ in out_rows]]
        sums[np.arange(self.n_choices)[None, :] >= counts[:, None]] = -np.inf
        return sums
