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


def test_dtype_choice():
    assert models.choose_dtype("auto", torch.device("cpu")) == torch.float32
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
