"""Additive steering: ``r_l <- r_l + r_e * v_l`` on the output of chosen decoder layers.

One forward pass can evaluate many coefficients: ``coefficients`` may be a tensor with one value
per batch row. Hooks live only inside the ``steer`` context and the model object is never mutated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from . import hooks
from .models import LoadedModel, decoder_layers, resolve_layers

if TYPE_CHECKING:
    from .vectors import SteeringVector


def _as_coefficients(coefficients: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    coeff = torch.as_tensor(coefficients, dtype=torch.float32)
    if coeff.ndim > 1:
        raise ValueError("coefficients must be a scalar or a 1-D tensor with one value per batch row.")
    if not torch.isfinite(coeff).all():
        raise ValueError("coefficients must be finite numbers.")
    return coeff


def steering_term(direction: torch.Tensor, coeff: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``coeff * direction`` shaped to add to ``hidden`` [rows, positions, d]: one coefficient for
    all rows (scalar) or one per row (1-D), in the activation's dtype and device."""
    # Cast first: bf16 activations with an fp32 vector would upcast the residual stream, and a CPU
    # vector on a CUDA activation would fail.
    v = direction.to(device=hidden.device, dtype=hidden.dtype)
    c = coeff.to(device=hidden.device, dtype=hidden.dtype)
    if c.ndim == 1:
        if c.shape[0] != hidden.shape[0]:
            raise ValueError(f"{c.shape[0]} coefficients for a batch of {hidden.shape[0]} rows; give one per row.")
        return c.view(-1, 1, 1) * v.view(1, 1, -1)
    return c * v.view(1, 1, -1)


def _cached_term(direction: torch.Tensor, coeff: torch.Tensor):
    """``steering_term`` computed once per (device, dtype, rows) and reused for every call."""
    cache: dict[tuple, torch.Tensor] = {}

    def term(hidden: torch.Tensor) -> torch.Tensor:
        key = (hidden.device, hidden.dtype, hidden.shape[0])
        if key not in cache:
            cache[key] = steering_term(direction, coeff, hidden)
        return cache[key]

    return term


@contextmanager
def steer(
    model: LoadedModel | torch.nn.Module,
    vector: SteeringVector | None,
    layers: Sequence[int] | str | None = None,
    coefficients: float | Sequence[float] | torch.Tensor = 1.0,
) -> Iterator[None]:
    """Inject ``coefficients * vector.directions[l]`` at every position after each chosen layer.

    ``layers`` defaults to ``vector.layers``. A scalar 0 (or ``vector=None``) registers no hook, so
    the forward pass is exactly the unsteered one. The model is held exclusively for the duration,
    so concurrent requests on the same model cannot see each other's steering. ``model`` is a
    ``LoadedModel`` or the ``torch.nn.Module`` inside one.
    """
    module: torch.nn.Module = model.model if isinstance(model, LoadedModel) else model
    coeff = _as_coefficients(coefficients)
    blocks = decoder_layers(module)
    terms = {}
    if vector is not None and not (coeff.ndim == 0 and float(coeff) == 0.0):
        if vector.directions.shape[0] != len(blocks):
            raise ValueError(
                f"The vector has {vector.directions.shape[0]} layers but the model has {len(blocks)}; "
                "it was extracted from another model."
            )
        chosen = resolve_layers(layers if layers is not None else vector.layers, len(blocks))
        terms = {blocks[layer]: _cached_term(vector.directions[layer], coeff) for layer in chosen}
    with hooks.add_to_outputs(terms, model=module):
        yield


def active_hook_count(model: LoadedModel | torch.nn.Module) -> int:
    """Number of steering hooks on the decoder layers (0 outside any ``steer`` context).

    transformers adds permanent output-capturing hooks of its own after the first call with
    ``output_hidden_states``; those are not counted.
    """
    return hooks.count(decoder_layers(model.model if isinstance(model, LoadedModel) else model))
