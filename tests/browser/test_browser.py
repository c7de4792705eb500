"""The dashboard in a real browser: Playwright driving Debian's chromium against the app in-process.

Measures what the issue's targets name (page load -> preset charts, slider release -> charts) with
the same helpers as ``bench/dashboard_bench.py``, and writes them with a screenshot to the test's
output folder. The asserted bounds are loose sanity limits (a shared CI machine is noisy); the
benchmark script reports the numbers to compare with the targets.

The first screen is checked at 1440x900 on a synthetic preset with the full result schema
(answers on the r_e grid, coherence, the prompting baseline): slider, readout and both answers in
view without scrolling, the steered answer following the slider with no model event sent, and
screenshots of the whole page (``MREPE_SCREENSHOTS=<folder>`` keeps them) to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
def served_app(presets: Path | None = None):
    import app

    before = os.environ.get("MREPE_PRESETS_DIR")
    if presets is not None:
        os.environ["MREPE_PRESETS_DIR"] = str(presets)
    try:
        demo = app.build_demo()
    finally:
        if presets is not None:
            if before is None:
                os.environ.pop("MREPE_PRESETS_DIR", None)
            else:
                os.environ["MREPE_PRESETS_DIR"] = before
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
        if chart == "coherence-plot" and not page.locator(f"#{chart} .js-plotly-plot .trace").count():
            # A preset stored before coherence was measured: the chart says so instead.
            assert "not measured" in page.locator(f"#{chart} .annotation-text").text_content()
            continue
        assert page.locator(f"#{chart} .js-plotly-plot .trace").count() >= 2

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

    # The preset box no longer names a preset; the description says what is on screen.
    assert page.locator("#preset-choice input").input_value() == ""
    assert "Your sweep" in page.locator("#preset-info").inner_text()

    # Your own prompt: Generate runs the model; then releasing the slider generates again there.
    page.locator("#user-prompt textarea, #user-prompt input").first.fill("Tell me about rivers.")
    page.locator("#generate").click()
    page.wait_for_function("() => document.querySelector('#steered-text textarea').value.length > 0", timeout=60000)
    # The browser learns that the answers on screen were generated (the slider then asks the model
    # again) from the event after Generate: wait for it, as a person's drag would come later.
    page.wait_for_function("() => window.mrepe.answers.mode === 'generated'", timeout=30000)
    assert page.locator("#unsteered-text textarea").input_value()
    label0 = page.locator("#steered-text label").inner_text()
    bench.drag_slider(page, 0.9)
    value = float(page.locator("#re-slider input[type=range]").input_value())
    page.wait_for_function(
        "(v) => document.querySelector('#steered-text label').innerText.includes('(r_e = ' + v + ')')",
        arg=f"{value:g}",
        timeout=60000,
    )
    assert page.locator("#steered-text label").inner_text() != label0
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
    assert [p.stem for p in pngs] == ["behavior", "helpfulness", "coherence", "tradeoff"]
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# ---------------------------------------------------------------------------------------------
# The first screen at 1440x900 (synthetic preset with answers, coherence and the baseline)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_presets(tmp_path_factory, tiny_model_dir):
    sys.path.insert(0, str(ROOT / "tests"))
    from tradeoff_synthetic import synthetic_result, write_preset

    d = tmp_path_factory.mktemp("browser-presets")
    write_preset(d, synthetic_result(model=str(tiny_model_dir), n_prompts=8, name="demo"), "demo")
    return d


@pytest.fixture(scope="module")
def demo_url(demo_presets):
    with served_app(demo_presets) as url:
        yield url


def shots_dir(tmp_path: Path) -> Path:
    keep = os.environ.get("MREPE_SCREENSHOTS")
    out = Path(keep) if keep else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def open_preset(page, name: str) -> None:
    page.locator("#preset-choice input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function(
        "(n) => document.querySelector('#fit-summary').innerText.includes(n)", arg=name, timeout=30000
    )


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900 and box["width"] > 0


def event_ids(page) -> dict[str, int]:
    """fn_index of the page's named events, from its config."""
    deps = page.evaluate("() => window.gradio_config.dependencies.map((d) => [d.id, d.api_name])")
    return {name: i for i, name in deps if name}


