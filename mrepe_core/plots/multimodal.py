"""Figures of the multimodal tab, pure functions of plain data (lists, arrays, row dicts).

Zero-shot label bars, concept membership (eq. 1), CMC before/after (eq. 8), the per-layer
activation-patching effect (eq. 2), span attention mass (eq. 7) and adversarial robustness (eq. 11).
The alpha trade-off curves reuse :mod:`mrepe_core.plots.tradeoff` and :mod:`mrepe_core.plots.tradeoff_chart`
on the sweep frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .curve_style import TEMPLATE

HEIGHT = 340
COLORS = {
    "before": "#9aa5b1",
    "after": "#1f77b4",
    "raw": "#ff7f0e",
    "pos": "#2ca02c",
    "neg": "#d62728",
    "upload": "#000000",
    "tau": "#7f7f7f",
}


class MultimodalPlotError(ValueError):
    """The data cannot be drawn (empty or mismatched lengths)."""


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, **extra) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        height=HEIGHT,
        title=dict(text=title, font=dict(size=14)),
        margin=dict(l=50, r=20, t=50, b=50),
        legend=dict(orientation="h", y=-0.2),
        xaxis_title=x_title,
        yaxis_title=y_title,
        **extra,
    )
    return fig


def _same_length(**arrays) -> None:
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise MultimodalPlotError(f"Mismatched lengths: {lengths}.")
    if any(n == 0 for n in lengths.values()):
        raise MultimodalPlotError("Nothing to plot.")


def zero_shot_bars(
    labels: Sequence[str],
    probs: Sequence[float],
    baseline: Sequence[float] | None = None,
    alpha: float | None = None,
    title: str = "Zero-shot label probabilities",
) -> go.Figure:
    """Horizontal bars of P(label) for one input, with the unintervened (alpha = 0) bars beside them."""
    _same_length(labels=labels, probs=probs, baseline=baseline)
    fig = go.Figure()
    if baseline is not None:
        fig.add_bar(
            y=list(labels),
            x=list(baseline),
            orientation="h",
            name="alpha = 0",
            marker_color=COLORS["before"],
            hovertemplate="%{y}: %{x:.3f}<extra>alpha = 0</extra>",
        )
    name = f"alpha = {alpha:g}" if alpha is not None else "intervened"
    fig.add_bar(
        y=list(labels),
        x=list(probs),
        orientation="h",
        name=name,
        marker_color=COLORS["after"],
        text=[f"{p:.2f}" for p in probs],
        textposition="auto",
        hovertemplate="%{y}: %{x:.3f}<extra>" + name + "</extra>",
    )
    return _layout(fig, title, "probability", "", barmode="group", xaxis_range=[0, 1], uirevision="zero-shot")


def membership_figure(
    sims_pos: Sequence[float],
    sims_neg: Sequence[float],
    tau: float,
    upload_sim: float | None = None,
    concept: str = "c+",
) -> go.Figure:
    """Eq. 1: similarity of every example to the positive prototype, the fitted threshold tau, and
    the upload's similarity (members lie right of tau)."""
    if len(sims_pos) == 0 or len(sims_neg) == 0:
        raise MultimodalPlotError("Membership needs examples of both sides.")
    rng = np.random.default_rng(0)  # vertical jitter only, for legibility
    fig = go.Figure()
    for name, values, color, y in (
        ("S+ examples", sims_pos, COLORS["pos"], 1.0),
        ("S- examples", sims_neg, COLORS["neg"], 0.0),
    ):
        fig.add_scatter(
            x=list(values),
            y=y + rng.uniform(-0.15, 0.15, len(values)),
            mode="markers",
            name=name,
            marker=dict(color=color, size=9, opacity=0.8),
            hovertemplate="sim = %{x:.3f}<extra>" + name + "</extra>",
        )
    fig.add_vline(x=tau, line=dict(color=COLORS["tau"], dash="dash"), annotation_text=f"tau = {tau:.3f}")
    if upload_sim is not None:
        fig.add_scatter(
            x=[upload_sim],
            y=[0.5],
            mode="markers",
            name="upload",
            marker=dict(color=COLORS["upload"], size=14, symbol="star"),
            hovertemplate="upload sim = %{x:.3f}<extra></extra>",
        )
    return _layout(
        fig,
        f"Membership in R_c (eq. 1): cosine to the {concept} prototype",
        "cosine similarity to prototype",
        "",
        yaxis=dict(tickvals=[0, 1], ticktext=["S-", "S+"], range=[-0.5, 1.5]),
    )


