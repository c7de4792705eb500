"""Model specs, loading from a local folder, layer lookup, dtype choice, the embedded default."""

import pytest
import torch

from mrepe_core import models
from mrepe_core.models import ModelLoadError, decoder_layers, load_model, resolve_spec


def test_resolve_spec_kinds(tmp_path, tiny_model_dir):
    assert resolve_spec("org/name") == ("hub", "org/name", None)
    assert resolve_spec(str(tiny_model_dir))[0] == "dir"
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_spec(str(tmp_path / "m.gguf"))[0] == "gguf"
    kind, loc, _ = resolve_spec("smollm2-135m-instruct")
    assert kind in ("gguf", "hub")


@pytest.mark.parametrize("spec,match", [("no such model at all", "Unknown model"), ("/nope/x.gguf", "not found")])
def test_resolve_spec_errors(spec, match):
    with pytest.raises(ModelLoadError, match=match):
        resolve_spec(spec)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_spec(str(tmp_path))


def test_load_local_folder(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")
    assert loaded.n_layers == 4 and loaded.hidden_size == 64
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id is not None
    assert load_model(str(tiny_model_dir), device="cpu", dtype="fp32") is loaded  # shared instance
    assert loaded.fingerprint


def test_decoder_layers_unknown_family():
    with pytest.raises(ModelLoadError, match="Supported families"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_decoder_layers_families(tiny_llama, tiny_gpt2):
    assert len(decoder_layers(tiny_llama.model)) == 4
    assert len(decoder_layers(tiny_gpt2.model)) == 3


def test_dtype_choice(monkeypatch):
    from mrepe_core import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda device=None: False)
    assert models.choose_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(hardware, "native_bf16", lambda device=None: True)
    assert models.choose_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert models.choose_dtype("bf16") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        models.choose_dtype("fp8")


def test_gguf_cache_is_written_atomically(tiny_llama, tmp_path):
    target = tmp_path / "cache" / "entry"
    models._write_dequantised_cache(tiny_llama.model, tiny_llama.tokenizer, target)
    assert (target / "model.safetensors").is_file()
    cfg = (target / "config.json").read_text()
    assert "quantization_config" not in cfg
    assert [p.name for p in target.parent.iterdir()] == ["entry"]  # no temporary folder left behind
    reloaded = load_model(str(target), device="cpu", dtype="fp32", use_cache=False)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(reloaded.model(ids).logits, tiny_llama.model(ids).logits, atol=1e-5)


# --- the model cache, public paths and the hub -------------------------------------------------


def test_model_cache_is_keyed_by_what_the_model_is(tiny_model_dir, monkeypatch):
    from mrepe_core import models

    monkeypatch.setattr(models, "_CACHE", models.OrderedDict())
    a = models.load_model(str(tiny_model_dir), dtype="fp32")
    again = models.load_model(f"{tiny_model_dir}/../{tiny_model_dir.name}", dtype="fp32")
    assert again is a and models.cached_models() == 1


def test_model_cache_evicts_beyond_its_limit(tiny_model_dir, tmp_path, tiny_tokenizer, monkeypatch):
    from conftest import make_llama

    from mrepe_core import models

    other = tmp_path / "other"
    make_llama(tiny_tokenizer, seed=3).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    monkeypatch.setattr(models, "_CACHE", models.OrderedDict())
    monkeypatch.setenv("MREPE_MAX_MODELS", "1")
    first = models.load_model(str(tiny_model_dir), dtype="fp32")
    models.load_model(str(other), dtype="fp32")
    assert models.cached_models() == 1
    assert models.load_model(str(tiny_model_dir), dtype="fp32") is not first  # evicted, loaded again


def test_public_server_refuses_paths_without_saying_whether_they_exist(tiny_model_dir, monkeypatch):
    from mrepe_core.model_specs import ModelLoadError, resolve_spec

    monkeypatch.setenv("MREPE_PUBLIC", "1")
    monkeypatch.delenv("MREPE_MODEL_DIRS", raising=False)
    messages = set()
    for spec in ("/etc/shadow", "~/.ssh", "/no/such/place", str(tiny_model_dir), "../../etc/passwd", "a/../../b"):
        with pytest.raises(ModelLoadError) as err:
            resolve_spec(spec)
        messages.add(str(err.value))
    assert len(messages) == 1 and "does not open other server paths" in messages.pop()
    assert resolve_spec("HuggingFaceTB/SmolLM2-135M-Instruct")[0] == "hub"
    monkeypatch.setenv("MREPE_MODEL_DIRS", str(tiny_model_dir.parent))
    assert resolve_spec(str(tiny_model_dir)) == ("dir", str(tiny_model_dir.resolve()), None)


def test_unreachable_hub_fails_fast_with_a_message(monkeypatch):
    import time

    from mrepe_core import hub, models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # tests run offline; here the probe decides
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    hub.forget_probe()
    t0 = time.perf_counter()
    with pytest.raises(models.ModelLoadError, match="cannot reach the Hugging Face hub"):
        models.load_model("someone/not-cached-here")
    assert time.perf_counter() - t0 < 2.0
    monkeypatch.setattr(hub, "hub_offline", lambda: True)
    with pytest.raises(models.ModelLoadError, match="HF_HUB_OFFLINE"):
        models.load_model("someone/not-cached-here")
