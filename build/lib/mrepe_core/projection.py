"""2-D maps of hidden states: exact PCA and UMAP, with steered points placed on the fitted map.

The heavy linear algebra (PCA and exact k-nearest neighbours) runs in torch on the chosen device
(a GPU when there is one); umap-learn only optimises the layout, from our precomputed neighbours
and a PCA initialisation. cuML's UMAP is used instead when it is installed and the device is CUDA.

``umap`` is imported lazily: a cold import plus numba compilation costs tens of seconds, so the app
calls :func:`warm_umap_in_background` at start-up and checks :func:`umap_ready`.

Placing new points on a UMAP map (:meth:`UMAPMap.transform`) follows umap-learn's own
``UMAP.transform`` algorithm step for step (fuzzy membership to the k nearest fitted points,
weighted-mean initialisation, then ``n_epochs // 3`` epochs of the layout optimiser with the fitted
embedding held fixed), calling umap-learn's functions for each step. The only difference is where
the neighbours come from: exact torch k-NN instead of a pynndescent search index. umap-learn's
``transform`` refuses to run without such an index when ``precomputed_knn`` was given, and building
one costs minutes of numba compilation on a cold CPU, so we reuse the exact neighbours we already
compute for the fit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .threads import single_torch_thread

_log = logging.getLogger(__name__)

__all__ = [
    "ProjectionInputError",
    "PCAMap",
    "UMAPMap",
    "cuml_available",
    "device_for_projection",
    "fit_pca",
    "knn",
    "fit_umap",
    "warm_umap_in_background",
    "umap_ready",
    "umap_warmup_error",
    "project_frames",
]

# umap-learn scales its own "pca" initialisation so that the largest coordinate is 10.
_INIT_MAX_COORD = 10.0
# Rows per block in the k-NN distance matrix; 4096 x 100k float32 is 1.6 GB, fine on a GPU.
_DEFAULT_KNN_BATCH = 4096


class ProjectionInputError(ValueError):
    """Input to a projection is unusable (wrong shape, non-finite values, absurd parameters)."""


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def device_for_projection(prefer: str | torch.device = "auto") -> torch.device:
    """The device for PCA and k-NN: CUDA when available under ``"auto"``, else the CPU."""
    if isinstance(prefer, torch.device):
        prefer_name = prefer.type
    else:
        prefer_name = str(prefer).lower()
    if prefer_name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer_name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ProjectionInputError(
                "A CUDA device was requested for the projection but torch sees no GPU; use device='auto' or 'cpu'."
            )
        return torch.device(prefer) if isinstance(prefer, torch.device) else torch.device(prefer_name)
    if prefer_name == "cpu":
        return torch.device("cpu")
    raise ProjectionInputError(f"Unknown projection device {prefer!r}; use 'auto', 'cpu' or 'cuda'.")


def _as_matrix(x: Any, name: str, device: torch.device, min_rows: int = 1) -> torch.Tensor:
    """``x`` as a finite float32 ``[n, d]`` tensor on ``device``; a single vector becomes one row."""
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise ProjectionInputError(f"{name} must be a numeric array: {error}") from error
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2:
        raise ProjectionInputError(f"{name} must be a 2-D array [points, features]; got shape {tuple(tensor.shape)}.")
    if tensor.shape[0] < min_rows:
        raise ProjectionInputError(f"{name} needs at least {min_rows} points; got {tensor.shape[0]}.")
    if tensor.shape[1] < 1:
        raise ProjectionInputError(f"{name} has no features (shape {tuple(tensor.shape)}).")
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise ProjectionInputError(f"{name} contains NaN or infinite values.")
    return tensor


def _resolve_device(device: str | torch.device | None) -> torch.device:
    return device_for_projection("auto" if device is None else device)


# --------------------------------------------------------------------------------------------
# PCA
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PCAMap:
    """A fitted PCA: ``transform(x) = (x - mean) @ components.T``.

    Because the map is affine, steering ``x + r·v`` moves a point by exactly ``r · shift(v)``.
    """

    mean: np.ndarray  # [d] float32
    components: np.ndarray  # [k, d] float32, orthonormal rows
    explained_variance_ratio: np.ndarray  # [k] float32

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.components.shape[1])

    def _check_features(self, array: np.ndarray, name: str) -> None:
        if array.shape[-1] != self.n_features:
            raise ProjectionInputError(
                f"{name} has {array.shape[-1]} features but the map was fitted on {self.n_features}."
            )

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Coordinates ``[n, k]`` of points ``x`` ``[n, d]`` (or one point ``[d]`` -> ``[1, k]``)."""
        points = _as_matrix(x, "points", torch.device("cpu")).numpy()
        self._check_features(points, "points")
        return ((points - self.mean) @ self.components.T).astype(np.float32)

    def shift(self, v: np.ndarray | torch.Tensor) -> np.ndarray:
        """How far a unit of direction ``v`` moves a point on the map: ``v @ components.T``.

        ``v`` ``[d]`` gives ``[k]``; ``v`` ``[m, d]`` gives ``[m, k]``.
        """
        direction = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        direction = direction.astype(np.float32)
        if direction.ndim not in (1, 2):
            raise ProjectionInputError(f"direction must be [d] or [m, d]; got shape {direction.shape}.")
        if not np.isfinite(direction).all():
            raise ProjectionInputError("direction contains NaN or infinite values.")
        self._check_features(direction, "direction")
        return (direction @ self.components.T).astype(np.float32)


