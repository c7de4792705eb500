"""Encoder loading and embedding on tiny random CLIP / CLAP checkpoints saved like real ones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clap, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal import encoders as enc
from mrepe_core.multimodal.concepts import MEDIA
from mrepe_core.multimodal.media import decode_audio, decode_image


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("clap"))


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for var in enc.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    enc.clear_encoder_cache()
    yield
    enc.clear_encoder_cache()


def test_without_weights_the_error_says_how_to_supply_them():
    for kind in ("clip", "clap"):
        with pytest.raises(enc.WeightsMissing) as info:
            enc.load_encoder(kind, "")
        message = str(info.value)
        assert enc.ENV_VARS[kind] in message and "Hugging Face id" in message and "save_pretrained" in message


def test_missing_path_and_offline_hub_id_are_weights_missing(tmp_path):
    with pytest.raises(enc.WeightsMissing, match="does not exist.*MREPE_CLIP_MODEL"):
        enc.load_encoder("clip", str(tmp_path / "nowhere"))
    with pytest.raises(enc.WeightsMissing, match="not in this server.s Hugging Face cache.*HF_HUB_OFFLINE"):
        enc.load_encoder("clap", "no-such-org/no-such-clap")  # HF_HUB_OFFLINE=1: fails fast


def test_clip_loads_from_a_folder_and_embeds_unit_vectors(clip_dir):
    clip = enc.load_encoder("clip", str(clip_dir))
    assert isinstance(clip, enc.Encoder) and clip.kind == "clip" and clip.dimensions == 16
    images = [decode_image(MEDIA / "images" / "000000020247.jpg"), decode_image(MEDIA / "images" / "000000062554.jpg")]
    img = clip.embed_image(images)
    txt = clip.embed_text(["a photo of a bear", "a photo of food", "x"])
    assert img.shape == (2, 16) and txt.shape == (3, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(img[0], img[1])  # different inputs, different embeddings
    assert torch.allclose(clip.embed_image(images[:1])[0], img[0], atol=1e-6)  # batch-independent
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)
    with pytest.raises(enc.UnsupportedModality, match="CLAP"):
        clip.embed("audio", [np.zeros(100, dtype=np.float32)])


def test_env_variable_is_the_fallback_spec(clip_dir, monkeypatch):
    monkeypatch.setenv("MREPE_CLIP_MODEL", str(clip_dir))
    assert enc.load_encoder("clip").source == str(clip_dir)


def test_clap_embeds_48k_audio_reproducibly_from_the_first_window(clap_dir):
    clap = enc.load_encoder("clap", str(clap_dir))
    assert clap.sample_rate == 48_000 and clap.max_samples == 48_000  # the tiny extractor's 1 s window
    song = decode_audio(MEDIA / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg", max_seconds=3).waveform
    a = clap.embed_audio([song])
    b = clap.embed_audio([song[:48_000]])
    assert torch.allclose(a, b, atol=1e-6)  # longer clips are cut to the window, never randomly cropped
    assert torch.equal(a, clap.embed_audio([song]))
    txt = clap.embed_text(["the sound of music"])
    assert a.shape == txt.shape == (1, 16)
    with pytest.raises(enc.UnsupportedModality):
        clap.embed_image([None])


def test_wrong_model_type_and_pickle_only_folders_are_refused(clip_dir, tmp_path):
    wrong = tmp_path / "wrong"
    shutil.copytree(clip_dir, wrong)
    with pytest.raises(enc.EncoderLoadError, match="'clip' model, not 'clap'"):
        enc.load_encoder("clap", str(wrong))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(enc.EncoderLoadError, match="safetensors"):
        enc.load_encoder("clip", str(pickled))


def test_open_clip_is_optional():
    if enc.open_clip_available():
        pytest.skip("open_clip is installed here; its loading needs real weights")
    with pytest.raises(enc.EncoderLoadError, match="torchvision"):
        enc.load_encoder("open_clip", "ViT-B-32@/nowhere.safetensors")
    with pytest.raises(enc.EncoderLoadError, match="torchvision"):  # the CLIP field accepts open_clip specs
        enc.load_encoder("clip", "ViT-B-32@/nowhere.safetensors")
    assert enc.is_open_clip_spec("ViT-B-32@/m/w.safetensors") and not enc.is_open_clip_spec("openai/clip-vit")
