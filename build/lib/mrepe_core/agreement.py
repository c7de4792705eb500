"""How far the sequence proxy agrees with B from generated answers (both measured in one sweep).

Per coefficient (the curves): sign agreement where |B_gen| ≥ 0.2, mean |B_proxy − B_gen|, Spearman
rank correlation over r_e. Per prompt (at coefficients where both refusing and complying answers
occur): the AUC with which the proxy's value separates the prompts the model answered one way from
those it answered the other way. Used by the sweep's summary and ``bench/proxy_vs_generation.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

SIGN_THRESHOLD = 0.2


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    diff = positive[:, None] - negative[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _spearman(a, b) -> float | None:
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return None
    return float(stats.spearmanr(a, b).statistic)


def proxy_agreement(items: pd.DataFrame, task: str = "behavior") -> dict:
    """Agreement figures from a sweep's per-item rows (metrics ``behavior_expectation`` from
    generation and ``behavior_proxy``); empty when one of them is missing."""
    sel = items[items.task == task]
    gen = sel[sel.metric == "behavior_expectation"].set_index(["r_e", "item"]).value
    proxy = sel[sel.metric == "behavior_proxy"].set_index(["r_e", "item"]).value
    both = pd.concat([gen.rename("gen"), proxy.rename("proxy")], axis=1, join="inner")
    if both.empty:
        return {}
    curves = both.groupby(level="r_e").mean()
    strong = curves[np.abs(curves.gen) >= SIGN_THRESHOLD]
    out: dict = {
        "n_coefficients": int(len(curves)),
        "mean_abs_difference": float(np.abs(curves.proxy - curves.gen).mean()),
        "max_abs_difference": float(np.abs(curves.proxy - curves.gen).max()),
        "sign_agreement": float((np.sign(strong.proxy) == np.sign(strong.gen)).mean()) if len(strong) else None,
        "n_sign_points": int(len(strong)),
        # Spearman over r_e of the two curves: does the proxy order the coefficients as generation does?
        "rank_correlation": _spearman(curves.gen, curves.proxy),
        "proxy_vs_r_e": _spearman(pd.Series(curves.index, index=curves.index), curves.proxy),
        "generation_vs_r_e": _spearman(pd.Series(curves.index, index=curves.index), curves.gen),
    }
    aucs: dict[float, float] = {}
    for r, group in both.groupby(level="r_e"):
        pos, neg = group[group.gen > 0].proxy.to_numpy(), group[group.gen < 0].proxy.to_numpy()
        if pos.size and neg.size:
            aucs[float(r)] = _auc(pos, neg)
    out["per_prompt_auc"] = aucs
    out["mean_per_prompt_auc"] = float(np.mean(list(aucs.values()))) if aucs else None
    return out
