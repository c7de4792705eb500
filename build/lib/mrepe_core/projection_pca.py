"""Exact PCA of hidden states in torch, on the chosen device, and the input checks every projection shares.

The heavy linear algebra runs in torch on the chosen device (a GPU when there is one). A fitted
``PCAMap`` is affine, so steering ``x + r·v`` moves a point on the map by exactly ``r·shift(v)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .threads import single_torch_thread


class ProjectionInputError(ValueError):
    """Input to a projection is unusable (wrong shape, non-finite values, absurd parameters)."""


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


def as_matrix(x: Any, name: str, device: torch.device, min_rows: int = 1) -> torch.Tensor:
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


def resolve_device(device: str | torch.device | None) -> torch.device:
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
        points = as_matrix(x, "points", torch.device("cpu")).numpy()
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


def pca_on_device(data: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    torch_device = resolve_device(device)
    data = as_matrix(x, "points", torch_device, min_rows=2)
    kept = int(min(n_components, data.shape[0], data.shape[1]))
    mean, components, ratio = pca_on_device(data, kept)
    return PCAMap(
        mean=mean.cpu().numpy().astype(np.float32),
        components=components.cpu().numpy().astype(np.float32),
        explained_variance_ratio=ratio.cpu().numpy().astype(np.float32),
    )
