"""From measured curves to what a user should do: fits worth showing, the efficient regime, a coefficient.

``fit_tradeoff`` is the one place where the three curves of a sweep (behaviour B, helpfulness,
coherence) become a recommendation; the text sweep, the multimodal α-sweep and the dashboard all
call it (the dashboard rebuilds it from ``summary.json`` with ``Tradeoff.from_dict``).

Rules that keep the recommendation from misleading (each excluded coefficient says why):

* a fit is shown as numbers only when R² ≥ 0.5 and no parameter sits at its bound; otherwise it is
  "no fit" with the reason (a λσβ of 1e-12 is not a measurement);
* the regime grows from r_e = 0 towards the side where B rises and stops at the first coefficient
  where measured B is not above B(0), where B has fallen from its peak by more than its noise
  (an inverted U), where helpfulness is at chance within its standard error, where coherence has
  collapsed, or (when both fits hold) where the fitted marginal gain drops below the threshold;
* the recommended r_e maximises the normalised objective over the admissible coefficients only;
  when none qualifies the summary says "no efficient regime" in words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .bounds import AlignmentFit, BoundFitError, HelpfulnessFit, fit_alignment_bound, fit_helpfulness_bound

MIN_FIT_R2 = 0.5
COHERENCE_FLOOR = 0.5  # share of coherent answers below which steering has broken the model's writing
_EPS = 1e-12


def fit_problem(fit: AlignmentFit | HelpfulnessFit | None) -> str | None:
    """Why ``fit`` must be shown as "no fit" (None when its numbers mean something)."""
    if fit is None:
        return "not fitted"
    if not math.isfinite(fit.r2):
        return "R² is undefined (the measured curve is flat)"
    if fit.r2 < MIN_FIT_R2:
        return f"R² = {fit.r2:.2f} < {MIN_FIT_R2}: the bound's shape does not describe the points"
    if fit.at_bound:
        return f"{', '.join(fit.at_bound)} reached the fit's limit, so only a bound is measured"
    return None


@dataclass(frozen=True)
class Curves:
    """Measured curves on the sweep grid (sorted by r_e); helpfulness and coherence may be absent."""

    r: np.ndarray
    b: np.ndarray
    b_se: np.ndarray
    h: np.ndarray | None = None
    h_se: np.ndarray | None = None
    coherent: np.ndarray | None = None  # share of coherent answers per coefficient

    @classmethod
    def from_aggregates(cls, agg, behavior_metric: str = "behavior_expectation") -> Curves:
        def curve(task: str, metric: str, subject: str | None = None):
            sel = agg[(agg.task == task) & (agg.metric == metric)]
            if subject is not None:
                sel = sel[sel.subject == subject]
            sel = sel.groupby("r_e", as_index=False).agg(value=("value", "mean"), stderr=("stderr", "mean"))
            return sel.r_e.to_numpy(float), sel.value.to_numpy(float), sel.stderr.fillna(0).to_numpy(float)

        r, b, b_se = curve("behavior", behavior_metric)
        h = h_se = coherent = None
        rh, hv, hs = curve("helpfulness", "helpfulness", "mean")
        if rh.size:
            h, h_se = np.interp(r, rh, hv), np.interp(r, rh, hs)
        rc, cv, _ = curve("coherence", "coherent")
        if rc.size:
            coherent = np.interp(r, rc, cv)
        return cls(r, b, b_se, h, h_se, coherent)


@dataclass(frozen=True)
class EfficientRegime:
    """Where steering pays: ``[r_min, r_max]`` contains 0 and lies on the side where B rises
    (``direction`` = ±1). ``best_r_e`` is the recommended coefficient. ``basis`` says whether the
    gain and the objective came from the fitted bounds or (a fit missing) the measured points;
    ``stopped_at`` / ``stop_reason`` name the first coefficient left out and why."""

    r_min: float
    r_max: float
    best_r_e: float
    threshold: float
    weight_alignment: float
    weight_helpfulness: float
    direction: int = 1
    basis: str = "fitted"
    stopped_at: float | None = None
    stop_reason: str = ""
    ratio_grid: list = field(default_factory=list)
    r_grid: list = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in d.items()}


def _json_float(x):
    return x if x is None or math.isfinite(x) else None


@dataclass(frozen=True)
class Tradeoff:
    """The fits worth showing, the regime (or why there is none) and plain-language notes."""

    alignment: AlignmentFit | None
    helpfulness: HelpfulnessFit | None
    regime: EfficientRegime | None
    alignment_problem: str | None = None
    helpfulness_problem: str | None = None
    no_regime_reason: str | None = None
    n_choices: int = 4
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "alignment_fit": None if self.alignment is None else self.alignment.to_dict(),
            "helpfulness_fit": None if self.helpfulness is None else self.helpfulness.to_dict(),
            "alignment_fit_problem": self.alignment_problem,
            "helpfulness_fit_problem": self.helpfulness_problem,
            "efficient_regime": None if self.regime is None else self.regime.to_dict(),
            "no_efficient_regime": self.no_regime_reason,
            "n_choices": self.n_choices,
            "tradeoff_notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, summary: dict | None) -> Tradeoff:
        """Rebuild from a summary (``to_dict``'s keys); missing or malformed parts become None."""
        s = summary or {}
        return cls(
            alignment=_rebuild(AlignmentFit, s.get("alignment_fit"), ("delta_lambda", "b0")),
            helpfulness=_rebuild(HelpfulnessFit, s.get("helpfulness_fit"), ("p0", "alpha", "lambda_sigma_beta")),
            regime=_rebuild(EfficientRegime, s.get("efficient_regime"), ("r_min", "r_max", "best_r_e")),
            alignment_problem=s.get("alignment_fit_problem"),
            helpfulness_problem=s.get("helpfulness_fit_problem"),
            no_regime_reason=s.get("no_efficient_regime"),
            n_choices=int(s.get("n_choices") or 4),
            notes=tuple(s.get("tradeoff_notes") or ()),
        )

    @property
    def shown_alignment(self) -> AlignmentFit | None:
        """The alignment fit when it may be drawn as numbers, else None."""
        return self.alignment if self.alignment_problem is None else None

    @property
    def shown_helpfulness(self) -> HelpfulnessFit | None:
        return self.helpfulness if self.helpfulness_problem is None else None


def _rebuild(cls, data, required):
    if not isinstance(data, dict) or any(data.get(k) is None for k in required):
        return None
    names = {f.name for f in fields(cls)}
    kwargs = {
        k: (float("nan") if v is None and k != "floor" and k != "stopped_at" else v)
        for k, v in data.items()
        if k in names
    }
    for key in ("notes", "at_bound"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key] or ())
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        return None


