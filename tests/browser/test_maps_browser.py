"""The Concept maps & diagnostics tab in a real browser (Playwright driving Debian's chromium).

The page opens on a preset's stored assumption checks (no model), draws a concept map of a preset
whose model is the tiny Llama, shows the UMAP hint change when the warm-up finishes, plans a layer
scan, runs it and stops it with Cancel. Screenshots go to the test's output folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import dashboard_bench as bench  # noqa: E402
from tiny_models import tiny_sweep_fields  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api")

TINY = "tiny-maps"
BATCH_S = 0.3  # each scorer batch of the tiny model holds it this long, so a scan runs long enough to cancel


@pytest.fixture(scope="module")
def presets_folder(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("presets")
    shutil.copy(ROOT / "presets" / "harmless-smollm2.yaml", folder / "harmless-smollm2.yaml")
    shutil.copytree(ROOT / "presets" / "harmless-smollm2", folder / "harmless-smollm2")
    fields = tiny_sweep_fields(name=TINY, model=str(tiny_model_dir), n_eval=6, n_diagnostics=0)
    (folder / f"{TINY}.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def gate():
    """UMAP's warm-up, gated by the test (a real one compiles numba for a minute)."""
    from mrepe_core import projection_warmup

    gate = threading.Event()
    saved = projection_warmup.WARMUP
    projection_warmup.WARMUP = projection_warmup.UmapWarmup(lambda: gate.wait(120) or None)
    projection_warmup.WARMUP.start()
    yield gate
    gate.set()
    projection_warmup.WARMUP = saved


@pytest.fixture(scope="module")
def app_url(presets_folder, gate):
    from mrepe_core import runner
    from mrepe_core.models import exclusive

    saved_env = {k: os.environ.get(k) for k in ("MREPE_PRESETS_DIR", "GRADIO_HEARTBEAT_INTERVAL")}
    os.environ["MREPE_PRESETS_DIR"] = str(presets_folder)
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "1"  # a closed page is noticed within a second or two
    saved_runs = {cls: cls.run for cls in (runner.NextTokenScorer, runner.ChoiceScorer)}
    for cls, original in saved_runs.items():

        def slow(self, rows, return_states=False, original=original):
            with exclusive(self.loaded.model):
                time.sleep(BATCH_S)
                return original(self, rows, return_states=return_states)

        cls.run = slow
    import app

    demo = app.build_demo()
    assert not app.TAB_ERRORS, app.TAB_ERRORS
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        for cls, original in saved_runs.items():
            cls.run = original
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def browser(app_url):
    if not Path(bench.CHROMIUM).is_file():
        pytest.fail(f"{bench.CHROMIUM} is missing: install Debian's chromium (make browser).")
    with sync_api.sync_playwright() as pw:
        browser = bench.launch_browser(pw)
        yield browser
        browser.close()


def open_tab(browser, app_url, errors: list[str]):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url)
    page.get_by_role("tab", name="Concept maps & diagnostics").click()
    return page


@pytest.fixture
def page(browser, app_url):
    """A fresh tab per test: no test depends on what another left on screen (the order is random)."""
    errors: list[str] = []
    page = open_tab(browser, app_url, errors)
    yield page
    assert not errors, errors


def choose_preset(page, name: str) -> None:
    page.locator("#maps-preset input").click()
    page.get_by_role("option", name=name).click()


def start_scan(page, width: int = 1) -> None:
    page.locator("#maps-layer-scan").get_by_text("Layer scan: where to steer").click()
    for label, value in (("Window width (layers)", width), ("Stride", 1), ("r_e steps", 5)):
        box = page.locator("#maps-layer-scan").get_by_label(label)
        box.fill(str(value))
        box.press("Tab")


def traces(page, chart_id: str) -> list[str]:
    return page.evaluate(
        "(id) => { const gd = document.querySelector('#' + id + ' .js-plotly-plot');"
        " return gd && gd.data ? gd.data.map((t) => t.name || '') : []; }",
        chart_id,
    )


def shot(page, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    path = tmp_path / name
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return path


def test_stored_checks_show_without_a_model(page, tmp_path):
    page.wait_for_function(
        "() => ['final-shift-plot', 'logit-noise-plot', 'separation-plot', 'fit-comparison-plot']"
        ".every((id) => document.querySelector('#' + id + ' .js-plotly-plot .trace'))",
        timeout=30000,
    )
    assert "|δr| measured" in traces(page, "final-shift-plot")
    assert "Preset harmless-smollm2 (stored)" in page.locator("#diag-notes").inner_text()
    shot(page, tmp_path, "maps-checks.png", "#maps-diagnostics")


def test_umap_hint_updates_when_ready(page, gate):
    radio = page.locator("#map-projection")
    radio.get_by_text("not ready yet").wait_for(timeout=15000)
    # A PCA map drawn during the warm-up must not stop the hint's timer.
    draw_tiny_map(page)
    assert page.locator("#map-projection").get_by_text("not ready yet").is_visible()
    gate.set()
    radio.get_by_text("UMAP ready.").wait_for(timeout=15000)


def choose_tiny_preset(page) -> None:
    choose_preset(page, TINY)
    page.locator("#maps-steer-layers textarea, #maps-steer-layers input").first.wait_for()
    page.wait_for_function(
        "() => (document.querySelector('#maps-steer-layers textarea, #maps-steer-layers input') || {}).value === '1:3'",
        timeout=15000,
    )


def draw_tiny_map(page) -> None:
    choose_tiny_preset(page)
    page.locator("#map-user-texts textarea").fill("How do rivers form?\nTell me a joke.")
    page.locator("#map-draw").click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('#concept-map-plot .js-plotly-plot');"
        " return gd && gd.data && gd.data.some((t) => (t.name || '').startsWith('steered')); }",
        timeout=120000,
    )


