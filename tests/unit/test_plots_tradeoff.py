"""Trade-off figures: trace structure, marker placement, chance line, fitted axes, labels that never
overlap, the prompting baseline, coherence, "no fit" in words, errors."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mrepe_core import bounds as bd
from mrepe_core.plots import (
    behavior_figure,
    coherence_figure,
    helpfulness_figure,
    interpolate_at,
    thin_labels,
    tradeoff_figure,
)
from mrepe_core.plots.tradeoff import BASELINE_NAME, HEIGHT, LABEL_AREA_PX, MARKER_LINE_NAME, MARKER_NAME, PlotDataError
from mrepe_core.tradeoff import fit_tradeoff

R = np.linspace(-5.0, 5.0, 11)
SUBJECTS = ["anatomy", "marketing", "virology"]


def make_agg(r=R, subjects=SUBJECTS, with_mean=True, behaviors=("harmless",)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(behaviors):
        b = bd.alignment_bound(r, 0.5 + 0.2 * k, -0.3)
        rows += [
            dict(r_e=x, task="behavior", metric="behavior_expectation", subject=name, value=y, stderr=0.02, n=40)
            for x, y in zip(r, b)
        ]
        rows += [
            dict(r_e=x, task="behavior", metric="covered_mass", subject=name, value=0.9, stderr=0.01, n=40) for x in r
        ]
    per_subject = []
    for s in subjects:
        p = bd.helpfulness_bound(r, rng.uniform(0.5, 0.8), 1.0, 0.5, 4)
        per_subject.append(p)
        rows += [
            dict(
                r_e=x,
                task="helpfulness",
                metric=m,
                subject=s,
                value=y if m == "helpfulness" else float(y > 0.4),
                stderr=0.03,
                n=20,
            )
            for x, y in zip(r, p)
            for m in ("helpfulness", "accuracy")
        ]
    if with_mean:
        mean = np.mean(per_subject, axis=0)
        rows += [
            dict(r_e=x, task="helpfulness", metric="helpfulness", subject="mean", value=y, stderr=0.01, n=len(subjects))
            for x, y in zip(r, mean)
        ]
    return pd.DataFrame(rows)


def curve(agg, task, metric, subject):
    sel = agg[(agg.task == task) & (agg.metric == metric) & (agg.subject == subject)].sort_values("r_e")
    return sel.r_e.to_numpy(), sel.value.to_numpy()


def assert_valid_plotly(fig: go.Figure):
    """Figures are built without validation for speed; full validation here catches any bad property."""
    go.Figure(fig.to_dict())
    json.loads(fig.to_json())


@pytest.fixture(scope="module")
def agg():
    return make_agg()


@pytest.fixture(scope="module")
def fits(agg):
    rb, b = curve(agg, "behavior", "behavior_expectation", "harmless")
    rh, h = curve(agg, "helpfulness", "helpfulness", "mean")
    align, helpful = bd.fit_alignment_bound(rb, b), bd.fit_helpfulness_bound(rh, h)
    return align, helpful, fit_tradeoff(agg).regime


def test_interpolate_at():
    assert interpolate_at([0, 1, 2], [0.0, 1.0, 4.0], 1.5) == pytest.approx(2.5)
    assert interpolate_at([2, 0, 1], [4.0, 0.0, 1.0], 0.5) == pytest.approx(0.5)  # unsorted input
    assert np.isnan(interpolate_at([0, 1], [0.0, 1.0], 3.0))  # no extrapolation
    with pytest.raises(ValueError):
        interpolate_at([], [], 0.0)


def test_behavior_figure(agg, fits):
    align, _, _ = fits
    fig = behavior_figure(agg, align, marker_r_e=1.5)
    names = [t.name for t in fig.data]
    assert names[0] == "measured B"
    assert names[1].startswith("Theorem 1 fit") and "R²=" in names[1] and "Δλ=" in fig.data[1].hovertemplate
    assert names[-2:] == [MARKER_LINE_NAME, MARKER_NAME]  # marker last
    rb, b = curve(agg, "behavior", "behavior_expectation", "harmless")
    np.testing.assert_allclose(fig.data[0].y, b)
    assert list(fig.data[0].error_y.array) == pytest.approx([0.02] * R.size)
    marker = fig.data[-1]
    assert list(marker.x) == [1.5]
    assert marker.y[0] == pytest.approx(np.interp(1.5, rb, b))
    assert list(fig.data[-2].x) == [1.5, 1.5]
    np.testing.assert_allclose(fig.data[1].y, align.predict(fig.data[1].x))
    lo, hi = fig.layout.yaxis.range
    assert -1.05 <= lo < min(b) and max(b) < hi <= 1.05  # fitted to the data, within B's bounds
    assert list(fig.data[-2].y) == [lo, hi]  # the marker line spans the axis
    assert fig.layout.xaxis.title.text == "r_e (steering coefficient)"
    assert fig.layout.yaxis.title.text == "behavior expectation B"
    assert fig.layout.uirevision == "behavior" and fig.layout.height == HEIGHT
    assert fig.layout.template.layout.plot_bgcolor == "white"
    assert_valid_plotly(fig)
    assert len(behavior_figure(agg).data) == 1  # no fit, no marker


def test_behavior_figure_several_behaviors_gets_one_marker_point_each():
    agg = make_agg(behaviors=("harmless", "not_racist"))
    fig = behavior_figure(agg, marker_r_e=0.0)
    assert [t.name for t in fig.data[:2]] == ["measured B (harmless)", "measured B (not_racist)"]
    assert len(fig.data[-1].y) == 2
    assert fig.data[0].line.color != fig.data[1].line.color


def test_helpfulness_figure(agg, fits):
    _, helpful, _ = fits
    fig = helpfulness_figure(agg, helpful, n_choices=4, marker_r_e=-2.5)
    names = [t.name for t in fig.data]
    assert names[: len(SUBJECTS)] == ["3 subjects"] * 3  # one legend entry for the subjects
    assert [t.showlegend for t in fig.data[:3]] == [True, False, False]
    assert all(s in t.hovertemplate for s, t in zip(SUBJECTS, fig.data))
    assert names[len(SUBJECTS)] == "mean"
    assert fig.data[len(SUBJECTS)].line.width > fig.data[0].line.width  # mean bold, subjects thin
    chance = next(t for t in fig.data if t.name.startswith("chance"))
    assert set(chance.y) == {0.25}
    fit_trace = next(t for t in fig.data if t.name.startswith("Theorem 2 fit"))
    assert "R²=" in fit_trace.name and all(k in fit_trace.hovertemplate for k in ("P0=", "α=", "λσβ="))
    assert names[-1] == MARKER_NAME
    rm, m = curve(agg, "helpfulness", "helpfulness", "mean")
    assert fig.data[-1].y[0] == pytest.approx(np.interp(-2.5, rm, m))
    assert fig.layout.yaxis.title.text == "P(correct)"
    assert_valid_plotly(fig)
    assert set(next(t for t in helpfulness_figure(agg, n_choices=5).data if t.name.startswith("chance")).y) == {0.2}
    assert not any(t.name.startswith("chance") for t in helpfulness_figure(agg, n_choices=None).data)


def test_helpfulness_figure_many_subjects_share_one_legend_entry():
    subjects = [f"subject_{k}" for k in range(15)]
    fig = helpfulness_figure(make_agg(subjects=subjects), n_choices=4)
    thin = [t for t in fig.data if t.legendgroup == "subjects"]
    assert len(thin) == 15 and [t.showlegend for t in thin] == [True] + [False] * 14
    assert thin[0].name == "15 subjects (click to show)" and all(
        s in t.hovertemplate for s, t in zip(sorted(subjects), thin)
    )
    assert {t.visible for t in thin} == {"legendonly"}  # hidden until clicked: the mean stays readable
    few = helpfulness_figure(make_agg(), n_choices=4)
    assert {t.visible for t in few.data if t.legendgroup == "subjects"} == {True}
    assert_valid_plotly(fig)


def test_helpfulness_figure_accuracy_and_missing_mean():
    agg = make_agg()
    acc = helpfulness_figure(agg, metric="accuracy")
    # No "mean" rows for accuracy: the equal-weight mean over subjects is computed and named so.
    mean_trace = next(t for t in acc.data if t.name == "mean of subjects")
    expected = agg[(agg.metric == "accuracy")].groupby("r_e").value.mean().sort_index().to_numpy()
    np.testing.assert_allclose(mean_trace.y, expected)
    assert acc.layout.yaxis.title.text == "accuracy"
    assert_valid_plotly(acc)


def test_tradeoff_figure(agg, fits):
    _, _, regime = fits
    fig = tradeoff_figure(agg, regime, marker_r_e=1.0)
    sweep, chance, seg, marker = fig.data
    assert chance.name.startswith("chance") and set(chance.y) == {0.25}
    rb, b = curve(agg, "behavior", "behavior_expectation", "harmless")
    rm, m = curve(agg, "helpfulness", "helpfulness", "mean")
    np.testing.assert_allclose(sweep.x, b)
    np.testing.assert_allclose(sweep.y, m)
    shown = [t for t in sweep.text if t]
    assert len(shown) >= 5 and all(t in [f"{x:g}" for x in R] for t in shown)
    np.testing.assert_allclose(sweep.customdata, R)
    assert seg.name.startswith("efficient regime")
    # The highlighted segment runs from r_min to r_max (interpolated ends).
    assert seg.x[0] == pytest.approx(np.interp(regime.r_min, rb, b))
    assert seg.x[-1] == pytest.approx(np.interp(regime.r_max, rb, b))
    assert marker.name == MARKER_NAME
    assert marker.x[0] == pytest.approx(np.interp(1.0, rb, b)) and marker.y[0] == pytest.approx(np.interp(1.0, rm, m))
    assert fig.layout.xaxis.title.text == "behavior expectation B"
    assert fig.layout.yaxis.title.text == "P(correct)"
    assert_valid_plotly(fig)
    outside = tradeoff_figure(agg, marker_r_e=50.0)
    assert len(outside.data[-1].x) == 0  # no fake point beyond the measured grid


def label_boxes(fig, area=LABEL_AREA_PX, font=10):
    """Pixel boxes of the shown r_e labels as ``thin_labels`` estimates them."""
    t = fig.data[0]
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    boxes = []
    for x, y, text in zip(t.x, t.y, t.text):
        if text:
            px, py = (x - x0) / (x1 - x0) * area[0], (y - y0) / (y1 - y0) * area[1]
            half = len(text) * 0.62 * font / 2
            boxes.append((px - half, px + half, py + 3, py + 3 + 1.25 * font))
    return boxes


def overlapping(boxes) -> list:
    return [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
    ]


def test_tradeoff_labels_thin_out_on_dense_grids():
    r = np.linspace(-10, 10, 41)
    fig = tradeoff_figure(make_agg(r=r))
    labels = list(fig.data[0].text)
    shown = [(x, t) for x, t in zip(r, labels) if t]
    assert 3 <= len(shown) <= 25
    assert all(t == f"{x:g}" for x, t in shown)
    assert "0" in labels and labels[0] == "-10" and labels[-1] == "10"
    assert not overlapping(label_boxes(fig))
    np.testing.assert_allclose(fig.data[0].customdata, r)  # every point still names its r_e on hover


def test_tradeoff_labels_never_overlap_where_points_crowd():
    """The old chart drew "-8", "6.4", "-4.8" on top of each other where B saturates and points
    crowd together; now a label is dropped rather than drawn over another."""
    r = np.round(np.linspace(-8, 8, 21), 6)
    agg = make_agg(r=r)
    # Saturating B: the last eight points sit within 0.02 of each other.
    sel = (agg.task == "behavior") & (agg.metric == "behavior_expectation")
    agg.loc[sel, "value"] = np.tanh(0.6 * agg.loc[sel, "r_e"].to_numpy())
    fig = tradeoff_figure(agg)
    assert not overlapping(label_boxes(fig))
    kept = [t for t in fig.data[0].text if t]
    assert "0" in kept and "-8" in kept and len(kept) < 21


def test_thin_labels_keeps_the_first_in_order_and_drops_overlaps():
    x = [0.0, 0.001, 0.5, 1.0]
    y = [0.0, 0.0, 0.5, 1.0]
    kept = thin_labels(x, y, ["a", "b", "c", "d"], (0, 1), (0, 1), order=[1, 0, 2, 3], n_free=4)
    assert kept == ["", "b", "c", "d"]
    # Past the first n_free, a label must also miss the other points and stay inside the plot.
    kept = thin_labels([0.5, 0.5], [0.5, 0.53], ["low", "high"], (0, 1), (0, 1), order=[1, 0], n_free=1)
    assert kept == ["", "high"]
    assert thin_labels([0.0], [float("nan")], ["a"], (0, 1), (0, 1)) == [""]


def test_axes_are_fitted_to_the_data_with_the_chance_line_in_view(agg, fits):
    """Helpfulness between 0.25 and 0.30 must not sit as a flat line on a 0-1 axis."""
    flat = make_agg()
    sel = flat.task == "helpfulness"
    flat.loc[sel, "value"] = 0.25 + 0.05 * (flat.loc[sel, "value"] - 0.2) / 0.6
    fig = helpfulness_figure(flat, n_choices=4)
    lo, hi = fig.layout.yaxis.range
    assert lo <= 0.25 <= hi and hi - lo < 0.2
    trade = tradeoff_figure(flat)
    lo, hi = trade.layout.yaxis.range
    assert lo <= 0.25 <= hi and hi - lo < 0.2
    bx = trade.layout.xaxis.range
    b = trade.data[0].x
    assert bx[0] < min(b) and max(b) < bx[1]


def test_bad_input_raises_clear_errors(agg):
    empty = pd.DataFrame(columns=["r_e", "task", "metric", "subject", "value", "stderr", "n"])
    for build in (behavior_figure, helpfulness_figure, tradeoff_figure):
        with pytest.raises(ValueError, match="empty"):
            build(empty)
    with pytest.raises(PlotDataError, match="lacks columns"):
        behavior_figure(pd.DataFrame({"r_e": [0.0]}))
    with pytest.raises(PlotDataError, match="DataFrame"):
        behavior_figure([1, 2, 3])
    with pytest.raises(PlotDataError, match="No rows"):
        behavior_figure(agg[agg.task == "helpfulness"])
    with pytest.raises(PlotDataError, match="behavior="):
        tradeoff_figure(make_agg(behaviors=("a", "b")))
    assert len(tradeoff_figure(make_agg(behaviors=("a", "b")), behavior="b").data) == 2  # sweep, chance
    with pytest.raises(PlotDataError, match="marker_r_e"):
        behavior_figure(agg, marker_r_e=float("nan"))
    with pytest.raises(PlotDataError, match="n_choices"):
        helpfulness_figure(agg, n_choices=1)


@pytest.mark.parametrize("which", ["behavior", "helpfulness", "tradeoff"])
def test_marker_table_equals_the_marker_built_at_each_position(agg, fits, which):
    """The browser moves markers by looking up layout.meta.marker_frames: every entry must be the
    marker the figure would draw at that r_e (including an empty marker outside the grid)."""
    from mrepe_core.plots import marker_frames

    align, helpful, regime = fits
    build = {
        "behavior": lambda r, g=None: behavior_figure(agg, align, marker_r_e=r, marker_grid=g),
        "helpfulness": lambda r, g=None: helpfulness_figure(agg, helpful, 4, marker_r_e=r, marker_grid=g),
        "tradeoff": lambda r, g=None: tradeoff_figure(agg, regime, marker_r_e=r, marker_grid=g),
    }[which]
    grid = [-60.0, -2.5, 0.0, 1.3, 4.0]
    fig = build(0.0, grid)
    table = marker_frames(fig)
    assert table["r"] == grid and len(table["frames"]) == len(grid)
    assert table["traces"][-1] == len(fig.data) - 1 and fig.data[table["traces"][0]].name in (
        MARKER_LINE_NAME,
        MARKER_NAME,
    )
    for r, frame in zip(grid, table["frames"]):
        at_r = build(r)
        for idx, entry in zip(table["traces"], frame):
            assert list(entry["x"]) == pytest.approx(list(at_r.data[idx].x), nan_ok=True)
            assert list(entry["y"]) == pytest.approx(list(at_r.data[idx].y), nan_ok=True)
    assert marker_frames(build(0.0)) is None  # no grid, no table
    with pytest.raises(ValueError, match="marker_grid"):
        build(0.0, [float("nan")])


def full_agg():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tradeoff_synthetic import synthetic_result

    return synthetic_result().aggregates


def test_baseline_is_a_reference_point_on_every_chart():
    agg = full_agg()
    base = agg[agg.task == "baseline"]
    figs = {
        "behavior": behavior_figure(agg, marker_r_e=1.0),
        "helpfulness": helpfulness_figure(agg, marker_r_e=1.0),
        "coherence": coherence_figure(agg, marker_r_e=1.0),
        "tradeoff": tradeoff_figure(agg, marker_r_e=1.0),
    }
    for name, fig in figs.items():
        points = [t for t in fig.data if t.name == BASELINE_NAME]
        assert len(points) == 1, name
        lo, hi = fig.layout.yaxis.range
        assert lo <= points[0].y[0] <= hi, name  # in view
        assert fig.data[-1].name == MARKER_NAME, name  # the marker stays last
        assert_valid_plotly(fig)
    b0 = base[base.metric == "behavior_expectation"].value.mean()
    assert figs["behavior"].data[[t.name for t in figs["behavior"].data].index(BASELINE_NAME)].y[0] == pytest.approx(b0)
    assert list(next(t for t in figs["behavior"].data if t.name == BASELINE_NAME).x) == [0.0]
    trade_base = next(t for t in figs["tradeoff"].data if t.name == BASELINE_NAME)
    assert trade_base.x[0] == pytest.approx(b0)


def test_coherence_figure_and_its_marker_table():
    from mrepe_core.plots import marker_frames

    agg = full_agg()
    fig = coherence_figure(agg, marker_r_e=8.0, marker_grid=[-8.0, 0.0, 8.0])
    measured = fig.data[0]
    assert measured.name == "coherent answers" and min(measured.y) < 0.6 and max(measured.y) == 1.0
    floor = next(t for t in fig.data if t.name.startswith("floor"))
    assert set(floor.y) == {0.5}
    table = marker_frames(fig)
    assert table["r"] == [-8.0, 0.0, 8.0] and table["traces"][-1] == len(fig.data) - 1
    assert table["frames"][-1][-1]["y"] == [pytest.approx(measured.y[-1])]
    with pytest.raises(PlotDataError, match="No rows"):
        coherence_figure(make_agg())  # older results measured no coherence


def test_proxy_is_drawn_beside_the_generated_b():
    fig = behavior_figure(full_agg())
    names = [t.name for t in fig.data]
    assert names[0] == "measured B" and "sequence proxy" in names


def test_no_fit_and_no_regime_are_words_not_numbers(agg):
    """A fit that must not be shown as numbers is a legend entry in words (it never covers the data)."""
    fig = behavior_figure(agg, None, no_fit="R² = 0.28 < 0.5: the bound's shape does not describe the points")
    words = [t for t in fig.data if t.name.startswith("Theorem 1: no fit")]
    assert len(words) == 1 and list(words[0].x) == [None] and words[0].showlegend
    assert not any(t.name.startswith("Theorem 1 fit") for t in fig.data)
    fig = helpfulness_figure(agg, None, no_fit="not fitted")
    assert any(t.name == "Theorem 2: no fit (not fitted)" for t in fig.data)
    fig = tradeoff_figure(agg, None, no_regime="no efficient regime: B does not change with r_e.")
    assert any(t.name.startswith("No efficient regime: B does not change") for t in fig.data)
    assert not any(t.name.startswith("efficient regime") for t in fig.data)
    assert fig.data[-1].name == MARKER_NAME or fig.data[-1].name.startswith("No efficient")
    long = behavior_figure(agg, None, no_fit="x" * 500)
    assert max(len(t.name) for t in long.data) <= 70
    assert_valid_plotly(long)


def test_titles_name_model_behaviour_and_layers(agg):
    fig = tradeoff_figure(agg, title="Trade-off — smollm2 · behaviour harmless · layers 10–17")
    assert "layers 10–17" in fig.layout.title.text and fig.layout.margin.t > 40
    assert not behavior_figure(agg).layout.title.text
