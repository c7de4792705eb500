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

import contextlib
import json
import math
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .vectors import SteeringVector, VectorFileError

MAX_FILE_BYTES = 256 << 20  # files come from strangers on a public server
MAX_JSON_BYTES = 128 << 20  # parsed JSON costs ~30 bytes of memory per float
MAX_LAYERS, MAX_HIDDEN, MAX_METADATA_DEPTH = 1024, 1 << 16, 16
UNIT_TOLERANCE = 1e-3
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
_DIRECTION = re.compile(r"direction\.([0-9]{1,6})")  # [0-9], not \d: \d also matches non-ASCII digits
_LAYER_KEY = re.compile(r"[0-9]{1,4}")
_SCALE = "rows kept as stored, not renormalised: r_e scales them exactly as the source tool's scale does"


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


def _short(text: object, limit: int = 60) -> str:
    """repr of file-supplied text, cut short: messages never echo huge input."""
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


@contextlib.contextmanager
def _written_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it on success: the dashboard offers written
    files for download, and nobody may get half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _checked_size(path: Path, limit: int) -> int:
    if not path.is_file():
        raise VectorFileError(f"No vector file at {path}.")
    size = path.stat().st_size
    if size > limit:
        raise VectorFileError(f"{path.name} is over {limit >> 20} MB; a steering vector is a few MB (a model?).")
    return size


def _layers_to_write(vector: SteeringVector, layers) -> list[int]:
    try:
        chosen = sorted({int(k) for k in (vector.layers if layers is None else layers)})
    except (TypeError, ValueError):
        chosen = []
    if not chosen or not 0 <= chosen[0] <= chosen[-1] < vector.n_layers:
        raise VectorFileError(f"Choose layers to write among the vector's blocks 0-{vector.n_layers - 1}.")
    return chosen


def _model_hint(vector: SteeringVector, model_hint: str) -> str:
    # repeng and IBM write the HF model_type here; we have it only when an import recorded it.
    return str(model_hint or vector.metadata.get("model_hint") or vector.metadata.get("model") or "")


def _parse_json(text: str, what: str):
    def no_constant(name: str):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=no_constant)
    except RecursionError as exc:
        raise VectorFileError(f"{what} is nested too deeply to be a vector file.") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
        raise VectorFileError(f"{what} is not valid JSON ({_short(reason, 100)}).") from exc


def _stored_metadata(meta, what: str) -> dict:
    """Our metadata from an earlier export, held to a stranger's limits: a JSON object, shallow."""
    meta = _parse_json(meta, f"{what} (mrepe.metadata)") if isinstance(meta, str) else meta or {}
    stack, bad = [(meta, 1)], not isinstance(meta, dict)
    while stack and not bad:  # iterative: a recursive walk is what a deep file would attack
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            bad = depth > MAX_METADATA_DEPTH
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    if bad:
        raise VectorFileError(f"{what}: its MRepE metadata is not a shallow JSON object; remove it.")
    return dict(meta)


def _import_vector(rows: dict[int, np.ndarray], n_layers, meta: dict, what: str, layers=None) -> SteeringVector:
    """Zero rows where the file steers nothing; steered rows exactly as stored (see _SCALE)."""
    lengths = sorted({len(r) for r in rows.values()})
    if len(lengths) != 1 or not 0 < lengths[0] <= MAX_HIDDEN:
        raise VectorFileError(f"{what}: directions must all have the hidden size; found lengths {lengths[:4]}.")
    n = max(rows) + 1 if n_layers is None else int(n_layers)
    if not max(rows) < n <= MAX_LAYERS:
        raise VectorFileError(f"{what} steers block {max(rows)}, which does not fit {n} blocks (another model?).")
    directions = torch.zeros(n, lengths[0])
    for k, row in rows.items():
        row = np.asarray(row, dtype=np.float32)
        if not np.isfinite(row).all():
            raise VectorFileError(f"{what}: the direction for block {k} contains NaN or infinite values.")
        directions[k] = torch.from_numpy(row)
    chosen = sorted(rows) if layers is None else sorted({int(k) for k in layers})
    if any(not 0 <= k < n for k in chosen):
        raise VectorFileError(f"{what} lists default layers outside blocks 0-{n - 1}.")
    norms = {str(k): round(float(directions[k].norm()), 6) for k in sorted(rows)}
    unit = all(abs(v - 1) <= UNIT_TOLERANCE for v in norms.values())
    return SteeringVector(directions, chosen, {**meta, "layer_norms": norms, "unit_norm": unit, "scale": _SCALE})


