"""2-D maps of hidden states: exact PCA and UMAP, with steered points placed on the fitted map.

One import for the projection concept, in five small modules:

* ``projection_pca``: input checks, exact PCA in torch on the chosen device (``fit_pca``, ``PCAMap``);
* ``projection_knn``: exact k-nearest neighbours in torch (``knn``), UMAP's input graph;
* ``projection_umap``: UMAP from those neighbours and a PCA start (``fit_umap``, ``UMAPMap``), cuML on CUDA;
* ``projection_warmup``: umap-learn's import and numba compilation in a background thread;
* ``projection_frames``: positions of steered points for every coefficient of a grid (``project_frames``).
"""

from __future__ import annotations

from .projection_frames import project_frames
from .projection_knn import knn
from .projection_pca import PCAMap, ProjectionInputError, device_for_projection, fit_pca
from .projection_umap import UMAPMap, cuml_available, fit_umap
from .projection_warmup import (
    FAILED,
    IDLE,
    READY,
    WARMING,
    umap_ready,
    umap_state,
    umap_warmup_error,
    wait_for_umap,
    warm_umap_in_background,
)

__all__ = [
    "FAILED",
    "IDLE",
    "READY",
    "WARMING",
    "PCAMap",
    "ProjectionInputError",
    "UMAPMap",
    "cuml_available",
    "device_for_projection",
    "fit_pca",
    "fit_umap",
    "knn",
    "project_frames",
    "umap_ready",
    "umap_state",
    "umap_warmup_error",
    "wait_for_umap",
    "warm_umap_in_background",
]
