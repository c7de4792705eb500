"""UMAP maps of hidden states: torch PCA and exact k-NN feed umap-learn's layout optimiser.

umap-learn only optimises the layout, from our precomputed neighbours and a PCA initialisation.
cuML's UMAP is used instead when it is installed and the device is CUDA.

Placing new points on a UMAP map (:meth:`UMAPMap.transform`) follows umap-learn's own
``UMAP.transform`` algorithm step for step (fuzzy membership to the k nearest fitted points,
weighted-mean initialisation, then ``n_epochs // 3`` epochs of the layout optimiser with the fitted
embedding held fixed), calling umap-learn's functions for each step. The only difference is where
the neighbours come from: exact torch k-NN instead of a pynndescent search index. umap-learn's
``transform`` refuses to run without such an index when ``precomputed_knn`` was given, and building
one costs minutes of numba compilation on a cold CPU, so we reuse the exact neighbours we already
compute for the fit. ``umap`` itself is imported lazily (see ``projection_warmup``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .projection_knn import DEFAULT_KNN_BATCH, knn_tensors
from .projection_pca import PCAMap, ProjectionInputError, as_matrix, pca_on_device, resolve_device

# umap-learn scales its own "pca" initialisation so that the largest coordinate is 10.
_INIT_MAX_COORD = 10.0


def _cuml_umap_class() -> type | None:
    try:
        from cuml.manifold import UMAP as CumlUMAP  # type: ignore[import-not-found]
    except Exception:  # cuML is optional and fails to import in many ways without a GPU stack
        return None
    return CumlUMAP


def cuml_available() -> bool:
    """Whether cuML's GPU UMAP imports (``fit_umap`` then uses it on CUDA devices)."""
    return torch.cuda.is_available() and _cuml_umap_class() is not None


