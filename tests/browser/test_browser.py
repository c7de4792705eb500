"""The dashboard in a real browser: Playwright driving Debian's chromium against the app in-process.

Measures what the issue's targets name (page load -> preset charts, slider release -> charts) with
the same helpers as ``bench/dashboard_bench.py``, and writes them with a screenshot to the test's
output folder. The asserted bounds are loose sanity limits (a shared CI machine is noisy); the
benchmark script reports the numbers to compare with the targets.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import dashboard_bench as bench  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api")
PlaywrightTimeoutError = sync_api.TimeoutError


@contextlib.contextmanager
def served_app():
    import app

    demo = app.build_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app_url():
    with served_app() as url:
        yield url


@pytest.fixture
def own_app_url():
    """An app of the test's own: its queue starts empty, whatever earlier tests left running."""
    with served_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(bench.CHROMIUM).is_file():
        pytest.fail(f"{bench.CHROMIUM} is missing: install Debian's chromium (make browser).")
    with sync_api.sync_playwright() as pw:
        b = bench.launch_browser(pw)
        yield b
        b.close()


def chart_marker_x(page, chart_id: str) -> float:
    return page.evaluate(f"() => document.querySelector('#{chart_id} .js-plotly-plot').data.at(-1).x[0]")


def painted_marker_x(page, chart_id: str) -> float:
    """x (in data units) of the marker point as drawn in the chart's SVG."""
    return page.evaluate(
        """(id) => {
      const gd = document.querySelector('#' + id + ' .js-plotly-plot');
      const idx = gd.layout.meta.marker_frames.traces.at(-1);
      let x = null;
      gd.querySelectorAll('.scatterlayer .trace').forEach((g) => {
        const cd = g.__data__ && g.__data__[0];
        if (cd && cd.trace && cd.trace.index === idx) {
          const t = g.querySelector('path.point').getAttribute('transform');
          x = gd._fullLayout.xaxis.p2c(parseFloat(t.match(/translate\\(([-0-9.e]+)/)[1]));
        }
      });
      return x;
    }""",
        chart_id,
    )


def server_threads() -> str:
    """Where every thread of this process (the in-process app's included) is, innermost last."""
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame)[-4:])
        for ident, frame in sys._current_frames().items()
    )


def load_model_in_form(page, path: str, expected: str, tmp_path: Path) -> None:
    """Type a model into the experiment form and wait for its model info, as a person would: Enter,
    then leaving the field, then reloading the page and trying again.

    In three clean-clone CI runs (2026-11-22) the info never came after Enter or Tab, while most
    runs show it within a second; the cause is not known. On failure the message carries the
    Gradio requests the page sent and every server thread's stack, to find it next time.
    """
    sent: list[str] = []
    page.on(
        "request",
        lambda r: (
            sent.append(f"{r.method} {r.url.split('/gradio_api/')[-1][:40]} {(r.post_data or '')[:120]}")
            if "/gradio_api/" in r.url
            else None
        ),
    )
    info = page.locator("#model-info").get_by_text(expected)
    for attempt, key in enumerate(("Enter", "Tab", "Enter")):
        if attempt == 2:
            page.reload()
            page.wait_for_function(bench.charts_rendered_js(), timeout=30000)
        if attempt != 1:
            page.locator("#experiment").get_by_text("Build an experiment").first.click()
            page.locator("#model-input textarea, #model-input input").first.fill(path)
        page.locator("#model-input textarea, #model-input input").first.press(key)
        try:
            info.wait_for(timeout=45000)
            return
        except PlaywrightTimeoutError:
            continue
    threads = server_threads()
    page.screenshot(path=str(tmp_path / "model-info-timeout.png"), full_page=True)
    (tmp_path / "server-threads.txt").write_text(threads)
    pytest.fail(
        f"no model info after Enter, Tab and a reload; #model-info shows "
        f"{page.locator('#model-info').inner_text()!r}; requests: {sent[-12:]!r}; "
        f"screenshot and thread stacks in {tmp_path}:\n{threads[-6000:]}"
    )