@contextlib.contextmanager
def _single_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run a small LAPACK call on one CPU thread (see ``threads``); other devices are left alone."""
    if device.type != "cpu":
        yield
        return
    with single_torch_thread():
        yield


def _eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with _single_cpu_thread(matrix.device):
        return torch.linalg.eigh(matrix)


def _pca_on_device(data: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, components ``[k, d]`` and explained-variance ratio of ``data``, exactly.

    Eigen-decomposes the smaller of the covariance ``[d, d]`` and Gram ``[n, n]`` matrices in
    float64: for thousands of points it is several times faster than a thin SVD of the data and
    just as exact for the leading components, which is all a map uses.
    """
    mean = data.mean(dim=0)
    centred = (data - mean).double()
    n_points, n_features = centred.shape
    if n_features <= n_points:
        eigenvalues, eigenvectors = _eigh(centred.T @ centred)
        order = torch.argsort(eigenvalues, descending=True)[:n_components]
        components = eigenvectors[:, order].T
    else:
        eigenvalues, eigenvectors = _eigh(centred @ centred.T)
        order = torch.argsort(eigenvalues, descending=True)[:n_components]
        # Right singular vectors from left ones: v = X^T u / sigma.
        sigma = eigenvalues[order].clamp_min(0).sqrt()
        components = (centred.T @ eigenvectors[:, order] / sigma.clamp_min(1e-30)).T
    eigenvalues = eigenvalues.clamp_min(0)
    # A fixed sign (largest loading positive) keeps maps from flipping between refits.
    largest = components.abs().argmax(dim=1)
    signs = torch.sign(components.gather(1, largest[:, None]))
    signs[signs == 0] = 1.0
    components = components * signs
    total = eigenvalues.sum()
    kept_variance = eigenvalues[order]
    ratio = kept_variance / total if total > 0 else torch.zeros_like(kept_variance)
    return mean, components.float(), ratio.float()


