"""Projection timings: cold umap import, PCA, torch k-NN, UMAP fit and placement of steered points.

Run from the repository root:

    .venv/bin/python bench/umap_bench.py [--points 5000] [--dims 576] [--repeats 3]

Every figure printed is measured in this run. The last line reads ``umap_5k_seconds: <value>``:
the median wall time of a full 5,000-point ``fit_umap`` (PCA to 50 dims, exact torch k-NN,
50 epochs, PCA initialisation) with ``fit_umap``'s default device and backend: the CPU here;
a GPU when torch sees one, through cuML's UMAP when that is installed.
Timings on a shared machine are inflated by whatever else runs; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core.projection import (  # noqa: E402
    cuml_available,
    fit_pca,
    fit_umap,
    knn,
    project_frames,
    umap_warmup_error,
    warm_umap_in_background,
)


def mixture_of_gaussians(
    n_points: int, n_dims: int, n_clusters: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered points shaped like hidden states: cluster centres well apart, unit noise."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(scale=3.0, size=(n_clusters, n_dims)).astype(np.float32)
    labels = generator.integers(0, n_clusters, size=n_points)
    points = centres[labels] + generator.normal(size=(n_points, n_dims)).astype(np.float32)
    return points.astype(np.float32), centres


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_device(points: np.ndarray, centres: np.ndarray, device: torch.device, repeats: int, backend: str) -> float:
    """Print the timings on one device; return the median full-fit seconds."""
    print(f"\n== device: {device} (backend {backend}) ==")
    tensor = torch.as_tensor(points, device=device)
    fit_pca(tensor, 2, device=device)  # first call pays allocator and kernel start-up
    synchronise(device)
    seconds, _ = timed(fit_pca, tensor, 2, device=device)
    print(f"pca_2d_seconds (exact, {len(points)} x {points.shape[1]}): {seconds:.3f}")
    seconds, _ = timed(fit_pca, tensor, 50, device=device)
    print(f"pca_50d_seconds: {seconds:.3f}")
    reduced = fit_pca(tensor, 50, device=device).transform(points)
    knn(reduced, 15, device=device)
    seconds, _ = timed(knn, reduced, 15, device=device)
    print(f"knn_15_seconds (exact, {len(points)} points in 50 dims): {seconds:.3f}")

    totals = []
    stages = {"pca": [], "knn": [], "optimise": []}
    fitted = None
    for repeat in range(repeats):
        cpu_start = time.process_time()
        seconds, fitted = timed(fit_umap, tensor, n_neighbors=15, n_pca=50, n_epochs=50, device=device, backend=backend)
        cpu_seconds = time.process_time() - cpu_start
        totals.append(seconds)
        for stage in stages:
            stages[stage].append(fitted.timings[stage])
        stage_text = ", ".join(f"{stage} {fitted.timings[stage]:.3f}" for stage in stages)
        print(
            f"fit_umap run {repeat + 1}: {seconds:.3f} s wall, {cpu_seconds:.3f} s CPU of this process "
            f"({stage_text}; backend {fitted.backend}, random_state=0)"
        )
    median_total = statistics.median(totals)
    print(
        "fit_umap median stages: "
        + ", ".join(f"{stage} {statistics.median(values):.3f} s" for stage, values in stages.items())
    )
    if backend == "umap-learn":
        # random_state=None lets umap-learn's numba layout use every core, at the price of a
        # map that changes from run to run; shown for comparison, not used for the headline.
        seconds, unseeded = timed(
            fit_umap, tensor, n_neighbors=15, n_pca=50, n_epochs=50, device=device, backend=backend, random_state=None
        )
        print(f"fit_umap unseeded (parallel layout): {seconds:.3f} s (optimise {unseeded.timings['optimise']:.3f})")

    # Placing steered points: 200 base points pushed along one direction on a 21-value grid.
    direction = centres[1] - centres[0]
    direction = direction / np.linalg.norm(direction)
    r_grid = np.linspace(0.0, 20.0, 21)
    base = points[:200]
    seconds, _ = timed(fitted.transform, base + 5.0 * direction)
    print(f"umap_transform_200_seconds: {seconds:.3f}")
    seconds, frames = timed(project_frames, fitted, base, direction, r_grid)
    print(f"umap_frames_21x200_seconds: {seconds:.3f}")
    pca_map = fit_pca(tensor, 2, device=device)
    seconds, _ = timed(project_frames, pca_map, base, direction, r_grid)
    print(f"pca_frames_21x200_seconds: {seconds:.3f}")
    print(f"fit_umap_median_seconds: {median_total:.3f}")
    return median_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--dims", type=int, default=576, help="576 is SmolLM2-135M's hidden size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, cuda available: {torch.cuda.is_available()}"
    )
    if hasattr(os, "getloadavg"):
        print("load average at start (1, 5, 15 min): " + ", ".join(f"{value:.2f}" for value in os.getloadavg()))

    points, centres = mixture_of_gaussians(args.points, args.dims)

    already_imported = "umap" in sys.modules
    seconds, _ = timed(__import__, "umap")
    print(f"umap_import_seconds: {seconds:.3f}" + (" (was already imported)" if already_imported else " (cold)"))
    start = time.perf_counter()
    warm_umap_in_background().join()
    error = umap_warmup_error()
    if error is not None:
        raise SystemExit(f"umap warm-up failed: {error!r}")
    print(f"umap_warmup_seconds (tiny fit + transform, compiles numba): {time.perf_counter() - start:.3f}")
    tiny = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
    seconds, _ = timed(fit_umap, tiny, n_neighbors=5, n_pca=4, n_epochs=6, device="cpu", backend="umap-learn")
    print(f"tiny_fit_after_warmup_seconds: {seconds:.3f}")

    results = {}
    results["cpu"] = bench_device(points, centres, torch.device("cpu"), args.repeats, "umap-learn")
    headline = "cpu"
    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name(0)}")
        results["cuda"] = bench_device(points, centres, torch.device("cuda"), args.repeats, "umap-learn")
        headline = "cuda"
        if cuml_available():
            results["cuda-cuml"] = bench_device(points, centres, torch.device("cuda"), args.repeats, "cuml")
            headline = "cuda-cuml"  # what fit_umap(backend="auto") uses on this machine
        else:
            print("\ncuML is not installed: its GPU UMAP was not benchmarked.")
    if hasattr(os, "getloadavg"):
        print("\nload average at end (1, 5, 15 min): " + ", ".join(f"{value:.2f}" for value in os.getloadavg()))
    print(f"headline: fit_umap on {headline}")
    print(f"umap_5k_seconds: {results[headline]:.3f}")


if __name__ == "__main__":
    main()
