"""Cross-modal alignment maps (eqs. 3-4), CMC (eq. 8) and direction transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal import alignment as al

D_IN, D_OUT = 16, 12


def unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture(scope="module")
def planted():
    """Two spaces linked by a known map: target = normalise(W source)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(D_OUT, D_IN, generator=gen)

    def sample(n):
        x = unit(torch.randn(n, D_IN, generator=gen))
        return x, unit(x @ w.T)

    return w, sample(256), sample(128)


@pytest.fixture(scope="module")
def trained(planted):
    _, (xs, ys), (hx, hy) = planted
    config = al.AlignmentConfig(epochs=60, hidden=32, attn_dim=16, n_anchors=8, lr=3e-3, tau=0.1, seed=0)
    return al.train_alignment(xs, ys, config, hx, hy, label="planted")


def metric(result, split, stage):
    (row,) = [r for r in result.metrics if r["split"] == split and r["stage"].startswith(stage)]
    return row


def test_training_recovers_a_planted_map_on_held_out_pairs(trained):
    before, after = metric(trained, "held-out", "before"), metric(trained, "held-out", "after")
    assert abs(before["cmc"]) < 0.2 and before["recall_at_1"] < 0.05
    assert after["cmc"] >= 0.9 and after["recall_at_1"] >= 0.9
    assert trained.losses[-1] < 0.25 * trained.losses[0]
    assert not any(r["stage"] == "before (raw)" for r in trained.metrics)  # 16-d vs 12-d: no shared space


def test_architecture_is_eq4_with_anchor_attention(trained):
    model = trained.model
    assert model.anchors.shape == (8, D_OUT) and not model.anchors.requires_grad
    x = unit(torch.randn(3, D_IN))
    with torch.no_grad():
        expected = model.mlp_j(model.mlp_i(x) * model.anchor_attention(x))
        assert torch.allclose(model(x), expected)


def test_training_is_reproducible_with_a_seed(planted):
    _, (xs, ys), _ = planted
    config = al.AlignmentConfig(epochs=3, hidden=16, attn_dim=8, n_anchors=4, seed=5)
    a, b = al.train_alignment(xs[:64], ys[:64], config), al.train_alignment(xs[:64], ys[:64], config)
    assert a.losses == b.losses


def test_direction_transfer_through_the_learned_map(planted, trained):
    w, _, (hx, _) = planted
    concept = unit(torch.randn(D_IN, generator=torch.Generator().manual_seed(9)))
    score = hx @ concept
    pos, neg = hx[score > 0.3], hx[score < -0.3]
    native = unit(pos @ w.T).mean(0) - unit(neg @ w.T).mean(0)  # the direction computed in the target space
    transferred = al.transfer_direction(trained.model, pos, neg)
    assert al.direction_agreement(transferred, native) > 0.9


def test_cmc_and_recall_definitions():
    a = unit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert al.cmc(a, a) == pytest.approx(1.0)
    assert al.cmc(a, a.flip(0)) == pytest.approx(0.0)
    assert al.recall_at_1(a, a) == 1.0 and al.recall_at_1(a, a.flip(0)) == 0.0
    with pytest.raises(al.AlignmentError):
        al.cmc(a, a[:1])
    with pytest.raises(al.AlignmentError, match="batch_size"):
        al.train_alignment(a, a, al.AlignmentConfig(batch_size=1))


def test_split_holds_out_one_group_per_label():
    groups = ["i1", "i1", "i2", "i2", "i3", "i4", "i4", "i5"]
    labels = ["a", "a", "a", "a", "b", "b", "b", "c"]
    train, held = al.split_pairs(groups, labels, seed=0)
    held_groups = {g for g, h in zip(groups, held) if h}
    assert len(held_groups) == 2 and not held_groups & {g for g, t in zip(groups, train) if t}
    assert "i5" not in held_groups  # a label with a single group keeps it for training


def test_builtin_caption_image_alignment_on_tiny_clip(tmp_path):
    from mrepe_core.multimodal.concepts import EmbeddingBank
    from mrepe_core.multimodal.encoders import load_encoder

    clip = load_encoder("clip", str(save_tiny_clip(tmp_path / "clip")), use_cache=False)
    report = al.builtin_alignment(EmbeddingBank(clip), "text", "image", al.AlignmentConfig(epochs=5, hidden=32))
    assert report.n_train == 90 and report.n_heldout == 30  # one image (5 captions) per theme held out
    stages = {(r["split"], r["stage"]) for r in report.table()}
    assert ("held-out", "before (raw)") in stages and ("held-out", "after (trained phi)") in stages
    assert {r["concept"] for r in report.transfer} == {"animals vs vehicles", "food vs indoor"}
    assert all(-1 <= r["agreement_after"] <= 1 and "agreement_before" in r for r in report.transfer)
    assert np.isfinite([r["cmc"] for r in report.table()]).all()


def test_kmeans_anchors_find_planted_clusters():
    gen = torch.Generator().manual_seed(1)
    centres = torch.eye(4, 6) * 5
    points = torch.cat([c + 0.1 * torch.randn(20, 6, generator=gen) for c in centres])
    anchors = al.kmeans_anchors(points, 4, seed=0)
    assert anchors.shape == (4, 6)
    assert torch.cdist(centres, anchors).min(1).values.max() < 0.2
    assert torch.equal(al.kmeans_anchors(points[:3], 8, seed=0), points[:3])  # fewer points than anchors


def test_copies_of_a_target_are_not_negatives():
    targets = unit(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # two captions of one image
    mapped = targets.clone()
    groups = al.target_groups(targets)
    assert groups[0] == groups[1] != groups[2]
    masked = al.info_nce(mapped, targets, 0.1, groups)
    naive = al.info_nce(mapped, targets, 0.1)
    assert masked < 0.01 < naive  # without the mask the duplicate counts as a perfect "negative"
    assert al.recall_at_1(mapped, targets) == 1.0
