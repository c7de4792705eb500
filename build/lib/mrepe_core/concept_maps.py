"""Concept maps: what the model's hidden states look like, per layer, and where steering moves them.

The data behind the dashboard's maps, with no UI, in three modules:

* ``concept_map_inputs``: texts of each set run through the model once (:func:`collect_map_inputs`),
  the visitor's own texts bounded (:func:`clean_user_texts`), encoder spaces;
* ``concept_map_steering``: the vector for the map's model, how steering reaches a layer
  (:func:`steering_effect`) and steered states measured with the model (:func:`steered_states`);
* this module: a 2-D PCA or UMAP fitted on the states at one layer (:func:`build_map`) and the
  positions of steered points for every coefficient of a grid (:func:`frames_on_grid`), so a
  slider can move them without any computation.

``map_explorer`` strings them together for one visitor (model, preset, layer, projection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .concept_map_inputs import (
    DEFAULT_PER_SET,
    MAX_PER_SET,
    NEGATIVE,
    NO_SIDE,
    POSITIVE,
    SET_TITLES,
    SETS,
    MapInputError,
    MapInputs,
    builtin_encoder_items,
    clean_user_texts,
    collect_encoder_inputs,
    collect_map_inputs,
    layer_index,
    max_user_texts,
    question_text,
)
from .concept_map_steering import (
    EXACT,
    MAX_MEASURED_FRAMES,
    MAX_STEERED_POINTS,
    MEASURED,
    UNCHANGED,
    check_grid,
    frame_grid,
    steered_states,
    steering_effect,
    vector_for_model,
)
from .models import resolve_layers
from .projection import PCAMap, UMAPMap, fit_pca, fit_umap, project_frames
from .vectors import SteeringVector

__all__ = [
    "DEFAULT_PER_SET",
    "EXACT",
    "MAX_MEASURED_FRAMES",
    "MAX_PER_SET",
    "MAX_STEERED_POINTS",
    "MEASURED",
    "METHODS",
    "NEGATIVE",
    "NO_SIDE",
    "POSITIVE",
    "SETS",
    "SET_TITLES",
    "UNCHANGED",
    "ConceptMap",
    "Frames",
    "MapInputError",
    "MapInputs",
    "build_map",
    "builtin_encoder_items",
    "check_grid",
    "clean_user_texts",
    "collect_encoder_inputs",
    "collect_map_inputs",
    "frame_grid",
    "frames_on_grid",
    "layer_index",
    "layer_span",
    "max_user_texts",
    "measured_frames",
    "question_text",
    "steered_states",
    "steering_effect",
    "translation_frames",
    "vector_for_model",
]

METHODS = ("pca", "umap")


@dataclass
class ConceptMap:
    """A fitted 2-D map of the states at one layer, with the fitted points' positions."""

    method: str
    layer: int
    fitted: PCAMap | UMAPMap
    points_2d: np.ndarray  # [n, 2]
    axis_titles: tuple[str, str]

    def place(self, states: np.ndarray | torch.Tensor) -> np.ndarray:
        """Positions ``[m, 2]`` of new states on this map (PCA: exact; UMAP: ``transform``)."""
        return self.fitted.transform(states)


def build_map(
    states_at_layer: np.ndarray | torch.Tensor,
    method: str = "pca",
    layer: int = -1,
    random_state: int | None = 0,
    n_neighbors: int = 15,
) -> ConceptMap:
    """Fit a 2-D PCA (exact, instant) or UMAP (``projection.fit_umap``) of ``[n, d]`` states."""
    if method not in METHODS:
        raise MapInputError(f"Projection must be one of {', '.join(METHODS)}; got {method!r}.")
    points = states_at_layer.numpy() if isinstance(states_at_layer, torch.Tensor) else np.asarray(states_at_layer)
    if points.ndim != 2:
        raise MapInputError(f"states must be [points, features]; got shape {points.shape}.")
    if method == "pca":
        if points.shape[0] < 3:
            raise MapInputError(f"A PCA map needs at least 3 points; got {points.shape[0]}.")
        pca = fit_pca(points, n_components=2, device="cpu")
        coords = pca.transform(points)
        if coords.shape[1] < 2:
            raise MapInputError("The states span a single direction; a 2-D map needs more varied inputs.")
        ratio = pca.explained_variance_ratio
        titles = (f"PC1 ({100 * ratio[0]:.0f}% of variance)", f"PC2 ({100 * ratio[1]:.0f}% of variance)")
        return ConceptMap("pca", int(layer), pca, coords, titles)
    if points.shape[0] < 6:
        raise MapInputError(f"A UMAP map needs at least 6 points; got {points.shape[0]}. Use PCA for fewer.")
    umap_map = fit_umap(points, n_neighbors=int(min(n_neighbors, points.shape[0] - 1)), random_state=random_state)
    return ConceptMap("umap", int(layer), umap_map, umap_map.embedding.copy(), ("UMAP 1", "UMAP 2"))