def _fit_or_reason(fit_fn, *args, **kwargs):
    try:
        fit = fit_fn(*args, **kwargs)
    except (BoundFitError, ValueError) as exc:
        return None, str(exc)
    return fit, fit_problem(fit)


def fit_tradeoff(
    agg,
    n_choices: int = 4,
    threshold: float = 1.0,
    weight_alignment: float = 1.0,
    weight_helpfulness: float = 1.0,
    behavior_metric: str = "behavior_expectation",
    coherence_floor: float = COHERENCE_FLOOR,
) -> Tradeoff:
    """Fit Theorems 1 and 2 to a sweep's aggregated rows and choose the efficient regime."""
    curves = Curves.from_aggregates(agg, behavior_metric)
    notes: list[str] = []
    if curves.r.size < 3:
        return Tradeoff(
            None,
            None,
            None,
            "fewer than 3 coefficients",
            "fewer than 3 coefficients",
            "no efficient regime: fewer than 3 coefficients were measured",
            n_choices,
        )
    align, a_problem = _fit_or_reason(fit_alignment_bound, curves.r, curves.b)
    help_fit = h_problem = None
    if curves.h is not None:
        help_fit, h_problem = _fit_or_reason(fit_helpfulness_bound, curves.r, curves.h, n_choices=n_choices)
    else:
        h_problem = "no helpfulness measured"
    for name, problem in (("alignment", a_problem), ("helpfulness", h_problem)):
        if problem:
            notes.append(f"{name}: no fit ({problem}).")
    regime, reason = choose_regime(
        curves,
        align if a_problem is None else None,
        help_fit if h_problem is None else None,
        n_choices,
        threshold,
        weight_alignment,
        weight_helpfulness,
        coherence_floor,
    )
    if reason:
        notes.append(reason)
    return Tradeoff(align, help_fit, regime, a_problem, h_problem, reason, n_choices, tuple(notes))


def _direction(curves: Curves, align: AlignmentFit | None) -> int:
    if align is not None:
        return int(np.sign(align.delta_lambda))
    slope = np.polyfit(curves.r, curves.b, 1)[0] if np.ptp(curves.r) > 0 else 0.0
    return int(np.sign(slope)) if abs(slope) > _EPS else 0


