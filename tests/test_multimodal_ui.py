"""The Multimodal tab: built alone, launched, and driven through its public API with a tiny CLIP."""

from __future__ import annotations

import gradio as gr
import pytest

from multimodal_tiny import save_tiny_clip

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
    return ["image", media, "", "built-in", "animals vs vehicles", None, None, "", "", "", "", mode, 2.0, alpha,
            str(clip_dir), ""]


def test_without_weights_the_tab_explains_and_computes_nothing():
    status = tab.encoder_status("", "")
    assert "MREPE_CLIP_MODEL" in status and "MREPE_CLAP_MODEL" in status and "loaded:" not in status
    assert "MREPE_CLIP_MODEL" in tab.initial_status()
    with pytest.raises(gr.Error, match="No CLIP weights"):
        tab.run_analysis(*analysis_args(""))


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
    finally:
        demo.close()
