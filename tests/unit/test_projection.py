"""PCA / UMAP concept maps: exact PCA translation, exact torch k-NN, placement of steered points, figures."""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mrepe_core.plots.maps import ARROWS_NAME, MapPlotError, concept_map_figure, set_colors, side_symbols
from mrepe_core.projection import (
    ProjectionInputError,
    device_for_projection,
    fit_pca,
    fit_umap,
    knn,
    project_frames,
)


def clusters(n_per_cluster: int = 60, n_dims: int = 24, n_clusters: int = 3, seed: int = 0):
    generator = np.random.default_rng(seed)
    centres = generator.normal(scale=6.0, size=(n_clusters, n_dims)).astype(np.float32)
    labels = np.repeat(np.arange(n_clusters), n_per_cluster)
    points = centres[labels] + generator.normal(size=(len(labels), n_dims)).astype(np.float32)
    return points.astype(np.float32), labels, centres


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(80, 12), (10, 40)])  # covariance path and Gram path (d > n)
def test_pca_matches_numpy_svd(shape):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32) * np.linspace(3, 0.5, shape[1])
    pca = fit_pca(x, 3, device="cpu")
    centred = x.astype(np.float64) - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    # Same subspace and order: |cos| of each component with numpy's is 1.
    np.testing.assert_allclose(np.abs(np.sum(pca.components * vt[:3], axis=1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(pca.explained_variance_ratio, (singular**2 / np.sum(singular**2))[:3], rtol=1e-4)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-5)
    # Largest loading positive, so refits do not mirror the map.
    assert np.all(pca.components[np.arange(3), np.abs(pca.components).argmax(axis=1)] > 0)


def test_pca_translation_property_is_exact():
    x, _, centres = clusters()
    pca = fit_pca(x, 2, device="cpu")
    v = (centres[1] - centres[0]) / np.linalg.norm(centres[1] - centres[0])
    for r in (-8.0, 0.5, 3.0, 25.0):
        np.testing.assert_allclose(pca.transform(x + r * v), pca.transform(x) + r * pca.shift(v), rtol=1e-5, atol=1e-4)
    per_point = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    np.testing.assert_allclose(
        pca.transform(x + 2.0 * per_point), pca.transform(x) + 2.0 * pca.shift(per_point), rtol=1e-5, atol=1e-4
    )


def layer_outputs(loaded, texts, layer: int) -> np.ndarray:
    """Last-token output of decoder layer ``layer``, read by a hook that runs after any steering hook."""
    from mrepe_core.models import decoder_layers

    recorded = []

    def record(module, args, output):
        recorded.append((output[0] if isinstance(output, tuple) else output)[:, -1, :].detach().float())

    # Registered after steer() registered its hook, so it runs after it and sees the steered output.
    handle = decoder_layers(loaded.model)[layer].register_forward_hook(record)
    try:
        with torch.no_grad():
            for text in texts:
                encoded = loaded.tokenizer([text], return_tensors="pt", add_special_tokens=False)
                loaded.model(**encoded, use_cache=False)
    finally:
        handle.remove()
    return torch.cat(recorded).numpy()


def test_pca_translation_holds_for_hidden_states_steered_in_a_tiny_model(tiny_llama):
    """Steering adds r·v to a layer's output, so on that layer's PCA map each point moves by r·shift(v)."""
    from mrepe_core.steering import steer
    from mrepe_core.vectors import SteeringVector

    texts = [
        "Sure, here is how to do it.",
        "I'm sorry, but I cannot help with that.",
        "The statement is true.",
        "Question: Answer: The answer is A",
        "Can you write a poem?",
    ]
    layer = 1
    base = layer_outputs(tiny_llama, texts, layer)
    directions = torch.nn.functional.normalize(
        torch.randn(4, base.shape[1], generator=torch.Generator().manual_seed(0)), dim=1
    )
    vector = SteeringVector(directions=directions, layers=[layer])
    steered = {}
    for r in (0.0, 1.5, 4.0):
        with steer(tiny_llama.model, vector, coefficients=r):
            steered[r] = layer_outputs(tiny_llama, texts, layer)
    pca = fit_pca(base, 2, device="cpu")
    measured = project_frames(pca, steered=steered)
    predicted = project_frames(pca, base_points=base, directions=directions[layer], r_grid=[0.0, 1.5, 4.0])
    for r in steered:
        np.testing.assert_allclose(measured[r], predicted[r], rtol=1e-4, atol=1e-4)
    assert np.linalg.norm(measured[4.0] - measured[0.0]) > 1e-3  # the points did move


def test_pca_rejects_bad_input():
    with pytest.raises(ProjectionInputError, match="NaN"):
        fit_pca(np.array([[0.0, 1.0], [np.nan, 2.0]]), 1, device="cpu")
    with pytest.raises(ProjectionInputError, match="2-D"):
        fit_pca(np.zeros((2, 3, 4)), 1, device="cpu")
    with pytest.raises(ProjectionInputError, match="at least 2"):
        fit_pca(np.zeros((1, 3)), 1, device="cpu")
    with pytest.raises(ProjectionInputError, match="positive integer"):
        fit_pca(np.zeros((5, 3)), 0, device="cpu")
    pca = fit_pca(np.random.default_rng(0).normal(size=(6, 3)), 2, device="cpu")
    with pytest.raises(ProjectionInputError, match="features"):
        pca.transform(np.zeros((2, 4)))
    with pytest.raises(ProjectionInputError, match="Unknown projection device"):
        device_for_projection("tpu")


# ---------------------------------------------------------------------------------------------
# k-NN
# ---------------------------------------------------------------------------------------------


def brute_force(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dists = np.linalg.norm(queries[:, None, :].astype(np.float64) - data[None, :, :], axis=2)
    order = np.argsort(dists, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dists, order, axis=1)


def test_knn_matches_numpy_brute_force():
    generator = np.random.default_rng(3)
    data = generator.normal(size=(150, 16)).astype(np.float32)
    indices, dists = knn(data, 7, device="cpu", batch_size=32)  # several blocks
    expected_indices, expected_dists = brute_force(data, data, 7)
    assert indices.dtype == np.int64 and dists.dtype == np.float32 and indices.shape == (150, 7)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(dists, expected_dists, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(indices[:, 0], np.arange(150))  # self first, as umap-learn expects
    assert np.all(dists[:, 0] == 0.0)

    queries = generator.normal(size=(20, 16)).astype(np.float32)
    q_indices, q_dists = knn(data, 5, device="cpu", queries=queries)
    expected_indices, expected_dists = brute_force(data, queries, 5)
    np.testing.assert_array_equal(q_indices, expected_indices)
    np.testing.assert_allclose(q_dists, expected_dists, rtol=1e-5, atol=1e-5)


def test_knn_puts_self_first_among_duplicates_and_rejects_bad_input():
    data = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], dtype=np.float32)
    indices, dists = knn(data, 3, device="cpu")
    np.testing.assert_array_equal(indices[:, 0], np.arange(4))
    assert set(indices[0, :2]) == {0, 1} and dists[0, 1] == 0.0
    with pytest.raises(ProjectionInputError, match="only 4 points"):
        knn(data, 5, device="cpu")
    with pytest.raises(ProjectionInputError, match="features"):
        knn(data, 2, device="cpu", queries=np.zeros((1, 3)))
    with pytest.raises(ProjectionInputError, match="infinite"):
        knn(np.array([[np.inf, 0.0], [0.0, 0.0]]), 1, device="cpu")


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


def test_project_frames_on_pca_shapes_and_exactness():
    x, _, centres = clusters()
    pca = fit_pca(x, 2, device="cpu")
    base = x[:10]
    shared = centres[2] - centres[0]
    grid = [0.0, 0.25, 0.5, 1.0]
    frames = project_frames(pca, base, shared, grid)
    assert list(frames) == grid
    for r, frame in frames.items():
        assert frame.shape == (10, 2) and frame.dtype == np.float32
        np.testing.assert_allclose(frame, pca.transform(base + r * shared), rtol=1e-5, atol=1e-4)
    per_point = np.random.default_rng(4).normal(size=base.shape).astype(np.float32)
    frames = project_frames(pca, torch.as_tensor(base), torch.as_tensor(per_point), grid)
    np.testing.assert_allclose(frames[1.0], pca.transform(base + per_point), rtol=1e-5, atol=1e-4)
    # Frames from hidden states measured under steering are placed as given.
    measured = project_frames(pca, steered={0.0: base, 2.0: base + 2.0 * shared})
    np.testing.assert_allclose(measured[2.0], pca.transform(base + 2.0 * shared), rtol=1e-6)


def test_project_frames_rejects_bad_input():
    x, _, _ = clusters()
    pca = fit_pca(x, 2, device="cpu")
    with pytest.raises(ProjectionInputError, match="directions"):
        project_frames(pca, x[:5], np.zeros((3, x.shape[1])), [0.0])
    with pytest.raises(ProjectionInputError, match="empty"):
        project_frames(pca, x[:5], x[0], [])
    with pytest.raises(ProjectionInputError, match="NaN or infinite"):
        project_frames(pca, x[:5], x[0], [0.0, float("nan")])
    with pytest.raises(ProjectionInputError, match="not both"):
        project_frames(pca, x[:5], x[0], [0.0], steered={0.0: x[:5]})


# ---------------------------------------------------------------------------------------------
# UMAP (imports umap-learn and compiles its numba kernels: tens of seconds on a cold CPU)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def umap_clusters():
    x, labels, centres = clusters(n_per_cluster=60, n_dims=24)
    fitted = fit_umap(x, n_neighbors=10, n_pca=8, n_epochs=60, device="cpu", random_state=0)
    return x, labels, centres, fitted


def centroid_distance_ratio(
    points_2d: np.ndarray, fitted_2d: np.ndarray, labels: np.ndarray, to: int, other: int
) -> float:
    """Mean distance of points to cluster ``to``'s 2-D centroid over that to cluster ``other``'s."""
    to_centre = fitted_2d[labels == to].mean(axis=0)
    other_centre = fitted_2d[labels == other].mean(axis=0)
    return float(
        np.linalg.norm(points_2d - to_centre, axis=1).mean() / np.linalg.norm(points_2d - other_centre, axis=1).mean()
    )


@pytest.mark.slow
def test_umap_fit_separates_clusters(umap_clusters):
    x, labels, _, fitted = umap_clusters
    assert fitted.embedding.shape == (len(x), 2) and fitted.backend == "umap-learn"
    assert set(fitted.timings) == {"pca", "knn", "optimise"}
    for cluster in range(3):
        own = fitted.embedding[labels == cluster]
        others = fitted.embedding[labels != cluster]
        spread = np.linalg.norm(own - own.mean(axis=0), axis=1).mean()
        gap = np.linalg.norm(others - own.mean(axis=0), axis=1).min()
        assert gap > spread, f"cluster {cluster} overlaps the others on the map"


@pytest.mark.slow
def test_umap_places_steered_points_at_the_cluster_they_were_moved_to(umap_clusters):
    x, labels, centres, fitted = umap_clusters
    base = x[labels == 0][:15]
    direction = centres[1] - centres[0]
    frames = project_frames(fitted, base, direction, [0.0, 1.0])
    assert frames[0.0].shape == (15, 2) and frames[1.0].shape == (15, 2)
    # Unsteered, they stay with cluster 0; moved by the full centre difference, they join cluster 1.
    assert centroid_distance_ratio(frames[0.0], fitted.embedding, labels, to=0, other=1) < 0.3
    assert centroid_distance_ratio(frames[1.0], fitted.embedding, labels, to=1, other=0) < 0.3
    # Placement is deterministic: the slider shows the same frame every time.
    again = project_frames(fitted, base, direction, [0.0, 1.0])
    np.testing.assert_array_equal(again[1.0], frames[1.0])


@pytest.mark.slow
def test_vectorised_initialisation_matches_umap_learn(umap_clusters):
    import scipy.sparse
    from umap.umap_ import compute_membership_strengths, init_graph_transform, smooth_knn_dist

    from mrepe_core.projection_umap import init_from_neighbours

    x, _, _, fitted = umap_clusters
    queries = np.concatenate([x[:3], x[3:20] + 0.7])  # three identical to fitted points, then new ones
    indices, dists = knn(
        fitted.reduce(x).numpy(), fitted.n_neighbors, device="cpu", queries=fitted.reduce(queries).numpy()
    )
    indices = indices.astype(np.int32)
    sigmas, rhos = smooth_knn_dist(dists, float(fitted.n_neighbors), local_connectivity=0.0)
    rows, cols, vals, _ = compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(queries), len(x))).tocsr()
    graph.eliminate_zeros()
    expected = init_graph_transform(graph, fitted.embedding)
    np.testing.assert_allclose(
        init_from_neighbours(indices, vals.reshape(indices.shape), fitted.embedding), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(expected[:3], fitted.embedding[:3])


def test_fit_umap_rejects_bad_parameters():
    x, _, _ = clusters(n_per_cluster=5)
    with pytest.raises(ProjectionInputError, match="n_neighbors"):
        fit_umap(x, n_neighbors=1, device="cpu")
    with pytest.raises(ProjectionInputError, match="n_epochs"):
        fit_umap(x, n_epochs=0, device="cpu")
    with pytest.raises(ProjectionInputError, match="at least 4"):
        fit_umap(x[:3], device="cpu")
    with pytest.raises(ProjectionInputError, match="backend"):
        fit_umap(x, backend="tsne", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ProjectionInputError, match="cuML"):
            fit_umap(x, backend="cuml", device="cpu")


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def map_data(n: int = 2000):
    generator = np.random.default_rng(5)
    points = generator.normal(size=(n, 2))
    sets = np.array(["contrast", "held-out", "helpfulness", "yours"])[generator.integers(0, 4, n)].tolist()
    sides = [("positive" if i % 2 else "negative") if s != "yours" else "" for i, s in enumerate(sets)]
    return points, sets, sides


def test_concept_map_traces_by_set_and_side():
    points, sets, sides = map_data(200)
    steered_index = np.arange(0, 200, 20)
    steered = points[steered_index] + 1.0
    fig = concept_map_figure(
        points,
        sets,
        sides,
        steered_2d=steered,
        steered_index=steered_index,
        r_e=2.5,
        title="layer 3",
        hover_text=[f"text {i}" for i in range(200)],
    )
    go.Figure(fig.to_dict())  # re-validate: the builder skips plotly's validation for speed
    colors, symbols = set_colors(sets), side_symbols(sides)
    point_traces = [t for t in fig.data if t.customdata is not None]
    # Every point is drawn exactly once, in the trace of its own set and side.
    assert sorted(i for t in point_traces for i in t.customdata) == list(range(200))
    for trace in point_traces:
        members = list(trace.customdata)
        assert {sets[i] for i in members} == {trace.legendgroup}
        assert trace.marker.color == colors[trace.legendgroup]
        assert {symbols[sides[i]] for i in members} == {trace.marker.symbol}
        np.testing.assert_allclose(np.column_stack([trace.x, trace.y]), points[members])
    assert (symbols["positive"], symbols["negative"], symbols[""]) == ("circle", "x", "diamond")
    steered_trace = fig.data[-1]
    assert "r_e = 2.5" in steered_trace.name
    np.testing.assert_allclose(np.column_stack([steered_trace.x, steered_trace.y]), steered)
    assert list(steered_trace.marker.color) == [colors[sets[i]] for i in steered_index]
    arrows = fig.data[-2]
    assert arrows.name == ARROWS_NAME
    assert arrows.x[0] == points[steered_index[0], 0] and arrows.x[1] == steered[0, 0] and arrows.x[2] is None


def test_concept_map_animation_frames_move_the_steered_trace():
    points, sets, sides = map_data(50)
    index = np.array([1, 2, 3])
    frames = {r: points[index] + r for r in (0.0, 1.0, 2.0)}
    fig = concept_map_figure(points, sets, sides, steered_index=index, animation_frames=frames)
    go.Figure(fig.to_dict())
    assert [f.name for f in fig.frames] == ["0", "1", "2"]
    assert len(fig.layout.sliders[0].steps) == 3
    last = fig.frames[-1]
    np.testing.assert_allclose(np.column_stack([last.data[-1].x, last.data[-1].y]), points[index] + 2.0)
    # The frames address the steered traces, which are the figure's last two.
    assert list(last.traces) == [len(fig.data) - 2, len(fig.data) - 1]


def test_concept_map_rejects_bad_input():
    points, sets, sides = map_data(10)
    with pytest.raises(MapPlotError, match="label every"):
        concept_map_figure(points, sets[:5], sides)
    with pytest.raises(MapPlotError, match=r"\[n, 2\]"):
        concept_map_figure(np.zeros((10, 3)), sets, sides)
    with pytest.raises(MapPlotError, match="NaN"):
        concept_map_figure(np.full((10, 2), np.nan), sets, sides)
    with pytest.raises(MapPlotError, match="steered_index"):
        concept_map_figure(points, sets, sides, steered_2d=np.zeros((2, 2)), steered_index=[0, 99])


def test_concept_map_rebuild_is_fast_for_2000_points():
    points, sets, sides = map_data(2000)
    index = np.arange(0, 2000, 10)
    concept_map_figure(points, sets, sides, steered_2d=points[index] + 0.5, steered_index=index, r_e=1.0)
    start = time.perf_counter()
    for _ in range(5):
        concept_map_figure(points, sets, sides, steered_2d=points[index] + 0.5, steered_index=index, r_e=1.0)
    per_figure = (time.perf_counter() - start) / 5
    # Budget 30 ms on an idle machine; the bound leaves room for a shared, busy test machine.
    assert per_figure < 0.15, f"{per_figure * 1000:.0f} ms per figure"