# --- GGUF control vectors (llama.cpp, repeng, EasySteer) ---------------------------------------

_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
_GGUF_STRING, _GGUF_ARRAY, _GGUF_MAX_KV, _GGUF_MAX_ITEMS, _GGUF_MAX_STRING = 8, 9, 1024, 1 << 16, 4 << 20


def _gguf_precheck(path: Path, size: int) -> None:
    """Walk the GGUF header with hard limits before gguf.GGUFReader sees it. Why: GGUFReader trusts
    every count and builds one numpy object per array item, so a few hostile header bytes (a
    2**40-item array, a billion tensors) would exhaust memory or time."""
    name, items = path.name, [_GGUF_MAX_ITEMS]
    cut = f"{name} is truncated (it ends inside the GGUF header); download it again."
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[:4] != b"GGUF":
            raise VectorFileError(f"{name} is not a GGUF file (it does not start with 'GGUF').")
        order = "<" if struct.unpack("<I", head[4:])[0] in (2, 3) else ">"  # GGUFReader reads byte-swapped files too
        if struct.unpack(order + "I", head[4:])[0] not in (2, 3):
            raise VectorFileError(f"{name} is a GGUF version other than 2 or 3 (the ones llama.cpp writes).")

        def read(fmt: str) -> tuple:
            raw = f.read(struct.calcsize(order + fmt))
            if len(raw) < struct.calcsize(order + fmt):
                raise VectorFileError(cut)
            return struct.unpack(order + fmt, raw)

        def skip(n: int, limit: int = _GGUF_MAX_STRING) -> None:
            if n > limit:
                raise VectorFileError(f"{name} has a {n}-byte GGUF header entry; refused.")
            if f.tell() + n > size:
                raise VectorFileError(cut)
            f.seek(n, os.SEEK_CUR)

        def value(kind: int, depth: int = 0) -> None:
            if kind in _GGUF_SCALAR or kind == _GGUF_STRING:
                skip(_GGUF_SCALAR[kind] if kind in _GGUF_SCALAR else read("Q")[0])
            elif kind == _GGUF_ARRAY and depth < 2:
                item, count = read("IQ")
                items[0] -= count
                if items[0] < 0:
                    raise VectorFileError(f"{name} has header arrays of over {_GGUF_MAX_ITEMS} items; refused.")
                if item in _GGUF_SCALAR:
                    skip(count * _GGUF_SCALAR[item], size)
                for _ in range(0 if item in _GGUF_SCALAR else count):
                    value(item, depth + 1)
            else:
                raise VectorFileError(f"{name} has a GGUF header value of unknown type {kind}; it is damaged.")

        n_tensors, n_kv = read("QQ")
        if n_kv > _GGUF_MAX_KV or n_tensors > MAX_LAYERS:
            raise VectorFileError(f"{name} has {n_tensors} tensors, {n_kv} keys; a control vector has 1 per layer.")
        for _ in range(n_kv):
            skip(read("Q")[0], 1024)
            value(read("I")[0])
        for _ in range(n_tensors):
            skip(read("Q")[0], 1024)
            (n_dims,) = read("I")
            dims, _ = read(f"{min(n_dims, 5)}Q"), read("IQ")
            if n_dims > 4 or math.prod(dims) > MAX_HIDDEN:
                raise VectorFileError(f"{name} has a tensor of shape {list(dims)}; a direction has the hidden size.")


