"""What the Trade-off tab shows for a result: fits in words or numbers, the four charts, readouts,
the summary, the caption that says what B measures, and the answers precomputed on the r_e grid.

Pure functions of a ``SweepResult`` (no Gradio): every number comes from ``mrepe_core`` (the
sweep's aggregates and texts, ``fit_tradeoff``), every figure from ``mrepe_core.plots``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from mrepe_core.bounds import AlignmentFit, HelpfulnessFit
from mrepe_core.plots import (
    PlotDataError,
    baseline_values,
    behavior_figure,
    coherence_figure,
    has_rows,
    helpfulness_figure,
    interpolate_at,
    marker_frames,
    tradeoff_figure,
)
from mrepe_core.plots.curve_style import HEIGHT as CHART_HEIGHT
from mrepe_core.result import SweepResult
from mrepe_core.tradeoff import EfficientRegime, Tradeoff, fit_problem, fit_tradeoff

from .common import chart_value, fmt, message_figure

N_CHOICES = 4  # MMLU questions have four options: chance = 1/4
CHART_IDS = ("behavior-plot", "helpfulness-plot", "coherence-plot", "tradeoff-plot")
CHART_NAMES = ("behavior", "helpfulness", "coherence", "tradeoff")


def label_number(x: float) -> str:
    """A coefficient as the browser writes it (``window.mrepe.fmt``): 3 significant digits, shortest."""
    y = float(f"{float(x):.3g}")
    if y == 0:
        return "0"
    text = repr(y)
    return text[:-2] if text.endswith(".0") else text


# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fits:
    """What the charts draw from a result: fits only where they may be shown as numbers, the
    regime, and in words why a fit or the regime is missing."""

    alignment: AlignmentFit | None = None
    helpfulness: HelpfulnessFit | None = None
    regime: EfficientRegime | None = None
    tradeoff: Tradeoff | None = None
    alignment_problem: str | None = None
    helpfulness_problem: str | None = None
    no_regime: str | None = None


def fits_from_summary(summary: dict | None) -> Fits:
    """The fits a summary written by the current engine carries (``Tradeoff.from_dict``)."""
    t = Tradeoff.from_dict(summary)
    a_problem = t.alignment_problem or (fit_problem(t.alignment) if t.alignment is not None else "not fitted")
    h_problem = t.helpfulness_problem or (fit_problem(t.helpfulness) if t.helpfulness is not None else "not fitted")
    return Fits(
        alignment=t.alignment if a_problem is None else None,
        helpfulness=t.helpfulness if h_problem is None else None,
        regime=t.regime,
        tradeoff=t,
        alignment_problem=a_problem,
        helpfulness_problem=h_problem,
        no_regime=None if t.regime is not None else (t.no_regime_reason or "no efficient regime in this result"),
    )


def _fits_from_tradeoff(t: Tradeoff) -> Fits:
    return Fits(
        alignment=t.shown_alignment,
        helpfulness=t.shown_helpfulness,
        regime=t.regime,
        tradeoff=t,
        alignment_problem=t.alignment_problem,
        helpfulness_problem=t.helpfulness_problem,
        no_regime=None if t.regime is not None else t.no_regime_reason,
    )


def fits_for(result: SweepResult | None) -> Fits:
    """The fits of a result. A finished result written before the engine's current rules (its
    summary has no ``alignment_fit_problem``) is refitted with ``fit_tradeoff``, so every preset
    follows the same rules (no fit below R² 0.5 or at a bound; regime stops...). A partial result
    (a sweep still running) has no fits yet."""
    if result is None:
        return Fits()
    cached = getattr(result, "_mrepe_fits", None)
    if cached is not None:
        return cached
    summary = result.summary or {}
    if not summary or not result.complete:
        fits = Fits(
            alignment_problem="the sweep is still running",
            helpfulness_problem="the sweep is still running",
            no_regime="the efficient regime is chosen when the sweep ends",
        )
    elif "alignment_fit_problem" in summary:
        fits = fits_from_summary(summary)
    else:
        try:
            n_choices = int(summary.get("n_choices") or N_CHOICES)
            fits = _fits_from_tradeoff(
                fit_tradeoff(result.aggregates, n_choices=n_choices, behavior_metric=behavior_metric(result))
            )
        except Exception:  # a result too odd to fit: show its curves without fits
            fits = fits_from_summary(summary)
    try:
        result._mrepe_fits = fits  # results are never mutated after they are shown
    except AttributeError:
        pass
    return fits


# ---------------------------------------------------------------------------------------------
# The r_e slider
# ---------------------------------------------------------------------------------------------


def r_range(result: SweepResult) -> tuple[float, float]:
    r = result.aggregates["r_e"].to_numpy(float) if not result.aggregates.empty else np.array([])
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float(result.config.r_min), float(result.config.r_max)
    return float(min(r.min(), result.config.r_min)), float(max(r.max(), result.config.r_max))


def slider_step(lo: float, hi: float) -> float:
    """A round step giving ~160 slider positions over [lo, hi] (1, 2 or 5 times a power of ten)."""
    raw = max((hi - lo) / 160.0, 1e-6)
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def slider_grid(result: SweepResult) -> list[float]:
    """Every position of the r_e slider for this result (its minimum plus whole steps)."""
    lo, hi = r_range(result)
    step = slider_step(lo, hi)
    return [round(lo + k * step, 10) for k in range(int(math.floor((hi - lo) / step + 1e-9)) + 1)]


def snap(x: float, lo: float, hi: float, step: float) -> float:
    """``x`` clamped to [lo, hi] on the slider's grid (lo + k·step)."""
    x = min(max(float(x), lo), hi)
    return round(lo + round((x - lo) / step) * step, 10)


