"""Other tools' steering-vector files: GGUF (llama.cpp, repeng), IBM .svec, lm-eval .pt (export only)."""

import json
import struct

import gguf
import numpy as np
import pytest
import torch

from mrepe_core import vector_formats as vf
from mrepe_core.vector_formats import (
    FORMATS,
    from_layer_dict,
    load_vector,
    read_gguf,
    read_svec,
    save_vector,
    write_gguf,
    write_lm_eval,
    write_svec,
)
from mrepe_core.vectors import SteeringVector, VectorFileError

N_LAYERS, HIDDEN = 6, 8


def unit_vector(layers=(1, 3, 5), seed=0, method="pca"):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(N_LAYERS, HIDDEN, generator=g)
    d /= d.norm(dim=1, keepdim=True)
    stats = [round(0.1 * (i + 1), 6) for i in range(N_LAYERS)]
    meta = {"model": "tiny/llama", "method": method, "behavior": "refusal", "per_layer_statistic": stats}
    return SteeringVector(d, list(layers), meta)


def gguf_file(path, tensors, arch="controlvector", layer_count=None, int32_count=False):
    """A GGUF written with gguf.GGUFWriter the way the tools do, with whatever tensors a test needs."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_string(f"{arch}.model_hint", "llama")
    count = len(tensors) if layer_count is None else layer_count
    (writer.add_int32 if int32_count else writer.add_uint32)(f"{arch}.layer_count", count)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def repeng_export_gguf(model_type, directions, path):
    """repeng/extract.py ControlVector.export_gguf, line by line."""
    arch = "controlvector"
    writer = gguf.GGUFWriter(path, arch)
    writer.add_string(f"{arch}.model_hint", model_type)
    writer.add_uint32(f"{arch}.layer_count", len(directions))
    for layer in directions.keys():
        writer.add_tensor(f"direction.{layer}", directions[layer])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def repeng_directions(num_hidden_layers, seed=0):
    """Directions keyed as repeng's read_representations keys them by default: range(-1,
    -num_hidden_layers, -1) made positive (n-1 down to 1), each a float32 unit PCA component."""
    rng = np.random.default_rng(seed)
    hidden_layers = [i + num_hidden_layers for i in range(-1, -num_hidden_layers, -1)]
    out = {}
    for layer in hidden_layers:
        v = rng.standard_normal(HIDDEN).astype(np.float32)
        out[layer] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


# --- GGUF ------------------------------------------------------------------------------------------


def test_gguf_round_trip_keeps_steered_rows_layers_and_metadata(tmp_path):
    vec = unit_vector()
    path = write_gguf(vec, tmp_path / "v.gguf")
    back = read_gguf(path)
    assert back.n_layers == N_LAYERS and back.layers == [1, 3, 5]
    for k in range(N_LAYERS):
        expected = vec.directions[k] if k in (1, 3, 5) else torch.zeros(HIDDEN)
        torch.testing.assert_close(back.directions[k], expected, rtol=0, atol=0)
    assert back.metadata["behavior"] == "refusal" and back.metadata["per_layer_statistic"][2] == 0.3
    assert back.metadata["source_format"] == "gguf" and back.metadata["unit_norm"] is True
    assert set(back.metadata["layer_norms"]) == {"1", "3", "5"}


def test_our_gguf_reads_as_llama_cpp_loader_and_adapter_do(tmp_path):
    vec = unit_vector(layers=(2, 4, 5))
    path = write_gguf(vec, tmp_path / "v.gguf", model_hint="llama")
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    count = reader.get_field("controlvector.layer_count")
    assert count.types == [gguf.GGUFValueType.UINT32] and count.contents() == 3  # repeng: number of tensors
    assert sorted(t.name for t in reader.tensors) == ["direction.2", "direction.4", "direction.5"]
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert [int(d) for d in t.shape] == [HIDDEN]  # ggml_n_dims == 1
    # common_control_vector_load_one: direction.k goes to offset (k-1)*n_embd; llama_adapter_cvec::apply
    # fills block il (1 <= il < n_layer) from offset (il-1)*n_embd and adds it after block il.
    n_embd = HIDDEN
    data = np.zeros(0, dtype=np.float32)
    for t in reader.tensors:
        k = int(t.name.split(".", 1)[1])
        assert k >= 1
        data = np.pad(data, (0, max(0, n_embd * k - len(data))))
        data[n_embd * (k - 1) : n_embd * k] += t.data
    for il in range(1, N_LAYERS):
        off = n_embd * (il - 1)
        applied = data[off : off + n_embd] if off + n_embd <= len(data) else np.zeros(n_embd)
        expected = vec.directions[il].numpy() if il in (2, 4, 5) else np.zeros(n_embd)
        np.testing.assert_array_equal(applied, expected)


def test_block_0_is_left_out_with_a_warning_and_alone_is_an_error(tmp_path):
    vec = unit_vector(layers=(0, 2))
    with pytest.warns(UserWarning, match="block 0"):
        path = write_gguf(vec, tmp_path / "v.gguf")
    assert [t.name for t in gguf.GGUFReader(path).tensors] == ["direction.2"]
    with pytest.raises(VectorFileError, match="block 0"):
        write_gguf(unit_vector(layers=(0,)), tmp_path / "w.gguf")
    assert not (tmp_path / "w.gguf").exists()


def test_repeng_export_loads_with_its_layers_and_scale(tmp_path):
    directions = repeng_directions(N_LAYERS)
    assert list(directions) == [5, 4, 3, 2, 1]
    path = tmp_path / "repeng.gguf"
    repeng_export_gguf("llama", directions, path)
    vec = read_gguf(path)  # no n_layers: largest k + 1; layer_count (5) counts tensors, not blocks
    assert vec.n_layers == N_LAYERS and vec.layers == [1, 2, 3, 4, 5]
    assert vec.metadata["gguf_layer_count"] == 5 and vec.metadata["model_hint"] == "llama"
    for k, d in directions.items():
        np.testing.assert_array_equal(vec.directions[k].numpy(), d)
    assert vec.metadata["unit_norm"] is True and not vec.directions[0].any()
    # repeng's `vector * 2.5` keeps its scale: r_e = 1 here is repeng's coeff 1 on that vector.
    repeng_export_gguf("llama", {k: d * np.float32(2.5) for k, d in directions.items()}, path)
    scaled = read_gguf(path, n_layers=8)
    assert scaled.n_layers == 8 and scaled.metadata["unit_norm"] is False
    assert scaled.metadata["layer_norms"]["3"] == pytest.approx(2.5, abs=1e-5)
    torch.testing.assert_close(scaled.directions[3], torch.from_numpy(directions[3]) * 2.5)


def test_cvector_generator_style_file_is_flagged(tmp_path):
    path = gguf_file(tmp_path / "cv.gguf", {"direction.1": np.ones(HIDDEN, np.float32)}, int32_count=True)
    vec = read_gguf(path, n_layers=N_LAYERS)
    assert "block k-1" in vec.metadata["note"] and vec.layers == [1]


def test_easysteer_fields_and_repeated_layers_read_as_llama_cpp_sums_them(tmp_path):
    path = tmp_path / "easy.gguf"
    writer = gguf.GGUFWriter(path, "controlvector")
    writer.add_string("controlvector.model_hint", "qwen2")
    writer.add_string("controlvector.method", "pca")
    writer.add_uint32("controlvector.layer_count", 2)
    writer.add_float32("controlvector.explained_variance.2", 0.5)
    writer.add_tensor("direction.2", np.ones(HIDDEN, np.float32))
    writer.add_tensor("direction.02", np.full(HIDDEN, 2.0, np.float32))  # stoi("02") == 2: llama.cpp adds it
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    vec = read_gguf(path)
    assert vec.layers == [2] and vec.directions[2].tolist() == [3.0] * HIDDEN
    assert vec.metadata["source_method"] == "pca" and vec.metadata["model_hint"] == "qwen2"


def test_trailing_unit_dim_is_one_dimensional_as_in_ggml(tmp_path):
    # numpy [1, d] is ggml ne = [d, 1]: ggml_n_dims == 1, so llama.cpp accepts it.
    path = gguf_file(tmp_path / "v.gguf", {"direction.2": np.ones((1, HIDDEN), np.float32)})
    assert read_gguf(path).directions[2].tolist() == [1.0] * HIDDEN


@pytest.mark.parametrize(
    ("tensors", "kwargs", "match"),
    [
        ({"direction.1": np.ones(8, np.float32)}, {"arch": "llama"}, "architecture is 'llama'"),
        ({"direction.0": np.ones(8, np.float32)}, {}, "direction.0"),
        ({"direction.1": np.ones(8, np.float16)}, {}, "F16.*1-D F32"),
        ({"direction.1": np.ones((2, 8), np.float32)}, {}, r"\[8, 2\].*1-D"),
        ({"direction.1": np.ones(8, np.float32), "direction.2": np.ones(6, np.float32)}, {}, "hidden size"),
        ({"direction.1": np.ones(8, np.float32), "token_embd.weight": np.ones(8, np.float32)}, {}, "token_embd"),
        ({"direction.1": np.full(8, np.nan, np.float32)}, {}, "NaN"),
        ({}, {}, "no direction"),
    ],
)
def test_malformed_gguf_is_refused_with_a_clear_message(tmp_path, tensors, kwargs, match):
    path = gguf_file(tmp_path / "bad.gguf", tensors, **kwargs)
    with pytest.raises(VectorFileError, match=match):
        read_gguf(path)


def test_gguf_layer_that_does_not_fit_the_model(tmp_path):
    path = gguf_file(tmp_path / "v.gguf", {"direction.7": np.ones(HIDDEN, np.float32)})
    with pytest.raises(VectorFileError, match="block 7.*does not fit 6 blocks"):
        read_gguf(path, n_layers=N_LAYERS)


@pytest.mark.parametrize("keep", [6, 30, 200])
def test_truncated_gguf_is_refused(tmp_path, keep):
    path = write_gguf(unit_vector(), tmp_path / "v.gguf")
    raw = path.read_bytes()
    path.write_bytes(raw[: keep if keep < 200 else len(raw) - 5])  # inside magic, header, tensor data
    with pytest.raises(VectorFileError, match="truncated|not a GGUF"):
        read_gguf(path)


def test_hostile_gguf_header_is_refused_before_the_parser_sees_it(tmp_path):
    # One key holding an array that claims 2**40 uint8 items: GGUFReader would build an object per item.
    key = b"x"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    path = tmp_path / "hostile.gguf"
    path.write_bytes(header + struct.pack("<IIQ", 9, 0, 1 << 40) + b"\0" * 64)
    with pytest.raises(VectorFileError, match="over 65536 items"):
        read_gguf(path)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    with pytest.raises(VectorFileError, match="1099511627776 tensors"):
        read_gguf(path)


def test_oversized_and_foreign_files_are_refused(tmp_path, monkeypatch):
    path = write_gguf(unit_vector(), tmp_path / "v.gguf")
    monkeypatch.setattr(vf.gguf, "MAX_FILE_BYTES", 100)
    with pytest.raises(VectorFileError, match="over 0 MB"):
        read_gguf(path)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"\x00" * 64)
    with pytest.raises(VectorFileError, match="not a GGUF file"):
        read_gguf(other)


# --- .svec -----------------------------------------------------------------------------------------


def test_svec_round_trip_and_ibm_loader_shape(tmp_path):
    vec = unit_vector(layers=(2, 3))
    path = write_svec(vec, tmp_path / "v.svec", model_hint="llama")
    data = json.loads(path.read_text())
    # What IBM activation-steering SteeringVector.load reads: every key present, int-able keys, 1-D lists.
    assert data["model_type"] == "llama"
    assert sorted(int(k) for k in data["directions"]) == list(range(N_LAYERS))  # every non-zero layer
    assert set(data["explained_variances"]) == set(data["directions"])
    assert data["explained_variances"]["2"] == 0.3  # our PCA statistic
    assert all(len(v) == HIDDEN for v in data["directions"].values())
    back = read_svec(path)
    torch.testing.assert_close(back.directions, vec.directions, rtol=0, atol=0)
    assert back.layers == [2, 3] and back.n_layers == N_LAYERS
    assert back.metadata["behavior"] == "refusal" and back.metadata["source_format"] == "svec"
    assert "input" in back.metadata["layer_convention"]


def test_foreign_svec_files_load(tmp_path):
    rng = np.random.default_rng(1)
    rows = {2: rng.standard_normal(HIDDEN).tolist(), 4: rng.standard_normal(HIDDEN).tolist()}
    ibm = {"model_type": "llama", "directions": {str(k): v for k, v in rows.items()}, "explained_variances": {"2": 0.4}}
    (tmp_path / "ibm.svec").write_text(json.dumps(ibm))
    vec = read_svec(tmp_path / "ibm.svec", n_layers=N_LAYERS)
    assert vec.layers == [2, 4] and vec.n_layers == N_LAYERS and not vec.directions[3].any()
    assert vec.metadata["explained_variances"] == {"2": 0.4} and vec.metadata["unit_norm"] is False
    np.testing.assert_allclose(vec.directions[4].numpy(), rows[4], rtol=1e-6)
    aisteer = {"model_type": "llama", "directions": {str(k): [v] for k, v in rows.items()}, "num_heads": 2}
    (tmp_path / "ai.svec").write_text(json.dumps(aisteer))  # [K=1, D], no explained_variances
    torch.testing.assert_close(read_svec(tmp_path / "ai.svec", n_layers=N_LAYERS).directions, vec.directions)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON.*line 1 column 2"),
        ("[1, 2]", "needs 'directions'"),
        ('{"directions": {}}', "needs 'directions'"),
        ('{"directions": {"x": [1.0]}}', "block numbers.*'x'"),
        ('{"directions": {"1": ["a"]}}', "list of numbers"),
        ('{"directions": {"1": [true, 1.0]}}', "list of numbers"),
        ('{"directions": {"1": [NaN, 1.0]}}', "NaN is not a number"),
        ('{"directions": {"1": [1e999, 1.0]}}', "NaN or infinite"),
        ('{"directions": {"1": [[1.0, 2.0], [3.0, 4.0]]}}', "K=2"),
        ('{"directions": {"1": [1.0], "2": [1.0, 2.0]}}', "hidden size"),
        ('{"directions": {"1": [1.0]}, "explained_variances": {"1": "high"}}', "explained_variances"),
        ('{"directions": {"1": [1.0]}, "mrepe": {"n_layers": "six"}}', "'mrepe'"),
        ('{"directions": {"1": [1.0]}, "mrepe": {"metadata": [1]}}', "metadata"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_svec_is_refused_with_a_clear_message(tmp_path, text, match):
    path = tmp_path / "bad.svec"
    path.write_text(text)
    with pytest.raises(VectorFileError, match=match) as info:
        read_svec(path)
    assert len(str(info.value)) < 300


def test_svec_limits_and_no_echo(tmp_path, monkeypatch):
    deep = {"directions": {"1": [1.0]}, "mrepe": {"metadata": {"a": json.loads("[" * 40 + "]" * 40)}}}
    (tmp_path / "deep.svec").write_text(json.dumps(deep))
    with pytest.raises(VectorFileError, match="shallow"):
        read_svec(tmp_path / "deep.svec")
    huge_key = "9" * 100_000
    (tmp_path / "key.svec").write_text(json.dumps({"directions": {huge_key: [1.0]}}))
    with pytest.raises(VectorFileError) as info:
        read_svec(tmp_path / "key.svec")
    assert len(str(info.value)) < 300
    (tmp_path / "bin.svec").write_bytes(b"\xff\xfe{}")
    with pytest.raises(VectorFileError, match="UTF-8"):
        read_svec(tmp_path / "bin.svec")
    monkeypatch.setattr(vf.svec, "MAX_JSON_BYTES", 10)
    with pytest.raises(VectorFileError, match="over 0 MB"):
        read_svec(tmp_path / "key.svec")


# --- lm-eval ---------------------------------------------------------------------------------------


def test_lm_eval_file_is_what_hf_steered_reads(tmp_path):
    vec = unit_vector(layers=(1, 4))
    path = write_lm_eval(vec, tmp_path / "steer.pt", coefficient=3.5)
    config = torch.load(path, weights_only=True)  # our own file, in the test only
    assert list(config) == ["layers.1", "layers.4"]
    acts = torch.randn(2, 5, HIDDEN)
    for k, info in zip((1, 4), config.values()):
        assert set(info) == {"steering_vector", "steering_coefficient", "action", "bias"}
        assert info["action"] == "add" and info["bias"] is None and info["steering_coefficient"] == 3.5
        v = info["steering_vector"]
        assert v.shape == (HIDDEN,) and v.dtype == torch.float32 and v.untyped_storage().nbytes() == HIDDEN * 4
        torch.testing.assert_close(v, vec.directions[k], rtol=0, atol=0)
        # hf_steered's add (head_index None): acts + vector * coefficient over [batch, pos, features]
        steered = acts + v * info["steering_coefficient"]
        torch.testing.assert_close(steered - acts, (3.5 * v).expand(2, 5, -1))
    gpt2 = torch.load(write_lm_eval(vec, tmp_path / "g.pth", layers=[2], hookpoint="h.{k}"), weights_only=True)
    assert list(gpt2) == ["h.2"]
    with pytest.raises(VectorFileError, match=r"\.pt or \.pth"):
        write_lm_eval(vec, tmp_path / "steer.bin")
    for bad in ({"coefficient": float("nan")}, {"coefficient": "x"}, {"hookpoint": "layers"}):
        with pytest.raises(VectorFileError, match="finite number.*hookpoint"):
            write_lm_eval(vec, tmp_path / "bad.pt", **bad)
    assert not (tmp_path / "bad.pt").exists()
    numpy_coefficient = torch.load(write_lm_eval(vec, tmp_path / "n.pt", coefficient=np.float32(2)), weights_only=True)
    assert type(numpy_coefficient["layers.1"]["steering_coefficient"]) is float


@pytest.mark.parametrize("name", ["steer.pt", "steer.pth", "model.bin", "noext"])
def test_pickles_are_never_loaded(tmp_path, name):
    path = tmp_path / name
    torch.save({"x": torch.ones(2)}, path)
    with pytest.raises(VectorFileError, match="pickle.*run code"):
        load_vector(path)


# --- dispatch and steering-vectors -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mrepe", "gguf", "svec"])
def test_save_and_load_every_readable_format(tmp_path, fmt):
    vec = unit_vector()
    by_format = save_vector(vec, tmp_path / f"a-{fmt}", format=fmt)
    suffix = next(f.suffixes[0] for f in FORMATS if f.name == fmt)
    by_suffix = save_vector(vec, tmp_path / f"b{suffix}")
    for paths in (by_format, by_suffix):
        assert paths[0].suffix == suffix
        back = load_vector(paths[0], n_layers=N_LAYERS)
        assert back.layers == [1, 3, 5] and back.metadata["behavior"] == "refusal"
        torch.testing.assert_close(back.directions[[1, 3, 5]], vec.directions[[1, 3, 5]], rtol=0, atol=0)
    with pytest.raises(VectorFileError, match="another model"):
        load_vector(by_suffix[0], n_layers=3)


def test_save_vector_refuses_unknown_formats_and_options(tmp_path):
    vec = unit_vector()
    with pytest.raises(VectorFileError, match="Name a format"):
        save_vector(vec, tmp_path / "v.txt")
    with pytest.raises(VectorFileError, match="Name a format"):
        save_vector(vec, tmp_path / "v", format="onnx")
    with pytest.raises(VectorFileError, match="coefficient.*got \\['scale'\\]"):
        save_vector(vec, tmp_path / "v.pt", scale=2.0)
    assert save_vector(vec, tmp_path / "v", format="lm_eval", coefficient=2.0)[0].name == "v.pt"


def test_formats_list_is_complete():
    assert [f.name for f in FORMATS] == ["mrepe", "gguf", "svec", "lm_eval"]
    assert [f.readable for f in FORMATS] == [True, True, True, False]
    assert all(f.description and f.suffixes[0].startswith(".") for f in FORMATS)


def test_from_layer_dict_keeps_scale_and_maps_negative_layers():
    acts = {1: torch.full((HIDDEN,), 0.5), -1: torch.ones(1, HIDDEN) * 2}
    vec = from_layer_dict(acts, N_LAYERS, metadata={"behavior": "x"})
    assert vec.layers == [1, 5] and vec.n_layers == N_LAYERS and not vec.directions[0].any()
    torch.testing.assert_close(vec.directions[5], torch.full((HIDDEN,), 2.0))
    assert vec.metadata["unit_norm"] is False and vec.metadata["behavior"] == "x"
    assert vec.metadata["layer_norms"]["1"] == pytest.approx(0.5 * HIDDEN**0.5)


@pytest.mark.parametrize(
    ("acts", "kwargs"),
    [
        ({9: torch.ones(HIDDEN)}, {}),
        ({1: torch.ones(HIDDEN), -5: torch.ones(HIDDEN)}, {}),
        ({1: torch.ones(2, HIDDEN)}, {}),
        ({"1": torch.ones(HIDDEN)}, {}),
        ({1: torch.ones(HIDDEN), 2: torch.ones(3)}, {}),
        ({1: torch.ones(HIDDEN)}, {"layer_type": "mlp"}),
        ({}, {}),
    ],
)
def test_from_layer_dict_refuses_what_does_not_fit(acts, kwargs):
    with pytest.raises(VectorFileError):
        from_layer_dict(acts, N_LAYERS, **kwargs)


def test_lm_eval_hookpoints_name_the_decoder_blocks_hf_steered_hooks(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32, hidden_size=HIDDEN, intermediate_size=16, num_hidden_layers=N_LAYERS, num_attention_heads=2
    )
    model = LlamaForCausalLM(cfg)
    config = torch.load(write_lm_eval(unit_vector(), tmp_path / "s.pt"), weights_only=True)
    modules = dict(model.base_model.named_modules())  # where hf_steered.steer() looks hookpoints up
    assert [modules[h] for h in config] == [model.model.layers[k] for k in (1, 3, 5)]


def test_cli_offers_the_formats_the_module_writes():
    from mrepe_core.cli import VECTOR_FORMATS
    from mrepe_core.vector_formats import FORMATS

    assert set(VECTOR_FORMATS) == {f.name for f in FORMATS}
