"""Steering vectors from contrast pairs: RepE's PCA of paired differences, or their mean.

The representation of layer ``l`` is the output of decoder block ``l`` at a text's last token, read
where steering adds the vector: for the last block that is before the final norm (transformers'
``hidden_states[-1]`` is after it, so we read block outputs with hooks, not ``hidden_states``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import torch

from .models import LoadedModel, resolve_layers
from .vectors import SteeringVector

METHODS = ("pca", "mean_diff")


def pca_direction(diffs: torch.Tensor) -> tuple[torch.Tensor, float]:
    """First principal direction of paired differences, as in RepE (Zou et al. 2023).

    Follows the paper's definition ``argmax_|v|=1 E[<v, r_good - r_bad>^2]``: the differences are
    *not* centred, so a consistent shift between the sides dominates. The sign is chosen so that
    the mean projection is positive (positive = towards the behaviour's side). Returns the unit
    vector and the fraction of the second moment it explains.
    """
    d = diffs.to(torch.float64)
    _, s, vh = torch.linalg.svd(d, full_matrices=False)
    v = vh[0]
    if (d @ v).mean() < 0:
        v = -v
    explained = float(s[0] ** 2 / (s**2).sum().clamp_min(1e-30))
    return v.to(torch.float32), explained


def mean_diff_direction(diffs: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Normalised mean of paired differences (Jorgensen et al. 2023)."""
    m = diffs.to(torch.float64).mean(0)
    norm = m.norm()
    if norm == 0:
        raise ValueError("The positive and negative examples have identical representations.")
    v = m / norm
    frac = float(((diffs.to(torch.float64) @ v) > 0).double().mean())
    return v.to(torch.float32), frac


def directions_from_diffs(diffs: torch.Tensor, method: str) -> tuple[torch.Tensor, list[float]]:
    """Per-layer unit directions from differences shaped [n_pairs, n_layers, hidden]."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    if diffs.ndim != 3 or diffs.shape[0] < 1:
        raise ValueError("Need at least one contrast pair.")
    if method == "pca" and diffs.shape[0] < 2:
        raise ValueError("PCA needs at least two contrast pairs; use mean_diff for one.")
    fn = pca_direction if method == "pca" else mean_diff_direction
    out, stats = [], []
    for layer in range(diffs.shape[1]):
        v, stat = fn(diffs[:, layer, :])
        out.append(v)
        stats.append(stat)
    return torch.stack(out), stats


def hidden_states(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 16, cancel=None) -> torch.Tensor:
    """Last-token output of every decoder block: float32 [n_texts, n_layers, hidden].

    A positive and a negative text usually share a long prefix (the same request), which the
    packed runner computes once. ``batch_size`` sets the rows per forward on the plain path;
    ``cancel`` (a ``threading.Event``) is checked between forward passes.
    """
    from .runner import layer_states

    return layer_states(loaded, list(texts), plain_batch_rows=batch_size, cancel=cancel)


def dataset_hash(pairs) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.positive.encode())
        h.update(b"\0")
        h.update(p.negative.encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def identical_pairs(diffs: torch.Tensor, tol: float = 1e-6) -> int:
    """How many pairs have (numerically) identical sides at every layer: they carry no direction."""
    scale = diffs.abs().amax().clamp_min(1e-30)
    return int((diffs.abs().amax(dim=(1, 2)) <= tol * scale).sum())


def extract_vector(
    loaded: LoadedModel,
    pairs,
    method: str = "pca",
    layers: Sequence[int] | str | None = None,
    behavior: str = "",
    template: str = "",
    positive: str = "",
    batch_size: int = 16,
    cancel=None,
) -> SteeringVector:
    """Extract a steering vector from contrast pairs (``pair.positive`` = the side to steer towards).

    ``positive`` names that side in words ("refusal of harmful requests"): positive r_e means more
    of it, for every behaviour. Pairs whose two sides give the same representation are refused:
    a PCA of zero differences would return an arbitrary direction and every fit on it would be noise.
    """
    if not pairs:
        raise ValueError("No contrast pairs to extract a vector from.")
    texts = [t for p in pairs for t in (p.positive, p.negative)]
    hs = hidden_states(loaded, texts, batch_size=batch_size, cancel=cancel)
    diffs = hs[0::2] - hs[1::2]
    same = identical_pairs(diffs)
    if same == len(pairs):
        raise ValueError(
            "Every contrast pair has identical positive and negative texts (or representations); "
            "make the two sides differ in the behaviour you want to steer."
        )
    directions, stats = directions_from_diffs(diffs, method)
    chosen = resolve_layers(layers, loaded.n_layers)
    meta = {
        "model": loaded.name,
        "model_fingerprint": loaded.fingerprint,
        "method": method,
        "behavior": behavior,
        "positive": positive or (f"the positive side of {behavior}" if behavior else "the pairs' positive side"),
        "prompt_template": template,
        "n_pairs": len(pairs),
        "n_identical_pairs": same,
        "dataset_hash": dataset_hash(pairs),
        "position": "last_token",
        "read_at": "decoder block output (the last block before the final norm)",
        "unit_norm": True,
        "per_layer_statistic": [round(s, 6) for s in stats],
        "statistic": "explained second moment" if method == "pca" else "fraction of pairs with positive projection",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return SteeringVector(directions, chosen, meta)