def _stop_reason(
    k: int,
    order: np.ndarray,
    curves: Curves,
    i0: int,
    n_choices: int,
    floor: float,
    gain: np.ndarray | None,
    threshold: float,
) -> str | None:
    """Why the k-th coefficient outward from 0 cannot be in the regime (None: it can)."""
    i = order[k]
    r = curves.r[i]
    if curves.b[i] <= curves.b[i0]:
        return f"measured B at r_e = {r:.3g} ({curves.b[i]:+.2f}) is not above B(0) = {curves.b[i0]:+.2f}"
    seen = curves.b[order[: k + 1]]
    peak = int(np.argmax(seen))
    noise = 2.0 * max(float(curves.b_se[i]), float(curves.b_se[order[peak]]), 0.01)
    if seen[peak] - curves.b[i] > noise:
        return (
            f"B has fallen from its peak ({seen[peak]:+.2f} at r_e = {curves.r[order[peak]]:.3g}) "
            f"to {curves.b[i]:+.2f} at r_e = {r:.3g}"
        )
    if curves.h is not None:
        chance = 1.0 / n_choices
        h_se = float(curves.h_se[i]) if curves.h_se is not None else 0.0
        if curves.h[i] - chance <= max(h_se, 0.0):
            return f"helpfulness at r_e = {r:.3g} ({curves.h[i]:.3f}) is at chance ({chance:.3f}) within its error"
    if curves.coherent is not None and curves.coherent[i] < floor:
        return f"coherence collapsed at r_e = {r:.3g} (only {curves.coherent[i]:.0%} of answers coherent)"
    if gain is not None and gain[k] < threshold:
        return f"marginal gain at r_e = {r:.3g} ({gain[k]:.2g}) is below the threshold {threshold:g}"
    return None


def choose_regime(
    curves: Curves,
    align: AlignmentFit | None,
    help_fit: HelpfulnessFit | None,
    n_choices: int,
    threshold: float = 1.0,
    weight_alignment: float = 1.0,
    weight_helpfulness: float = 1.0,
    coherence_floor: float = COHERENCE_FLOOR,
) -> tuple[EfficientRegime | None, str | None]:
    """The regime on the measured grid (module docstring), or None and the reason in words."""
    direction = _direction(curves, align)
    if direction == 0:
        return None, "no efficient regime: B does not change with r_e."
    i0 = int(np.argmin(np.abs(curves.r)))
    if abs(curves.r[i0]) > _EPS:
        return None, "no efficient regime: the grid does not contain r_e = 0, the unsteered reference."
    side = np.flatnonzero(direction * curves.r > _EPS)
    order = side[np.argsort(np.abs(curves.r[side]))]
    if order.size == 0:
        return None, "no efficient regime: B rises towards coefficients outside the grid."
    basis = "fitted" if align is not None and help_fit is not None else "measured"
    gain = None
    if align is not None and help_fit is not None:
        rr = curves.r[order]
        prev = np.concatenate([[0.0], rr[:-1]])
        db = align.predict(rr) - align.predict(prev)
        dh = help_fit.predict(prev) - help_fit.predict(rr)
        # Outward from 0, B rises on this side whatever its sign: the gain is ΔB per unit of
        # helpfulness lost between neighbouring grid points.
        gain = np.asarray(db / np.maximum(dh, _EPS), dtype=float)
    admitted, stopped_at, reason = [], None, ""
    for k in range(order.size):
        why = _stop_reason(k, order, curves, i0, n_choices, coherence_floor, gain, threshold)
        if why is not None:
            stopped_at, reason = float(curves.r[order[k]]), why
            break
        admitted.append(int(order[k]))
    if not admitted:
        return None, f"no efficient regime: {reason}."
    best = _best(curves, [i0, *admitted], align, help_fit, n_choices, weight_alignment, weight_helpfulness)
    end = float(curves.r[admitted[-1]])
    notes = (
        []
        if basis == "fitted"
        else ["a fit is missing, so the gain rule was skipped and the objective uses measured values"]
    )
    regime = EfficientRegime(
        r_min=min(0.0, end),
        r_max=max(0.0, end),
        best_r_e=best,
        threshold=float(threshold),
        weight_alignment=float(weight_alignment),
        weight_helpfulness=float(weight_helpfulness),
        direction=direction,
        basis=basis,
        stopped_at=stopped_at,
        stop_reason=reason,
        ratio_grid=[] if gain is None else [float(g) for g in gain],
        r_grid=[float(curves.r[i]) for i in order],
        notes=tuple(notes),
    )
    return regime, None


def _best(curves: Curves, candidates: list[int], align, help_fit, n_choices: int, w_a: float, w_h: float) -> float:
    """Argmax of w_a·(B+1)/2 + w_h·(H − 1/N)/(H(0) − 1/N) over the admissible coefficients: both terms
    on [0, 1], since raw B spans 2 units while P(correct) has only H(0) − 1/N to lose."""
    r = curves.r[candidates]
    b = align.predict(r) if align is not None else curves.b[candidates]
    term: float | np.ndarray = 0.0
    if curves.h is not None:
        h = help_fit.predict(r) if help_fit is not None else curves.h[candidates]
        chance = 1.0 / n_choices
        span = h[0] - chance
        term = (h - chance) / span if span > 1e-9 else np.zeros_like(h)
    objective = w_a * (np.asarray(b) + 1.0) / 2.0 + w_h * term
    return float(r[int(np.argmax(objective))])
