"""Frames for the steering slider: map positions of steered points at every coefficient of a grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .projection_pca import PCAMap, ProjectionInputError, as_matrix
from .projection_umap import UMAPMap


def _r_values(r_grid: Sequence[float]) -> list[float]:
    try:
        values = [float(r) for r in r_grid]
    except (TypeError, ValueError) as error:
        raise ProjectionInputError(f"r_grid must be a sequence of numbers: {error}") from error
    if not values:
        raise ProjectionInputError("r_grid is empty; give at least one steering coefficient.")
    if not all(np.isfinite(values)):
        raise ProjectionInputError("r_grid contains NaN or infinite values.")
    return values


def _measured_states(steered: Mapping[float, np.ndarray | torch.Tensor]) -> dict[float, np.ndarray]:
    if not steered:
        raise ProjectionInputError("steered is empty; give hidden states for at least one coefficient.")
    r_values = _r_values(list(steered.keys()))
    return {
        r: as_matrix(steered[key], f"steered[{key}]", torch.device("cpu")).numpy() for r, key in zip(r_values, steered)
    }


def _direction_rows(directions: np.ndarray | torch.Tensor, base: np.ndarray) -> np.ndarray:
    """``directions`` as float32 ``[1, d]`` (shared) or ``[n, d]`` (per point), checked against ``base``."""
    direction = directions.detach().cpu().numpy() if isinstance(directions, torch.Tensor) else np.asarray(directions)
    direction = direction.astype(np.float32)
    if direction.ndim == 1:
        direction = direction[None, :]
    if direction.ndim != 2 or direction.shape[0] not in (1, base.shape[0]) or direction.shape[1] != base.shape[1]:
        raise ProjectionInputError(
            f"directions must be [d] or [n, d] matching base_points {base.shape}; got {direction.shape}."
        )
    if not np.isfinite(direction).all():
        raise ProjectionInputError("directions contain NaN or infinite values.")
    return direction


def project_frames(
    fitted_map: PCAMap | UMAPMap,
    base_points: np.ndarray | torch.Tensor | None = None,
    directions: np.ndarray | torch.Tensor | None = None,
    r_grid: Sequence[float] | None = None,
    steered: Mapping[float, np.ndarray | torch.Tensor] | None = None,
    fitted_positions: np.ndarray | None = None,
) -> dict[float, np.ndarray]:
    """Map positions of steered points for every coefficient on the sweep grid.

    Either give ``steered`` (``{r: hidden states [n, d]}`` actually measured under steering), or
    ``base_points`` ``[n, d]`` with ``directions`` (one ``[d]`` shared or ``[n, d]`` per point) and
    ``r_grid``, meaning the points ``x + r·v``. On a PCA map the latter is exact:
    ``transform(x) + r·shift(v)``. On a UMAP map every moved frame is placed with ``transform`` in
    one call: as in umap-learn, the stochastic placement of a point depends a little on which points
    are placed with it, so one call keeps the frames consistent (and identical on every rebuild).

    ``fitted_positions`` ``[n, 2]``: where the points sit on the map when they were part of its fit.
    The ``r = 0`` frame is then exactly those positions, by construction: umap-learn does not
    promise that ``transform`` puts a training point back where it was fitted, and the unsteered
    points must not jump when the slider reaches 0. Without it, ``r = 0`` is placed like the rest.
    """
    if steered is not None:
        if base_points is not None or directions is not None:
            raise ProjectionInputError("Give either steered hidden states or base_points + directions, not both.")
        states = _measured_states(steered)
    else:
        if base_points is None or directions is None or r_grid is None:
            raise ProjectionInputError("Give base_points, directions and r_grid (or steered hidden states).")
        r_values = _r_values(r_grid)
        base = as_matrix(base_points, "base_points", torch.device("cpu")).numpy()
        direction = _direction_rows(directions, base)
        if isinstance(fitted_map, PCAMap):
            origin = fitted_map.transform(base)
            step = fitted_map.shift(direction)
            exact = {r: (origin + np.float32(r) * step).astype(np.float32) for r in r_values}
            return _pin_zero(exact, fitted_positions)
        states = {r: base + np.float32(r) * direction for r in r_values}

    pinned = fitted_positions is not None
    to_place = [r for r in states if not (pinned and r == 0.0)]
    frames: dict[float, np.ndarray] = {}
    if to_place:
        placed = fitted_map.transform(np.concatenate([states[r] for r in to_place], axis=0))
        splits = np.split(placed, np.cumsum([states[r].shape[0] for r in to_place])[:-1])
        frames = dict(zip(to_place, splits))
    if pinned and 0.0 in states:
        frames[0.0] = states[0.0]  # a placeholder of the right length: _pin_zero puts the fitted positions here
    return _pin_zero(dict(sorted(frames.items())), fitted_positions)


def _pin_zero(frames: dict[float, np.ndarray], fitted_positions: np.ndarray | None) -> dict[float, np.ndarray]:
    """Put the fitted positions in the r = 0 frame (when given and r = 0 is a frame)."""
    if fitted_positions is not None and 0.0 in frames:
        fixed = np.asarray(fitted_positions, dtype=np.float32)
        if fixed.ndim != 2 or fixed.shape[0] != frames[0.0].shape[0]:
            raise ProjectionInputError(
                f"fitted_positions has shape {fixed.shape}; expected one row per point ({frames[0.0].shape[0]})."
            )
        frames[0.0] = fixed.copy()
    return frames
