"""Theorem 1 / 2 bounds, their fits, diagnostics notes and the efficient regime (pure numpy, fast)."""

import json
import math

import numpy as np
import pytest

from mrepe_core import bounds as bd

R = np.linspace(-8.0, 8.0, 33)


def noisy(y, sigma, seed=0, lo=-1.0, hi=1.0):
    return np.clip(y + np.random.default_rng(seed).normal(0.0, sigma, np.shape(y)), lo, hi)


# --- formulas --------------------------------------------------------------------------------


def test_alignment_bound_formula_and_clipping():
    r = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(bd.alignment_bound(r, 0.7, -0.5), np.tanh(0.7 * r + np.arctanh(-0.5)))
    assert bd.alignment_bound(0.0, 1.0, -0.2) == pytest.approx(-0.2)
    # B0 = ±1 is clipped instead of producing inf/NaN.
    assert np.all(np.isfinite(bd.alignment_bound(r, 1.0, 1.0)))
    assert bd.alignment_bound(0.0, 1.0, -1.0) > -1.0


def test_helpfulness_bound_theorem2_and_floor():
    r = np.array([-3.0, 0.0, 2.0])
    p0, alpha, lsb = 0.6, 0.4, 0.5
    thm2 = p0 / (p0 + (1 - p0) * alpha * (1 + lsb**2 / 2 * r**2))
    np.testing.assert_allclose(bd.helpfulness_bound(r, p0, alpha, lsb), thm2)
    floored = bd.helpfulness_bound(r, p0, alpha, lsb, n_choices=4)
    h0 = p0 / (p0 + (1 - p0) * alpha)
    np.testing.assert_allclose(floored, 0.25 + (h0 - 0.25) * thm2 / h0)
    # Pinned to Theorem 2 at r_e = 0, tends to 1/N far out (Corollary 2), symmetric, decreasing in |r_e|.
    assert floored[1] == pytest.approx(h0)
    far = bd.helpfulness_bound([1e4, -1e4], p0, alpha, lsb, n_choices=4)
    np.testing.assert_allclose(far, 0.25, atol=1e-5)
    assert bd.helpfulness_bound(-2.0, p0, alpha, lsb, 4) == pytest.approx(bd.helpfulness_bound(2.0, p0, alpha, lsb, 4))
    assert np.all(np.diff(bd.helpfulness_bound(np.linspace(0, 10, 20), p0, alpha, lsb, 4)) < 0)
    # Without the floor it decays to 0 instead.
    assert bd.helpfulness_bound(1e4, p0, alpha, lsb) < 1e-5


@pytest.mark.parametrize("kwargs", [dict(p0=1.5), dict(alpha=0.0), dict(lsb=float("nan")), dict(n_choices=1)])
def test_helpfulness_bound_rejects_bad_parameters(kwargs):
    args = dict(r_e=[0.0, 1.0], p0=0.5, alpha=1.0, lsb=0.3, n_choices=4) | kwargs
    with pytest.raises(ValueError):
        bd.helpfulness_bound(**args)


