"""Cross-modal alignment maps phi_{i->j} (eqs. 3-4), cross-modal consistency (eq. 8) and the
transfer of a concept direction from one modality to another.

Architecture (eq. 4): ``phi(r_i) = MLP_j(MLP_i(r_i) * attention(r_i, anchor_j))``. The anchors are
``n_anchors`` k-means centroids of the training targets in modality ``j`` (fixed buffers);
``attention`` is single-head dot-product attention from a query projection of ``r_i`` over key and
value projections of the anchors, so the gate says which region of the target space ``r_i`` maps to.

Training (eq. 3): InfoNCE with cosine similarity and temperature ``tau``; the negatives ``N`` of a
pair are the other targets in its batch. Everything is seeded, so a run is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..limits import check_cancel
from ..threads import single_torch_thread


class AlignmentError(ValueError):
    """The alignment map cannot be trained or applied as asked."""


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class AlignmentMap(nn.Module):
    """phi_{i->j} of eq. 4."""

    def __init__(self, d_in: int, d_out: int, anchors: torch.Tensor, hidden: int = 256, attn_dim: int = 64):
        super().__init__()
        if anchors.ndim != 2 or anchors.shape[1] != d_out:
            raise AlignmentError(f"Anchors must be [k, {d_out}] target-space vectors.")
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.mlp_i = _mlp(d_in, hidden, hidden)
        self.query = nn.Linear(d_in, attn_dim)
        self.key = nn.Linear(d_out, attn_dim)
        self.value = nn.Linear(d_out, hidden)
        self.mlp_j = _mlp(hidden, hidden, d_out)
        self.register_buffer("anchors", anchors.float().clone())
        self.attn_scale = attn_dim**-0.5

    def anchor_attention(self, r_i: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.query(r_i) @ self.key(self.anchors).T * self.attn_scale, dim=-1)
        return weights @ self.value(self.anchors)

    def forward(self, r_i: torch.Tensor) -> torch.Tensor:
        return self.mlp_j(self.mlp_i(r_i) * self.anchor_attention(r_i))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (nn.functional.normalize(a.float(), dim=-1) * nn.functional.normalize(b.float(), dim=-1)).sum(-1)


def cmc(source: torch.Tensor, target: torch.Tensor) -> float:
    """Eq. 8: mean cosine similarity of paired representations (rows of ``source`` and ``target``)."""
    if source.shape != target.shape or source.shape[0] == 0:
        raise AlignmentError(
            f"CMC needs equally shaped, non-empty pairs; got {tuple(source.shape)} and {tuple(target.shape)}."
        )
    return float(cosine(source, target).mean())


def target_groups(target: torch.Tensor) -> torch.Tensor:
    """Id of each row's distinct target: the five captions of one image share their image."""
    return torch.unique(target, dim=0, return_inverse=True)[1]


def recall_at_1(source: torch.Tensor, target: torch.Tensor) -> float:
    """Share of rows whose most similar target (among all rows) is their own pair's target."""
    sims = nn.functional.normalize(source.float(), dim=-1) @ nn.functional.normalize(target.float(), dim=-1).T
    groups = target_groups(target)
    return float((groups[sims.argmax(-1)] == groups).float().mean())


def info_nce(
    mapped: torch.Tensor, targets: torch.Tensor, tau: float, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 3 averaged over the batch; row ``k`` of ``targets`` is the positive of row ``k``.

    The negatives ``N`` of row ``k`` are the other rows' targets, except copies of its own target
    (rows of the same ``groups`` id): another caption's image is the same image, not a negative."""
    logits = nn.functional.normalize(mapped, dim=-1) @ nn.functional.normalize(targets, dim=-1).T / tau
    if groups is not None:
        same = (groups.view(-1, 1) == groups.view(1, -1)) & ~torch.eye(
            len(groups), dtype=torch.bool, device=logits.device
        )
        logits = logits.masked_fill(same, float("-inf"))
    return nn.functional.cross_entropy(logits, torch.arange(mapped.shape[0], device=mapped.device))


def kmeans_anchors(targets: torch.Tensor, n_anchors: int, seed: int, iterations: int = 25) -> torch.Tensor:
    """``n_anchors`` k-means centroids of the training targets (all targets when there are fewer).

    k-means++ seeding then Lloyd iterations, in torch: for a few hundred small vectors this is
    milliseconds, where importing scikit-learn alone takes seconds."""
    x = targets.float().cpu()
    k = min(int(n_anchors), x.shape[0])
    if k == x.shape[0]:
        return x.clone()
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(x.shape[0], (1,), generator=gen)]
    while centres.shape[0] < k:
        dist = torch.cdist(x, centres).min(1).values.pow(2)
        centres = torch.cat([centres, x[torch.multinomial(dist / dist.sum(), 1, generator=gen)]])
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        updated = torch.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(k)])
        if torch.allclose(updated, centres):
            break
        centres = updated
    return centres