def fit_pca(
    x: np.ndarray | torch.Tensor,
    n_components: int = 2,
    device: str | torch.device | None = None,
) -> PCAMap:
    """Fit an exact PCA of ``x`` ``[n, d]`` on ``device`` (default: CUDA when available).

    ``n_components`` is capped at ``min(n, d)``; the map records how many were kept.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ProjectionInputError(f"n_components must be a positive integer; got {n_components!r}.")
    torch_device = _resolve_device(device)
    data = _as_matrix(x, "points", torch_device, min_rows=2)
    kept = int(min(n_components, data.shape[0], data.shape[1]))
    mean, components, ratio = _pca_on_device(data, kept)
    return PCAMap(
        mean=mean.cpu().numpy().astype(np.float32),
        components=components.cpu().numpy().astype(np.float32),
        explained_variance_ratio=ratio.cpu().numpy().astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# Exact k-nearest neighbours
# --------------------------------------------------------------------------------------------


def _knn_tensors(
    data: torch.Tensor,
    k: int,
    queries: torch.Tensor | None,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Euclidean k-NN of ``queries`` (default: ``data`` itself, self first) among ``data``."""
    self_query = queries is None
    query_data = data if self_query else queries
    data_sq = data.square().sum(dim=1)
    # Bound each block's distance matrix and gathered neighbours to ~2^25 floats (128 MB).
    batch_size = max(1, min(batch_size, 2**25 // max(k * data.shape[1], data.shape[0])))
    all_indices = []
    all_dists = []
    for start in range(0, query_data.shape[0], batch_size):
        block = query_data[start : start + batch_size]
        # ||x||^2 - 2 q.x ranks the rows of data like ||q - x||^2 (||q||^2 is constant per row) in a
        # single fused matmul; the kept distances are recomputed from differences below, which
        # avoids this form's cancellation error.
        score = torch.addmm(data_sq[None, :], block, data.T, beta=1.0, alpha=-2.0)
        if self_query:
            rows = torch.arange(block.shape[0], device=data.device)
            # Self ranks first even when the data hold duplicates, as umap-learn expects.
            score[rows, rows + start] = -torch.inf
        _, indices = torch.topk(score, k, dim=1, largest=False, sorted=True)
        dists = (block[:, None, :] - data[indices]).norm(dim=2)
        if self_query:
            dists[:, 0] = 0.0
        # Re-sort by the exact distances (the matmul ranking can swap near-ties).
        # Stable, so self (distance exactly 0, in column 0) stays ahead of any duplicate.
        order = torch.argsort(dists, dim=1, stable=True)
        all_indices.append(indices.gather(1, order))
        all_dists.append(dists.gather(1, order))
    return torch.cat(all_indices), torch.cat(all_dists)


def knn(
    x: np.ndarray | torch.Tensor,
    k: int,
    device: str | torch.device | None = None,
    batch_size: int = _DEFAULT_KNN_BATCH,
    queries: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours, computed blockwise in torch on ``device``.

    Without ``queries`` this is the neighbour graph of ``x`` itself, each point its own first
    neighbour at distance 0: the ``(knn_indices, knn_dists)`` umap-learn takes as
    ``precomputed_knn``. With ``queries`` it finds, for each query, its k nearest rows of ``x``.
    Returns ``indices`` ``[m, k]`` int64 and ``distances`` ``[m, k]`` float32, nearest first.
    """
    torch_device = _resolve_device(device)
    data = _as_matrix(x, "points", torch_device)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ProjectionInputError(f"k must be a positive integer; got {k!r}.")
    if k > data.shape[0]:
        raise ProjectionInputError(f"k={k} neighbours asked for but there are only {data.shape[0]} points.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ProjectionInputError(f"batch_size must be a positive integer; got {batch_size!r}.")
    query_data = None
    if queries is not None:
        query_data = _as_matrix(queries, "queries", torch_device)
        if query_data.shape[1] != data.shape[1]:
            raise ProjectionInputError(
                f"queries have {query_data.shape[1]} features but the points have {data.shape[1]}."
            )
    with torch.no_grad():
        indices, dists = _knn_tensors(data, int(k), query_data, int(batch_size))
    return indices.cpu().numpy().astype(np.int64), dists.cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# UMAP
# --------------------------------------------------------------------------------------------


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
        points = _as_matrix(x, "points", self.device)
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


def _init_from_neighbours(indices: np.ndarray, weights: np.ndarray, embedding: np.ndarray) -> np.ndarray:
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
        indices_t, dists_t = _knn_tensors(umap_map._reduced, umap_map.n_neighbors, reduced, _DEFAULT_KNN_BATCH)
    indices = indices_t.cpu().numpy().astype(np.int32)
    dists = dists_t.cpu().numpy().astype(np.float32)
    indices[dists >= reducer._disconnection_distance] = -1
    adjusted_local_connectivity = max(0.0, reducer.local_connectivity - 1.0)
    sigmas, rhos = smooth_knn_dist(
        dists, float(umap_map.n_neighbors), local_connectivity=float(adjusted_local_connectivity)
    )
    rows, cols, vals, _ = compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(reduced.shape[0], n_fitted))
    embedding = _init_from_neighbours(indices, vals.reshape(indices.shape), umap_map.embedding)

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
    torch_device = _resolve_device(device)
    data = _as_matrix(x, "points", torch_device, min_rows=4)
    # umap-learn cannot use more neighbours than there are other points; record what was used.
    neighbours = int(min(n_neighbors, data.shape[0] - 1))

    cuml_class = None
    if backend != "umap-learn" and torch_device.type == "cuda":
        cuml_class = _cuml_umap_class()
    if backend == "cuml" and cuml_class is None:
        raise ProjectionInputError("backend='cuml' needs cuML installed and a CUDA device.")

    timings: dict[str, float] = {}
    with torch.no_grad():
        start = time.perf_counter()
        kept = int(min(n_pca, data.shape[0], data.shape[1]))
        mean, components, ratio = _pca_on_device(data, kept)
        reduced = (data - mean) @ components.T
        _synchronise(torch_device)
        timings["pca"] = time.perf_counter() - start
        pca_map = PCAMap(
            mean=mean.cpu().numpy().astype(np.float32),
            components=components.cpu().numpy().astype(np.float32),
            explained_variance_ratio=ratio.cpu().numpy().astype(np.float32),
        )

        if cuml_class is not None:
            start = time.perf_counter()
            reducer = cuml_class(
                n_neighbors=neighbours,
                n_components=2,
                n_epochs=int(n_epochs),
                min_dist=float(min_dist),
                init="spectral",
                random_state=random_state,
            )
            embedding = np.asarray(reducer.fit_transform(reduced.cpu().numpy()), dtype=np.float32)
            timings["knn"] = float("nan")  # cuML finds its neighbours inside the fit, not timed apart
            timings["optimise"] = time.perf_counter() - start
            return UMAPMap(embedding, pca_map, neighbours, "cuml", torch_device, timings, reduced, reducer)

        start = time.perf_counter()
        indices, dists = _knn_tensors(reduced, neighbours, None, _DEFAULT_KNN_BATCH)
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
    return UMAPMap(
        np.asarray(embedding, dtype=np.float32),
        pca_map,
        neighbours,
        "umap-learn",
        torch_device,
        timings,
        reduced,
        reducer,
    )


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# Background warm-up of umap-learn
# --------------------------------------------------------------------------------------------

_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None
_warm_done = threading.Event()
_warm_error: BaseException | None = None


def _warm_umap() -> None:
    global _warm_error
    t0 = time.perf_counter()
    try:
        generator = np.random.default_rng(0)
        points = generator.normal(size=(64, 8)).astype(np.float32)
        # A tiny fit and transform through our own path compiles every numba function we use.
        tiny = fit_umap(points, n_neighbors=5, n_pca=4, n_epochs=6, device="cpu", backend="umap-learn")
        tiny.transform(points[:3] + 0.5)
    except BaseException as error:  # reported by umap_warmup_error(); the thread must not die loudly
        _warm_error = error
        _log.warning("umap-learn warm-up failed: %s", error)
    else:
        _warm_done.set()
        _log.info("umap-learn ready (warm-up %.1f s)", time.perf_counter() - t0)


def warm_umap_in_background() -> threading.Thread:
    """Import umap-learn and compile its numba kernels in a daemon thread (idempotent)."""
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm_umap, name="umap-warmup", daemon=True)
            _warm_thread.start()
        return _warm_thread


def umap_ready() -> bool:
    """Whether the background warm-up finished, so a UMAP fit will not pay the cold start."""
    return _warm_done.is_set()


def umap_warmup_error() -> BaseException | None:
    """The exception that stopped the background warm-up, if any."""
    return _warm_error


# --------------------------------------------------------------------------------------------
# Frames for the steering slider
# --------------------------------------------------------------------------------------------


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
        if not steered:
            raise ProjectionInputError("steered is empty; give hidden states for at least one coefficient.")
        r_values = _r_values(list(steered.keys()))
        states = {
            r: _as_matrix(steered[key], f"steered[{key}]", torch.device("cpu")).numpy()
            for r, key in zip(r_values, steered)
        }
    else:
        if base_points is None or directions is None or r_grid is None:
            raise ProjectionInputError("Give base_points, directions and r_grid (or steered hidden states).")
        r_values = _r_values(r_grid)
        base = _as_matrix(base_points, "base_points", torch.device("cpu")).numpy()
        direction = (
            directions.detach().cpu().numpy() if isinstance(directions, torch.Tensor) else np.asarray(directions)
        )
        direction = direction.astype(np.float32)
        if direction.ndim == 1:
            direction = direction[None, :]
        if direction.ndim != 2 or direction.shape[0] not in (1, base.shape[0]) or direction.shape[1] != base.shape[1]:
            raise ProjectionInputError(
                f"directions must be [d] or [n, d] matching base_points {base.shape}; got {direction.shape}."
            )
        if not np.isfinite(direction).all():
            raise ProjectionInputError("directions contain NaN or infinite values.")
        if isinstance(fitted_map, PCAMap):
            origin = fitted_map.transform(base)
            step = fitted_map.shift(direction)
            frames = {r: (origin + np.float32(r) * step).astype(np.float32) for r in r_values}
            return _pin_zero(frames, fitted_positions)
        states = {r: base + np.float32(r) * direction for r in r_values}

    pinned = fitted_positions is not None
    to_place = [r for r in r_values if not (pinned and r == 0.0)]
    frames: dict[float, np.ndarray] = {}
    if to_place:
        placed = fitted_map.transform(np.concatenate([states[r] for r in to_place], axis=0))
        splits = np.split(placed, np.cumsum([states[r].shape[0] for r in to_place])[:-1])
        frames = dict(zip(to_place, splits))
    if pinned and 0.0 in states:
        frames[0.0] = None  # filled by _pin_zero
    return _pin_zero(dict(sorted(frames.items())), fitted_positions)


def _pin_zero(frames: dict[float, np.ndarray | None], fitted_positions: np.ndarray | None) -> dict[float, np.ndarray]:
    """Put the fitted positions in the r = 0 frame (when given and r = 0 is a frame)."""
    if fitted_positions is not None and 0.0 in frames:
        fixed = np.asarray(fitted_positions, dtype=np.float32)
        if frames[0.0] is not None and fixed.shape != frames[0.0].shape:
            raise ProjectionInputError(f"fitted_positions has shape {fixed.shape}; expected {frames[0.0].shape}.")
        frames[0.0] = fixed.copy()
    return frames