def _gguf_read_raw(path: Path) -> tuple[dict, list]:
    """Header values and tensors through gguf.GGUFReader; its errors become one clear message."""
    import gguf

    keys: tuple[str, ...] = ("general.architecture", "controlvector.model_hint", "controlvector.layer_count")
    keys += ("controlvector.method", "mrepe.n_layers", "mrepe.metadata")
    try:
        reader = gguf.GGUFReader(path)
        fields = {k: reader.get_field(k) for k in keys}
        values = {
            k: (f.contents(), f.types[0].name)
            for k, f in fields.items()
            if f is not None and f.types and f.types[0] != gguf.GGUFValueType.ARRAY
        }
        tensors = [
            (t.name, t.tensor_type.name, [int(d) for d in t.shape], np.array(t.data, dtype=np.float32).reshape(-1))
            for t in reader.tensors
        ]
    except Exception as exc:  # whatever a damaged file makes the third-party parser raise (kept as __cause__)
        raise VectorFileError(f"{path.name} is truncated or damaged; download it again.") from exc
    return values, tensors


def read_gguf(path: str | Path, n_layers: int | None = None) -> SteeringVector:
    """A GGUF control vector, validated as llama.cpp's loader does (and its architecture checked).

    Blocks the file does not steer get zero rows; ``layers`` = the steered blocks. ``n_layers``:
    the argument, else our ``mrepe.n_layers`` key, else the largest k + 1.
    """
    path = Path(path)
    _gguf_precheck(path, _checked_size(path, MAX_FILE_BYTES))
    values, tensors = _gguf_read_raw(path)
    name, arch = path.name, values.get("general.architecture", (None,))[0]
    if arch != "controlvector":
        raise VectorFileError(f"{name} is not a control vector: its architecture is {_short(arch)}.")
    rows: dict[int, np.ndarray] = {}
    for tensor, kind, shape, data in tensors:
        match = _DIRECTION.fullmatch(tensor)
        if match is None or match.group(1) == "0" * len(match.group(1)):
            what = "direction.0 (block 0 cannot be steered)" if match else f"a tensor {_short(tensor)}"
            raise VectorFileError(f"{name} has {what}; llama.cpp refuses the whole file. Remove that tensor.")
        if kind != "F32" or any(d != 1 for d in shape[1:]):
            raise VectorFileError(f"{name}: {tensor} is {kind} {shape}; llama.cpp takes only 1-D F32 directions.")
        k = int(match.group(1))
        rows[k] = rows[k] + data if k in rows else data  # llama.cpp sums a repeated layer (direction.5, .05)
    if not rows:
        raise VectorFileError(f"{name} holds no direction tensors.")
    count, count_type = values.get("controlvector.layer_count", (None, ""))
    meta = _stored_metadata(values.get("mrepe.metadata", (None,))[0], name)
    meta.update(source_format="gguf", source_file=name, gguf_layer_count=count)
    meta["model_hint"] = str(values.get("controlvector.model_hint", ("",))[0])[:200]
    if "controlvector.method" in values:  # EasySteer
        meta["source_method"] = str(values["controlvector.method"][0])[:200]
    if count_type == "INT32":
        meta["note"] = "int32 layer_count, as llama.cpp's cvector-generator writes: it computes direction.k from "
        meta["note"] += "block k-1's output (one block before where llama.cpp adds it); its PCA sign is arbitrary."
    if n_layers is None and "mrepe.n_layers" in values:
        n_layers = values["mrepe.n_layers"][0]
        if type(n_layers) is not int:
            raise VectorFileError(f"{name} has an invalid mrepe.n_layers; pass n_layers explicitly.")
    return _import_vector(rows, n_layers, meta, name)