def initial_r_e(result: SweepResult, fits: Fits) -> float:
    """Start at the recommended coefficient when the fits give one, else at 0 (unsteered)."""
    lo, hi = r_range(result)
    best = fits.regime.best_r_e if fits.regime is not None else 0.0
    if best is None or not math.isfinite(best):
        best = 0.0
    return snap(best, lo, hi, slider_step(lo, hi))


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------


def chart_title(result: SweepResult) -> str:
    """Model, behaviour and layers: the title of exported charts."""
    s, c = result.summary or {}, result.config
    model = (s.get("model") or {}).get("name") or c.model
    layers = s.get("layers")
    return f"{model} · behaviour {c.behavior} · layers {layer_text(layers) if layers else c.layers}"


def layer_text(layers) -> str:
    layers = list(layers)
    if layers and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(str(x) for x in layers)


def behavior_metric(result: SweepResult | None) -> str:
    """The headline B of a result: from the answers, or the proxy when only the proxy covers the grid."""
    if result is None:
        return "behavior_expectation"
    metric = (result.summary or {}).get("behavior_metric")
    if metric and has_rows(result.aggregates, "behavior", metric):
        return metric
    if not has_rows(result.aggregates, "behavior", "behavior_expectation") and has_rows(
        result.aggregates, "behavior", "behavior_proxy"
    ):
        return "behavior_proxy"
    return "behavior_expectation"


