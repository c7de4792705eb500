"""Where weights may come from: hub ids that fail fast without a hub, and the public allowlist."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest
from multimodal_tiny import one_torch_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core import hub
from mrepe_core.multimodal import encoders as enc
from mrepe_core.multimodal.sources import SourceError, load_language_model

FAST_S = 2.0  # an unreachable or switched-off hub must answer within this


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for var in (*enc.ENV_VARS.values(), "SPACE_ID", "MREPE_PUBLIC", "MREPE_MODEL_DIRS"):
        monkeypatch.delenv(var, raising=False)
    enc.clear_encoder_cache()
    hub.forget_probe()
    yield
    enc.clear_encoder_cache()
    hub.forget_probe()


@pytest.fixture
def hub_on(monkeypatch, tmp_path):
    """The hub switched on (tests run with HF_HUB_OFFLINE=1) but, as here, unreachable; empty cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def public(monkeypatch, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("SPACE_ID", "someone/mrepe")
    monkeypatch.setenv("MREPE_MODEL_DIRS", str(allowed))
    return allowed


def timed(fn, *args):
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        fn(*args)
    return time.perf_counter() - start, str(info.value)


def test_hub_ids_are_spelled_owner_slash_name():
    assert hub.is_hub_id("openai/clip-vit-base-patch32") and hub.is_hub_id("laion/clap-htsat-unfused")
    for spec in ("/etc/shadow", "~/.ssh", "./clip", "a/b/c", "clip", "../x", "a\\b", "a/..", "--/x"):
        assert not hub.is_hub_id(spec), spec


def test_switched_off_hub_fails_at_once_with_a_message():
    elapsed, message = timed(enc.load_encoder, "clip", "openai/clip-vit-base-patch32")
    assert elapsed < FAST_S and "HF_HUB_OFFLINE" in message and "save_pretrained" in message


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hub that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


# No DNS for huggingface.co here; an address a local service answers with a non-hub 404; a hang.
@pytest.mark.parametrize("endpoint", [None, "http://10.255.255.1:81", "silent"])
def test_unreachable_hub_fails_in_under_two_seconds(hub_on, monkeypatch, endpoint, request):
    if endpoint:
        url = request.getfixturevalue("silent_server") if endpoint == "silent" else endpoint
        monkeypatch.setenv("HF_ENDPOINT", url)
    cases = [(enc.load_encoder, "clip", enc.EXAMPLE_IDS["clip"]), (enc.load_encoder, "clap", enc.EXAMPLE_IDS["clap"])]
    cases.append((lambda _kind, spec: load_language_model(spec), "lm", "HuggingFaceTB/SmolLM2-360M-Instruct"))
    for load, kind, spec in cases if endpoint != "silent" else cases[:1]:  # a hang costs the full 1.2 s each
        hub.forget_probe()
        elapsed, message = timed(load, kind, spec)
        assert elapsed < FAST_S, f"{kind}: {elapsed:.2f} s"
        assert "cannot reach the Hugging Face hub" in message and spec in message


def _fake_cache(root, repo_id: str, folder) -> None:
    """Lay out ``folder``'s files as huggingface_hub caches a snapshot of ``repo_id``."""
    base = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).symlink_to(f)


def test_a_cached_hub_id_loads_without_the_hub(hub_on, monkeypatch, tmp_path, clip_dir):
    from huggingface_hub import constants

    _fake_cache(tmp_path / "hf-cache", "someone/tiny-clip", clip_dir)
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1:81")  # a probe would cost 1.5 s
    start = time.perf_counter()
    clip = enc.load_encoder("clip", "someone/tiny-clip")
    assert clip.dimensions == 16 and clip.name == "someone/tiny-clip"
    assert time.perf_counter() - start < 1.0 and constants.HF_HUB_CACHE.endswith("hf-cache")


def test_public_deployment_loads_the_default_ids_without_configuration(public):
    assert enc.default_spec("clip") == "openai/clip-vit-base-patch32"
    assert enc.default_spec("clap") == "laion/clap-htsat-unfused"
    elapsed, message = timed(enc.load_encoder, "clip", "")
    assert elapsed < FAST_S and "'openai/clip-vit-base-patch32'" in message  # tried the default, offline here


def test_public_deployment_refuses_paths_outside_the_allowlist_without_saying_if_they_exist(
    public, tmp_path, clip_dir, monkeypatch
):
    outside = tmp_path / "outside-clip"
    save_tiny_clip(outside)
    (public / "escape").symlink_to(outside)
    (tmp_path / "secret.txt").write_text("x")
    specs = [
        "/etc/shadow",
        "/etc",
        "~/.ssh",
        "/no/such/folder",
        str(outside),  # a real CLIP checkpoint, but outside
        str(public / ".." / "outside-clip"),
        str(public / "escape"),  # a symlink out of the allowed folder
        str(tmp_path / "secret.txt"),
        str(public / "missing"),  # inside, but nothing there
        str(public),  # inside, not a checkpoint
    ]
    messages = set()
    for spec in specs:
        for load in (lambda s: enc.load_encoder("clip", s), load_language_model):
            _, message = timed(load, spec)
            messages.add(
                message.replace(repr(spec), "SPEC").replace("CLIP weights", "X").replace("the language model", "X")
            )
    assert len(messages) == 1, messages  # one message, whatever is (or is not) on the disk
    message = messages.pop()
    assert "Hugging Face ids" in message and str(public) in message
    for leak in ("exist", "is a file", "folder", "config.json", "permission", "denied"):
        assert leak not in message.replace("or folders under", ""), leak

    # A relative 'owner/name' is a hub id there, never a folder of the server's working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outside").mkdir(exist_ok=True)
    os.symlink(outside, tmp_path / "outside" / "clip")
    _, message = timed(enc.load_encoder, "clip", "outside/clip")
    assert "Hugging Face" in message and "cache" in message


def test_public_deployment_loads_checkpoints_inside_the_allowlist(public, tiny_model_dir):
    inside = save_tiny_clip(public / "clip")
    assert enc.load_encoder("clip", str(inside)).dimensions == 16
    shutil.copytree(tiny_model_dir, public / "lm")
    assert load_language_model(str(public / "lm")).n_layers == 4


def test_private_machine_messages_say_what_is_wrong(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "clap").mkdir()
    (tmp_path / "clap" / "config.json").write_text(json.dumps({"model_type": "clap"}))
    cases = {
        str(tmp_path / "file.txt"): "not a folder",
        str(tmp_path / "nowhere"): "does not exist",
        str(tmp_path / "clap"): "holds a 'clap' model",
    }
    for spec, expected in cases.items():
        _, message = timed(enc.load_encoder, "clip", spec)
        assert expected in message, message


def test_weights_fields_reject_absurd_values():
    for spec in ("x" * 400, "a\x00b", "bad\ud800"):
        with pytest.raises(enc.EncoderLoadError):
            enc.load_encoder("clip", spec)
        with pytest.raises(SourceError):
            load_language_model(spec)


def test_at_most_two_encoders_stay_loaded(clip_dir, tmp_path, monkeypatch):
    other = save_tiny_clip(tmp_path / "other", seed=1)
    third = save_tiny_clip(tmp_path / "third", seed=2)
    first = enc.load_encoder("clip", str(clip_dir))
    enc.load_encoder("clip", str(other))
    enc.load_encoder("clip", str(third))
    assert enc.loaded_encoder("clip", str(clip_dir)) is None and enc.loaded_encoder("clip", str(third)) is not None
    assert enc.load_encoder("clip", str(clip_dir)) is not first  # reloaded after eviction
