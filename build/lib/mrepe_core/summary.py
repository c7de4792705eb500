"""A sweep's summary: the fits and regime (``tradeoff.fit_tradeoff``), the prompting baseline next
to steering, and plain-language notes; everything in ``summary.json`` that is not provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import SweepConfig
from .tradeoff import fit_tradeoff

N_CHOICES = 4  # MMLU questions have four options


def summarise(
    config: SweepConfig, agg: pd.DataFrame, n_choices: int = N_CHOICES, behavior_metric: str = "behavior_expectation"
) -> dict:
    """Fits, efficient regime (``tradeoff.fit_tradeoff``) and plain-language notes for a sweep."""
    tradeoff = fit_tradeoff(agg, n_choices=n_choices, behavior_metric=behavior_metric)
    out = tradeoff.to_dict()
    out["notes"] = list(tradeoff.notes)
    for fit in (tradeoff.alignment, tradeoff.helpfulness):
        if fit is not None:
            out["notes"].extend(fit.notes)
    out["behavior_metric"] = behavior_metric
    r, b = _curve(agg, "behavior", behavior_metric)
    if b.size >= 3:
        diffs = np.diff(b)
        out["behavior_monotone"] = bool((diffs >= -1e-9).all() or (diffs <= 1e-9).all())
    baseline = prompting_baseline(agg, tradeoff, behavior_metric)
    if baseline:
        out["prompting_baseline"] = baseline
        out["notes"].append(baseline["verdict"])
    r, h = _curve(agg, "helpfulness", "helpfulness", "mean")
    if h.size >= 3 and r.min() <= 0 <= r.max():
        out["helpfulness_at_0_vs_ends"] = {
            "h0": float(np.interp(0.0, r, h)),
            "h_min_r": float(h[0]),
            "h_max_r": float(h[-1]),
        }
    return out


def prompting_baseline(agg: pd.DataFrame, tradeoff, behavior_metric: str) -> dict:
    """The unsteered model asked with the behaviour's system prompt, next to steering at the
    recommended r_e (or at the largest B, when there is no regime): does steering beat asking?"""
    base = agg[(agg.task == "baseline") & (agg.r_e == 0.0)]
    if base.empty:
        return {}

    def value(rows, metric, subject=None):
        sel = rows[rows.metric == metric]
        if subject is not None:
            sel = sel[sel.subject == subject]
        return float(sel.value.iloc[0]) if len(sel) else None

    out = {
        "behavior_expectation": value(base, "behavior_expectation"),
        "helpfulness": value(base, "helpfulness", "mean"),
        "coherent": value(base, "coherent"),
    }
    r, b = _curve(agg, "behavior", behavior_metric)
    if not b.size or out["behavior_expectation"] is None:
        return {}
    at = tradeoff.regime.best_r_e if tradeoff.regime is not None else float(r[int(np.argmax(b))])
    steer = agg[np.isclose(agg.r_e, at)]
    out["steering"] = {
        "r_e": at,
        "behavior_expectation": float(np.interp(at, r, b)),
        "helpfulness": value(steer[steer.task == "helpfulness"], "helpfulness", "mean"),
        "coherent": value(steer[steer.task == "coherence"], "coherent"),
    }
    gap = out["steering"]["behavior_expectation"] - out["behavior_expectation"]
    out["verdict"] = (
        f"prompting baseline: asking in a system prompt gives B = {out['behavior_expectation']:+.2f}; steering at "
        f"r_e = {at:.3g} gives B = {out['steering']['behavior_expectation']:+.2f}, so steering "
        + ("beats asking" if gap > 0.05 else "does not beat asking" if gap < -0.05 else "matches asking")
        + f" on B (by {gap:+.2f})"
        + (
            f"; helpfulness {out['helpfulness']:.3f} asked vs {out['steering']['helpfulness']:.3f} steered"
            if out["helpfulness"] is not None and out["steering"]["helpfulness"] is not None
            else ""
        )
        + "."
    )
    return out


def _curve(agg: pd.DataFrame, task: str, metric: str, subject: str | None = None):
    sel = agg[(agg.task == task) & (agg.metric == metric)]
    if subject is not None:
        sel = sel[sel.subject == subject]
    sel = sel.sort_values("r_e")
    return sel.r_e.to_numpy(float), sel.value.to_numpy(float)
