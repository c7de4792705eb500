"""Steering vectors: extraction from contrast pairs (PCA, mean difference) and safetensors I/O."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

METHODS = ("pca", "mean_diff")
MAX_VECTOR_FILE_BYTES = 256 * 1024 * 1024


class VectorFileError(ValueError):
    """A vector file is missing, malformed or does not match the model."""


@dataclass
class SteeringVector:
    """One unit direction per decoder layer, plus how it was made.

    ``directions[l]`` steers the output of decoder layer ``l``. ``layers`` is the default
    selection to inject into; ``metadata`` carries model, method, behavior, template and data hash
    so that a saved vector can be reproduced and rendered with the prompts it was built from.
    """

    directions: torch.Tensor
    layers: list[int]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directions = torch.as_tensor(self.directions, dtype=torch.float32).detach().cpu()
        if self.directions.ndim != 2:
            raise VectorFileError("directions must have shape [n_layers, hidden].")
        if not torch.isfinite(self.directions).all():
            raise VectorFileError("directions contain NaN or infinite values.")
        self.layers = [int(i) for i in self.layers]

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` (tensor) and ``<path>.json`` (layers + metadata)."""
        from safetensors.torch import save_file

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        tensor_path, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        save_file(
            {"directions": self.directions.contiguous()}, str(tensor_path), metadata={"format": "mrepe-steering-vector"}
        )
        meta_path.write_text(json.dumps({"layers": self.layers, "metadata": self.metadata}, indent=2))
        return tensor_path, meta_path

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Load from safetensors + JSON (never pickle); malformed files raise VectorFileError."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        tensor_path, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        if not tensor_path.is_file():
            raise VectorFileError(f"No vector file at {tensor_path}.")
        if tensor_path.stat().st_size > MAX_VECTOR_FILE_BYTES:
            raise VectorFileError(f"{tensor_path.name} is larger than {MAX_VECTOR_FILE_BYTES >> 20} MB.")
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise VectorFileError(f"{tensor_path.name} is not a valid safetensors file: {exc}") from exc
        if "directions" not in tensors:
            raise VectorFileError(f"{tensor_path.name} has no 'directions' tensor.")
        meta: dict = {"layers": list(range(tensors["directions"].shape[0])), "metadata": {}}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise VectorFileError(f"{meta_path.name} is not valid JSON: {exc}") from exc
            if not isinstance(meta, dict) or not isinstance(meta.get("layers", []), list):
                raise VectorFileError(f"{meta_path.name} must be an object with a 'layers' list.")
        return cls(
            tensors["directions"],
            meta.get("layers") or list(range(tensors["directions"].shape[0])),
            meta.get("metadata") or {},
        )


def pca_direction(diffs: torch.Tensor) -> tuple[torch.Tensor, float]:
    """First principal direction of paired differences, as in RepE (Zou et al. 2023).

    Follows the paper's definition ``argmax_|v|=1 E[<v, r_good - r_bad>^2]``: the differences are
    *not* centred, so a consistent shift between the sides dominates. The sign is chosen so that
    the mean projection is positive (positive = towards the aligned side). Returns the unit vector
    and the fraction of the second moment it explains.
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


def hidden_states(loaded, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Last-token hidden state after every decoder layer: float32 [n_texts, n_layers, hidden].

    The numbers of ``output_hidden_states=True`` at each text's last token; a positive and a
    negative text usually share a long prefix (the same request), which the packed runner
    computes once. ``batch_size`` sets the rows per forward on the plain (left-padded) path.
    """
    from .models import exclusive
    from .runner import layer_states

    with exclusive(loaded.model):
        return layer_states(loaded, list(texts), plain_batch_rows=batch_size)


def dataset_hash(pairs) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.positive.encode())
        h.update(b"\0")
        h.update(p.negative.encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def extract_vector(
    loaded,
    pairs,
    method: str = "pca",
    layers: Sequence[int] | str | None = None,
    behavior: str = "",
    template: str = "",
    batch_size: int = 16,
) -> SteeringVector:
    """Extract a steering vector from contrast pairs (positive = the behaviour to steer towards)."""
    from .models import resolve_layers

    if not pairs:
        raise ValueError("No contrast pairs to extract a vector from.")
    texts = [t for p in pairs for t in (p.positive, p.negative)]
    hs = hidden_states(loaded, texts, batch_size=batch_size)
    diffs = hs[0::2] - hs[1::2]
    directions, stats = directions_from_diffs(diffs, method)
    chosen = resolve_layers(layers, loaded.n_layers)
    meta = {
        "model": loaded.name,
        "model_fingerprint": loaded.fingerprint,
        "method": method,
        "behavior": behavior,
        "prompt_template": template,
        "n_pairs": len(pairs),
        "dataset_hash": dataset_hash(pairs),
        "position": "last_token",
        "per_layer_statistic": [round(s, 6) for s in stats],
        "statistic": "explained second moment" if method == "pca" else "fraction of pairs with positive projection",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return SteeringVector(directions, chosen, meta)


def as_numpy(vector: SteeringVector) -> np.ndarray:
    """float32 NumPy copy (bf16 tensors cannot be cast to NumPy directly)."""
    return vector.directions.to(torch.float32).numpy().copy()
