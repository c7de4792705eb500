"""Layer x coefficient map: a coarse sweep over windows of layers, to choose where to steer.

Peers' users picked layers and coefficients by trial and error; this runs the same sweep engine
once per layer window (one vector, extracted once for every layer) on a small grid and returns
a tidy table the UI draws as heat maps of behaviour expectation and helpfulness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd

from .config import SweepConfig
from .extract import extract_vector
from .models import LoadedModel
from .sweep import prepare, run_sweep
from .vectors import SteeringVector


def layer_windows(n_layers: int, width: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Half-open windows ``[start, stop)`` covering the depth; the last one ends at ``n_layers``."""
    if not 1 <= width <= n_layers:
        raise ValueError(f"Window width must be between 1 and {n_layers}.")
    stride = stride or max(1, width // 2)
    starts = list(range(0, n_layers - width + 1, stride))
    if starts[-1] + width < n_layers:
        starts.append(n_layers - width)
    return [(s, s + width) for s in starts]


def scan_layers(
    config: SweepConfig,
    width: int = 6,
    stride: int | None = None,
    r_steps: int = 5,
    loaded: LoadedModel | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> pd.DataFrame:
    """Rows ``layer_start, layer_stop, r_e, metric, value`` for behaviour expectation and mean
    helpfulness, one small sweep per window (cached like any sweep)."""
    loaded, behavior, _ = prepare(config, loaded)
    vector_all: SteeringVector = extract_vector(
        loaded, behavior.pairs, config.method, None, behavior=behavior.name, template=behavior.template
    )
    windows = layer_windows(loaded.n_layers, width, stride)
    rows = []
    for k, (start, stop) in enumerate(windows):
        cfg = dataclasses.replace(config, layers=f"{start}:{stop}", r_steps=r_steps)
        vec = SteeringVector(vector_all.directions, list(range(start, stop)), dict(vector_all.metadata))
        res = run_sweep(cfg, loaded=loaded, behavior=behavior, vector=vec, use_cache=use_cache)
        agg = res.aggregates
        for metric, task, subject in (
            ("behavior_expectation", "behavior", behavior.name),
            ("helpfulness", "helpfulness", "mean"),
        ):
            sel = agg[(agg.metric == metric) & (agg.task == task) & (agg.subject == subject)]
            for r, v in zip(sel.r_e, sel.value):
                rows.append(dict(layer_start=start, layer_stop=stop, r_e=float(r), metric=metric, value=float(v)))
        if progress is not None:
            progress(k + 1, len(windows))
    return pd.DataFrame(rows, columns=["layer_start", "layer_stop", "r_e", "metric", "value"])