def build_figures(
    result: SweepResult | None,
    fits: Fits,
    r_e: float | None,
    grid: list[float] | None = None,
    title: bool = False,
) -> list:
    """Behaviour, helpfulness, coherence and trade-off charts with the marker at ``r_e`` (cheap: no
    model); with ``grid``, each also carries its marker at every r_e of the grid (``marker_frames``);
    with ``title``, each is titled with the model, behaviour and layers (exports)."""
    if result is None or result.aggregates.empty:
        msg = "No results yet: pick a preset or run a sweep."
        return [message_figure(msg, CHART_HEIGHT) for _ in CHART_IDS]
    agg = result.aggregates
    b_metric = behavior_metric(result)
    head = chart_title(result) if title else None

    def titled(what: str) -> str | None:
        return f"{what} — {head}" if head else None

    builders = (
        (
            lambda: behavior_figure(
                agg,
                fits.alignment,
                r_e,
                grid,
                no_fit=fits.alignment_problem,
                title=titled("Behaviour B"),
                metric=b_metric,
            ),
            "No behaviour rows in this result.",
        ),
        (
            lambda: helpfulness_figure(
                agg,
                fits.helpfulness,
                N_CHOICES,
                r_e,
                marker_grid=grid,
                no_fit=fits.helpfulness_problem,
                title=titled("Helpfulness"),
            ),
            "No helpfulness rows (no MMLU subjects chosen).",
        ),
        (
            lambda: coherence_figure(agg, r_e, grid, title=titled("Coherence")),
            "Coherence was not measured in this result:<br>older presets and the next-token proxy write no answers.",
        ),
        (
            lambda: tradeoff_figure(
                agg,
                fits.regime,
                r_e,
                marker_grid=grid,
                n_choices=N_CHOICES,
                no_regime=fits.no_regime,
                title=titled("Trade-off"),
                behavior_metric=b_metric,
            ),
            "The trade-off needs both behaviour and helpfulness rows.",
        ),
    )
    figs = []
    for build, empty in builders:
        try:
            figs.append(build())
        except PlotDataError as exc:
            detail = "" if "No rows" in str(exc) else f"<br><sub>{exc}</sub>"
            figs.append(message_figure(f"{empty}{detail}", CHART_HEIGHT))
    return figs


_TABLES: OrderedDict[int, tuple] = OrderedDict()
_TABLES_LOCK = threading.Lock()
_MAX_TABLES = 16


def marker_tables(result: SweepResult, fits: Fits) -> list[dict | None]:
    """``layout.meta`` of the four charts for the slider's browser-side fast path: each chart's
    marker at every slider position, plus (behaviour chart) the readout text there. Computed once
    per result and shared by every session showing it."""
    key = id(result)
    with _TABLES_LOCK:
        hit = _TABLES.get(key)
        if hit is not None and hit[0] is result and hit[1] is fits:
            _TABLES.move_to_end(key)
            return hit[2]
    grid = slider_grid(result)
    figs = build_figures(result, fits, grid[0], grid)
    tables = [None if frames is None else {"marker_frames": frames} for frames in map(marker_frames, figs)]
    if tables[0] is not None:
        tables[0]["readouts"] = readout_table(result, fits, grid)
    with _TABLES_LOCK:
        _TABLES[key] = (result, fits, tables)
        while len(_TABLES) > _MAX_TABLES:
            _TABLES.popitem(last=False)
    return tables


def chart_values(result: SweepResult | None, fits: Fits, r_e: float | None) -> list[str]:
    """The four charts as plotly JSON (the chart components' values), with the slider tables."""
    figs = build_figures(result, fits, r_e)
    metas = (
        marker_tables(result, fits)
        if r_e is not None and result is not None and not result.aggregates.empty
        else [None] * 4
    )
    return [chart_value(fig, meta) for fig, meta in zip(figs, metas)]


# ---------------------------------------------------------------------------------------------
# Readout, summary, caption
# ---------------------------------------------------------------------------------------------


def _curve(result: SweepResult, task: str, metric: str, subject: str | None = None):
    df = result.aggregates
    sel = df[(df.task == task) & (df.metric == metric)]
    if sel.empty:
        return None
    if subject is None or subject not in set(sel.subject.astype(str)):
        if subject == "mean" and sel.subject.nunique() > 1:
            g = sel.groupby("r_e", as_index=False)["value"].mean()
            return g.r_e.to_numpy(float), g.value.to_numpy(float)
        subject = sorted(sel.subject.astype(str).unique())[0]
    r, v = result.curve(task, metric, subject)
    return (r, v) if r.size else None


