"""IBM .svec files (activation-steering, AISteer360); conventions in the package docstring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..vectors import SteeringVector, VectorFileError
from .common import (
    _LAYER_KEY,
    MAX_HIDDEN,
    MAX_JSON_BYTES,
    MAX_LAYERS,
    _checked_size,
    _import_vector,
    _layers_to_write,
    _model_hint,
    _parse_json,
    _short,
    _stored_metadata,
    _written_atomically,
)


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
