"""The Multimodal tab without encoder weights, in chromium at 1440x900: one compact card, the
language-model panels first, every button that needs weights off. Screenshots go to tmp_path."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import dashboard_bench as bench  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def app_without_weights(monkeypatch):
    for var in ("MREPE_CLIP_MODEL", "MREPE_CLAP_MODEL", "MREPE_OPEN_CLIP_MODEL", "SPACE_ID", "MREPE_PUBLIC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MREPE_WARM_MODEL", "0")
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


def box(page, selector: str) -> dict:
    b = page.locator(selector).first.bounding_box()
    assert b is not None, f"{selector} is not laid out"
    return b


def test_multimodal_tab_without_weights_then_with(app_without_weights, tmp_path):
    if not Path(bench.CHROMIUM).is_file():
        pytest.fail(f"{bench.CHROMIUM} is missing: install Debian's chromium (make browser).")
    from multimodal_tiny import save_tiny_clip

    clip_dir = save_tiny_clip(tmp_path / "clip")
    with sync_api.sync_playwright() as pw:
        browser = bench.launch_browser(pw)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_without_weights)
        page.get_by_role("tab", name="Multimodal").click()
        card = page.locator("#mm-encoder-card").first  # gr.Group renders its elem_id twice
        card.wait_for(state="visible", timeout=30000)
        page.screenshot(path=str(tmp_path / "multimodal-top.png"))

        # One compact card that says how to supply weights.
        text = card.inner_text()
        for needle in ("MREPE_CLIP_MODEL", "MREPE_CLAP_MODEL", "save_pretrained", "openai/clip-vit-base-patch32"):
            assert needle in text, needle
        assert box(page, "#mm-encoder-status")["height"] < 130

        # The language-model panels come first, in this order, all above the card.
        tops = [box(page, f"#mm-{p}-panel")["y"] for p in ("attention", "patching", "scr")]
        assert tops == sorted(tops) and tops[-1] < box(page, "#mm-encoder-card")["y"]
        assert page.locator("#mm-attention-run").is_enabled()

        # Every action that needs encoder weights is off (the accordions opened to see them).
        page.locator("#mm-alignment-panel").get_by_text("Cross-modal alignment").click()
        page.locator("#mm-robustness-panel").get_by_text("Adversarial robustness").click()
        for button in ("#mm-analyse", "#mm-align", "#mm-robustness"):
            page.locator(button).scroll_into_view_if_needed()
            assert page.locator(button).is_disabled(), button
        assert page.locator("#mm-load-encoders").is_enabled()

        # Nothing says Error on a page nobody has used yet.
        assert page.locator(".error").count() == 0
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "multimodal-card.png"))
        page.screenshot(path=str(tmp_path / "multimodal-full.png"), full_page=True)

        # Weights loaded with the Load button turn the buttons on; Analyse shows its results.
        page.locator("#mm-clip-path textarea, #mm-clip-path input").first.fill(str(clip_dir))
        page.locator("#mm-load-encoders").click()
        page.wait_for_function("() => !document.querySelector('#mm-analyse').disabled", timeout=60000)
        assert "loaded" in page.locator("#mm-encoder-status").first.inner_text()
        page.locator("#mm-analyse").click()
        page.locator("#mm-results").first.wait_for(state="visible", timeout=60000)
        page.locator("#mm-tradeoff-row").first.wait_for(state="visible", timeout=10000)
        drawn = "#mm-results .js-plotly-plot, #mm-tradeoff-row .js-plotly-plot"
        page.wait_for_function(f"() => document.querySelectorAll('{drawn}').length >= 5", timeout=30000)
        heights = page.evaluate(f"() => [...document.querySelectorAll('{drawn}')].map(e => e.clientHeight)")
        assert all(h >= 250 for h in heights), heights  # revealed after the run, drawn at full size
        page.locator("#mm-encoder-card").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "multimodal-analysed.png"), full_page=True)
        print(f"\nscreenshots: {tmp_path}")
        assert not errors, errors
        browser.close()