def test_map_of_a_tiny_preset(page, tmp_path):
    draw_tiny_map(page)
    names = traces(page, "concept-map-plot")
    assert "your inputs" in names and "held-out behaviour prompts" in names
    assert "first steered layer" in page.locator("#map-status").inner_text()
    shot(page, tmp_path, "maps-concept-map.png", "#maps-concept")


def test_scan_plan_run_and_cancel(page, tmp_path):
    # The tiny preset stores no results, so the plan learns the model's depth (4 layers) once this
    # session has loaded it: drawing the map does.
    draw_tiny_map(page)
    start_scan(page)
    plan = page.locator("#scan-plan")
    plan.get_by_text("4 windows × (5 r_e").wait_for(timeout=15000)
    assert "Estimated time:" in plan.inner_text()
    page.locator("#scan-layers").click()
    status = page.locator("#scan-status")
    status.get_by_text("rows (").first.wait_for(timeout=120000)
    # The first window's heat maps appear while the scan goes on; the estimate stays above the progress.
    page.wait_for_function(
        "() => { const gd = document.querySelector('#layer-scan-b-plot .js-plotly-plot');"
        " return gd && gd.data && gd.data.some((t) => (t.name || '').startsWith('behaviour')); }",
        timeout=120000,
    )
    text = status.inner_text()
    assert "Estimated time: about" in text and "timed on the first" in text and "left" in text
    shot(page, tmp_path, "maps-scan-running.png", "#maps-layer-scan")
    clicked = time.perf_counter()
    page.locator("#scan-cancel").click()
    status.get_by_text("cancelled: stopped").wait_for(timeout=10000)
    seen = time.perf_counter() - clicked
    text = status.inner_text()
    took = float(text.split("stopped ")[1].split(" s")[0])
    print(f"\nbrowser: the scan stopped {took:.2f} s after Cancel (status shown {seen:.2f} s after the click)")
    assert took < 2.0 and seen < 5.0
    shot(page, tmp_path, "maps-scan-cancelled.png", "#maps-layer-scan")
    shot(page, tmp_path, "maps-tab.png")


def test_closing_the_page_stops_its_scan(browser, app_url, page):
    from mrepe_ui.maps_jobs import JOBS, SCAN

    errors: list[str] = []
    other = open_tab(browser, app_url, errors)
    choose_tiny_preset(other)
    start_scan(other)
    other.locator("#scan-plan").get_by_text("r_e ×").wait_for(timeout=15000)
    other.locator("#scan-layers").click()
    other.locator("#scan-status").get_by_text("rows (").first.wait_for(timeout=120000)
    assert JOBS.running_count(SCAN) == 1
    closed = time.perf_counter()
    other.close()
    while JOBS.running_count(SCAN) and time.perf_counter() - closed < 30:
        time.sleep(0.1)
    took = time.perf_counter() - closed
    print(f"\nbrowser: the scan of a closed page was cancelled {took:.1f} s after the page closed")
    assert JOBS.running_count(SCAN) == 0 and took < 15
    assert not errors, errors


def test_encoder_map_with_an_upload(page, tmp_path_factory, tmp_path):
    """Uploads reach the handler unprocessed (as Gradio's file records) and are read from its cache."""
    from multimodal_tiny import save_tiny_clip

    from mrepe_core.multimodal.concepts import MEDIA

    clip = save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")
    section = page.locator("#maps-encoder")
    section.get_by_text("Encoder space (CLIP images / CLAP audio)").click()
    section.get_by_label("Encoder weights (hub id or folder; blank = environment variable)").fill(str(clip))
    section.locator("input[type=file]").set_input_files(str(MEDIA / "images" / "000000165518.jpg"))
    page.wait_for_timeout(1500)  # the upload finishes before the click
    section.get_by_role("button", name="Map the encoder space").click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('#encoder-map-plot .js-plotly-plot');"
        " return gd && gd.data && gd.data.some((t) => (t.name || '') === 'your inputs · image'); }",
        timeout=120000,
    )
    assert "1 uploads" in section.inner_text()
    shot(page, tmp_path, "maps-encoder.png", "#maps-encoder")