@dataclass
class UMAPMap:
    """A fitted UMAP map of hidden states.

    ``embedding`` ``[n, 2]`` holds the fitted points. ``transform`` places new points on the same
    map (see the module docstring for how). ``timings`` records seconds spent in each stage of
    the fit: ``pca``, ``knn``, ``optimise``.
    """

    embedding: np.ndarray
    pca: PCAMap
    n_neighbors: int
    backend: str  # "umap-learn" or "cuml"
    device: torch.device
    timings: dict[str, float]
    _reduced: torch.Tensor = field(repr=False)  # fitted points after PCA, on ``device``
    _reducer: Any = field(repr=False)

    def reduce(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Points ``x`` in the PCA space the map was fitted in, on the map's device."""
        points = as_matrix(x, "points", self.device)
        if points.shape[1] != self.pca.n_features:
            raise ProjectionInputError(
                f"points have {points.shape[1]} features but the map was fitted on {self.pca.n_features}."
            )
        mean = torch.as_tensor(self.pca.mean, device=self.device)
        components = torch.as_tensor(self.pca.components, device=self.device)
        return (points - mean) @ components.T

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """2-D positions ``[m, 2]`` of new points ``x`` ``[m, d]`` on this map."""
        reduced = self.reduce(x)
        if self.backend == "cuml":
            return np.asarray(self._reducer.transform(reduced.cpu().numpy()), dtype=np.float32)
        return _umap_learn_transform(self, reduced)


def init_from_neighbours(indices: np.ndarray, weights: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """umap-learn's ``init_graph_transform``, vectorised (its per-row loop costs seconds per frame set).

    A new point starts at the membership-weighted mean of its neighbours' positions; a point
    identical to a fitted one (membership exactly 1) starts on that point (on the lowest-numbered
    one if several); a point with no neighbours is NaN.
    """
    valid = (indices >= 0) & (weights > 0)
    weights = np.where(valid, weights, 0.0).astype(np.float64)
    safe_indices = np.where(valid, indices, 0).astype(np.int64)
    neighbour_positions = embedding[safe_indices].astype(np.float64)  # [m, k, 2]
    totals = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (weights[:, :, None] * neighbour_positions).sum(axis=1) / totals[:, None]
    identical = valid & (weights == 1.0)
    has_identical = identical.any(axis=1)
    if has_identical.any():
        candidates = np.where(identical, safe_indices, len(embedding))
        result[has_identical] = embedding[candidates[has_identical].min(axis=1)]
    result[totals == 0] = np.nan
    return result.astype(np.float32)


def _umap_learn_transform(umap_map: UMAPMap, reduced: torch.Tensor) -> np.ndarray:
    """umap-learn's ``UMAP.transform`` algorithm, fed with exact torch neighbours."""
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import (
        compute_membership_strengths,
        make_epochs_per_sample,
        smooth_knn_dist,
    )

    reducer = umap_map._reducer
    n_fitted = umap_map._reduced.shape[0]
    with torch.no_grad():
        indices_t, dists_t = knn_tensors(umap_map._reduced, umap_map.n_neighbors, reduced, DEFAULT_KNN_BATCH)
    indices = indices_t.cpu().numpy().astype(np.int32)
    dists = dists_t.cpu().numpy().astype(np.float32)
    indices[dists >= reducer._disconnection_distance] = -1
    adjusted_local_connectivity = max(0.0, reducer.local_connectivity - 1.0)
    sigmas, rhos = smooth_knn_dist(
        dists, float(umap_map.n_neighbors), local_connectivity=float(adjusted_local_connectivity)
    )
    rows, cols, vals, _ = compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(reduced.shape[0], n_fitted))
    embedding = init_from_neighbours(indices, vals.reshape(indices.shape), umap_map.embedding)

    n_epochs = 100 if reducer.n_epochs is None else int(reducer.n_epochs // 3.0)
    if n_epochs < 1:
        return embedding.astype(np.float32)
    graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
    graph.eliminate_zeros()
    epochs_per_sample = make_epochs_per_sample(graph.data, n_epochs)
    rng_state = (
        np.random.RandomState(reducer.transform_seed)
        .randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
        .astype(np.int64)
    )
    embedding = optimize_layout_euclidean(
        embedding,
        umap_map.embedding.astype(np.float32, copy=True),
        graph.row,
        graph.col,
        n_epochs,
        n_fitted,
        epochs_per_sample,
        reducer._a,
        reducer._b,
        rng_state,
        reducer.repulsion_strength,
        reducer.learning_rate / 4.0,
        reducer.negative_sample_rate,
        False,  # serial: the same inputs give the same map
        verbose=False,
    )
    return np.asarray(embedding, dtype=np.float32)


def _pca_init(reduced: torch.Tensor) -> np.ndarray:
    """The first two PCA coordinates, scaled like umap-learn's own ``init="pca"``."""
    coords = reduced[:, :2].cpu().numpy().astype(np.float32)
    if coords.shape[1] < 2:
        coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
    largest = float(np.abs(coords).max())
    if largest > 0:
        coords = coords * (_INIT_MAX_COORD / largest)
    return np.ascontiguousarray(coords, dtype=np.float32)


def _check_umap_args(n_neighbors, n_pca, n_epochs, min_dist, backend) -> None:
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
        raise ProjectionInputError(f"n_neighbors must be an integer >= 2; got {n_neighbors!r}.")
    if isinstance(n_pca, bool) or not isinstance(n_pca, (int, np.integer)) or n_pca < 2:
        raise ProjectionInputError(f"n_pca must be an integer >= 2; got {n_pca!r}.")
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, (int, np.integer)) or not 1 <= n_epochs <= 10_000:
        raise ProjectionInputError(f"n_epochs must be an integer in [1, 10000]; got {n_epochs!r}.")
    if not (isinstance(min_dist, (int, float)) and 0.0 <= float(min_dist) <= 1.0):
        raise ProjectionInputError(f"min_dist must be in [0, 1]; got {min_dist!r}.")
    if backend not in ("auto", "umap-learn", "cuml"):
        raise ProjectionInputError(f"backend must be 'auto', 'umap-learn' or 'cuml'; got {backend!r}.")


@torch.no_grad()
def _reduce_for_umap(data: torch.Tensor, n_pca: int, timings: dict[str, float]) -> tuple[PCAMap, torch.Tensor]:
    """PCA to at most ``n_pca`` dimensions on the data's device: the map's PCA and the reduced points."""
    start = time.perf_counter()
    kept = int(min(n_pca, data.shape[0], data.shape[1]))
    mean, components, ratio = pca_on_device(data, kept)
    reduced = (data - mean) @ components.T
    _synchronise(data.device)
    timings["pca"] = time.perf_counter() - start
    pca_map = PCAMap(
        mean=mean.cpu().numpy().astype(np.float32),
        components=components.cpu().numpy().astype(np.float32),
        explained_variance_ratio=ratio.cpu().numpy().astype(np.float32),
    )
    return pca_map, reduced


def _fit_cuml(cuml_class, reduced: torch.Tensor, neighbours: int, n_epochs: int, min_dist: float, random_state):
    reducer = cuml_class(
        n_neighbors=neighbours,
        n_components=2,
        n_epochs=int(n_epochs),
        min_dist=float(min_dist),
        init="spectral",
        random_state=random_state,
    )
    return reducer, np.asarray(reducer.fit_transform(reduced.cpu().numpy()), dtype=np.float32)


def _fit_umap_learn(reduced: torch.Tensor, neighbours: int, n_epochs: int, min_dist: float, random_state, timings):
    """umap-learn's layout from exact torch neighbours and a PCA start: the reducer and the embedding."""
    start = time.perf_counter()
    with torch.no_grad():
        indices, dists = knn_tensors(reduced, neighbours, None, DEFAULT_KNN_BATCH)
    knn_indices = indices.cpu().numpy().astype(np.int64)
    knn_dists = dists.cpu().numpy().astype(np.float32)
    timings["knn"] = time.perf_counter() - start

    start = time.perf_counter()
    import umap

    reducer = umap.UMAP(
        n_neighbors=neighbours,
        n_components=2,
        n_epochs=int(n_epochs),
        min_dist=float(min_dist),
        init=_pca_init(reduced),
        random_state=random_state,
        transform_seed=42 if random_state is None else int(random_state),
        precomputed_knn=(knn_indices, knn_dists),
    )
    with warnings.catch_warnings():
        # We place new points ourselves (see UMAPMap.transform), so umap-learn's missing search
        # index and its serial-when-seeded notice are expected.
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        embedding = reducer.fit_transform(reduced.cpu().numpy())
    timings["optimise"] = time.perf_counter() - start
    return reducer, np.asarray(embedding, dtype=np.float32)


def fit_umap(
    x: np.ndarray | torch.Tensor,
    n_neighbors: int = 15,
    n_pca: int = 50,
    n_epochs: int = 50,
    min_dist: float = 0.1,
    device: str | torch.device | None = None,
    random_state: int | None = 0,
    backend: str = "auto",
) -> UMAPMap:
    """Fit a 2-D UMAP of ``x`` ``[n, d]``.

    PCA to ``n_pca`` dimensions and exact k-NN run in torch on ``device``; umap-learn optimises
    the layout from those neighbours, starting from the first two PCA coordinates. With
    ``backend="auto"`` cuML's UMAP is used when it imports and the device is CUDA; ``"cuml"``
    requires it; ``"umap-learn"`` never uses it. ``random_state=None`` lets umap-learn use all
    cores, at the price of a map that differs from run to run.
    """
    _check_umap_args(n_neighbors, n_pca, n_epochs, min_dist, backend)
    torch_device = resolve_device(device)
    data = as_matrix(x, "points", torch_device, min_rows=4)
    # umap-learn cannot use more neighbours than there are other points; record what was used.
    neighbours = int(min(n_neighbors, data.shape[0] - 1))

    cuml_class = None
    if backend != "umap-learn" and torch_device.type == "cuda":
        cuml_class = _cuml_umap_class()
    if backend == "cuml" and cuml_class is None:
        raise ProjectionInputError("backend='cuml' needs cuML installed and a CUDA device.")

    timings: dict[str, float] = {}
    pca_map, reduced = _reduce_for_umap(data, n_pca, timings)
    if cuml_class is not None:
        start = time.perf_counter()
        reducer, embedding = _fit_cuml(cuml_class, reduced, neighbours, n_epochs, min_dist, random_state)
        timings["knn"] = float("nan")  # cuML finds its neighbours inside the fit, not timed apart
        timings["optimise"] = time.perf_counter() - start
        return UMAPMap(embedding, pca_map, neighbours, "cuml", torch_device, timings, reduced, reducer)
    reducer, embedding = _fit_umap_learn(reduced, neighbours, n_epochs, min_dist, random_state, timings)
    return UMAPMap(embedding, pca_map, neighbours, "umap-learn", torch_device, timings, reduced, reducer)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