@dataclass
class AlignmentConfig:
    epochs: int = 200
    lr: float = 1e-3
    tau: float = 0.07
    batch_size: int = 64
    hidden: int = 256
    attn_dim: int = 64
    n_anchors: int = 16
    weight_decay: float = 1e-4
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.epochs <= 10_000:
            raise AlignmentError("epochs must be between 1 and 10000.")
        if not 0 < self.tau <= 10:
            raise AlignmentError("tau must be in (0, 10].")
        if not 0 < self.lr <= 1:
            raise AlignmentError("lr must be in (0, 1].")
        if self.batch_size < 2:
            raise AlignmentError("batch_size must be at least 2 (InfoNCE needs negatives).")


@dataclass
class AlignmentResult:
    """A trained map with its consistency before and after, on training and held-out pairs."""

    model: AlignmentMap
    config: AlignmentConfig
    losses: list[float]
    metrics: list[dict] = field(default_factory=list)

    def table(self) -> list[dict]:
        return self.metrics


def train_alignment(
    source: torch.Tensor,
    target: torch.Tensor,
    config: AlignmentConfig | None = None,
    heldout_source: torch.Tensor | None = None,
    heldout_target: torch.Tensor | None = None,
    label: str = "",
    cancel: threading.Event | None = None,
) -> AlignmentResult:
    """Train phi on paired rows with InfoNCE; report CMC (eq. 8) and recall@1 before and after.
    ``cancel`` is checked before every epoch (``limits.Cancelled``).

    "Before" is the raw cosine of the pairs when both sides share a space (same dimension, e.g. the
    text and image towers of one CLIP), and always also the untrained (randomly initialised) map.
    """
    config = config or AlignmentConfig()
    config.check()
    if source.ndim != 2 or target.ndim != 2 or source.shape[0] != target.shape[0]:
        raise AlignmentError("source and target must be [n, d_i] and [n, d_j] with one row per pair.")
    if source.shape[0] < 2:
        raise AlignmentError("Training needs at least two pairs.")
    source, target = source.float().cpu(), target.float().cpu()
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    anchors = kmeans_anchors(target, config.n_anchors, config.seed)
    model = AlignmentMap(source.shape[1], target.shape[1], anchors, config.hidden, config.attn_dim)

    splits = [("train", source, target)]
    if heldout_source is not None and heldout_target is not None and heldout_source.shape[0] > 0:
        splits.append(("held-out", heldout_source.float().cpu(), heldout_target.float().cpu()))

    def measure(stage: str) -> list[dict]:
        rows = []
        model.eval()
        with torch.no_grad():
            for split, src, tgt in splits:
                if stage == "before" and src.shape[1] == tgt.shape[1]:
                    rows.append(
                        dict(
                            pair=label,
                            split=split,
                            stage="before (raw)",
                            n=int(src.shape[0]),
                            cmc=cmc(src, tgt),
                            recall_at_1=recall_at_1(src, tgt),
                        )
                    )
                mapped = model(src)
                name = "before (untrained phi)" if stage == "before" else "after (trained phi)"
                rows.append(
                    dict(
                        pair=label,
                        split=split,
                        stage=name,
                        n=int(src.shape[0]),
                        cmc=cmc(mapped, tgt),
                        recall_at_1=recall_at_1(mapped, tgt),
                    )
                )
        return rows

    with single_torch_thread():  # tiny layers: thread sync costs more than it saves
        metrics = measure("before")
        losses = _fit(model, source, target, config, gen, cancel)
        metrics += measure("after")
    return AlignmentResult(model=model, config=config, losses=losses, metrics=metrics)


