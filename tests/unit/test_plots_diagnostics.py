"""Assumption-check and layer-scan figures, from tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mrepe_core.plots import diagnostics as dp
from mrepe_core.plots import fit_comparison as fc
from mrepe_core.plots import layer_scan as ls

R = [-4.0, -2.0, -1.0, 1.0, 2.0, 4.0]


def planted_rows(lam=3.0, lam_u=30.0, lam_sigma=0.5, delta=0.25) -> pd.DataFrame:
    rows = []
    for r in R:
        rows += [
            dict(r_e=r, check="final_shift", statistic="norm_delta_r", value=lam * abs(r)),
            dict(r_e=r, check="final_shift", statistic="norm_U_delta_r", value=lam_u * abs(r)),
            dict(r_e=r, check="logit_noise", statistic="std", value=lam_sigma * abs(r)),
            dict(r_e=r, check="logit_noise", statistic="mean", value=0.0),
            dict(r_e=r, check="separation", statistic="mean_good_minus_bad", value=delta * r),
        ]
    return pd.DataFrame(rows)


ESTIMATES = {
    "lambda": 3.0,
    "lambda_r2": 1.0,
    "lambda_U": 30.0,
    "lambda_sigma": 0.5,
    "lambda_sigma_r2": 1.0,
    "lambda_sigma_beta_estimate": 0.4,
    "delta_lambda_estimate": 0.25,
    "delta_lambda_r2": 1.0,
    "linear_range": 2.0,
    "separation_tokens": {"good": ["I"], "bad": ["Sure"]},
    "comparison_with_fits": {
        "delta_lambda": {"fit": 1.0, "estimate": 0.25, "ratio_fit_to_estimate": 4.0},
        "lambda_sigma_beta": {"fit": 0.6, "estimate": 0.4, "ratio_fit_to_estimate": 1.5},
    },
}


def trace(fig: go.Figure, name: str):
    found = [t for t in fig.data if t.name == name]
    assert found, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return found[0]


def line_value(t, x: float) -> float:
    xs = np.array([np.nan if v is None else v for v in t.x], dtype=float)
    ys = np.array([np.nan if v is None else v for v in t.y], dtype=float)
    k = int(np.nanargmin(np.abs(xs - x)))
    return float(ys[k])


def test_final_shift_draws_both_norms_and_the_lambda_lines():
    fig = dp.final_shift_figure(planted_rows(), ESTIMATES)
    measured = trace(fig, "|δr| measured")
    assert list(measured.x) == R and list(measured.y) == [3.0 * abs(r) for r in R]
    fit = trace(fig, "λ|r_e|, λ = 3")
    extrapolated = trace(fig, "λ|r_e|, λ = 3 (extrapolated)")
    # Solid within the fitted range, dotted beyond, both on the line 3|r|.
    assert line_value(fit, -2.0) == pytest.approx(6.0, rel=0.05) and fit.line.dash == "solid"
    assert line_value(extrapolated, 4.0) == pytest.approx(12.0, rel=0.02) and extrapolated.line.dash == "dot"
    assert line_value(fit, 0.0) == pytest.approx(0.0, abs=1e-9)
    # |U·δr| in its own panel below (it is nearly proportional to |δr|, so one axis each).
    assert trace(fig, "|U·δr| measured (logit change)").yaxis == "y2"
    assert fig.layout.yaxis2.domain[1] < fig.layout.yaxis.domain[0]
    assert line_value(trace(fig, "λ_U|r_e|, λ_U = 30"), 1.0) == pytest.approx(30.0, rel=0.05)
    assert "λ = 3" in fig.layout.title.text


def test_noise_and_separation_figures_carry_their_estimates():
    noise = dp.logit_noise_figure(planted_rows(), ESTIMATES)
    assert list(trace(noise, "std of the logit noise").y) == [0.5 * abs(r) for r in R]
    assert line_value(trace(noise, "λσ|r_e|, λσ = 0.5"), 1.0) == pytest.approx(0.5, rel=0.05)
    assert "λσβ ≈ 0.8·λσ = 0.4" in noise.layout.title.text
    sep = dp.separation_figure(planted_rows(), ESTIMATES)
    line = trace(sep, "Δλ·r_e, Δλ = 0.25")
    assert line_value(line, -2.0) == pytest.approx(-0.5, rel=0.05)  # signed, not |r|
    assert "'I'" in sep.layout.title.text and "'Sure'" in sep.layout.title.text


def test_missing_checks_raise_clear_errors():
    rows = planted_rows()
    with pytest.raises(dp.DiagnosticsPlotError, match="No separation rows"):
        dp.separation_figure(rows[rows.check != "separation"], ESTIMATES)
    with pytest.raises(dp.DiagnosticsPlotError, match="lacks columns"):
        dp.final_shift_figure(rows.drop(columns="statistic"))
    with pytest.raises(dp.DiagnosticsPlotError, match="DataFrame"):
        dp.logit_noise_figure({"r_e": [1]})
    with pytest.raises(dp.DiagnosticsPlotError, match="n_diagnostics"):
        fc.comparison_table(None)
    # Without estimates the measured points still draw, with no fitted line.
    bare = dp.final_shift_figure(rows)
    assert [t.name for t in bare.data] == ["|δr| measured", "|U·δr| measured (logit change)"]


def test_histogram_is_a_density_with_the_normal_curve_and_the_test():
    rng = np.random.default_rng(0)
    normal = rng.normal(1.0, 2.0, 500)
    fig = dp.noise_histogram_figure(normal, 3.0)
    bars = fig.data[0]
    assert bars.type == "bar"
    assert float(np.sum(np.asarray(bars.y) * np.asarray(bars.width))) == pytest.approx(1.0, rel=1e-6)
    curve = fig.data[1]
    assert curve.name.startswith("normal (μ = 0.9") or curve.name.startswith("normal (μ = 1")
    assert "no evidence against" in fig.layout.title.text
    skewed = dp.noise_histogram_figure(rng.exponential(1.0, 500), 3.0)
    assert "evidence against normality" in skewed.layout.title.text and "no evidence" not in skewed.layout.title.text
    small = dp.noise_normality([0.1, -0.2, 0.3, 0.05])
    assert small["dagostino_pearson_p"] is None and small["n"] == 4
    with pytest.raises(dp.DiagnosticsPlotError, match="at least 3"):
        dp.noise_histogram_figure([1.0, float("nan")], 1.0)


def test_comparison_puts_estimates_beside_the_fits():
    table = fc.comparison_table(ESTIMATES)
    assert list(table.columns) == fc.COMPARISON_COLUMNS
    row = table.set_index("parameter").loc["Δλ (alignment)"]
    assert row["direct estimate"] == 0.25 and row["bound fit"] == 1.0 and row["fit / estimate"] == 4.0
    assert pd.isna(table.set_index("parameter").loc["λ", "bound fit"])
    fig = fc.comparison_figure(ESTIMATES)
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert list(fig.data[0].y) == [0.25, 0.4] and list(fig.data[1].y) == [1.0, 0.6]
    assert "fit/estimate = 4" in fig.layout.title.text


def test_layer_map_has_one_cell_per_window_and_coefficient():
    rows = []
    for start in (0, 2, 4):
        for r in (-2.0, 0.0, 2.0):
            rows.append(
                dict(
                    layer_start=start,
                    layer_stop=start + 2,
                    r_e=r,
                    metric="behavior_expectation",
                    value=float(np.tanh(r * (start + 1))),
                )
            )
            rows.append(
                dict(layer_start=start, layer_stop=start + 2, r_e=r, metric="helpfulness", value=0.5 - 0.05 * abs(r))
            )
    df = pd.DataFrame(rows)
    fig = ls.layer_map_figure(df, "behavior_expectation")
    assert len(fig.layout.shapes) == 9
    assert list(fig.layout.yaxis.ticktext) == ["0–1", "2–3", "4–5"]
    hover = fig.data[0]
    assert hover.marker.showscale and (hover.marker.cmin, hover.marker.cmax) == (-1.0, 1.0)
    # Cells tile the r_e axis without gaps: each cell ends where the next begins.
    row0 = sorted((s.x0, s.x1) for s in fig.layout.shapes if s.y0 == -0.5)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(row0, row0[1:]))
    # The most aligned cell gets the top of the diverging scale, the most misaligned its bottom.
    colour_of = {(s.y0, s.x0): s.fillcolor for s in fig.layout.shapes}
    assert colour_of[(1.5, row0[-1][0])] != colour_of[(1.5, row0[0][0])]
    helpful = ls.layer_map_figure(df, "helpfulness")
    assert helpful.data[0].marker.cmax == pytest.approx(0.5) and helpful.data[0].marker.cmin == pytest.approx(0.4)
    with pytest.raises(dp.DiagnosticsPlotError, match="no 'accuracy'"):
        ls.layer_map_figure(df, "accuracy")