@dataclass
class Frames:
    """Map positions of the steered points, ``{r: [m, 2]}``, and how they were obtained."""

    positions: dict[float, np.ndarray]
    index: np.ndarray  # row of the map's points each steered point starts from
    effect: str  # UNCHANGED / EXACT / MEASURED
    approximate: bool  # True when a translation stands in for states that should be measured
    note: str

    @property
    def r_values(self) -> list[float]:
        return sorted(self.positions)

    def nearest(self, r_e: float) -> float:
        """The precomputed coefficient closest to ``r_e``."""
        values = self.r_values
        return min(values, key=lambda r: (abs(r - float(r_e)), r))


def translation_frames(
    concept_map: ConceptMap,
    base_states: np.ndarray,
    direction: np.ndarray | torch.Tensor,
    r_grid: Sequence[float],
    fitted_positions: np.ndarray | None = None,
) -> dict[float, np.ndarray]:
    """Positions of ``x + r·v`` for every ``r``: on a PCA map ``transform(x) + r·P·v``, exactly.

    This is the true steered state only at the first steered layer (and before it, with ``v = 0``).
    At later layers the real state differs (the layers in between act on the steered stream):
    use :func:`steered_states` and :func:`measured_frames` for those.
    """
    return project_frames(
        concept_map.fitted,
        base_points=base_states,
        directions=direction,
        r_grid=check_grid(r_grid),
        fitted_positions=fitted_positions,
    )


def measured_frames(
    concept_map: ConceptMap, steered: Mapping[float, np.ndarray], fitted_positions: np.ndarray | None = None
) -> dict[float, np.ndarray]:
    """Positions of measured steered states ``{r: [m, d]}`` (all moved ones placed in one call)."""
    return project_frames(concept_map.fitted, steered=dict(steered), fitted_positions=fitted_positions)


def frames_on_grid(
    concept_map: ConceptMap,
    inputs: MapInputs,
    steered_rows: Sequence[int] | np.ndarray,
    vector: SteeringVector,
    steer_layers: Sequence[int],
    r_grid: Sequence[float],
    measure: Callable[[list[str], list[float]], Mapping[float, np.ndarray]] | None = None,
) -> Frames:
    """Frames for the points ``steered_rows`` of ``inputs`` at the map's layer, on ``r_grid``.

    Before the first steered layer the points stay put; at it they move by the exact translation;
    after it they are measured with ``measure(texts, grid)`` (e.g. a partial of
    :func:`steered_states`) on at most ``MAX_MEASURED_FRAMES`` coefficients of the grid, or, when
    ``measure`` is None, drawn as the translation ``x + r·v_layer`` and flagged ``approximate``.
    """
    index = np.asarray(list(steered_rows), dtype=np.int64)
    if index.size == 0:
        raise MapInputError("Choose at least one set of points to steer.")
    if index.min() < 0 or index.max() >= inputs.n_points:
        raise MapInputError("steered_rows must be rows of the map's points.")
    layer = layer_index(concept_map.layer, inputs.n_layers)
    chosen = resolve_layers(list(steer_layers), inputs.n_layers)
    effect = steering_effect(layer, chosen, inputs.n_layers)
    base = inputs.at_layer(layer)[index]
    grid = check_grid(r_grid)
    first = min(chosen)
    # The steered points are points of the map: unsteered (r = 0, or a layer steering does not
    # reach) they sit exactly where the map was fitted.
    fitted = concept_map.points_2d[index]
    if effect == UNCHANGED:
        positions = {r: fitted.copy() for r in grid}
        note = (
            f"Layer {layer} comes before the first steered layer ({first}): steering does not reach it, "
            f"so the steered points stay where they are. Pick a layer from {first} on to see them move."
        )
        return Frames(positions, index, effect, False, note)
    if effect == EXACT:
        positions = translation_frames(concept_map, base, vector.directions[layer], grid, fitted)
        note = (
            f"Layer {layer} is the first steered layer: a steered state is exactly x + r_e·v there, "
            "so the points move along straight lines"
            + (" (exact on PCA)." if concept_map.method == "pca" else " (placed with UMAP's transform).")
        )
        return Frames(positions, index, effect, False, note)
    if measure is None:
        positions = translation_frames(concept_map, base, vector.directions[layer], grid, fitted)
        note = (
            f"Approximation: layer {layer} comes after the first steered layer ({first}), where the real "
            f"steered state is not x + r_e·v; the points show that translation only. Measure the steered "
            "states for the true positions."
        )
        return Frames(positions, index, effect, True, note)
    measured_grid = frame_grid(grid)
    steered = measure([inputs.texts[i] for i in index], measured_grid)
    positions = measured_frames(concept_map, steered, fitted)
    note = (
        f"Measured: steered states after layer {layer} from forward passes with steering on layers "
        f"{layer_span(chosen)}, at {len(measured_grid)} coefficients."
    )
    return Frames(positions, index, effect, False, note)


def layer_span(layers: Sequence[int]) -> str:
    """Layers for people: '8–19' for a run, '3, 5, 7' otherwise."""
    layers = sorted(layers)
    if not layers:
        return "none"
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 1:
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(str(x) for x in layers)
