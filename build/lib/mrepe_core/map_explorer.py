"""Map explorer: one visitor's concept map, from a sweep config (a preset) to the frames a slider reads.

The pipeline behind the dashboard's concept map, as a library::

    from mrepe_core.map_explorer import MapExplorer
    explorer = MapExplorer()
    explorer.prepare(loaded, config, steer_layers="10:18", user_texts=["How do I pick a lock?"],
                     stored=result.vector)          # states of every set, once; the steering vector
    view = explorer.draw(layer=12, method="pca")    # the fitted map and the steered points' frames
    fig = explorer.figure(r_e=4.0)                  # plotly figure at that coefficient (no model)

or in one call, :func:`explore_map`. ``prepare`` runs the model (collect states, maybe extract a
vector); ``draw`` runs it only when steered states past the first steered layer must be measured;
``figure`` never does. Long steps take ``cancel`` (a ``threading.Event``, checked between forward
passes; ``limits.Cancelled`` is raised) and ``progress(fraction, message)``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .concept_map_inputs import DEFAULT_PER_SET, MAX_PER_SET, SET_TITLES, SETS, MapInputError, MapInputs, layer_index
from .concept_maps import (
    ConceptMap,
    Frames,
    build_map,
    clean_user_texts,
    collect_map_inputs,
    frames_on_grid,
    layer_span,
    steered_states,
    vector_for_model,
)
from .config import SweepConfig
from .models import LoadedModel, resolve_layers
from .sweep import prepare
from .vectors import SteeringVector

# Without a stored vector for the model, one is extracted on the spot from this many contrast pairs
# (two forward passes each; the sweep's own vector uses the preset's n_pairs).
EXTRACT_PAIRS = 32
DEFAULT_STEERED = ("eval", "user")
MAP_METHODS = ("pca", "umap")

ProgressFn = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    return None


def steer_sets_checked(steer_sets: Sequence[str] | None) -> list[str]:
    """The sets whose points are steered, each one of ``SETS``."""
    if steer_sets is None:
        return list(DEFAULT_STEERED)
    if isinstance(steer_sets, str) or not isinstance(steer_sets, (list, tuple)):
        raise MapInputError("The steered sets must be a list of set names.")
    unknown = [s for s in steer_sets if s not in SETS]
    if unknown or len(steer_sets) > len(SETS):
        raise MapInputError(f"Steered sets must be among {', '.join(SETS)}.")
    return list(dict.fromkeys(steer_sets))


def initial_r_e(grid: Sequence[float], summary: dict | None = None) -> float:
    """Where the slider starts: the sweep's recommended r_e when it has one, else the largest r_e."""
    best = ((summary or {}).get("efficient_regime") or {}).get("best_r_e")
    try:
        value = math.nan if best is None else float(best)
    except (TypeError, ValueError):
        value = math.nan
    return value if math.isfinite(value) else float(max(grid))


@dataclass
class MapView:
    """A drawn map: its points, the fitted 2-D map, the steered points' frames and what they mean."""

    inputs: MapInputs
    concept_map: ConceptMap
    frames: Frames
    notes: list[str]

    def title(self, r_e: float | None = None) -> str:
        layer_text = "" if self.inputs.n_layers == 1 else f" after layer {self.concept_map.layer}"
        title = f"{self.inputs.space}{layer_text} · {self.concept_map.method.upper()}"
        if r_e is None:
            return title
        r = self.frames.nearest(r_e)
        return (
            title
            + f" · steered points at r_e = {r:g}"
            + (" (translation approximation)" if self.frames.approximate else "")
        )

    def figure(self, r_e: float):
        """The map with the steered points at the precomputed coefficient nearest ``r_e`` (no model)."""
        from .plots.maps import concept_map_figure

        r = self.frames.nearest(r_e)
        return concept_map_figure(
            self.concept_map.points_2d,
            [SET_TITLES.get(s, s) for s in self.inputs.sets],
            self.inputs.sides,
            steered_2d=self.frames.positions[r],
            steered_index=self.frames.index,
            r_e=r,
            title=self.title(r),
            hover_text=self.inputs.hover,
            axis_titles=self.concept_map.axis_titles,
        )


