"""Where steering moves a map's points: the vector for the map's model, and steered states measured.

How a steered point moves depends on where the map's layer sits relative to the steered layers
(:func:`steering_effect`). Steering adds ``r·v_l`` to the output of each steered layer ``l``:

* before the first steered layer ``F`` nothing changes;
* at ``F`` itself the steered state is exactly ``x + r·v_F`` (the layers below saw no steering), so
  on a PCA map a point moves by exactly ``r·P·v_F`` (``PCAMap.shift``); every layer, the last one
  included, is read at its block's output, before the final norm, where the vector is added;
* after ``F`` the later layers process the already-steered stream: the steered state is *not*
  ``x + r·v`` and has to be measured with the model (:func:`steered_states`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import hooks, runner
from .concept_map_inputs import MapInputError, layer_index
from .extract import extract_vector
from .limits import check_cancel
from .models import LoadedModel, decoder_layers, resolve_layers
from .steering import steer
from .vectors import SteeringVector

# Frames measured with the model cost one partial forward pass per (point, r_e): keep them few.
MAX_MEASURED_FRAMES = 11
MAX_STEERED_POINTS = 256
# Rows (point, r_e) per partial forward pass when measuring; a cancel waits for at most one.
STEER_BATCH_ROWS = 32

# steering_effect() answers
UNCHANGED, EXACT, MEASURED = "unchanged", "exact", "measured"


def vector_for_model(
    loaded: LoadedModel,
    behavior,
    layers,
    stored: SteeringVector | None = None,
    method: str = "pca",
    n_pairs: int | None = None,
    cancel: threading.Event | None = None,
) -> tuple[SteeringVector, str]:
    """The stored vector when it was extracted from this very model, else one extracted now
    (``cancel`` is checked between its forward passes).

    Returns the vector and a sentence saying which it is (for the dashboard's status line).
    """
    chosen = resolve_layers(layers, loaded.n_layers)
    if (
        stored is not None
        and stored.metadata.get("model_fingerprint") == loaded.fingerprint
        and stored.n_layers == loaded.n_layers
        and stored.hidden_size == loaded.hidden_size
    ):
        vector = SteeringVector(stored.directions, chosen, dict(stored.metadata))
        return vector, f"the sweep's stored {stored.metadata.get('method', '')} vector".replace("  ", " ")
    if behavior is None or not behavior.pairs:
        raise MapInputError("No steering vector for this model and no contrast pairs to extract one from.")
    pairs = list(behavior.pairs)[: n_pairs or len(behavior.pairs)]
    vector = extract_vector(
        loaded, pairs, method, chosen, behavior=behavior.name, template=behavior.template, cancel=cancel
    )
    return vector, f"a {method} vector extracted now from {len(pairs)} contrast pairs"


# ---------------------------------------------------------------------------------------------
# Steered states, measured
# ---------------------------------------------------------------------------------------------


def steering_effect(layer: int, steer_layers: Sequence[int], n_layers: int) -> str:
    """How steering reaches the output of ``layer``: ``UNCHANGED``, ``EXACT`` (``x + r·v``) or
    ``MEASURED`` (later layers transform the steered stream; only a forward pass knows)."""
    index = layer_index(layer, n_layers)
    chosen = resolve_layers(list(steer_layers), n_layers)
    first = min(chosen)
    if index < first:
        return UNCHANGED
    # Every layer, the last included, is read at its block's output (before the final norm), where
    # the vector is added: at the first steered layer the steered state is exactly x + r·v.
    if index == first:
        return EXACT
    return MEASURED


@torch.no_grad()
def steered_states(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector,
    layers,
    r_grid: Sequence[float],
    read_layer: int,
    batch_size: int = STEER_BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[float, np.ndarray]:
    """Last-token state after ``read_layer`` of every text, steered with each ``r`` of ``r_grid``.

    Measured with ``steer`` (per-row coefficients, several r_e per batch); the forward pass stops
    after ``read_layer``, since nothing above it changes that state. Every layer is read at its
    block's output (the last one before the final norm), as in extraction. Returns ``{r: [n, d]}``.
    """
    texts = list(texts)
    if not texts:
        raise MapInputError("No texts to steer.")
    if len(texts) > MAX_STEERED_POINTS:
        raise MapInputError(f"{len(texts)} points to steer; the limit is {MAX_STEERED_POINTS}.")
    grid = check_grid(r_grid)
    read = layer_index(read_layer, loaded.n_layers)
    block = decoder_layers(loaded.model)[read]
    rows = [(i, r) for r in grid for i in range(len(texts))]
    out = {r: np.zeros((len(texts), loaded.hidden_size), dtype=np.float32) for r in grid}
    for done, start in enumerate(range(0, len(rows), batch_size), start=1):
        check_cancel(cancel, "Measuring the steered points")
        batch = rows[start : start + batch_size]
        enc = runner.encode_left_padded(loaded, [texts[i] for i, _ in batch])
        coeff = torch.tensor([r for _, r in batch], dtype=torch.float32)
        # Entered inside steer (which prepends its hooks), so it reads the steered output.
        with steer(loaded.model, vector, layers, coeff):
            with hooks.read_and_stop(block, lambda h: h[:, -1, :].float().cpu()) as captured:
                loaded.model(**enc, use_cache=False, logits_to_keep=1)
        if len(captured) != 1:
            raise RuntimeError(f"Expected one read of layer {read}, got {len(captured)}.")
        for k, (i, r) in enumerate(batch):
            out[r][i] = captured[0][k].numpy()
        if progress is not None:
            progress(done, math.ceil(len(rows) / batch_size))
    return out


def check_grid(r_grid: Sequence[float]) -> list[float]:
    try:
        values = [float(r) for r in r_grid]
    except (TypeError, ValueError) as error:
        raise MapInputError(f"r_grid must be numbers: {error}") from error
    if not values:
        raise MapInputError("r_grid is empty; give at least one steering coefficient.")
    if not all(math.isfinite(v) and abs(v) <= 1e4 for v in values):
        raise MapInputError("r_grid values must be finite with |r| <= 10000.")
    return sorted(set(values))


def frame_grid(sweep_grid: Sequence[float], max_frames: int = MAX_MEASURED_FRAMES) -> list[float]:
    """At most ``max_frames`` coefficients of the sweep grid for measured frames (each costs a
    forward pass per point): every k-th value with both ends, evenly spaced when some k divides
    the grid, and through r_e = 0 when the grid has it (the slider's unsteered position)."""
    grid = check_grid(sweep_grid)
    if max_frames < 2:
        raise MapInputError("max_frames must be at least 2.")
    if len(grid) <= max_frames:
        return grid
    last = len(grid) - 1
    smallest = math.ceil(last / (max_frames - 1))
    # Strides that divide the grid evenly, unless they would keep far fewer frames than allowed.
    dividing = [k for k in range(smallest, 2 * smallest) if last % k == 0]
    zero = grid.index(0.0) if 0.0 in grid else None
    through_zero = [k for k in dividing if zero is not None and zero % k == 0]
    if through_zero or dividing:
        return grid[:: (through_zero or dividing)[0]]
    return grid[::smallest] + [grid[-1]]
