"""GGUF control vectors (llama.cpp, repeng, EasySteer); the sources' conventions are in the package docstring."""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from ..vectors import SteeringVector, VectorFileError
from .common import (
    _DIRECTION,
    MAX_FILE_BYTES,
    MAX_HIDDEN,
    MAX_LAYERS,
    _checked_size,
    _import_vector,
    _layers_to_write,
    _model_hint,
    _short,
    _stored_metadata,
    _written_atomically,
)

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