def _fit(
    model: AlignmentMap,
    source: torch.Tensor,
    target: torch.Tensor,
    config: AlignmentConfig,
    gen: torch.Generator,
    cancel: threading.Event | None = None,
) -> list[float]:
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = source.shape[0]
    batch = min(config.batch_size, n)
    groups = target_groups(target)
    losses = []
    for _ in range(config.epochs):
        check_cancel(cancel, "Alignment training")
        model.train()
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n - batch + 1, batch):  # equal batches: every pair sees batch-1 negatives
            idx = order[start : start + batch]
            loss = info_nce(model(source[idx]), target[idx], config.tau, groups[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / count)
    model.eval()
    return losses


@torch.no_grad()
def apply_map(model: AlignmentMap, source: torch.Tensor) -> torch.Tensor:
    """phi(r_i), normalised onto the target space's unit sphere."""
    model.eval()
    return nn.functional.normalize(model(source.float().cpu()), dim=-1)


@torch.no_grad()
def transfer_direction(model: AlignmentMap, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """A concept direction carried to modality j: ``mean phi(S+) - mean phi(S-)`` (eq. 6 after phi).

    Mapping the examples, not the difference vector, respects that phi is non-linear."""
    return apply_map(model, pos).mean(0) - apply_map(model, neg).mean(0)


def direction_agreement(transferred: torch.Tensor, native: torch.Tensor) -> float:
    """Cosine between a transferred direction and the one computed from modality-j examples."""
    return float(cosine(transferred.view(1, -1), native.view(1, -1))[0])


def split_pairs(groups: Sequence[str], labels: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out masks that hold out one group per label (e.g. one image per COCO theme),
    so captions of a held-out image never leak into training."""
    rng = np.random.default_rng(seed)
    groups_a, labels_a = np.asarray(groups), np.asarray(labels)
    held = set()
    for label in sorted(set(labels_a.tolist())):
        candidates = sorted(set(groups_a[labels_a == label].tolist()))
        if len(candidates) > 1:
            held.add(candidates[int(rng.integers(len(candidates)))])
    heldout = np.array([g in held for g in groups])
    return ~heldout, heldout


@dataclass
class AlignmentReport:
    """A trained built-in map plus the transfer of concept directions through it."""

    result: AlignmentResult
    source_modality: str
    target_modality: str
    n_train: int
    n_heldout: int
    transfer: list[dict] = field(default_factory=list)

    def table(self) -> list[dict]:
        return self.result.metrics


def builtin_alignment(
    bank,
    source_modality: str,
    target_modality: str,
    config: AlignmentConfig | None = None,
    concepts: Sequence[str] | None = None,
    cancel: threading.Event | None = None,
) -> AlignmentReport:
    """Train phi_{source->target} on the shipped pairs (captions/images or descriptions/clips) with
    one item per theme held out, and carry built-in concept directions through it.

    ``bank`` is a :class:`~.concepts.EmbeddingBank` of one encoder that embeds both modalities (CLIP
    for text/image, CLAP for text/audio), so the raw "before" CMC is meaningful.
    """
    from .concepts import builtin_concept, builtin_concept_names, paired_items

    config = config or AlignmentConfig()
    pairs = paired_items(source_modality, target_modality)
    src_items, tgt_items = [a for a, _ in pairs], [b for _, b in pairs]
    source, target = bank.items(src_items, cancel), bank.items(tgt_items, cancel)
    train, held = split_pairs([b.key for b in tgt_items], [b.label for b in tgt_items], seed=config.seed)
    t_idx, h_idx = torch.from_numpy(np.flatnonzero(train)), torch.from_numpy(np.flatnonzero(held))
    result = train_alignment(
        source[t_idx],
        target[t_idx],
        config,
        source[h_idx],
        target[h_idx],
        label=f"{source_modality}->{target_modality}",
        cancel=cancel,
    )
    report = AlignmentReport(
        result=result,
        source_modality=source_modality,
        target_modality=target_modality,
        n_train=int(train.sum()),
        n_heldout=int(held.sum()),
    )
    names = (
        concepts
        if concepts is not None
        else [n for n in builtin_concept_names(source_modality) if n in builtin_concept_names(target_modality)]
    )
    for name in names:
        src_c, tgt_c = builtin_concept(name, source_modality), builtin_concept(name, target_modality)
        s_pos, s_neg = bank.items(src_c.positives, cancel), bank.items(src_c.negatives, cancel)
        native = bank.items(tgt_c.positives, cancel).mean(0) - bank.items(tgt_c.negatives, cancel).mean(0)
        raw = s_pos.mean(0) - s_neg.mean(0)
        row = dict(
            concept=name,
            direction=f"{source_modality}->{target_modality}",
            agreement_after=direction_agreement(transfer_direction(result.model, s_pos, s_neg), native),
        )
        if raw.shape == native.shape:
            row["agreement_before"] = direction_agreement(raw, native)
        report.transfer.append(row)
    return report