def _readout_curves(result: SweepResult):
    return (
        _curve(result, "behavior", behavior_metric(result)),
        _curve(result, "helpfulness", "helpfulness", "mean"),
        _curve(result, "coherence", "coherent", "mean"),
        r_range(result),
    )


def readout_markdown(result: SweepResult | None, fits: Fits, r_e: float) -> str:
    """Measured B, mean P(correct) and coherence at ``r_e`` (linear interpolation on the grid)."""
    if result is None or result.aggregates.empty:
        return "**r_e** — no results loaded"
    return _readout(_readout_curves(result), fits, r_e)


def readout_table(result: SweepResult, fits: Fits, grid: list[float]) -> list[str]:
    """``readout_markdown`` at every slider position (curves selected once)."""
    curves = _readout_curves(result)
    return [_readout(curves, fits, r) for r in grid]


def _readout(curves, fits: Fits, r_e: float) -> str:
    beh, hel, coh, (lo, hi) = curves
    parts = [f"**r_e = {fmt(r_e)}**"]
    if beh is not None:
        b = interpolate_at(*beh, r_e)
        fit = f" (fit {fmt(float(fits.alignment.predict(r_e)))})" if fits.alignment else ""
        parts.append(f"B = **{fmt(b)}**{fit}")
    if hel is not None:
        h = interpolate_at(*hel, r_e)
        fit = f" (fit {fmt(float(fits.helpfulness.predict(r_e)))})" if fits.helpfulness else ""
        parts.append(f"P(correct) = **{fmt(h)}**{fit}")
    if coh is not None:
        c = interpolate_at(*coh, r_e)
        parts.append(f"coherent **{c:.0%}**" if math.isfinite(c) else "coherent n/a")
    if not lo <= r_e <= hi:
        parts.append(f"outside the computed range [{fmt(lo)}, {fmt(hi)}]")
    g = fits.regime
    if g is not None and math.isfinite(g.r_min) and math.isfinite(g.r_max):
        inside = g.r_min <= r_e <= g.r_max
        parts.append(f"{'inside' if inside else 'outside'} the efficient regime [{fmt(g.r_min)}, {fmt(g.r_max)}]")
    return " · ".join(parts)


def b_caption(result: SweepResult | None) -> str:
    """One line saying what B measures in this result."""
    if result is None:
        return ""
    mode = getattr(result.config, "behavior_mode", "") or ""
    generated = mode == "generate" or has_rows(result.aggregates, "behavior", "behavior_proxy")
    if generated:
        return (
            "**B** = P(aligned) − P(misaligned) of the answers the model writes (each answer scored aligned, "
            "misaligned or neither): −1 all misaligned … +1 all aligned. **P(correct)**: helpfulness on MMLU "
            "questions; **coherent**: share of answers that still read as language."
        )
    if mode == "proxy":
        return (
            "**B** here is the sequence proxy: how much more likely the model's aligned openings are than its "
            "misaligned ones (−1 … +1), not scored answers. **P(correct)**: helpfulness on MMLU questions."
        )
    return (
        "**B** here is the next-token proxy: (P+ − P−)/(P+ + P−) over the first tokens of aligned vs misaligned "
        "answer openings (−1 … +1); it reads one token, not the answers the model writes. "
        "**P(correct)**: helpfulness on MMLU questions."
    )