def test_first_screen_shows_the_claim(demo_url, browser, tmp_path):
    """1440x900, no scrolling: the slider, its readout, what B measures and the unsteered and steered
    answers, the steered one labelled with the r_e it was computed at (the recommended one)."""
    out = shots_dir(tmp_path)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    page.wait_for_function("() => document.querySelector('#steered-text textarea').value.length > 0", timeout=30000)
    assert page.evaluate("() => window.scrollY") == 0
    for selector in ("#re-slider input[type=range]", "#re-readout", "#b-caption", "#unsteered-text textarea",
                     "#steered-text textarea", "#prompt-picker", "#generate"):  # fmt: skip
        assert in_view(page, selector), f"{selector} is not on the first screen"
    caption = page.locator("#b-caption").inner_text()
    assert "B = P(aligned) − P(misaligned) of the answers the model writes" in caption
    value = float(page.locator("#re-slider input[type=range]").input_value())
    label = page.locator("#steered-text label").inner_text()
    assert f"(r_e = {value:g})" in label, (label, value)  # opens at the recommended r_e, answer from there
    assert (
        page.locator("#steered-text textarea").input_value() != page.locator("#unsteered-text textarea").input_value()
    )
    assert f"r_e = {value:.3g}" in page.locator("#re-readout").inner_text()
    page.screenshot(path=str(out / "first-screen-1440x900.png"))
    page.screenshot(path=str(out / "full-page-demo.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_steered_answer_follows_the_slider_without_the_model(demo_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(demo_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    page.wait_for_function("() => document.querySelector('#steered-text textarea').value.length > 0", timeout=30000)
    ids = event_ids(page)
    model_events = {ids[n] for n in ("generate", "run_sweep")}
    sent: list[dict] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if "/gradio_api/" in r.url and r.method == "POST" and r.post_data
        else None,
    )  # fmt: skip
    before = page.locator("#steered-text textarea").input_value()
    texts = set()
    for fraction in (0.05, 0.3, 0.95, 0.5):
        bench.drag_slider(page, fraction)
        value = float(page.locator("#re-slider input[type=range]").input_value())
        # At once, from the browser's table: the text and its label change in the same frame.
        page.wait_for_function(
            "(v) => document.querySelector('#steered-text label').innerText.includes(v)",
            arg=f"{value:g}" if abs(value - round(value / 0.8) * 0.8) < 1e-6 else "nearest computed",
            timeout=2000,
        )
        texts.add(page.locator("#steered-text textarea").input_value())
    assert len(texts | {before}) >= 3  # compliant, refusing, broken: the answers on the grid
    page.wait_for_timeout(1000)
    fired = {body.get("fn_index") for body in sent}
    assert not fired & model_events, f"model events were sent: {sent}"
    assert not any("queue/join" in json.dumps(b) for b in sent)
    page.close()


def test_a_typed_coefficient_outside_the_range_is_clamped_everywhere(demo_url, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(demo_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    box = page.locator("#re-slider input[type=number]")
    box.fill("20")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('#re-readout').innerText.startsWith('r_e = 8')", timeout=5000)
    assert box.input_value() == "8"
    assert page.locator("#re-slider input[type=range]").input_value() == "8"
    assert "(r_e = 8)" in page.locator("#steered-text label").inner_text()
    page.wait_for_timeout(1500)  # the server's confirmation agrees
    assert page.locator("#re-readout").inner_text().startswith("r_e = 8")
    page.close()


def test_picking_another_prompt_shows_its_answers(demo_url, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(demo_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    page.wait_for_function("() => document.querySelector('#steered-text textarea').value.length > 0", timeout=30000)
    page.locator("#prompt-picker input").click()
    page.get_by_role("option", name=re.compile(r"^1\. ")).click()
    page.wait_for_function(
        "() => document.querySelector('#unsteered-text textarea').value.includes('Step 1')", timeout=10000
    )
    bench.drag_slider(page, 1.0)
    page.wait_for_function(
        "() => document.querySelector('#steered-text textarea').value.includes('sorry sorry')", timeout=5000
    )
    page.close()


def test_charts_are_readable(demo_url, app_url, browser, tmp_path):
    """Screenshots of each chart (look at them): fitted axes, baseline stars, no overlapping labels."""
    out = shots_dir(tmp_path)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(demo_url)
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    for chart in ("behavior-plot", "helpfulness-plot", "coherence-plot", "tradeoff-plot"):
        locator = page.locator(f"#{chart}")
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(out / f"chart-{chart}.png"))
        stars = page.evaluate(
            "(id) => document.querySelector('#' + id + ' .js-plotly-plot').data.filter((t) => t.name === "
            "'prompting baseline').length",
            chart,
        )
        assert stars == 1, f"{chart}: no prompting baseline point"
    # Drawn r_e labels of the trade-off chart do not overlap (their painted boxes).
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('#tradeoff-plot .scatterlayer .trace text'))
             .filter((t) => t.textContent).map((t) => { const b = t.getBBox();
               const m = t.getScreenCTM(); return [b.x + m.e, b.y + m.f, b.width, b.height, t.textContent]; })"""
    )
    assert len(boxes) >= 4
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
            assert not overlap, f"labels {a[4]!r} and {b[4]!r} overlap"
    page.goto(app_url)  # the shipped preset: no answers, no coherence yet
    page.wait_for_function(bench.charts_rendered_js(), timeout=60000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "first-screen-harmless-smollm2.png"))
    page.screenshot(path=str(out / "full-page-harmless-smollm2.png"), full_page=True)
    page.locator("#helpfulness-plot").screenshot(path=str(out / "chart-helpfulness-harmless.png"))
    page.locator("#tradeoff-plot").screenshot(path=str(out / "chart-tradeoff-harmless.png"))
    lo, hi = page.evaluate("() => document.querySelector('#helpfulness-plot .js-plotly-plot').layout.yaxis.range")
    assert lo <= 0.25 and hi - lo < 0.2  # helpfulness 0.25-0.30 is not a flat line on a 0-1 axis
    page.close()