class MapExplorer:
    """One visitor's map: states collected once per (model, data, texts) and reused for every
    layer and projection; the steering vector; measured steered states cached per layer."""

    def __init__(self) -> None:
        self.loaded: LoadedModel | None = None
        self.behavior = None
        self.inputs: MapInputs | None = None
        self.vector: SteeringVector | None = None
        self.vector_note = ""
        self.steer_layers: list[int] = []
        self.sweep_grid: list[float] = []
        self.view: MapView | None = None
        self._inputs_key: tuple | None = None
        self._vector_key: tuple | None = None
        self._measured: dict[tuple, dict[float, np.ndarray]] = {}
        self._lock = threading.Lock()  # one prepare / draw at a time per visitor

    # -- the model's side -------------------------------------------------------------------

    def prepare(
        self,
        loaded: LoadedModel,
        config: SweepConfig,
        steer_layers: str | Sequence[int] | None = None,
        n_per_set: int = DEFAULT_PER_SET,
        user_texts: str | Sequence[str] | None = None,
        stored: SteeringVector | None = None,
        cancel: threading.Event | None = None,
        progress: ProgressFn = _quiet,
    ) -> None:
        """Collect the states of every set (skipped when nothing they depend on changed) and get the
        steering vector for ``steer_layers`` (default: the config's): ``stored`` when it was
        extracted from this very model, else one extracted now from ``EXTRACT_PAIRS`` pairs."""
        chosen = resolve_layers(config.layers if steer_layers in (None, "") else steer_layers, loaded.n_layers)
        users = clean_user_texts(user_texts, loaded.tokenizer)
        if isinstance(n_per_set, bool) or not isinstance(n_per_set, (int, np.integer)):
            raise MapInputError("Points per set must be a whole number.")
        if not 1 <= int(n_per_set) <= MAX_PER_SET:
            raise MapInputError(f"Points per set must be between 1 and {MAX_PER_SET}.")
        data_key = (
            config.behavior,
            config.n_pairs,
            config.n_eval,
            config.seed,
            tuple(config.helpfulness_subjects),
            config.mmlu_split,
            config.n_questions_per_subject,
            config.helpfulness_format,
        )
        key = (loaded.fingerprint, data_key, int(n_per_set), tuple(users))
        with self._lock:
            if key != self._inputs_key or self.inputs is None:
                progress(0.1, "Loading the behaviour and questions")
                _, behavior, questions = prepare(config, loaded)
                progress(0.2, "Reading the hidden states of every set")
                inputs = collect_map_inputs(
                    loaded, behavior, questions, users, int(n_per_set), config.helpfulness_format, cancel=cancel
                )
                self.loaded, self.behavior, self.inputs = loaded, behavior, inputs
                self._inputs_key, self._measured, self._vector_key = key, {}, None
            self._set_vector(loaded, config, chosen, stored, cancel, progress)
            self.sweep_grid = config.r_grid()
            self.view = None

    def _set_vector(self, loaded, config, chosen, stored, cancel, progress) -> None:
        # Extraction computes every layer's direction; the steered layers only choose among them.
        stored_id = (
            None if stored is None else (stored.metadata.get("model_fingerprint"), stored.metadata.get("created"))
        )
        vector_key = (self._inputs_key, config.method, stored_id)
        if vector_key != self._vector_key or self.vector is None:
            progress(0.5, "Steering vector")
            self.vector, self.vector_note = vector_for_model(
                loaded, self.behavior, chosen, stored, config.method, n_pairs=EXTRACT_PAIRS, cancel=cancel
            )
            self._vector_key, self._measured = vector_key, {}
        else:
            self.vector = SteeringVector(self.vector.directions, chosen, dict(self.vector.metadata))
        self.steer_layers = chosen

    # -- drawing ------------------------------------------------------------------------------

    def draw(
        self,
        layer: int | None = None,
        method: str = "pca",
        steer_sets: Sequence[str] | None = None,
        measure: bool = True,
        cancel: threading.Event | None = None,
        progress: ProgressFn = _quiet,
    ) -> MapView:
        """Fit the map at ``layer`` (default: the first steered one) and precompute the steered
        points' frames on the sweep grid (measured with the model past the first steered layer
        when ``measure``, else the labelled translation approximation)."""
        if self.inputs is None or self.vector is None:
            raise MapInputError("Nothing to draw yet: prepare the map (model, preset, texts) first.")
        if method not in MAP_METHODS:
            raise MapInputError(f"The projection must be one of {', '.join(MAP_METHODS)}.")
        inputs = self.inputs
        index = layer_index(min(self.steer_layers) if layer is None else layer, inputs.n_layers)
        rows = inputs.rows(steer_sets_checked(steer_sets))
        if rows.size == 0:
            raise MapInputError("None of the chosen sets has points to steer; tick a set that is on the map.")
        with self._lock:
            progress(0.6, f"Fitting the {method.upper()} map")
            concept_map = build_map(inputs.at_layer(index), method, layer=index)
            measure_fn = self._measurer(index, rows, cancel, progress) if measure else None
            frames = frames_on_grid(
                concept_map, inputs, rows, self.vector, self.steer_layers, self.sweep_grid, measure=measure_fn
            )
            self.view = MapView(inputs, concept_map, frames, self.notes(frames))
            return self.view

    def _measurer(self, index: int, rows: np.ndarray, cancel, progress: ProgressFn):
        def measure(texts: list[str], grid: list[float]) -> dict[float, np.ndarray]:
            key = (index, tuple(rows.tolist()), tuple(grid), tuple(self.steer_layers))
            if key not in self._measured:
                assert self.loaded is not None and self.vector is not None  # set by prepare()

                def report(done: int, total: int) -> None:
                    progress(0.6 + 0.4 * done / max(total, 1), f"Measuring steered states after layer {index}")

                self._measured[key] = steered_states(
                    self.loaded, texts, self.vector, self.steer_layers, grid, index, progress=report, cancel=cancel
                )
            return self._measured[key]

        return measure

    def notes(self, frames: Frames | None = None) -> list[str]:
        """What is on the map, for people: model, vector, steered layers, points; how the frames were made."""
        if self.inputs is None:
            return []
        counts = ", ".join(f"{n} {SET_TITLES.get(s, s)}" for s, n in self.inputs.counts().items())
        name = self.loaded.name if self.loaded is not None else "?"
        span = layer_span(self.steer_layers)
        notes = [f"Model `{name}` · steering {self.vector_note} on layers {span} · points: {counts}."]
        if frames is not None:
            notes.append(frames.note)
        return notes

    def figure(self, r_e: float):
        """The current map at ``r_e`` (see ``MapView.figure``)."""
        if self.view is None:
            raise MapInputError("Nothing drawn yet: call draw() first.")
        return self.view.figure(r_e)


def explore_map(
    loaded: LoadedModel,
    config: SweepConfig,
    layer: int | None = None,
    method: str = "pca",
    user_texts: str | Sequence[str] | None = None,
    steer_layers: str | Sequence[int] | None = None,
    stored: SteeringVector | None = None,
    n_per_set: int = DEFAULT_PER_SET,
    steer_sets: Sequence[str] | None = None,
    measure: bool = True,
    cancel: threading.Event | None = None,
) -> MapView:
    """Prepare and draw in one call: the map at ``layer`` with its frames and notes."""
    explorer = MapExplorer()
    explorer.prepare(loaded, config, steer_layers, n_per_set, user_texts, stored, cancel)
    return explorer.draw(layer, method, steer_sets, measure, cancel)
