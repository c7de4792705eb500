"""Steering-vector files other tools use: llama.cpp/repeng GGUF, IBM .svec, lm-eval .pt (export only).

Our rows steer the output of decoder block ``l`` (0-based) and are unit norm when we extract them.
Imported rows are kept as stored (never renormalised), so steering with ``r_e`` adds exactly what
the source tool's scale ``r_e`` adds. Nothing here unpickles: ``.pt`` files are written, never read.

What the tools' sources say (checked against them; where /work/shared/reference/interop.md differs,
the source wins):
- llama.cpp common/common.cpp ``common_control_vector_load_one``: every tensor must be named
  ``direction.<k>`` (k >= 1), F32, ``ggml_n_dims == 1`` (so trailing sizes of 1 pass) and of one
  length; any other tensor, not only a bad direction, makes it skip the whole file. Metadata is
  ignored. ``direction.k`` lands at offset (k-1)*n_embd and src/llama-adapter.cpp
  ``llama_adapter_cvec::apply`` fills block ``il`` from offset (il-1)*n_embd, added after block
  ``il`` (``build_cvec``): direction.k steers the output of block k, our row k.
- repeng repeng/extract.py ``export_gguf``: ``controlvector.layer_count`` is ``len(directions)``,
  the number of tensors, not the model's block count (interop.md reads it as a size), so it cannot
  size the vector: we use ``n_layers``, our own ``mrepe.n_layers`` key, or the largest k + 1.
- llama.cpp tools/cvector-generator computes direction.(i+1) from block i's output (a one-block
  shift), writes layer_count as int32 and leaves the PCA sign arbitrary (pca.hpp TODO); an int32
  layer_count is flagged in the metadata.
- IBM activation-steering steering_vector.py reads key L at hidden_states[L + 1] (block L's output)
  but leash_layer.py adds it to the *input* of block L, one block earlier (not in interop.md). Key L
  maps to our row L, where it was read; the metadata says so.
- AISteer360 steering_vector.py stores [K, D] per layer: K=1 is CAA/CAST, K>1 is positional
  (ActAdd), a basis pair (angular) or per-head (ITI) directions. We take K=1 and 1-D lists and
  refuse K>1: its first row would silently steer something else.
- lm-evaluation-harness lm_eval/models/hf_steered.py: ``add`` adds coefficient * vector of shape
  [features] ([d], not [1, d]; both broadcast, [d] is what its CSV and head_index paths use), bias
  must be None for add; hookpoints are module names under ``model.base_model`` ("layers.3" in
  Llama-family models, "h.3" in GPT-2). v0.4.8-0.4.9.1 build the add hooks with a lambda in a loop,
  so every hookpoint adds the last entry's vector (fixed in 0.4.9.2, commit a46180bf).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..vectors import SteeringVector, VectorFileError
from .common import _PICKLE_SUFFIXES, _import_vector, _short
from .gguf import read_gguf, write_gguf
from .lm_eval import write_lm_eval
from .svec import read_svec, write_svec

__all__ = [
    "FORMATS",
    "VectorFormat",
    "from_layer_dict",
    "load_vector",
    "read_gguf",
    "read_svec",
    "save_vector",
    "write_gguf",
    "write_lm_eval",
    "write_svec",
]


class VectorFormat(NamedTuple):
    name: str
    suffixes: tuple[str, ...]
    readable: bool
    options: tuple[str, ...]
    description: str


FORMATS = (
    VectorFormat("mrepe", (".safetensors", ".json"), True, (), "MRepE Explorer (all layers and metadata)"),
    VectorFormat("gguf", (".gguf",), True, ("model_hint", "layers"), "llama.cpp --control-vector, repeng, EasySteer"),
    VectorFormat("svec", (".svec",), True, ("model_hint", "layers"), "IBM activation-steering, AISteer360"),
    VectorFormat("lm_eval", (".pt", ".pth"), False, ("coefficient", "layers", "hookpoint"), "lm-eval, export only"),
)


def from_layer_dict(
    layer_activations: dict, n_layers: int, metadata: dict | None = None, layer_type: str = "decoder_block"
) -> SteeringVector:
    """A steering-vectors ``SteeringVector.layer_activations`` dict (block -> [hidden]) as ours.

    For vectors held in memory: their files are pickles, which we never load. Negative keys count
    from the end, as steering-vectors' list indexing does. Rows are not renormalised (its mean
    differences are not unit norm), so r_e equals its ``multiplier``.
    """
    if layer_type != "decoder_block" or not isinstance(layer_activations, dict) or not layer_activations:
        raise VectorFileError(
            "Give a non-empty dict block -> tensor of a decoder_block vector (others steer elsewhere)."
        )
    rows: dict[int, np.ndarray] = {}
    for key, value in layer_activations.items():
        k = (
            int(key) + n_layers * int(key < 0)
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool)
            else -1
        )
        t = torch.as_tensor(value).detach().to("cpu", torch.float32)
        if not 0 <= k < n_layers or k in rows or t.ndim == 0 or any(s != 1 for s in t.shape[:-1]):
            raise VectorFileError(f"Block {_short(key)}: need a block number in 0-{n_layers - 1}, once, with [hidden].")
        rows[k] = t.reshape(-1).numpy()
    meta = {**(metadata or {}), "source_format": "steering-vectors", "layer_type": layer_type}
    return _import_vector(rows, n_layers, meta, "layer_activations")


def save_vector(vector: SteeringVector, path: str | Path, format: str | None = None, **options) -> list[Path]:
    """Write in ``format`` (a FORMATS name), or the one the suffix names; returns the files written."""
    path = Path(path)
    by_suffix = [f for f in FORMATS if path.suffix.lower() in f.suffixes]
    fmt = next((f for f in FORMATS if f.name == format), None) if format else (by_suffix[0] if by_suffix else None)
    if fmt is None:
        names = ", ".join(f.name for f in FORMATS)
        raise VectorFileError(f"Name a format ({names}) or end the file in .safetensors, .gguf, .svec or .pt.")
    if path.suffix.lower() not in fmt.suffixes:
        path = path.with_name(path.name + fmt.suffixes[0])
    if set(options) - set(fmt.options):
        raise VectorFileError(
            f"{fmt.name} takes the options {', '.join(fmt.options) or 'none'}; got {sorted(options)}."
        )
    if fmt.name == "mrepe":
        return list(vector.save(path))
    writers: dict[str, Callable[..., Path]] = {"gguf": write_gguf, "svec": write_svec, "lm_eval": write_lm_eval}
    return [writers[fmt.name](vector, path, **options)]


def load_vector(path: str | Path, n_layers: int | None = None) -> SteeringVector:
    """Ours, GGUF or .svec by suffix (by content when the suffix says nothing). Pickles are refused."""
    path = Path(path)
    suffix, head = path.suffix.lower(), b""
    if suffix not in (".gguf", ".svec", ".safetensors", ".json") and path.is_file():
        with path.open("rb") as f:
            head = f.read(4)
    if suffix in _PICKLE_SUFFIXES or head.startswith((b"PK\x03\x04", b"\x80")):
        raise VectorFileError(
            f"{_short(path.name)} is a PyTorch pickle: loading it would run code from the file, so MRepE never reads "
            "pickles (lm-eval files are export only). Use a .gguf or .svec file, or from_layer_dict in Python."
        )
    if suffix == ".gguf" or head == b"GGUF":
        return read_gguf(path, n_layers)
    if suffix == ".svec" or head.lstrip()[:1] == b"{":
        return read_svec(path, n_layers)
    if suffix in (".safetensors", ".json") or path.with_name(path.name + ".safetensors").is_file():
        vector = SteeringVector.load(path)
        if n_layers is not None and vector.n_layers != n_layers:
            raise VectorFileError(f"{path.name} has {vector.n_layers} layers, the model {n_layers}: another model's.")
        return vector
    raise VectorFileError(f"Cannot tell the format of {_short(path.name)}; MRepE reads its own, .gguf and .svec files.")
