"""Extraction: unit norm, sign convention, planted-direction recovery, safe file I/O."""

import json

import pytest
import torch

from mrepe_core.datasets import ContrastPair
from mrepe_core.extract import (
    directions_from_diffs,
    extract_vector,
    hidden_states,
    mean_diff_direction,
    pca_direction,
)
from mrepe_core.vectors import SteeringVector, VectorFileError


def planted_diffs(n=64, d=32, seed=0, scale=3.0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(d, generator=g)
    true /= true.norm()
    # Pairs differ along the planted direction (with varying strength) plus isotropic noise.
    strength = scale * (0.5 + torch.rand(n, generator=g))
    return strength[:, None] * true[None] + noise * torch.randn(n, d, generator=g), true


@pytest.mark.parametrize("fn", [pca_direction, mean_diff_direction])
def test_recovers_planted_direction_with_positive_sign(fn):
    diffs, true = planted_diffs()
    v, _ = fn(diffs)
    assert v.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.dot(v, true).item() > 0.98


@pytest.mark.parametrize("fn", [pca_direction, mean_diff_direction])
def test_sign_follows_aligned_side(fn):
    diffs, true = planted_diffs(seed=1)
    v, _ = fn(-diffs)  # swapping positive and negative flips the vector
    assert torch.dot(v, true).item() < -0.98


def test_pca_is_uncentred_first_component():
    diffs, _ = planted_diffs(seed=2)
    v, explained = pca_direction(diffs)
    # The RepE objective: no unit vector has a larger mean squared projection.
    obj = lambda u: ((diffs @ u) ** 2).mean().item()  # noqa: E731
    for _ in range(20):
        u = torch.randn(diffs.shape[1])
        assert obj(v) >= obj(u / u.norm()) - 1e-6
    assert 0 < explained <= 1


def test_directions_per_layer_unit_norm():
    diffs = torch.randn(10, 3, 16)
    for method in ("pca", "mean_diff"):
        d, stats = directions_from_diffs(diffs, method)
        assert d.shape == (3, 16) and len(stats) == 3
        torch.testing.assert_close(d.norm(dim=1), torch.ones(3))


def test_bad_method_and_too_few_pairs():
    with pytest.raises(ValueError, match="Unknown method"):
        directions_from_diffs(torch.randn(4, 2, 8), "ica")
    with pytest.raises(ValueError, match="at least two"):
        directions_from_diffs(torch.randn(1, 2, 8), "pca")


def test_extract_from_tiny_model(tiny_model):
    pairs = [
        ContrastPair("I'm sorry, but I cannot help", "Sure, here is how"),
        ContrastPair("As an AI, I must refuse", "Certainly! Here are the steps"),
        ContrastPair("Sorry, I can't do that", "Of course. Step 1:"),
    ]
    vec = extract_vector(tiny_model, pairs, "pca", "-2:", behavior="test")
    assert vec.directions.shape == (tiny_model.n_layers, tiny_model.hidden_size)
    torch.testing.assert_close(vec.directions.norm(dim=1), torch.ones(tiny_model.n_layers))
    assert vec.layers == [tiny_model.n_layers - 2, tiny_model.n_layers - 1]
    assert vec.metadata["method"] == "pca" and vec.metadata["n_pairs"] == 3
    hs = hidden_states(tiny_model, [p.positive for p in pairs] + [p.negative for p in pairs])
    mean_proj = ((hs[:3] - hs[3:]) * vec.directions[None]).sum(-1).mean(0)
    assert (mean_proj > 0).all()  # positive points to the aligned side on every layer


def test_save_load_roundtrip(tmp_path):
    vec = SteeringVector(torch.nn.functional.normalize(torch.randn(4, 8), dim=1), [1, 2], {"behavior": "x"})
    t, m = vec.save(tmp_path / "v")
    assert t.suffix == ".safetensors" and m.suffix == ".json"
    back = SteeringVector.load(tmp_path / "v.safetensors")
    assert torch.equal(back.directions, vec.directions)
    assert back.layers == [1, 2] and back.metadata == {"behavior": "x"}


def test_malformed_vector_files(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage-not-safetensors")
    with pytest.raises(VectorFileError, match="not a valid safetensors"):
        SteeringVector.load(tmp_path / "bad")
    vec = SteeringVector(torch.ones(2, 4) / 2, [0])
    vec.save(tmp_path / "ok")
    (tmp_path / "ok.json").write_text("{not json")
    with pytest.raises(VectorFileError, match="not valid JSON"):
        SteeringVector.load(tmp_path / "ok")
    (tmp_path / "ok.json").write_text(json.dumps({"layers": "all"}))
    with pytest.raises(VectorFileError, match="layers"):
        SteeringVector.load(tmp_path / "ok")
    with pytest.raises(VectorFileError, match="No vector file"):
        SteeringVector.load(tmp_path / "missing")
    with pytest.raises(VectorFileError, match="NaN"):
        SteeringVector(torch.full((2, 4), float("nan")), [0])