def write_gguf(vector: SteeringVector, path: str | Path, model_hint: str = "", layers=None) -> Path:
    """A control vector for ``llama-cli --control-vector FILE`` (``--control-vector-scaled FILE:r_e``),
    repeng's ``ControlVector.import_gguf`` and EasySteer, written with gguf.GGUFWriter as repeng does.

    One float32 ``direction.<k>`` per steered block k (default ``vector.layers``), rows as they are:
    ours are unit norm, so llama.cpp's scale equals our r_e. llama.cpp applies every direction in
    the file, hence only the chosen blocks go in; block 0 is left out with a warning (llama.cpp
    refuses a file with direction.0).
    """
    import gguf

    path, chosen = Path(path), _layers_to_write(vector, layers)
    if chosen[0] == 0:
        chosen.pop(0)
        if not chosen:
            raise VectorFileError("Only block 0 is selected, and llama.cpp cannot steer block 0; choose later blocks.")
        warnings.warn("Block 0 left out of the GGUF file: llama.cpp cannot steer block 0.", UserWarning, stacklevel=2)
    stored = json.dumps(vector.metadata, default=str)  # llama.cpp and repeng ignore it, read_gguf restores it
    with _written_atomically(path) as tmp:
        writer = gguf.GGUFWriter(tmp, "controlvector")
        writer.add_string("controlvector.model_hint", _model_hint(vector, model_hint))
        writer.add_uint32("controlvector.layer_count", len(chosen))  # as repeng: the number of tensors
        writer.add_uint32("mrepe.n_layers", vector.n_layers)
        if len(stored.encode()) <= _GGUF_MAX_STRING:  # read_gguf's limit; the directions matter more
            writer.add_string("mrepe.metadata", stored)
        for k in chosen:
            writer.add_tensor(f"direction.{k}", vector.directions[k].numpy().copy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


# --- IBM .svec (activation-steering, AISteer360) ------------------------------------------------


def _svec_row(value, key: str, name: str) -> np.ndarray:
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        if len(value) != 1:  # see the module notes: K>1 is not one direction per layer
            raise VectorFileError(
                f"{name}: layer {key} holds K={len(value)} directions (AISteer360's positional, angular or "
                "per-head vectors); only K=1 (CAA/CAST) vectors have one direction per layer. Export a K=1 vector."
            )
        value = value[0]
    numbers = isinstance(value, list) and 0 < len(value) <= MAX_HIDDEN
    if not numbers or any(type(v) not in (int, float) for v in value):
        raise VectorFileError(f"{name}: layer {key} must be a list of numbers (or [[numbers]], as AISteer360 writes).")
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError as exc:
        raise VectorFileError(f"{name}: layer {key} has a number too large for a direction.") from exc


def read_svec(path: str | Path, n_layers: int | None = None) -> SteeringVector:
    """An IBM activation-steering or AISteer360 ``.svec`` (JSON, parsed with ``json`` only)."""
    path = Path(path)
    name, _ = path.name, _checked_size(path, MAX_JSON_BYTES)
    try:
        data = _parse_json(path.read_bytes().decode("utf-8"), name)
    except UnicodeDecodeError as exc:
        raise VectorFileError(f"{name} is not UTF-8 text, so not an .svec (JSON) file.") from exc
    dirs = data.get("directions") if isinstance(data, dict) else None
    if not isinstance(dirs, dict) or not dirs:
        raise VectorFileError(f"{name} is not an .svec: it needs 'directions' mapping layer numbers to lists.")
    rows = {}
    for key, value in dirs.items():
        if not _LAYER_KEY.fullmatch(key) or int(key) >= MAX_LAYERS:
            raise VectorFileError(f"{name}: direction keys must be block numbers ('0', '1', ...), not {_short(key)}.")
        rows[int(key)] = _svec_row(value, key, name)
    variances = data.get("explained_variances", {})
    if not isinstance(variances, dict) or any(type(v) not in (int, float) for v in variances.values()):
        raise VectorFileError(f"{name}: 'explained_variances' must map layer numbers to numbers.")
    ours = data["mrepe"] if isinstance(data.get("mrepe"), dict) else {}  # written by write_svec
    meta = _stored_metadata(ours.get("metadata"), name)
    meta.update(source_format="svec", source_file=name, model_hint=str(data.get("model_type", ""))[:200])
    meta["explained_variances"] = {
        k: float(v) for k, v in variances.items() if _LAYER_KEY.fullmatch(k) and int(k) in rows
    }
    meta["layer_convention"] = "key L read at block L's output; IBM activation-steering adds it at block L's input"
    n, layers = ours.get("n_layers"), ours.get("layers")
    ok_layers = layers is None or isinstance(layers, list) and all(type(k) is int for k in layers)
    if not ok_layers or n is not None and type(n) is not int:
        raise VectorFileError(f"{name}: its 'mrepe' entry (n_layers, layers) is damaged; remove it.")
    return _import_vector(rows, n if n_layers is None else n_layers, meta, name, layers=layers)


def _explained_variance(vector: SteeringVector, k: int) -> float:
    """IBM's use_explained_variance scales by this. Our PCA statistic (explained second moment,
    uncentred) is the nearest thing; other methods get IBM's own placeholder, 1.0."""
    meta = vector.metadata
    stored, stats = meta.get("explained_variances"), meta.get("per_layer_statistic")
    if isinstance(stored, dict) and type(stored.get(str(k))) in (int, float):
        return float(stored[str(k)])
    if meta.get("method") == "pca" and isinstance(stats, list) and len(stats) == vector.n_layers:
        return float(stats[k])
    return 1.0


def write_svec(vector: SteeringVector, path: str | Path, model_hint: str = "", layers=None) -> Path:
    """IBM ``SteeringVector.load`` / AISteer360 JSON. By default every non-zero layer goes in (IBM
    picks layers at steer() time); our layers, n_layers and metadata ride in an extra "mrepe" key
    that both loaders ignore."""
    path = Path(path)
    nonzero = [k for k in range(vector.n_layers) if bool(vector.directions[k].any())]
    chosen = (nonzero or _layers_to_write(vector, [])) if layers is None else _layers_to_write(vector, layers)
    data = {
        "model_type": _model_hint(vector, model_hint),
        "directions": {str(k): vector.directions[k].tolist() for k in chosen},
        "explained_variances": {str(k): _explained_variance(vector, k) for k in chosen},  # IBM's load needs it
        "mrepe": {"n_layers": vector.n_layers, "layers": vector.layers, "metadata": vector.metadata},
    }
    with _written_atomically(path) as tmp:
        tmp.write_text(json.dumps(data, default=str), encoding="utf-8")  # default: metadata should be JSON already
    return path


# --- lm-evaluation-harness (export only) ----------------------------------------------------------


def write_lm_eval(
    vector: SteeringVector, path: str | Path, coefficient: float = 1.0, layers=None, hookpoint: str = "layers.{k}"
) -> Path:
    """``lm_eval --model steered --model_args pretrained=...,steer_path=FILE.pt``: per block k,
    ``{hookpoint: {steering_vector [d], steering_coefficient, action: "add", bias: None}}``.

    ``hookpoint`` names the block under ``model.base_model`` ("h.{k}" for GPT-2). Our rows are unit
    norm, so ``coefficient`` is r_e. lm-eval 0.4.8-0.4.9.1 add the last entry's vector at every
    hookpoint: with those, export one layer per file or upgrade.
    """
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):  # hf_steered picks the loader by these endings
        raise VectorFileError("lm-eval reads steer_path only when it ends in .pt or .pth; name the file <name>.pt.")
    try:
        coefficient = float(coefficient)
    except (TypeError, ValueError):
        coefficient = math.nan
    if not math.isfinite(coefficient) or not isinstance(hookpoint, str) or "{k}" not in hookpoint:
        raise VectorFileError("coefficient must be a finite number and hookpoint a name containing {k}.")
    config = {
        hookpoint.replace("{k}", str(k)): {
            "steering_vector": vector.directions[k].clone(),  # a clone: saving a row view would store every row
            "steering_coefficient": coefficient,
            "action": "add",
            "bias": None,
        }
        for k in _layers_to_write(vector, layers)
    }
    with _written_atomically(path) as tmp:
        torch.save(config, tmp)
    return path


# --- steering-vectors (in memory only) and dispatch ----------------------------------------------


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