def test_r_squared():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert bd.r_squared(y, y) == pytest.approx(1.0)
    assert bd.r_squared(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert bd.r_squared(y, y[::-1]) < 0
    assert math.isnan(bd.r_squared([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]))  # undefined for constant data
    with pytest.raises(ValueError):
        bd.r_squared([1.0, 2.0], [1.0])


# --- alignment fit ---------------------------------------------------------------------------


@pytest.mark.parametrize("delta_lambda,b0", [(0.6, -0.4), (-0.45, 0.3), (1.5, 0.1)])
def test_alignment_fit_recovers_parameters_both_signs(delta_lambda, b0):
    b = noisy(bd.alignment_bound(R, delta_lambda, b0), 0.02, seed=1)
    fit = bd.fit_alignment_bound(R, b)
    assert fit.delta_lambda == pytest.approx(delta_lambda, rel=0.1)
    assert fit.b0 == pytest.approx(b0, abs=0.05)
    assert fit.r2 > 0.98
    assert fit.n_points == R.size
    assert not any("poor fit" in n or "non-monotone" in n for n in fit.notes)
    np.testing.assert_allclose(fit.predict(R), bd.alignment_bound(R, fit.delta_lambda, fit.b0))
    json.dumps(fit.to_dict())


def test_alignment_fit_uses_weights():
    b = bd.alignment_bound(R, 0.5, -0.2)
    b_bad = b.copy()
    b_bad[5] = 0.9  # one wild point
    w = np.ones_like(R)
    w[5] = 1e-6
    fit_w = bd.fit_alignment_bound(R, b_bad, weights=w)
    fit_u = bd.fit_alignment_bound(R, b_bad)
    assert abs(fit_w.delta_lambda - 0.5) < abs(fit_u.delta_lambda - 0.5)
    assert fit_w.delta_lambda == pytest.approx(0.5, rel=0.01)


def test_alignment_fit_garbage_is_poor_and_non_monotone():
    b = np.random.default_rng(3).uniform(-1, 1, R.size)
    fit = bd.fit_alignment_bound(R, b)
    assert fit.r2 < 0.5
    assert any("poor fit" in n for n in fit.notes)
    assert any("non-monotone" in n for n in fit.notes)


def test_alignment_fit_flags_non_monotone_bump():
    b = bd.alignment_bound(R, 0.5, -0.3)
    b[R > 4] -= 0.5  # the curve turns back down at large r_e
    fit = bd.fit_alignment_bound(R, b)
    assert any("non-monotone" in n for n in fit.notes)


def test_alignment_fit_constant_and_saturated_data_are_degenerate_not_crashes():
    fit = bd.fit_alignment_bound(R, np.full(R.size, 0.3))
    assert fit.delta_lambda == 0.0 and fit.b0 == pytest.approx(0.3)
    assert math.isnan(fit.r2) and fit.to_dict()["r2"] is None
    assert any("degenerate" in n for n in fit.notes)
    sat = bd.fit_alignment_bound(R, np.ones(R.size))
    assert any("±1" in n for n in sat.notes)
    json.dumps(sat.to_dict())
    step = bd.fit_alignment_bound(R, np.where(R > 0.2, 1.0, -1.0))
    assert step.delta_lambda > 0
    assert any("step-like" in n for n in step.notes)


def test_alignment_fit_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 3"):
        bd.fit_alignment_bound([0.0, 1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 3"):
        bd.fit_alignment_bound([0.0, 1.0, 2.0, 3.0], [0.1, np.nan, np.nan, 0.3])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        bd.fit_alignment_bound([0.0, 1.0, 2.0], [0.1, 0.5, 1.7])
    with pytest.raises(ValueError, match="same length"):
        bd.fit_alignment_bound([0.0, 1.0, 2.0], [0.1, 0.5])
    with pytest.raises(ValueError, match="numeric"):
        bd.fit_alignment_bound(["a", "b", "c"], [0.1, 0.5, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        bd.fit_alignment_bound([0.0, 1.0, 2.0], [0.1, 0.5, 0.6], weights=[1.0, -1.0, 1.0])


def test_alignment_fit_drops_nan_points_with_a_note():
    b = bd.alignment_bound(R, 0.5, 0.0)
    b[[3, 7]] = np.nan
    fit = bd.fit_alignment_bound(R, b)
    assert fit.n_points == R.size - 2
    assert fit.delta_lambda == pytest.approx(0.5, rel=1e-3)
    assert any("2 of 33 points dropped" in n for n in fit.notes)


# --- helpfulness fit -------------------------------------------------------------------------


@pytest.mark.parametrize("p0,lsb", [(0.7, 0.5), (0.55, 0.25)])
def test_helpfulness_fit_recovers_parameters(p0, lsb):
    p = noisy(bd.helpfulness_bound(R, p0, 1.0, lsb, n_choices=4), 0.01, seed=2, lo=0.0)
    fit = bd.fit_helpfulness_bound(R, p, n_choices=4)
    assert fit.p0 == pytest.approx(p0, abs=0.03)
    assert fit.lambda_sigma_beta == pytest.approx(lsb, rel=0.15)
    assert fit.alpha == 1.0 and fit.floor == pytest.approx(0.25)
    assert fit.r2 > 0.95
    assert not any("poor fit" in n or "asymmetric" in n for n in fit.notes)
    json.dumps(fit.to_dict())


def test_helpfulness_fit_with_other_alpha_gives_the_same_curve():
    p = bd.helpfulness_bound(R, 0.7, 1.0, 0.5, n_choices=4)
    a1 = bd.fit_helpfulness_bound(R, p)
    a03 = bd.fit_helpfulness_bound(R, p, alpha=0.3)
    np.testing.assert_allclose(a1.predict(R), a03.predict(R), atol=1e-6)
    assert a03.alpha == 0.3 and a03.p0 < a1.p0  # smaller α: the bound overshoots, so P0 is lower


def test_helpfulness_fit_floor_behaviour():
    p = noisy(bd.helpfulness_bound(R, 0.8, 1.0, 0.9, n_choices=4), 0.01, seed=4, lo=0.0)
    fit = bd.fit_helpfulness_bound(R, p, n_choices=4)
    assert fit.predict(1e5) == pytest.approx(0.25, abs=1e-4)
    # The no-floor model cannot reach 0.25 plateaus: it fits this data worse.
    no_floor = bd.fit_helpfulness_bound(R, p, n_choices=None)
    assert no_floor.floor is None and no_floor.predict(1e5) < 1e-3
    assert no_floor.r2 < fit.r2


def test_helpfulness_fit_garbage_is_poor():
    p = np.random.default_rng(5).uniform(0, 1, R.size)
    fit = bd.fit_helpfulness_bound(R, p)
    assert fit.r2 < 0.5 and any("poor fit" in n for n in fit.notes)


def test_helpfulness_fit_flags_asymmetric_peak_with_its_location():
    shifted = bd.helpfulness_bound(R - 3.0, 0.7, 1.0, 0.5, n_choices=4)
    fit = bd.fit_helpfulness_bound(R, shifted)
    peak_notes = [n for n in fit.notes if "asymmetric peak" in n]
    assert peak_notes and "r_e = 3" in peak_notes[0]


def test_helpfulness_fit_flags_lopsided_decay():
    p = np.where(R >= 0, bd.helpfulness_bound(R, 0.7, 1.0, 0.8, 4), bd.helpfulness_bound(R, 0.7, 1.0, 0.1, 4))
    fit = bd.fit_helpfulness_bound(R, p)
    assert any("asymmetric decay" in n for n in fit.notes)
    symmetric = bd.fit_helpfulness_bound(R, bd.helpfulness_bound(R, 0.7, 1.0, 0.8, 4))
    assert not any("asymmetric" in n for n in symmetric.notes)


def test_helpfulness_fit_degenerate_and_bad_inputs():
    const = bd.fit_helpfulness_bound(R, np.full(R.size, 0.4))
    assert const.lambda_sigma_beta == 0.0 and math.isnan(const.r2)
    assert any("degenerate" in n for n in const.notes)
    chance = bd.fit_helpfulness_bound(R, np.full(R.size, 0.2))
    assert any("chance" in n for n in chance.notes)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bd.fit_helpfulness_bound([0.0, 1.0, 2.0], [0.5, 1.2, 0.3])
    with pytest.raises(ValueError, match="at least 3"):
        bd.fit_helpfulness_bound([np.nan, 1.0, 2.0], [0.5, 0.4, 0.3])
    with pytest.raises(ValueError, match="n_choices"):
        bd.fit_helpfulness_bound(R, np.full(R.size, 0.4), n_choices=1)
    with pytest.raises(ValueError, match="alpha"):
        bd.fit_helpfulness_bound(R, np.full(R.size, 0.4), alpha=-1.0)
