"""The Multimodal tab: built alone, launched, and driven through its public API with a tiny CLIP."""

from __future__ import annotations

import gradio as gr
import pytest
from multimodal_tiny import one_torch_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal.concepts import MEDIA
from mrepe_core.multimodal.encoders import ENV_VARS, clear_encoder_cache
from mrepe_ui import multimodal_tab as tab

IMAGE = MEDIA / "images" / "000000165518.jpg"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    clear_encoder_cache()
    yield
    clear_encoder_cache()


def analysis_args(clip_dir, media=str(IMAGE), alpha=0.0, mode="direct"):
    return [
        "image",
        media,
        "",
        "built-in",
        "animals vs vehicles",
        None,
        None,
        "",
        "",
        "",
        "",
        mode,
        2.0,
        alpha,
        str(clip_dir),
        "",
    ]


def _components(demo) -> dict:
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


def test_without_weights_one_card_explains_and_every_encoder_action_is_off():
    card = tab.card_text()
    for needle in ("MREPE_CLIP_MODEL", "MREPE_CLAP_MODEL", "openai/clip-vit-base-patch32", "save_pretrained"):
        assert needle in card
    assert len(card.splitlines()) <= 4 and len(card) < 600  # compact: a few lines, not two paragraphs
    with gr.Blocks() as demo:
        tab.build_multimodal_tab()
    comps = _components(demo)
    for button in ("mm-analyse", "mm-align", "mm-robustness"):
        assert comps[button].interactive is False, button
    for button in ("mm-attention-run", "mm-patching-run", "mm-scr-run", "mm-load-encoders"):
        assert comps[button].interactive is not False, button
    # The language-model panels are built (and so laid out) before the encoder card.
    order = [b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)]
    assert order.index("mm-attention-panel") < order.index("mm-patching-panel") < order.index("mm-scr-panel")
    assert order.index("mm-scr-panel") < order.index("mm-encoder-card")


def test_without_weights_the_handlers_refuse_with_a_message():
    with pytest.raises(gr.Error, match="No CLIP weights are loaded.*MREPE_CLIP_MODEL"):
        tab.run_analysis(*analysis_args(""))
    with pytest.raises(gr.Error, match="No CLIP weights"):
        tab.run_alignment(list(tab.ALIGNMENT_PAIRS)[0], 10, "", "")
    with pytest.raises(gr.Error, match="No CLAP weights"):
        tab.run_alignment(list(tab.ALIGNMENT_PAIRS)[1], 10, "", "")
    with pytest.raises(gr.Error, match="Run the analysis first"):
        tab.run_robustness(None, 0.0, "")
    status, *buttons = tab.load_encoders("", "")
    assert "field is empty" in status and all(b["interactive"] is False for b in buttons)
    assert tab.redraw(None, 1.0)[-1] == {}


def test_loading_weights_turns_the_buttons_on(clip_dir):
    status, *buttons = tab.load_encoders(str(clip_dir), "")
    assert "CLIP** (images): loaded" in status and all(b["interactive"] is True for b in buttons)
    assert "CLAP** (audio): not loaded" in status


def test_handlers_compute_and_the_alpha_redraw_moves_the_bars(clip_dir):
    session, summary, bars, membership, beh, helpful, trade, readout = tab.run_analysis(*analysis_args(clip_dir))
    assert "animals vs vehicles" in summary and "tau" in summary and "Credits" in summary
    probs0 = readout["probabilities"]
    assert set(probs0) == {"animals", "vehicles", "people", "food", "indoor", "outdoor"}
    assert sum(probs0.values()) == pytest.approx(1.0, abs=1e-3)
    bars3, beh3, _, _, readout3 = tab.redraw(session, 3.0)
    assert readout3["alpha"] == 3.0 and readout3["probabilities"] != probs0
    assert beh3.data[-1].x[0] == pytest.approx(3.0)  # the marker sits at the slider's alpha
    assert tab.redraw(None, 1.0)[-1] == {}

    ar_table, ar_fig = tab.run_robustness(session, 2 / 255, str(clip_dir))
    assert len(ar_table) == len(tab.AR_EPS) + 1 and ar_table.value.iloc[0] == 1.0  # eps = 0 never flips
    assert ar_table.bound.iloc[-1].startswith("upper bound") and ar_table.classifier.str.contains("zero-shot").all()
    table, chart, transfer, loss, note = tab.run_alignment(list(tab.ALIGNMENT_PAIRS)[0], 10, str(clip_dir), "")
    assert {"before (raw)", "after (trained phi)"} <= set(table.stage) and len(transfer) == 2
    assert "held-out" in note and len(loss.data[0].y) == 10