def cmc_figure(rows: Sequence[dict], metric: str = "cmc") -> go.Figure:
    """Grouped bars: CMC (eq. 8, or recall@1) per pair and split, for each stage (before raw /
    before untrained phi / after trained phi)."""
    if not rows:
        raise MultimodalPlotError("No alignment results to plot.")
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    palette = {
        s: COLORS["raw"] if "raw" in s else COLORS["before"] if "before" in s else COLORS["after"] for s in stages
    }
    fig = go.Figure()
    for stage in stages:
        sel = [r for r in rows if r["stage"] == stage]
        fig.add_bar(
            x=[f"{r.get('pair', '')} {r['split']} (n={r['n']})" for r in sel],
            y=[r[metric] for r in sel],
            name=stage,
            marker_color=palette[stage],
            text=[f"{r[metric]:.2f}" for r in sel],
            textposition="auto",
        )
    label = "CMC (mean cosine of pairs)" if metric == "cmc" else metric
    return _layout(
        fig,
        f"Cross-modal consistency before / after phi: {label}",
        "",
        label,
        barmode="group",
        yaxis_range=[-1, 1] if metric == "cmc" else [0, 1],
    )


def patching_figure(
    layers: Sequence[int],
    effects: Sequence[float],
    normalized: Sequence[float] | None = None,
    total_effect: float | None = None,
) -> go.Figure:
    """Eq. 2 per layer: effect on the logit difference of patching the positive run into the negative
    run (bars), its share of the total gap (line, right axis)."""
    _same_length(layers=layers, effects=effects, normalized=normalized)
    fig = go.Figure()
    fig.add_bar(
        x=list(layers),
        y=list(effects),
        name="causal effect (logit diff)",
        marker_color=COLORS["after"],
        hovertemplate="layer %{x}<br>CE = %{y:.3f}<extra></extra>",
    )
    if normalized is not None and np.isfinite(np.asarray(normalized, float)).any():
        fig.add_scatter(
            x=list(layers),
            y=list(normalized),
            name="share of total effect",
            yaxis="y2",
            mode="lines+markers",
            line=dict(color=COLORS["raw"]),
            hovertemplate="layer %{x}<br>share = %{y:.2f}<extra></extra>",
        )
    title = "Activation patching (eq. 2): effect per layer"
    if total_effect is not None:
        title += f" - total positive-negative gap {total_effect:.3f}"
    return _layout(
        fig,
        title,
        "decoder layer",
        "CE on log P(aligned)/P(misaligned)",
        yaxis2=dict(overlaying="y", side="right", title="share of total", showgrid=False),
    )


def span_mass_figure(
    layers: Sequence[int], baseline: Sequence[float], intervened: Sequence[float], strength: float
) -> go.Figure:
    """Attention mass of the last position on the marked span, per layer, without and with the bias."""
    _same_length(layers=layers, baseline=baseline, intervened=intervened)
    fig = go.Figure()
    fig.add_scatter(
        x=list(layers), y=list(baseline), name="no bias", mode="lines+markers", line=dict(color=COLORS["before"])
    )
    fig.add_scatter(
        x=list(layers),
        y=list(intervened),
        name=f"bias {strength:+g}",
        mode="lines+markers",
        line=dict(color=COLORS["after"]),
    )
    return _layout(
        fig,
        "Attention on the span (eq. 7), last position, mean over heads",
        "decoder layer",
        "attention mass on span",
        yaxis_range=[0, 1],
    )


def robustness_figure(
    eps: Sequence[float],
    values: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    title: str = "Adversarial robustness (eq. 11)",
    x_title: str = "eps",
) -> go.Figure:
    """AR against the perturbation radius, with Wilson 95% intervals."""
    _same_length(eps=eps, values=values, ci_low=ci_low, ci_high=ci_high)
    v, lo, hi = (np.asarray(a, float) for a in (values, ci_low, ci_high))
    fig = go.Figure()
    fig.add_scatter(
        x=list(eps),
        y=v,
        mode="lines+markers",
        name="AR",
        line=dict(color=COLORS["after"]),
        error_y=dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo),
    )
    return _layout(fig, title, x_title, "share of unchanged predictions", yaxis_range=[0, 1.05])


def loss_figure(losses: Sequence[float]) -> go.Figure:
    """InfoNCE training loss per epoch (eq. 3)."""
    if len(losses) == 0:
        raise MultimodalPlotError("No losses to plot.")
    fig = go.Figure()
    fig.add_scatter(x=list(range(1, len(losses) + 1)), y=list(losses), mode="lines", name="InfoNCE")
    return _layout(fig, "Alignment training loss (eq. 3)", "epoch", "loss")
