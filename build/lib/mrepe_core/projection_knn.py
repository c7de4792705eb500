"""Exact Euclidean k-nearest neighbours, blockwise in torch on the chosen device (UMAP's input graph)."""

from __future__ import annotations

import numpy as np
import torch

from .projection_pca import ProjectionInputError, as_matrix, resolve_device

# Rows per block in the k-NN distance matrix; 4096 x 100k float32 is 1.6 GB, fine on a GPU.
DEFAULT_KNN_BATCH = 4096


def knn_tensors(
    data: torch.Tensor,
    k: int,
    queries: torch.Tensor | None,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Euclidean k-NN of ``queries`` (default: ``data`` itself, self first) among ``data``."""
    self_query = queries is None
    query_data = data if queries is None else queries
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
    batch_size: int = DEFAULT_KNN_BATCH,
    queries: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours, computed blockwise in torch on ``device``.

    Without ``queries`` this is the neighbour graph of ``x`` itself, each point its own first
    neighbour at distance 0: the ``(knn_indices, knn_dists)`` umap-learn takes as
    ``precomputed_knn``. With ``queries`` it finds, for each query, its k nearest rows of ``x``.
    Returns ``indices`` ``[m, k]`` int64 and ``distances`` ``[m, k]`` float32, nearest first.
    """
    torch_device = resolve_device(device)
    data = as_matrix(x, "points", torch_device)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ProjectionInputError(f"k must be a positive integer; got {k!r}.")
    if k > data.shape[0]:
        raise ProjectionInputError(f"k={k} neighbours asked for but there are only {data.shape[0]} points.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ProjectionInputError(f"batch_size must be a positive integer; got {batch_size!r}.")
    query_data = None
    if queries is not None:
        query_data = as_matrix(queries, "queries", torch_device)
        if query_data.shape[1] != data.shape[1]:
            raise ProjectionInputError(
                f"queries have {query_data.shape[1]} features but the points have {data.shape[1]}."
            )
    with torch.no_grad():
        indices, dists = knn_tensors(data, int(k), query_data, int(batch_size))
    return indices.cpu().numpy().astype(np.int64), dists.cpu().numpy().astype(np.float32)
