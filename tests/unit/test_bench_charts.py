"""bench/dashboard_bench.py (and the browser tests built on its helpers) wait for every chart of the
Trade-off tab, not a subset."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import dashboard_bench as bench  # noqa: E402

from mrepe_ui.tradeoff_view import CHART_IDS  # noqa: E402


def test_the_dashboard_benchmark_times_every_trade_off_chart():
    assert bench.CHART_IDS == CHART_IDS
    for chart in CHART_IDS:
        assert repr(chart) in bench.charts_rendered_js()
        assert repr(chart) in bench._ARM_MEASUREMENT_JS
