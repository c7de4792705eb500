"""lm-evaluation-harness ``steered`` model files (export only: .pt is a pickle we never read)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..vectors import SteeringVector, VectorFileError
from .common import (
    _layers_to_write,
    _written_atomically,
)


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