def test_preset_charts_slider_and_bad_upload(app_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    load_s = bench.measure_page_load(page, app_url)
    for chart in bench.CHART_IDS:
        assert page.locator(f"#{chart} .js-plotly-plot .trace").count() >= 2

    # Charts only here: an empty prompt skips the regeneration (covered by the next test).
    page.locator("#user-prompt textarea").fill("")
    times, readouts = bench.measure_slider(page, moves=10)
    value = float(page.locator("#re-slider input[type=range]").input_value())
    # Painted where the slider is as soon as the measurement saw it (the in-place SVG move)...
    for chart in ("behavior-plot", "helpfulness-plot"):
        assert painted_marker_x(page, chart) == pytest.approx(value, abs=0.05)
    # ...and plotly's own state follows once it has redrawn.
    page.wait_for_function(
        "(v) => ['behavior-plot', 'helpfulness-plot'].every((id) => document.querySelector("
        "'#' + id + ' .js-plotly-plot').data.at(-1).x[0] === v)",
        arg=value,
        timeout=5000,
    )
    assert f"r_e = {value:.3g}" in readouts[-1] and "B = " in readouts[-1]
    # The browser moved markers and readout from the figures' tables; the server's confirmation of
    # the same release, arriving later, must leave them there (not redraw an older position).
    page.wait_for_timeout(1500)
    for chart in ("behavior-plot", "helpfulness-plot"):
        assert chart_marker_x(page, chart) == pytest.approx(value)
        assert painted_marker_x(page, chart) == pytest.approx(value, abs=0.05)
    assert f"r_e = {value:.3g}" in page.locator("#re-readout").inner_text()
    assert len(set(readouts)) >= 8

    bad = tmp_path / "malformed.csv"
    bad.write_text(bench.MALFORMED_CSV)
    toast = bench.upload_malformed(page, bad)
    assert "Row 2" in toast and "positive" in toast
    assert page.locator("#re-readout").inner_text().startswith("r_e")  # still serving

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    metrics = {
        "page_load_charts_s": round(load_s, 3),
        "slider_ms": [round(t, 1) for t in times],
        "slider_ms_median": round(statistics.median(times), 1),
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nbrowser metrics: {metrics} (screenshot: {tmp_path / 'dashboard.png'})")
    assert not errors, errors
    # Sanity bounds, 5-10x the targets (3 s, 150 ms): catch a regression such as the full plotly bundle.
    assert load_s < 30 and statistics.median(times) < 1500
    page.close()


def test_sweep_in_browser_then_slider_regenerates(own_app_url, browser, tiny_model_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(own_app_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=30000)
    load_model_in_form(page, str(tiny_model_dir), "4 decoder layers", tmp_path)
    for elem_id, value in (("first-layer", 0), ("last-layer", 3)):
        box = page.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")
    for elem_id, value in (
        ("r-min", -2),
        ("r-max", 2),
        ("r-step", 1),
        ("n-pairs", 6),
        ("n-eval", 2),
        ("n-questions", 2),
    ):
        page.locator(f"#{elem_id} input").fill(str(value))
    page.locator("#run-sweep").click()
    page.locator("#sweep-status").get_by_text("Done").wait_for(timeout=120000)
    xs = page.evaluate("() => Array.from(document.querySelector('#behavior-plot .js-plotly-plot').data[0].x)")
    assert xs == [-2, -1, 0, 1, 2]

    page.locator("#user-prompt textarea").fill("Tell me about rivers.")
    bench.drag_slider(page, 0.9)
    steered = page.locator("#steered-text textarea")
    page.wait_for_function("() => document.querySelector('#steered-text textarea').value.length > 0", timeout=60000)
    assert page.locator("#unsteered-text textarea").input_value()
    assert steered.input_value()
    page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)
    page.close()


def test_chart_png_export_through_chromium():
    """kaleido renders the charts with the system chromium: real PNGs, not placeholders."""
    from mrepe_ui import tradeoff_tab as tt

    reason = tt._png_available()
    assert reason is None, f"PNG export unavailable: {reason}"
    name = next(iter(tt.available_presets()))
    session = tt.open_preset(name, None)
    files = [Path(f) for f in tt.export_charts(session)]
    pngs = [f for f in files if f.suffix == ".png"]
    assert [p.stem for p in pngs] == ["behavior", "helpfulness", "tradeoff"]
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
