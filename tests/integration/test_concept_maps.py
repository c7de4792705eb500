"""Concept-map data on the tiny Llama: labelled states, exact PCA frames, measured steered states."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread  # noqa: F401  (fixture: one intra-op thread per module)

from mrepe_core import concept_maps as cm
from mrepe_core import datasets, prompts
from mrepe_core.extract import hidden_states
from mrepe_core.vectors import SteeringVector

STEER = [1, 2]


@pytest.fixture(scope="module")
def behavior(tiny_tokenizer):
    return datasets.load_behavior("harmless", tiny_tokenizer, 6, 5)


@pytest.fixture(scope="module")
def questions():
    return datasets.load_mmlu(["marketing", "jurisprudence"], "dev", 3)


@pytest.fixture(scope="module")
def inputs(tiny_llama, behavior, questions):
    return cm.collect_map_inputs(tiny_llama, behavior, questions, "first input\n\n  second input  \n", n_per_set=4)


@pytest.fixture(scope="module")
def vector(tiny_llama):
    g = torch.Generator().manual_seed(3)
    d = torch.nn.functional.normalize(torch.randn(tiny_llama.n_layers, tiny_llama.hidden_size, generator=g), dim=1)
    # Large enough to move the tiny model's states (init std 0.02) visibly.
    return SteeringVector(d, STEER)


def test_inputs_are_labelled_and_hold_every_layer(tiny_llama, inputs, behavior, questions):
    assert inputs.counts() == {"contrast": 4, "eval": 4, "helpfulness": 4, "user": 2}
    assert tuple(inputs.states.shape) == (14, tiny_llama.n_layers, tiny_llama.hidden_size)
    contrast = inputs.rows(["contrast"])
    assert [inputs.sides[i] for i in contrast] == ["positive", "negative"] * 2
    assert inputs.texts[contrast[0]] == behavior.pairs[0].positive
    assert {inputs.sides[i] for i in inputs.rows(["eval", "helpfulness", "user"])} == {cm.NO_SIDE}
    first_eval = inputs.rows(["eval"])[0]
    assert inputs.texts[first_eval] == prompts.render_chat(tiny_llama.tokenizer, behavior.eval_prompts[0].user)
    # Questions take subjects in turn, so four points cover both subjects.
    subjects = {h.split("]")[0].strip("[") for h in (inputs.hover[i] for i in inputs.rows(["helpfulness"]))}
    assert subjects == {"marketing", "jurisprudence"}
    user = inputs.rows(["user"])
    assert inputs.texts[user[1]] == prompts.render_chat(tiny_llama.tokenizer, "second input")
    # The states are the model's: recomputing one text alone gives the same numbers.
    alone = hidden_states(tiny_llama, [inputs.texts[user[0]]])[0]
    torch.testing.assert_close(inputs.states[user[0]], alone, atol=1e-5, rtol=1e-4)
    assert inputs.at_layer(-1).shape == (14, tiny_llama.hidden_size)


def test_bad_inputs_say_what_to_fix(tiny_llama, behavior, inputs):
    with pytest.raises(cm.MapInputError, match="at most"):
        cm.clean_user_texts("\n".join(f"line {i}" for i in range(cm.max_user_texts() + 1)))
    with pytest.raises(cm.MapInputError, match="n_per_set"):
        cm.collect_map_inputs(tiny_llama, behavior, (), None, n_per_set=0)
    with pytest.raises(cm.MapInputError, match="Nothing to map"):
        cm.collect_map_inputs(tiny_llama, None, (), "  \n")
    with pytest.raises(cm.MapInputError, match="out of range"):
        inputs.at_layer(tiny_llama.n_layers)
    with pytest.raises(cm.MapInputError, match="Projection"):
        cm.build_map(inputs.at_layer(0), "tsne")


def test_steering_effect_follows_the_first_steered_layer():
    assert cm.steering_effect(0, [1, 2], 4) == cm.UNCHANGED
    assert cm.steering_effect(1, [1, 2], 4) == cm.EXACT
    assert cm.steering_effect(2, [1, 2], 4) == cm.MEASURED
    assert cm.steering_effect(3, [3], 4) == cm.EXACT  # the last layer is read before the final norm, as steered
    assert cm.steering_effect(-3, [2, 1], 4) == cm.EXACT


def test_frame_grid_keeps_ends_and_even_spacing():
    grid = [round(-8 + 0.8 * k, 6) for k in range(21)]
    frames = cm.frame_grid(grid)
    assert len(frames) <= cm.MAX_MEASURED_FRAMES and frames[0] == -8.0 and frames[-1] == 8.0
    assert np.allclose(np.diff(frames), 1.6) and 0.0 in frames
    # Nine frames at most: every fifth value, evenly spaced and through 0.
    assert cm.frame_grid(grid, max_frames=9) == [-8.0, -4.0, 0.0, 4.0, 8.0]
    # No dividing stride: every k-th value plus the last one.
    assert cm.frame_grid([float(k) for k in range(8)], max_frames=4) == [0.0, 3.0, 6.0, 7.0]
    assert cm.frame_grid([1.0, -1.0, 0.0]) == [-1.0, 0.0, 1.0]
    with pytest.raises(cm.MapInputError, match="empty"):
        cm.frame_grid([])


def test_pca_frames_are_the_measured_states_at_the_first_steered_layer(tiny_llama, inputs, vector):
    rows = inputs.rows(["eval", "user"])
    texts = [inputs.texts[i] for i in rows]
    grid = [-0.5, 0.0, 0.25, 0.5]
    concept_map = cm.build_map(inputs.at_layer(1), "pca", layer=1)
    frames = cm.frames_on_grid(concept_map, inputs, rows, vector, STEER, grid)
    assert frames.effect == cm.EXACT and not frames.approximate and frames.r_values == grid
    measured = cm.steered_states(tiny_llama, texts, vector, STEER, grid, read_layer=1, batch_size=5)
    base = inputs.at_layer(1)[rows]
    np.testing.assert_allclose(measured[0.0], base, atol=1e-5)
    # The steered state at the first steered layer is exactly x + r·v ...
    np.testing.assert_allclose(measured[0.5], base + 0.5 * vector.directions[1].numpy(), atol=1e-5)
    assert np.abs(measured[0.5] - base).max() > 0.1
    # ... so the precomputed PCA frames are where the measured states land on the map.
    for r in grid:
        np.testing.assert_allclose(frames.positions[r], concept_map.place(measured[r]), atol=1e-4)
    assert not np.allclose(frames.positions[0.5], frames.positions[-0.5], atol=1e-2)


def test_later_layers_must_be_measured(tiny_llama, inputs, vector):
    rows = inputs.rows(["eval"])
    grid = [0.0, 0.5]
    concept_map = cm.build_map(inputs.at_layer(2), "pca", layer=2)
    approx = cm.frames_on_grid(concept_map, inputs, rows, vector, STEER, grid)
    assert approx.effect == cm.MEASURED and approx.approximate and "Approximation" in approx.note
    measure = functools.partial(cm.steered_states, tiny_llama, vector=vector, layers=STEER, read_layer=2)
    exact = cm.frames_on_grid(
        concept_map, inputs, rows, vector, STEER, grid, measure=lambda texts, g: measure(texts, r_grid=g)
    )
    assert not exact.approximate and exact.r_values == grid
    steered = cm.steered_states(tiny_llama, [inputs.texts[i] for i in rows], vector, STEER, [0.5], read_layer=2)
    np.testing.assert_allclose(exact.positions[0.5], concept_map.place(steered[0.5]), atol=1e-4)
    # Past the first steered layer the translation x + r·v is not where the state goes.
    assert np.abs(exact.positions[0.5] - approx.positions[0.5]).max() > 1e-3
    # Before it, nothing moves: measured states at layer 0 equal the unsteered ones.
    before = cm.steered_states(tiny_llama, [inputs.texts[rows[0]]], vector, STEER, [0.5], read_layer=0)
    np.testing.assert_allclose(before[0.5][0], inputs.at_layer(0)[rows[0]], atol=1e-5)
    unchanged = cm.frames_on_grid(cm.build_map(inputs.at_layer(0), "pca", layer=0), inputs, rows, vector, STEER, grid)
    assert unchanged.effect == cm.UNCHANGED and np.array_equal(unchanged.positions[0.0], unchanged.positions[0.5])


def test_last_layer_states_match_the_extraction_convention(tiny_llama, inputs, vector):
    last = tiny_llama.n_layers - 1
    row = int(inputs.rows(["user"])[0])
    measured = cm.steered_states(tiny_llama, [inputs.texts[row]], vector, STEER, [0.0], read_layer=last)
    np.testing.assert_allclose(measured[0.0][0], inputs.at_layer(last)[row], atol=1e-4)


def test_vector_for_model_reuses_only_a_vector_of_this_model(tiny_llama, behavior, vector):
    stored = SteeringVector(vector.directions, [0], {"model_fingerprint": tiny_llama.fingerprint, "method": "pca"})
    reused, note = cm.vector_for_model(tiny_llama, behavior, "1:3", stored)
    assert torch.equal(reused.directions, vector.directions) and reused.layers == [1, 2] and "stored" in note
    other = SteeringVector(vector.directions, [0], {"model_fingerprint": "another-model"})
    extracted, note = cm.vector_for_model(tiny_llama, behavior, [1], other, n_pairs=3)
    assert "extracted now from 3" in note and not torch.equal(extracted.directions, vector.directions)


@pytest.mark.slow
def test_steered_points_land_on_the_umap_map(tiny_llama, inputs, vector):
    rows = inputs.rows(["eval"])
    concept_map = cm.build_map(inputs.at_layer(1), "umap", layer=1)
    assert concept_map.points_2d.shape == (inputs.n_points, 2)
    frames = cm.frames_on_grid(concept_map, inputs, rows, vector, STEER, [0.0, 0.5])
    fitted = concept_map.points_2d[rows]
    # Unsteered points sit exactly at their fitted positions (by construction: umap-learn's
    # transform does not promise to put a training point back there); steering moves them.
    np.testing.assert_array_equal(frames.positions[0.0], fitted)
    assert np.linalg.norm(frames.positions[0.5] - frames.positions[0.0], axis=1).mean() > 0
