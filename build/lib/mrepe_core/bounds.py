"""Theorem 1 / Theorem 2 bounds of Wolf et al. (steering trade-offs) and their fits.

The efficient regime and the recommendation built on these fits live in ``tradeoff.py``.

Pure numpy/scipy. Formulas (r = r_e, the steering coefficient):

* Alignment (Theorem 1, eq. 5):  B(r) = tanh(Δλ·r + artanh(B0)).

* Helpfulness (Theorem 2, eq. 6, with ε absorbed into α):
      h2(r) = P0 / (P0 + (1 - P0)·α·(1 + (λσβ)²/2 · r²)).
  With N answer choices, Corollary 2 (appendix E) says the dataset-average helpfulness tends to 1/N
  as |r| → ∞, and appendix F.4 plots "the bound of theorem 2 with boundary conditions of corollary 2".
  We pin the curve to Theorem 2 at r = 0 and to 1/N at infinity, keeping Theorem 2's shape between:
      H(r) = 1/N + (h0 - 1/N) · h2(r)/h0,      h0 = h2(0) = P0 / (P0 + (1 - P0)·α)
           = 1/N + (h0 - 1/N) / (1 + κ r²),   κ = α(1 - P0)(λσβ)²/2 / (P0 + α(1 - P0)).
  Why not eq. 45 literally ((1 - 1/N)·h2(r) + 1/N)? Its mixing weight comes from the probability that
  one of the sets I± is empty; it moves the r = 0 value away from Theorem 2's (to 1/N + (1-1/N)·h0),
  so a fitted "P0" would no longer read as the unsteered helpfulness. Both forms are 1/N + c·h2(r),
  i.e. the same family of curves; ours chooses c so that H(0) = h0.

Identifiability: a helpfulness curve determines only h0 and κ. P0 and α enter through h0 together,
so the fit holds α fixed (default 1, the tight case where the bound at r = 0 equals P0) and reports
P0 and λσβ for that α. λσβ does depend on the α chosen; the curve does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

B0_CLIP = 1.0 - 1e-6
_EPS = 1e-12
POOR_FIT_R2 = 0.9


class BoundFitError(ValueError):
    """Inputs that cannot be fitted (too few points, NaNs only, values out of range)."""


# ---------------------------------------------------------------------------------------------
# Bounds
# ---------------------------------------------------------------------------------------------


def alignment_bound(r_e, delta_lambda: float, b0: float) -> np.ndarray:
    """Theorem 1: tanh(Δλ·r_e + artanh(B0)); B0 is clipped into (-1, 1) so artanh stays finite."""
    b0c = float(np.clip(b0, -B0_CLIP, B0_CLIP))
    return np.tanh(float(delta_lambda) * np.asarray(r_e, dtype=float) + np.arctanh(b0c))


def _lorentzian_with_floor(r_e, h0: float, kappa: float, floor: float) -> np.ndarray:
    r = np.asarray(r_e, dtype=float)
    return floor + (h0 - floor) / (1.0 + kappa * r * r)


def _theorem2_h0_kappa(p0: float, alpha: float, lsb: float) -> tuple[float, float]:
    denom = p0 + (1.0 - p0) * alpha
    return p0 / denom, alpha * (1.0 - p0) * lsb * lsb / 2.0 / denom


def helpfulness_bound(r_e, p0: float, alpha: float, lsb: float, n_choices: int | None = None) -> np.ndarray:
    """Theorem 2 upper bound on P(correct), optionally with Corollary 2's floor at 1/N.

    Without ``n_choices``: ``p0 / (p0 + (1-p0)*alpha*(1 + lsb**2/2 * r_e**2))``.
    With ``n_choices = N``: ``1/N + (h0 - 1/N) * h2(r_e)/h0`` where ``h2`` is the expression above and
    ``h0 = h2(0)``; it equals Theorem 2 at r_e = 0 and tends to 1/N for large |r_e| (module docstring).
    """
    p0, alpha, lsb = float(p0), float(alpha), float(lsb)
    if not (0.0 <= p0 <= 1.0):
        raise BoundFitError(f"p0 must be a probability in [0, 1], got {p0}.")
    if not (alpha > 0.0 and math.isfinite(alpha)):
        raise BoundFitError(f"alpha must be a positive finite number, got {alpha}.")
    if not math.isfinite(lsb):
        raise BoundFitError(f"lambda_sigma_beta must be finite, got {lsb}.")
    floor = 0.0 if n_choices is None else 1.0 / _check_n_choices(n_choices)
    h0, kappa = _theorem2_h0_kappa(p0, alpha, lsb)
    return _lorentzian_with_floor(r_e, h0, kappa, floor)


def _check_n_choices(n_choices) -> int:
    if isinstance(n_choices, bool) or not isinstance(n_choices, (int, np.integer)) or n_choices < 2:
        raise BoundFitError(f"n_choices must be an integer >= 2 (number of answer options), got {n_choices!r}.")
    return int(n_choices)


def r_squared(y, y_hat) -> float:
    """Coefficient of determination over finite pairs; NaN when y is constant (R² undefined)."""
    y, y_hat = np.asarray(y, dtype=float), np.asarray(y_hat, dtype=float)
    if y.shape != y_hat.shape:
        raise BoundFitError(f"y and y_hat must have the same shape, got {y.shape} and {y_hat.shape}.")
    ok = np.isfinite(y) & np.isfinite(y_hat)
    y, y_hat = y[ok], y_hat[ok]
    if y.size == 0:
        return float("nan")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= _EPS:
        return float("nan")
    return 1.0 - float(np.sum((y - y_hat) ** 2)) / ss_tot


# ---------------------------------------------------------------------------------------------
# Fit results
# ---------------------------------------------------------------------------------------------


def _json_float(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class AlignmentFit:
    """Theorem 1 fitted to measured B(r_e); ``notes`` say plainly where the fit is weak or degenerate."""

    delta_lambda: float
    b0: float
    r2: float
    n_points: int
    notes: tuple[str, ...] = ()
    at_bound: tuple[str, ...] = ()  # parameters the optimiser left at a bound (then only a bound is measured)

    def predict(self, r_e) -> np.ndarray:
        return alignment_bound(r_e, self.delta_lambda, self.b0)

    def to_dict(self) -> dict:
        return {
            "delta_lambda": _json_float(self.delta_lambda),
            "b0": _json_float(self.b0),
            "r2": _json_float(self.r2),
            "n_points": int(self.n_points),
            "notes": list(self.notes),
            "at_bound": list(self.at_bound),
        }


@dataclass(frozen=True)
class HelpfulnessFit:
    """Theorem 2 (+ Corollary 2 floor when ``floor`` is set) fitted to measured P(correct)(r_e)."""

    p0: float
    alpha: float
    lambda_sigma_beta: float
    floor: float | None
    r2: float
    n_points: int
    notes: tuple[str, ...] = ()
    at_bound: tuple[str, ...] = ()

    def predict(self, r_e) -> np.ndarray:
        h0, kappa = _theorem2_h0_kappa(self.p0, self.alpha, self.lambda_sigma_beta)
        return _lorentzian_with_floor(r_e, h0, kappa, 0.0 if self.floor is None else self.floor)

    def to_dict(self) -> dict:
        return {
            "p0": _json_float(self.p0),
            "alpha": _json_float(self.alpha),
            "lambda_sigma_beta": _json_float(self.lambda_sigma_beta),
            "floor": _json_float(self.floor),
            "r2": _json_float(self.r2),
            "n_points": int(self.n_points),
            "notes": list(self.notes),
            "at_bound": list(self.at_bound),
        }


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _clean_xy(r_e, y, weights, what: str, lo: float, hi: float):
    """Finite, in-range (r, y, w) sorted by r; drops NaN rows with a note, raises on what cannot be fitted."""
    try:
        r = np.asarray(r_e, dtype=float).ravel()
        v = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise BoundFitError(f"r_e and {what} must be numeric sequences ({exc}).") from None
    if r.shape != v.shape:
        raise BoundFitError(f"r_e and {what} must have the same length, got {r.size} and {v.size}.")
    if weights is None:
        w = np.ones_like(r)
    else:
        try:
            w = np.asarray(weights, dtype=float).ravel()
        except (TypeError, ValueError) as exc:
            raise BoundFitError(f"weights must be numeric ({exc}).") from None
        if w.shape != r.shape:
            raise BoundFitError(f"weights must have one entry per point ({r.size}), got {w.size}.")
        if np.any(w[np.isfinite(w)] < 0):
            raise BoundFitError("weights must be non-negative (use e.g. 1/stderr**2).")
    notes: list[str] = []
    ok = np.isfinite(r) & np.isfinite(v) & np.isfinite(w) & (w > 0)
    if not ok.all():
        notes.append(f"{int((~ok).sum())} of {r.size} points dropped (NaN/inf value or non-positive weight).")
    r, v, w = r[ok], v[ok], w[ok]
    if np.unique(r).size < 3:
        raise BoundFitError(
            f"Need at least 3 distinct r_e values with finite {what} to fit a bound, "
            f"got {np.unique(r).size}. Run a sweep with more coefficients."
        )
    tol = 1e-6
    if v.min() < lo - tol or v.max() > hi + tol:
        raise BoundFitError(f"{what} must lie in [{lo:g}, {hi:g}]; got values in [{v.min():.4g}, {v.max():.4g}].")
    order = np.argsort(r, kind="stable")
    return r[order], np.clip(v[order], lo, hi), w[order] / w.max(), notes


def _median_spacing(r: np.ndarray) -> float:
    u = np.unique(r)
    return float(np.median(np.diff(u)))


def _least_squares(residuals, starts, lower, upper) -> np.ndarray:
    """Best of several starts; scipy errors become BoundFitError instead of tracebacks."""
    best, best_cost = None, np.inf
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, dtype=float), lower, upper)
        try:
            res = least_squares(residuals, x0, bounds=(lower, upper), method="trf", x_scale="jac", max_nfev=2000)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:  # pragma: no cover - defensive
            raise BoundFitError(f"Least-squares fit failed: {exc}") from None
        if np.isfinite(res.cost) and res.cost < best_cost:
            best, best_cost = res.x, res.cost
    if best is None:
        raise BoundFitError("Least-squares fit did not converge from any starting point.")
    return best


# ---------------------------------------------------------------------------------------------
# Alignment fit
# ---------------------------------------------------------------------------------------------


def fit_alignment_bound(r_e, b, weights=None) -> AlignmentFit:
    """Fit Δλ (either sign) and B0 of Theorem 1 to measured behaviour expectations in [-1, 1].

    ``weights`` multiply squared residuals (e.g. 1/stderr²). R² is unweighted over the used points.
    """
    r, v, w, notes = _clean_xy(r_e, b, weights, "behavior expectation B", -1.0, 1.0)
    n = int(r.size)
    i0 = int(np.argmin(np.abs(r)))
    if np.ptp(v) <= 1e-9:
        notes.append(
            f"degenerate: measured B is constant ({v[0]:+.3f}) over r_e, so Δλ = 0 and R² is undefined; "
            "the vector does not move this behaviour on this grid (try larger coefficients or other layers)."
        )
        if np.all(np.abs(v) >= B0_CLIP):
            notes.append("every measured B is ±1 (saturated): the grid shows no transition to fit.")
        return AlignmentFit(0.0, float(v[0]), float("nan"), n, tuple(notes))

    z_max = float(np.arctanh(B0_CLIP))
    spacing = _median_spacing(r)
    dl_max = 50.0 / spacing
    sqrt_w = np.sqrt(w)

    def residuals(x):
        return sqrt_w * (np.tanh(x[0] * r + x[1]) - v)

    # Start from a weighted line through artanh(B), and from both signs of a gentle slope.
    z = np.arctanh(np.clip(v, -0.95, 0.95))
    slope, intercept = np.polyfit(r, z, 1, w=sqrt_w)
    z0_guess = float(np.arctanh(np.clip(v[i0], -0.95, 0.95)))
    span = float(r.max() - r.min())
    starts = [
        (slope, intercept),
        (slope, z0_guess),
        (-slope, z0_guess),
        (2.0 / span, z0_guess),
        (-2.0 / span, z0_guess),
    ]
    dl, z0 = _least_squares(residuals, starts, [-dl_max, -z_max], [dl_max, z_max])
    fit_b0 = float(np.tanh(z0))
    r2 = r_squared(v, np.tanh(dl * r + z0))

    if np.all(np.abs(v) >= B0_CLIP):
        notes.append("every measured B is ±1 (saturated): only a lower bound on |Δλ| is measurable.")
    # tanh(3) ≈ 0.995: past this the whole transition fits inside one grid step, so the data only
    # bound |Δλ| from below and the optimiser stops anywhere beyond that.
    if abs(dl) * spacing > 3.0:
        notes.append(
            f"step-like B: the fitted transition (|Δλ| = {abs(dl):.3g}) is narrower than one grid step "
            f"({spacing:.3g}), so Δλ is only a lower bound; refine the grid near the switch "
            "to resolve the slope."
        )
    at_bound = [name for name, hit in (("Δλ", abs(dl) >= 0.99 * dl_max), ("B0", abs(z0) >= 0.99 * z_max)) if hit]
    if abs(z0) >= 0.99 * z_max:
        notes.append("B0 reached ±1: the unsteered behaviour is saturated, so artanh(B0) is poorly determined.")
    if not math.isfinite(r2) or r2 < POOR_FIT_R2:
        notes.append(
            f"poor fit: R² = {r2:.3f} < {POOR_FIT_R2}; the tanh form of Theorem 1 does not describe these points well."
        )
    notes.extend(_monotonicity_notes(r, v, np.sign(dl) or np.sign(v[-1] - v[0])))
    return AlignmentFit(float(dl), fit_b0, float(r2), n, tuple(notes), tuple(at_bound))


def _monotonicity_notes(r: np.ndarray, v: np.ndarray, trend: float) -> list[str]:
    """Flag the largest move against the overall trend when it exceeds noise-sized wiggles."""
    if trend == 0:
        return []
    s = v * trend  # increasing in the trend direction
    running_max = np.maximum.accumulate(s)
    drawdown = running_max - s
    j = int(np.argmax(drawdown))
    tol = max(0.1 * float(np.ptp(v)), 0.05)
    if drawdown[j] <= tol:
        return []
    i = int(np.argmax(s[: j + 1]))
    word = "increasing" if trend > 0 else "decreasing"
    return [
        f"non-monotone B: overall {word} with r_e, but B moves back by {drawdown[j]:.3f} between "
        f"r_e = {r[i]:.3g} and r_e = {r[j]:.3g}; Theorem 1 predicts a monotone curve."
    ]


# ---------------------------------------------------------------------------------------------
# Helpfulness fit
# ---------------------------------------------------------------------------------------------


def fit_helpfulness_bound(r_e, p, n_choices: int | None = 4, weights=None, alpha: float = 1.0) -> HelpfulnessFit:
    """Fit Theorem 2 (with Corollary 2's 1/N floor unless ``n_choices`` is None) to P(correct)(r_e).

    The curve determines h0 = H(0) and the curvature κ; ``alpha`` is held fixed (default 1) because
    P0 and α are not separately identifiable, and P0, λσβ are reported for it (module docstring).
    The peak is at r_e = 0 as the theorem says; an off-centre or lopsided peak is reported in ``notes``.
    """
    alpha = float(alpha)
    if not (alpha > 0.0 and math.isfinite(alpha)):
        raise BoundFitError(f"alpha must be a positive finite number, got {alpha}.")
    floor = None if n_choices is None else 1.0 / _check_n_choices(n_choices)
    f = 0.0 if floor is None else floor
    r, v, w, notes = _clean_xy(r_e, p, weights, "helpfulness P(correct)", 0.0, 1.0)
    n = int(r.size)
    notes.append(f"α held at {alpha:g}: only P0/(P0 + α(1-P0)) and the curvature are identifiable from the curve.")
    h_lo, h_hi = 1e-6, 1.0 - 1e-6

    if np.ptp(v) <= 1e-9:
        notes.append(
            f"degenerate: measured helpfulness is constant ({v[0]:.3f}) over r_e, so no decay is measured "
            "(λσβ = 0) and R² is undefined."
        )
        h0, kappa = float(np.clip(v[0], h_lo, h_hi)), 0.0
        r2 = float("nan")
        at_bound = ["λσβ"]
    else:
        q_max = 30.0 / _median_spacing(r)  # q = sqrt(κ); beyond this the curve collapses between grid points
        sqrt_w = np.sqrt(w)

        def residuals(x):
            return sqrt_w * (_lorentzian_with_floor(r, x[0], x[1] ** 2, f) - v)

        h_start = float(np.clip(v.max(), h_lo, h_hi))
        span = float(r.max() - r.min())
        starts = [(h_start, q) for q in (_half_width_guess(r, v, f), 0.3 / span, 3.0 / span, 30.0 / span)]
        h0, q = _least_squares(residuals, starts, [h_lo, 0.0], [h_hi, q_max])
        kappa = float(q * q)
        r2 = r_squared(v, _lorentzian_with_floor(r, h0, kappa, f))
        # q at 0 means no measurable decay (λσβ = 0, e.g. 1e-12 printed as a number); at q_max the
        # collapse happens between grid points: either way λσβ is a bound, not a measurement.
        at_bound = [
            name
            for name, hit in (
                ("λσβ", q <= 1e-6 * q_max or q >= 0.99 * q_max),
                ("P0", h0 <= 1.01 * h_lo or h0 >= h_hi - 1e-9),
            )
            if hit
        ]
        if q >= 0.99 * q_max:
            notes.append(
                "curvature reached the fit limit: helpfulness collapses between neighbouring r_e values; "
                "refine the grid near r_e = 0."
            )
        if not math.isfinite(r2) or r2 < POOR_FIT_R2:
            notes.append(
                f"poor fit: R² = {r2:.3f} < {POOR_FIT_R2}; the Theorem 2 shape does not describe these points well."
            )
        notes.extend(_peak_notes(r, v))

    if floor is not None and h0 <= floor + 1e-9:
        notes.append(
            f"unsteered helpfulness ({h0:.3f}) is at or below chance 1/N = {floor:.3f}: "
            "there is no helpfulness above chance for steering to lose."
        )
    # Map (h0, κ) back to the paper's parameters for the fixed α.
    p0 = alpha * h0 / (1.0 - h0 + alpha * h0)
    p0 = float(min(p0, h_hi))
    lsb = math.sqrt(2.0 * kappa * (p0 + alpha * (1.0 - p0)) / (alpha * (1.0 - p0)))
    return HelpfulnessFit(float(p0), alpha, float(lsb), floor, float(r2), n, tuple(notes), tuple(at_bound))


def _half_width_guess(r: np.ndarray, v: np.ndarray, floor: float) -> float:
    """1/|r| at which the measurement first falls halfway from its peak to the floor (κ = 1/r_half²)."""
    half = floor + 0.5 * (v.max() - floor)
    below = np.abs(r[v < half])
    r_half = float(below.min()) if below.size and below.min() > 0 else float(np.abs(r).max())
    return 1.0 / max(r_half, _EPS)


def _peak_notes(r: np.ndarray, v: np.ndarray) -> list[str]:
    """Theorem 2 puts the peak at r_e = 0 and decays symmetrically; say so when the data disagree."""
    notes: list[str] = []
    ptp = float(np.ptp(v))
    i0 = int(np.argmin(np.abs(r)))
    i_peak = int(np.argmax(v))
    span = float(r.max() - r.min())
    far = max(2.0 * _median_spacing(r), 0.1 * span)
    if abs(r[i_peak] - r[i0]) > far and v[i_peak] - v[i0] > 0.1 * ptp:
        notes.append(
            f"asymmetric peak: measured helpfulness peaks at r_e = {r[i_peak]:.3g} "
            f"({v[i_peak]:.3f} vs {v[i0]:.3f} at r_e = {r[i0]:.3g}); Theorem 2 puts the peak at r_e = 0, "
            "so the fitted curve is centred there."
        )
    reach = min(float(r.max()), float(-r.min()))
    if reach > 0 and np.sum(r > 0) >= 2 and np.sum(r < 0) >= 2 and r.min() <= 0 <= r.max():
        at0 = float(np.interp(0.0, r, v))
        drop_pos = at0 - float(np.interp(reach, r, v))
        drop_neg = at0 - float(np.interp(-reach, r, v))
        if abs(drop_pos - drop_neg) > 0.25 * ptp and max(drop_pos, drop_neg) > 0:
            notes.append(
                f"asymmetric decay: helpfulness drops by {drop_pos:.3f} at r_e = +{reach:.3g} but by "
                f"{drop_neg:.3f} at r_e = -{reach:.3g}; the symmetric Theorem 2 fit averages the two sides "
                f"(empirical peak at r_e = {r[i_peak]:.3g})."
            )
    return notes
