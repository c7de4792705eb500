"""What every vector format shares: a stranger's limits, atomic writes, checked imports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..vectors import SteeringVector, VectorFileError

MAX_FILE_BYTES = 256 << 20  # files come from strangers on a public server
MAX_JSON_BYTES = 128 << 20  # parsed JSON costs ~30 bytes of memory per float
MAX_LAYERS, MAX_HIDDEN, MAX_METADATA_DEPTH = 1024, 1 << 16, 16
UNIT_TOLERANCE = 1e-3
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
_DIRECTION = re.compile(r"direction\.([0-9]{1,6})")  # [0-9], not \d: \d also matches non-ASCII digits
_LAYER_KEY = re.compile(r"[0-9]{1,4}")
_SCALE = "rows kept as stored, not renormalised: r_e scales them exactly as the source tool's scale does"


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
