"""The map explorer (mrepe_core.map_explorer) on the tiny Llama: the tab's whole pipeline as a library."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread  # noqa: F401  (fixture: one intra-op thread per module)
from tiny_models import tiny_sweep_fields

from mrepe_core import concept_maps as cm
from mrepe_core import map_explorer as mx
from mrepe_core.config import SweepConfig
from mrepe_core.limits import Cancelled

CONFIG = SweepConfig(**tiny_sweep_fields(n_pairs=6))


@pytest.fixture(scope="module")
def explorer(tiny_llama):
    explorer = mx.MapExplorer()
    explorer.prepare(tiny_llama, CONFIG, n_per_set=4, user_texts="my own question\nanother one")
    return explorer


def test_prepare_collects_every_set_once_and_extracts_a_vector(explorer, tiny_llama):
    assert explorer.inputs.counts() == {"contrast": 4, "eval": 4, "helpfulness": 3, "user": 2}
    assert explorer.steer_layers == [1, 2] and explorer.sweep_grid == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert "extracted now from 6 contrast pairs" in explorer.vector_note
    inputs = explorer.inputs
    # Same model, data and texts: nothing is collected or extracted again, other layers reuse the vector.
    explorer.prepare(tiny_llama, CONFIG, steer_layers="2:4", n_per_set=4, user_texts="my own question\nanother one")
    assert explorer.inputs is inputs and explorer.steer_layers == [2, 3]
    explorer.prepare(tiny_llama, CONFIG, n_per_set=4, user_texts="my own question\nanother one")
    assert explorer.inputs is inputs and explorer.steer_layers == [1, 2]


def test_draw_gives_the_map_frames_and_notes(explorer):
    view = explorer.draw(layer=1, method="pca", steer_sets=["eval", "user"])
    assert view.frames.effect == cm.EXACT and view.frames.index.size == 6
    # r_e = 0: the steered points are the fitted map's points, by construction.
    np.testing.assert_array_equal(view.frames.positions[0.0], view.concept_map.points_2d[view.frames.index])
    assert not np.allclose(view.frames.positions[2.0], view.frames.positions[-2.0])
    assert "first steered layer" in view.notes[-1] and "Model `tiny-llama`" in view.notes[0]
    fig = explorer.figure(2.0)
    assert "after layer 1 · PCA · steered points at r_e = 2" in fig.layout.title.text
    assert view.title() == "hidden states after layer 1 · PCA"
    # A later layer is measured with the model, once: a second draw reads the cached states.
    calls = []
    original = mx.steered_states

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    mx.steered_states = counting
    try:
        measured = explorer.draw(layer=2, method="pca", steer_sets=["eval"])
        again = explorer.draw(layer=2, method="pca", steer_sets=["eval"])
    finally:
        mx.steered_states = original
    assert measured.frames.effect == cm.MEASURED and len(calls) == 1
    np.testing.assert_array_equal(measured.frames.positions[1.0], again.frames.positions[1.0])
    approx = explorer.draw(layer=2, method="pca", steer_sets=["eval"], measure=False)
    assert approx.frames.approximate and "Approximation" in approx.notes[-1]


def test_explore_map_matches_the_explorer_and_reuses_a_stored_vector(explorer, tiny_llama):
    stored = explorer.vector
    view = mx.explore_map(
        tiny_llama, CONFIG, layer=1, user_texts="my own question\nanother one", stored=stored, n_per_set=4
    )
    torch.testing.assert_close(view.inputs.states, explorer.inputs.states)
    reference = explorer.draw(layer=1, method="pca", steer_sets=list(mx.DEFAULT_STEERED))
    for r in reference.frames.r_values:
        np.testing.assert_allclose(view.frames.positions[r], reference.frames.positions[r], rtol=1e-5, atol=1e-5)
    assert "stored" in view.notes[0]


def test_bad_requests_say_what_to_fix(explorer, tiny_llama):
    with pytest.raises(cm.MapInputError, match="out of range"):
        explorer.draw(layer=9)
    with pytest.raises(cm.MapInputError, match="projection must be one of"):
        explorer.draw(method="tsne")
    with pytest.raises(cm.MapInputError, match="Steered sets must be among"):
        explorer.draw(steer_sets=["everything"])
    with pytest.raises(cm.MapInputError, match="Points per set"):
        mx.MapExplorer().prepare(tiny_llama, CONFIG, n_per_set=0)
    with pytest.raises(cm.MapInputError, match="Nothing to draw yet"):
        mx.MapExplorer().draw()
    assert mx.initial_r_e([-1.0, 0.0, 3.0], {"efficient_regime": {"best_r_e": 1.5}}) == 1.5
    assert mx.initial_r_e([-1.0, 0.0, 3.0], {"efficient_regime": {"best_r_e": float("nan")}}) == 3.0


def test_a_cancelled_prepare_changes_nothing(tiny_llama):
    explorer = mx.MapExplorer()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        explorer.prepare(tiny_llama, CONFIG, n_per_set=4, cancel=cancel)
    assert explorer.inputs is None and explorer.vector is None
