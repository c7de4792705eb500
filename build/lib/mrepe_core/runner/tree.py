"""Prefix trees of token sequences, packed into rows whose 4-D masks let each token see exactly its
ancestors (its own causal context), and the greedy packing of items into such rows."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# Packed rows hold up to this many tree nodes: longer rows share more prefix but pay a quadratic
# (dense, mostly masked) attention cost; measured on a 2-core CPU with SmolLM2-135M.
MAX_ROW_TOKENS = 256


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