def test_broken_uploads_become_clear_errors(clip_dir, tmp_path):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(IMAGE.read_bytes()[:4000])
    with pytest.raises(gr.Error, match="cut.jpg.*(corrupt|truncated)"):
        tab.run_analysis(*analysis_args(clip_dir, media=str(cut)))
    fake = tmp_path / "sound.ogg"
    fake.write_text("not audio")
    args = analysis_args(clip_dir, media=str(fake))
    args[0], args[4] = "audio", "speech vs music"
    with pytest.raises(gr.Error, match="CLAP"):  # no CLAP weights: told how to supply them first
        tab.run_analysis(*args)


def test_launched_tab_serves_its_public_api(clip_dir):
    from gradio_client import Client, handle_file

    with gr.Blocks() as demo:
        with gr.Tab("Multimodal"):
            tab.build_multimodal_tab()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert set(endpoints) == {"/mm_analyse", "/mm_alignment", "/mm_patching"}
        args = analysis_args(clip_dir, media=handle_file(str(IMAGE)), alpha=1.5)
        out = client.predict(*args, api_name="/mm_analyse")
        readout = out[-1]
        assert readout["alpha"] == 1.5 and readout["input"] == IMAGE.name
        assert sum(readout["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        # Over HTTP without weights: the same refusal as in the page, no traceback, nothing computed.
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="No CLIP weights are loaded") as info:
            client.predict(*analysis_args("", media=None), api_name="/mm_analyse")
        assert "Traceback" not in str(info.value)
        with pytest.raises(AppError, match="No CLAP weights are loaded"):
            client.predict(list(tab.ALIGNMENT_PAIRS)[1], 10, "", "", api_name="/mm_alignment")
    finally:
        demo.close()


def test_language_model_panels_on_a_tiny_local_model(tiny_model_dir):
    spec = str(tiny_model_dir)
    base, new, top, mass_fig, info = tab.run_lm_attention(spec, *tab.ATTENTION_EXAMPLE, 3.0, "", 4, True)
    assert isinstance(base, str) and isinstance(new, str) and len(top) == 5
    assert "\u00ab" in info and "\u00bb" in info and "KL" in info
    assert all(after > before for before, after in zip(mass_fig.data[0].y, mass_fig.data[1].y))
    fig, table, info, best = tab.run_patching(spec, *tab.PATCHING_PRESETS["fact recall (Paris vs Rome)"], "last", True)
    assert list(table.layer) == list(range(len(table))) and "Largest |effect|" in info
    assert tab.use_layers(best) == best and len(best.split(",")) == 3
    _, _, _, subset_fig, _ = tab.run_lm_attention(spec, *tab.ATTENTION_EXAMPLE, 3.0, "-1", 2, False)
    assert len(subset_fig.data[0].x) == len(mass_fig.data[0].x) > 1  # every layer is shown, only -1 biased
    assert subset_fig.data[0].y[0] == pytest.approx(subset_fig.data[1].y[0], abs=1e-6)
    with pytest.raises(gr.Error, match="does not occur"):
        tab.run_lm_attention(spec, "a prompt", "missing span", 1.0, "", 4, True)
    scr, samples = tab.run_scr(spec, 2, "Refuse harmful requests.", 2.0, 4)
    assert list(scr.run) == ["baseline", "intervened"] and (scr.n == 2).all() and len(samples) == 2
