"""fit_tradeoff: fits worth showing and recommendations that cannot mislead, on synthetic curves."""

import json

import numpy as np
import pandas as pd
import pytest

from mrepe_core import bounds as bd
from mrepe_core.tradeoff import Tradeoff, fit_problem, fit_tradeoff

R = np.round(np.linspace(-8, 8, 21), 6)


def aggregates(b, h=None, coherent=None, b_se=0.02, h_se=0.01) -> pd.DataFrame:
    rows = [
        dict(r_e=r, task="behavior", metric="behavior_expectation", subject="x", value=v, stderr=b_se, n=40)
        for r, v in zip(R, b)
    ]
    if h is not None:
        rows += [
            dict(r_e=r, task="helpfulness", metric="helpfulness", subject="mean", value=v, stderr=h_se, n=100)
            for r, v in zip(R, h)
        ]
    if coherent is not None:
        rows += [
            dict(r_e=r, task="coherence", metric="coherent", subject="x", value=v, stderr=0.0, n=40)
            for r, v in zip(R, coherent)
        ]
    return pd.DataFrame(rows)


def clean_curves(delta_lambda=0.4, b0=-0.3, p0=0.7, lsb=0.3):
    return bd.alignment_bound(R, delta_lambda, b0), bd.helpfulness_bound(R, p0, 1.0, lsb, n_choices=4)


def test_clean_curves_give_fits_and_a_regime_inside_the_rising_side():
    b, h = clean_curves()
    t = fit_tradeoff(aggregates(b, h))
    assert t.alignment_problem is None and t.helpfulness_problem is None
    assert t.alignment.delta_lambda == pytest.approx(0.4, rel=1e-3)
    reg = t.regime
    assert reg is not None and reg.r_min == 0.0 and 0 < reg.r_max <= 8 and reg.basis == "fitted"
    assert 0 < reg.best_r_e <= reg.r_max
    back = Tradeoff.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back.regime.r_max == reg.r_max and back.alignment.delta_lambda == t.alignment.delta_lambda


def test_threshold_only_shrinks_the_regime_and_negative_direction_mirrors():
    b, h = clean_curves()
    ends = [fit_tradeoff(aggregates(b, h), threshold=t).regime for t in (0.5, 2.0, 8.0, 1e6)]
    widths = [0.0 if reg is None else reg.r_max for reg in ends]
    assert all(x >= y for x, y in zip(widths, widths[1:])) and widths[0] > widths[-1]
    neg = fit_tradeoff(aggregates(bd.alignment_bound(R, -0.4, -0.3), h))
    assert neg.regime.direction == -1 and neg.regime.r_max == 0.0 and neg.regime.r_min < 0
    assert neg.regime.best_r_e <= 0


def test_weights_move_the_recommendation():
    b, h = clean_curves()
    careful = fit_tradeoff(aggregates(b, h), weight_helpfulness=5.0).regime.best_r_e
    bold = fit_tradeoff(aggregates(b, h), weight_helpfulness=0.2).regime.best_r_e
    assert 0 <= careful < bold


def test_inverted_u_behaviour_stops_at_the_peak_and_is_no_fit():
    # The not-racist preset's shape: B rises to 0.73 and falls back to 0.20 at r_e = 8.
    b = 0.1 + 0.63 * np.exp(-((R - 3.2) ** 2) / 6.0) * (R > -2)
    _, h = clean_curves(lsb=0.05)
    t = fit_tradeoff(aggregates(b, h))
    assert t.alignment_problem is not None and "R²" in t.alignment_problem
    assert t.shown_alignment is None
    reg = t.regime
    assert reg is not None and reg.r_max < 8.0
    assert "fallen from its peak" in reg.stop_reason
    assert reg.best_r_e <= reg.r_max and b[np.argmin(np.abs(R - reg.best_r_e))] > b[10]


def test_helpfulness_at_chance_is_never_recommended():
    b, _ = clean_curves(delta_lambda=0.2)
    h = np.where(R >= 4, 0.25, 0.33)  # at chance from r_e = 4 on
    t = fit_tradeoff(aggregates(b, h))
    reg = t.regime
    assert reg is not None and reg.r_max < 4.0 and reg.best_r_e < 4.0
    assert "at chance" in reg.stop_reason or "gain" in reg.stop_reason


def test_nothing_qualifies_says_so_in_words():
    b = np.linspace(0.5, -0.5, 21)  # B falls as r_e rises ...
    h = np.full(21, 0.25)  # ... and helpfulness is at chance everywhere
    t = fit_tradeoff(aggregates(b, h))
    assert t.regime is None and t.no_regime_reason.startswith("no efficient regime")
    assert "at chance" in t.no_regime_reason
    assert t.to_dict()["no_efficient_regime"] == t.no_regime_reason


def test_coherence_collapse_ends_the_regime():
    b, h = clean_curves()
    coherent = np.where(R >= 2, 0.2, 0.95)
    reg = fit_tradeoff(aggregates(b, h, coherent)).regime
    assert reg is not None and reg.r_max < 2 and "coherence collapsed" in reg.stop_reason


def test_degenerate_helpfulness_fit_is_no_fit_not_numbers():
    b, _ = clean_curves()
    rng = np.random.default_rng(0)
    h = 0.29 + 0.01 * rng.standard_normal(21)  # flat noise: λσβ would come out ~1e-12, R² ~0
    t = fit_tradeoff(aggregates(b, h))
    assert t.helpfulness_problem is not None and t.shown_helpfulness is None
    assert t.regime is None or t.regime.basis == "measured"
    flat = bd.fit_helpfulness_bound(R, np.full(21, 0.3))
    assert fit_problem(flat) is not None and "λσβ" in flat.at_bound


def test_b_below_b0_on_the_rising_side_is_excluded():
    b, h = clean_curves()
    b = b.copy()
    b[11] = b[10] - 0.05  # first point right of 0 dips below B(0)
    reg = fit_tradeoff(aggregates(b, h)).regime
    assert reg is None or reg.r_max == 0.0 or reg.stopped_at == pytest.approx(R[11])
