"""``SteeringVector``: one direction per decoder layer, its arithmetic, and where it lives on disk.

``directions[l]`` steers the output of decoder block ``l`` (0-based). Vectors we extract have unit
rows (``metadata["unit_norm"]``), so ``r_e`` is the length added to the residual stream; arithmetic
keeps the raw sums (as repeng does) and says so in the metadata until ``normalized()``.
Extraction lives in ``extract.py``, file formats other tools use in ``vector_formats.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .models import LoadedModel

MAX_VECTOR_FILE_BYTES = 256 * 1024 * 1024
MAX_METADATA_BYTES = 1024 * 1024


class VectorFileError(ValueError):
    """A vector file is missing, malformed or does not match the model."""


@dataclass
class SteeringVector:
    """One direction per decoder layer, plus how it was made.

    ``layers`` is the default selection to inject into; ``metadata`` carries model, method,
    behaviour, which side is positive, template and data hash, so a saved vector can be reproduced
    and rendered with the prompts it was built from.
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
        bad = [i for i in self.layers if not -self.n_layers <= i < self.n_layers]
        if bad:
            raise VectorFileError(f"layers {bad} are out of range for a vector of {self.n_layers} layers.")

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    # -- extraction and use ------------------------------------------------------------------

    @classmethod
    def extract(
        cls,
        model: LoadedModel,
        pairs,
        method: str = "pca",
        layers: Sequence[int] | str | None = None,
        **metadata,
    ) -> SteeringVector:
        """Extract from contrast pairs (see ``extract.extract_vector``; keyword arguments such as
        ``behavior``, ``template``, ``positive`` go into the metadata)."""
        from .extract import extract_vector

        return extract_vector(model, pairs, method, layers, **metadata)

    def apply(
        self, model: LoadedModel | torch.nn.Module, r_e: float | Sequence[float] = 1.0, layers=None
    ) -> AbstractContextManager[None]:
        """``with vector.apply(model, r_e=4.0): ...``: every forward pass in the block is steered
        (``r_l <- r_l + r_e * v_l`` on ``layers``, default ``self.layers``); hooks go on exit."""
        from .steering import steer

        return steer(model, self, layers, r_e)

    # -- arithmetic (repeng-style): raw sums; metadata says what was combined ------------------

    def _check_compatible(self, other: SteeringVector) -> None:
        if not isinstance(other, SteeringVector):
            raise TypeError(f"Cannot combine a SteeringVector with {type(other).__name__}.")
        if other.directions.shape != self.directions.shape:
            raise ValueError(
                f"Vectors of shapes {tuple(self.directions.shape)} and {tuple(other.directions.shape)} "
                "come from different models; they cannot be combined."
            )

    def _derived(
        self, directions: torch.Tensor, layers, expression: str, parents: list[SteeringVector]
    ) -> SteeringVector:
        meta = {
            "derived": expression,
            "operands": [_summary(p.metadata) for p in parents],
            "unit_norm": False,
        }
        prints = {p.metadata.get("model_fingerprint") for p in parents}
        if len(prints) == 1:
            meta["model_fingerprint"] = prints.pop()
            meta["model"] = parents[0].metadata.get("model", "")
        else:
            meta["note"] = "operands were extracted from different model fingerprints"
        return SteeringVector(directions, sorted(set(layers)), meta)

    def __add__(self, other: SteeringVector) -> SteeringVector:
        self._check_compatible(other)
        return self._derived(self.directions + other.directions, self.layers + other.layers, "a + b", [self, other])

    def __sub__(self, other: SteeringVector) -> SteeringVector:
        self._check_compatible(other)
        return self._derived(self.directions - other.directions, self.layers + other.layers, "a - b", [self, other])

    def __mul__(self, scalar: float) -> SteeringVector:
        if not isinstance(scalar, (int, float)) or isinstance(scalar, bool) or not np.isfinite(scalar):
            return NotImplemented
        out = self._derived(self.directions * float(scalar), self.layers, f"{float(scalar):g} * a", [self])
        if scalar < 0 and "positive" in self.metadata:
            out.metadata["positive"] = f"the opposite of {self.metadata['positive']}"
        return out

    __rmul__ = __mul__

    def __neg__(self) -> SteeringVector:
        return self * -1.0

    def normalized(self) -> SteeringVector:
        """Unit rows again (zero rows stay zero), so ``r_e`` means a length in every layer."""
        norms = self.directions.norm(dim=1, keepdim=True)
        directions = torch.where(norms > 0, self.directions / norms.clamp_min(1e-30), self.directions)
        meta = dict(self.metadata)
        meta["unit_norm"] = True
        if "derived" in meta:
            meta["derived"] = f"normalized({meta['derived']})"
        return SteeringVector(directions, list(self.layers), meta)

    # -- files: ours (safetensors + JSON); other tools' formats via vector_formats ------------

    def save(self, path: str | Path, format: str | None = None, **options) -> list[Path]:
        """Write the vector. ``.safetensors``/``.json`` (or no suffix): ours, ``<path>.safetensors``
        with the tensor and ``<path>.json`` with layers and metadata. ``.gguf``, ``.svec``, ``.pt``:
        llama.cpp/repeng control vector, IBM activation-steering, lm-eval ``steered`` (export only)."""
        base = Path(path)
        if format in (None, "mrepe") and base.suffix in ("", ".safetensors", ".json"):
            return list(self._save_own(base))
        from .vector_formats import save_vector

        return save_vector(self, path, format=format, **options)

    def _save_own(self, base: Path) -> tuple[Path, Path]:
        from safetensors.torch import save_file

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
    def load(cls, path: str | Path, n_layers: int | None = None) -> SteeringVector:
        """Load ours (safetensors + JSON) or, by suffix, a ``.gguf`` / ``.svec`` file; never pickle."""
        base = Path(path)
        if base.suffix in ("", ".safetensors", ".json"):
            return cls._load_own(base)
        from .vector_formats import load_vector

        return load_vector(path, n_layers=n_layers)

    @classmethod
    def _load_own(cls, base: Path) -> SteeringVector:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        tensor_path, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        if not tensor_path.is_file():
            raise VectorFileError(f"No vector file at {tensor_path.name}.")
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
            if meta_path.stat().st_size > MAX_METADATA_BYTES:
                raise VectorFileError(f"{meta_path.name} is larger than {MAX_METADATA_BYTES >> 10} KB.")
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise VectorFileError(f"{meta_path.name} is not valid JSON: {exc}") from exc
            if not isinstance(meta, dict) or not isinstance(meta.get("layers", []), list):
                raise VectorFileError(f"{meta_path.name} must be an object with a 'layers' list.")
        layers = meta.get("layers") or list(range(tensors["directions"].shape[0]))
        return cls(tensors["directions"], layers, meta.get("metadata") or {})


def _summary(meta: dict) -> dict:
    """What an operand was, in a few fields (full metadata would nest without bound)."""
    keys = ("behavior", "method", "positive", "dataset_hash", "derived", "model")
    return {k: meta[k] for k in keys if k in meta}


def as_numpy(vector: SteeringVector) -> np.ndarray:
    """float32 NumPy copy (bf16 tensors cannot be cast to NumPy directly)."""
    return vector.directions.to(torch.float32).numpy().copy()