def summary_markdown(result: SweepResult | None, fits: Fits, label: str = "") -> str:
    """Fitted parameters (or why there is no fit), efficient regime (or why there is none), the
    prompting baseline, provenance and the engine's plain-language notes."""
    if result is None:
        return "No results loaded."
    s, c = result.summary or {}, result.config
    lines = [f"#### {label or c.name or 'Sweep'}{'' if result.complete else ' (partial)'}"]
    model = s.get("model") or {}
    layers = s.get("layers")
    lines.append(
        f"Model `{model.get('name', c.model)}` · behaviour `{c.behavior}` · {c.method} vector · "
        f"layers {layer_text(layers) if layers else c.layers} · r_e ∈ [{fmt(c.r_min)}, {fmt(c.r_max)}] "
        f"in {c.r_steps} steps · helpfulness: {len(c.helpfulness_subjects)} MMLU subjects ({c.helpfulness_format})"
    )
    a, h, g = fits.alignment, fits.helpfulness, fits.regime
    if a is not None:
        lines.append(
            f"- **Theorem 1** B(r) = tanh(Δλ·r + artanh B0): Δλ = {fmt(a.delta_lambda)}, "
            f"B0 = {fmt(a.b0)}, R² = {fmt(a.r2)}"
        )
    elif fits.alignment_problem:
        lines.append(f"- **Theorem 1**: no fit ({fits.alignment_problem})")
    if h is not None:
        lines.append(
            f"- **Theorem 2** helpfulness bound: P0 = {fmt(h.p0)}, α = {fmt(h.alpha)} (held fixed), "
            f"λσβ = {fmt(h.lambda_sigma_beta)}, R² = {fmt(h.r2)}"
        )
    elif fits.helpfulness_problem:
        lines.append(f"- **Theorem 2**: no fit ({fits.helpfulness_problem})")
    if g is not None:
        stop = f"; stops before r_e = {fmt(g.stopped_at)}: {g.stop_reason}" if g.stop_reason else ""
        lines.append(
            f"- **Efficient regime** r_e ∈ [{fmt(g.r_min)}, {fmt(g.r_max)}] ({g.basis}); "
            f"recommended r_e = {fmt(g.best_r_e)}{stop}"
        )
    elif fits.no_regime:
        lines.append(f"- **{fits.no_regime[:1].upper()}{fits.no_regime[1:]}**")
    base = baseline_values(result.aggregates)
    if base:
        parts = []
        if "behavior_expectation" in base:
            parts.append(f"B = {fmt(base['behavior_expectation'])}")
        if "helpfulness" in base:
            parts.append(f"P(correct) = {fmt(base['helpfulness'])}")
        if "coherent" in base:
            parts.append(f"coherent {base['coherent']:.0%}")
        lines.append(f"- **Prompting baseline** (asked with a system prompt, no steering): {', '.join(parts)}")
    notes = list(dict.fromkeys(s.get("notes") or []))
    if notes:
        lines.append("\n**Notes**\n" + "\n".join(f"- {n}" for n in notes[:8]))
    t = s.get("timings") or {}
    if t:
        total = t.get("total_s", t.get("served_from_cache_s"))
        lines.append(
            f"\n<sub>computed in {fmt(total)} s{' (from cache)' if result.from_cache else ''}; "
            f"{s.get('n_behavior_prompts', '?')} behaviour prompts, {s.get('n_questions', '?')} questions, "
            f"{s.get('n_contrast_pairs', '?')} contrast pairs</sub>"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Answers precomputed on the grid (result.texts)
# ---------------------------------------------------------------------------------------------

MAX_TABLE_CHARS = 4000  # per answer sent to the browser


def _texts(result: SweepResult | None, task: str = "behavior"):
    texts = getattr(result, "texts", None) if result is not None else None
    if texts is None or getattr(texts, "empty", True):
        return None
    needed = {"r_e", "task", "item", "prompt", "text"}
    if not needed <= set(texts.columns):
        return None
    sel = texts[texts["task"] == task]
    return sel if not sel.empty else None


def answer_prompts(result: SweepResult | None) -> list[tuple[int, str]]:
    """(item, prompt) of every held-out prompt with answers on the grid, in item order."""
    sel = _texts(result)
    if sel is None:
        return []
    first = sel.drop_duplicates("item").sort_values("item")
    out = []
    for item, prompt in zip(first["item"], first["prompt"]):
        try:
            out.append((int(item), str(prompt)))
        except (TypeError, ValueError):
            continue
    return out


def answer_table(result: SweepResult | None, item: int | None) -> dict:
    """The browser's table for one prompt: ``{"mode": "table", "item", "prompt", "r", "text",
    "unsteered", "baseline", "label"}`` (``{"mode": "empty"}`` when there is none)."""
    sel = _texts(result)
    if sel is None or item is None:
        return {"mode": "empty"}
    rows = sel[sel["item"] == item]
    if rows.empty:
        return {"mode": "empty"}
    rows = rows.assign(r_e=rows["r_e"].astype(float)).sort_values("r_e").drop_duplicates("r_e")
    r = [float(x) for x in rows["r_e"]]
    text = [str(t)[:MAX_TABLE_CHARS] for t in rows["text"]]
    k0 = int(np.argmin(np.abs(np.asarray(r))))
    base = _texts(result, "baseline")
    baseline = None
    if base is not None:
        b = base[base["item"] == item]
        if not b.empty:
            baseline = str(b["text"].iloc[0])[:MAX_TABLE_CHARS]
    return {
        "mode": "table",
        "item": int(item),
        "prompt": str(rows["prompt"].iloc[0]),
        "r": r,
        "text": text,
        "unsteered": text[k0] if abs(r[k0]) < 1e-9 else None,
        "baseline": baseline,
        "label": "Steered",
    }


def steered_at(table: dict, r_e: float) -> tuple[str, str]:
    """(answer, label) the browser shows for slider value ``r_e`` (mirrors ``mrepe.steeredAt``)."""
    if table.get("mode") != "table" or not table.get("r"):
        return "", "Steered"
    r = np.asarray(table["r"], dtype=float)
    k = int(np.argmin(np.abs(r - r_e)))
    used = float(r[k])
    near = f" · nearest computed to {label_number(r_e)}" if abs(used - r_e) > 1e-9 * (1 + abs(r_e)) else ""
    return table["text"][k], f"{table.get('label', 'Steered')} (r_e = {label_number(used)}{near})"


def default_item(result: SweepResult | None, r_e: float) -> int | None:
    """The prompt the tab opens on: the one whose answer changes most between r_e = 0 and ``r_e``
    by the sweep's own per-answer scores (ties: the first); the first prompt without scores."""
    prompts = answer_prompts(result)
    if not prompts:
        return None
    items = getattr(result, "items", None)
    try:
        sel = items[(items.task == "behavior") & (items.metric == "behavior_expectation")]
        r = sel.r_e.to_numpy(float)
        grid = np.unique(r)
        at = grid[int(np.argmin(np.abs(grid - r_e)))]
        zero = grid[int(np.argmin(np.abs(grid)))]
        if abs(zero) > 1e-9 or at == zero:
            return prompts[0][0]
        v_at = sel[np.isclose(r, at)].groupby("item")["value"].mean()
        v_0 = sel[np.isclose(r, zero)].groupby("item")["value"].mean()
        gain = (v_at - v_0).dropna()
        known = {i for i, _ in prompts}
        gain = gain[[int(i) in known for i in gain.index]]
        if gain.empty:
            return prompts[0][0]
        best = gain.max()
        return int(min(int(i) for i, g in gain.items() if g >= best - 1e-12))
    except Exception:
        return prompts[0][0]


def changed_share(result: SweepResult | None, r_e: float) -> tuple[int, int] | None:
    """How many held-out prompts get a different score at ``r_e`` than at 0 (and of how many)."""
    items = getattr(result, "items", None)
    try:
        sel = items[(items.task == "behavior") & (items.metric == "behavior_expectation")]
        r = sel.r_e.to_numpy(float)
        grid = np.unique(r)
        at, zero = grid[int(np.argmin(np.abs(grid - r_e)))], grid[int(np.argmin(np.abs(grid)))]
        if abs(zero) > 1e-9:
            return None
        v_at = sel[np.isclose(r, at)].groupby("item")["value"].mean()
        v_0 = sel[np.isclose(r, zero)].groupby("item")["value"].mean()
        both = (v_at - v_0).dropna()
        return int((both.abs() > 1e-9).sum()), int(both.size)
    except Exception:
        return None
