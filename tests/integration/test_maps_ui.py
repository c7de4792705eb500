"""The Concept maps & diagnostics tab: a preset computed on the tiny Llama, its handlers, and the tab
built alone, launched and driven through its public API."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import yaml
from multimodal_tiny import one_torch_thread  # noqa: F401  (fixture: one intra-op thread per module)
from tiny_models import tiny_sweep_fields

from mrepe_core.concept_map_inputs import max_user_texts
from mrepe_core.config import SweepConfig
from mrepe_core.sweep import run_sweep
from mrepe_ui import maps_tab as tab

PRESET = "tiny-maps"


class NoProgress:
    def __call__(self, *args, **kwargs):
        return None


def last(outputs):
    """A streaming handler's final outputs (a plain handler's are returned as they are)."""
    if isinstance(outputs, tuple):
        return outputs
    return list(outputs)[-1]


@pytest.fixture(scope="module")
def presets(tmp_path_factory, tiny_model_dir):
    """A presets folder with one preset whose stored results (with assumption checks) were computed
    by a real sweep of the tiny Llama."""
    folder = tmp_path_factory.mktemp("presets")
    fields = tiny_sweep_fields(name=PRESET, model=str(tiny_model_dir), n_questions_per_subject=4, n_diagnostics=4)
    result = run_sweep(SweepConfig(**fields), cache_dir=tmp_path_factory.mktemp("cache"))
    result.save(folder / PRESET)
    (folder / f"{PRESET}.yaml").write_text(yaml.safe_dump({**fields, "results": PRESET}), encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def use_presets(presets, monkeypatch):
    monkeypatch.setenv("MREPE_PRESETS_DIR", str(presets))


def chart(value: str) -> dict:
    return json.loads(value)


def names(fig: dict) -> list[str]:
    return [t.get("name") for t in fig["data"]]


def test_stored_checks_open_without_a_model():
    session, final, noise, hist, sep, comparison, table, notes, model, layers, layer = tab.open_preset(PRESET, None)
    assert "|δr| measured" in names(chart(final)) and any(n.startswith("λ|r_e|") for n in names(chart(final)))
    assert "std of the logit noise" in names(chart(noise))
    assert "good − bad answer tokens" in names(chart(sep))
    # Stored results keep the noise samples (diagnostics_noise.csv): the histogram opens with them.
    assert [t["type"] for t in chart(hist)["data"]] == ["bar", "scatter"]
    assert "Logit noise at r_e" in chart(hist)["layout"]["title"]["text"]
    assert {"λ", "λσ"} <= set(table["parameter"]) and "Preset tiny-maps" in notes
    assert layers["value"] == "1:3" and layer["maximum"] == 3
    with pytest.raises(gr.Error, match="Unknown preset"):
        tab.open_preset("no-such-preset", None)


def test_live_checks_add_the_noise_histogram():
    session = tab.open_preset(PRESET, None)[0]
    outputs = last(tab.measure_diagnostics(PRESET, "", "1:3", session, progress=NoProgress()))
    session, hist = outputs[0], chart(outputs[3])
    assert [t["type"] for t in hist["data"]] == ["bar", "scatter"] and session.noise_samples
    assert "Measured now" in outputs[-1]


def test_map_handlers_build_move_and_refuse_bad_layers():
    out = last(
        tab.build_map_view(
            PRESET, "", "1:3", 4, "my own question", 1, "pca", ["eval", "user"], True, None, progress=NoProgress()
        )
    )
    session, fig, layer, r_slider, status = out[:5]
    assert layer["maximum"] == 3 and r_slider["minimum"] == -2.0 and r_slider["maximum"] == 2.0
    assert "first steered layer" in status and "stored" in status  # the preset's own vector is reused
    steered = [t for t in chart(fig)["data"] if (t.get("name") or "").startswith("steered")]
    assert len(steered) == 1 and len(steered[0]["x"]) == 5  # 4 held-out prompts + 1 input
    low = chart(tab.move_points(-2.0, session))
    high = chart(tab.move_points(2.0, session))
    star = lambda f: np.array([t for t in f["data"] if t["name"].startswith("steered")][0]["x"])  # noqa: E731
    assert not np.allclose(star(low), star(high))
    assert "r_e = -2" in low["layout"]["title"]["text"]
    # A later layer is measured with the model; the frames follow the (coarser) measured grid.
    session, fig, r_slider, status = last(tab.redraw_map(2, "pca", ["eval"], True, session, progress=NoProgress()))[:4]
    assert "Measured" in status and session.explorer.view.frames.r_values == [-2.0, -1.0, 0.0, 1.0, 2.0]
    with pytest.raises(gr.Error, match="the model has 4 layers"):
        last(tab.build_map_view(PRESET, "", "7:9", 4, "", 1, "pca", ["eval"], True, session, progress=NoProgress()))
    too_many = "\n".join(["x"] * (max_user_texts() + 1))
    with pytest.raises(gr.Error, match="at most"):
        last(
            tab.build_map_view(PRESET, "", "1:3", 4, too_many, 1, "pca", ["eval"], True, session, progress=NoProgress())
        )


def test_launched_tab_serves_its_public_api(tiny_model_dir):
    from gradio_client import Client

    with gr.Blocks() as demo:
        with gr.Tab("Concept maps & diagnostics"):
            tab.build_maps_tab()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert set(endpoints) == {"/maps_build", "/maps_scan_layers"}
        out = client.predict(
            PRESET, str(tiny_model_dir), "1:3", 4, "hello map", 1, "pca", ["eval", "user"], True, api_name="/maps_build"
        )
        fig = chart(out[0])
        assert any((t.get("name") or "").startswith("steered (r_e =") for t in fig["data"])
        assert "held-out behaviour prompts" in names(fig) and "your inputs" in names(fig)
        assert "first steered layer" in out[3]
        with pytest.raises(Exception, match="the model has 4 layers"):
            client.predict(PRESET, "", "9:12", 4, "", 1, "pca", ["eval"], True, api_name="/maps_build")
        # Any value an HTTP client sends: a clear, short error, never the input echoed back.
        big = "word " * 20_000
        for args, words in (
            ((PRESET, "", "1:3", 4, big, 1, "pca", ["eval"], True), "characters; the limit is"),
            ((PRESET, "", "1:3", 1e6, "", 1, "pca", ["eval"], True), "Points per set must be between 1 and 64"),
            ((PRESET, "", "1:3", 4, "", 10**12, "pca", ["eval"], True), "Layer must be between"),
            ((PRESET, "", "1:3", 4, "", 1, "tsne", ["eval"], True), "Projection must be one of"),
            ((big, "", "1:3", 4, "", 1, "pca", ["eval"], True), "Unknown preset that name"),
            ((PRESET, "", "1:3", 4, "", 1, big, ["eval"], True), "Projection must be one of"),
            ((PRESET, "", "1:3", 4, "", 1, "pca", [big], True), "Steer these points must be one of"),
            ((PRESET, "", "1:3", 4, "", 1, "pca", ["eval"], big), "must be true or false"),
        ):
            with pytest.raises(Exception, match=words) as info:
                client.predict(*args, api_name="/maps_build")
            assert len(str(info.value)) < 400 and "word word" not in str(info.value)
        with pytest.raises(Exception, match="would evaluate"):
            client.predict(PRESET, "", 1, 1, 21, 200, 100, api_name="/maps_scan_layers")
    finally:
        demo.close()


def test_public_server_takes_only_the_presets_model_or_a_hub_id(monkeypatch, tiny_model_dir):
    from mrepe_ui import maps_handlers

    monkeypatch.setenv("MREPE_PUBLIC", "1")
    # The preset's own model passes the tab's check (whether the engine then loads a local folder
    # on a public server is the engine's policy).
    assert maps_handlers.config_for(PRESET, "")[3] == str(tiny_model_dir)
    assert maps_handlers.config_for(PRESET, "owner/some-model")[3] == "owner/some-model"
    for spec in ("/etc", "/no/such/folder", "model.gguf", "../x/y"):
        with pytest.raises(gr.Error, match="cannot be used here") as info:
            last(tab.build_map_view(PRESET, spec, "1:3", 4, "", 1, "pca", ["eval"], True, None))
        assert "exist" not in str(info.value) and "config.json" not in str(info.value)


def test_encoder_space_map_needs_weights_and_maps_uploads(tmp_path):
    from multimodal_tiny import save_tiny_clip

    from mrepe_core.multimodal.concepts import MEDIA

    with pytest.raises(gr.Error, match="No CLIP weights"):
        tab.encoder_map_view("clip", str(tmp_path / "missing"), None, "", "pca")
    clip = save_tiny_clip(tmp_path / "clip")
    image = MEDIA / "images" / "000000165518.jpg"
    fig, status = tab.encoder_map_view("clip", str(clip), [str(image)], "a dog on a sofa", "pca")
    traces = {t["name"]: len(t["x"]) for t in chart(fig)["data"]}
    assert traces["your inputs · image"] == 1 and traces["your inputs · text"] == 1
    assert traces["animals · image"] == traces["animals · text"]  # each shipped image with its caption
    assert "1 uploads" in status
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(image.read_bytes()[:2000])
    with pytest.raises(gr.Error, match="broken.jpg"):
        tab.encoder_map_view("clip", str(clip), [str(broken)], "", "pca")
