"""Concept identification (eq. 1, eq. 6), direct intervention (eq. 5) and the alpha sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clap, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal import concepts as mc
from mrepe_core.multimodal import interventions as mi
from mrepe_core.multimodal.encoders import clear_encoder_cache, load_encoder
from mrepe_core.multimodal.explorer import analyse_concept, analyse_input, label_probabilities
from mrepe_core.multimodal.media import MediaError, decode_image
from mrepe_core.tradeoff import fit_tradeoff


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    clear_encoder_cache()
    return load_encoder("clip", str(save_tiny_clip(tmp_path_factory.mktemp("clip"))))


@pytest.fixture(scope="module")
def clap(tmp_path_factory):
    return load_encoder("clap", str(save_tiny_clap(tmp_path_factory.mktemp("clap"))))


def test_builtin_catalogue_matches_the_shipped_assets():
    images, texts, audio = (mc.builtin_items(m) for m in ("image", "text", "audio"))
    assert len(images) == 24 and len(texts) == 120 and len(audio) == 10
    assert all(it.path.is_file() for it in images + audio)
    assert {it.label for it in images} == set(mc.IMAGE_THEMES)
    assert sum(it.label == "speech" for it in audio) == 3
    pairs = mc.paired_items("text", "image")
    assert len(pairs) == 120 and all(t.label == i.label for t, i in pairs)
    assert (
        pairs[0][0].text
        in __import__("json").loads((mc.MEDIA / "images" / "captions.json").read_text())["images"][0]["captions"]
    )


def test_builtin_concepts_have_disjoint_sides_and_unrelated_off_target_items():
    c = mc.builtin_concept("animals vs vehicles", "image")
    assert len(c.positives) == 6 and len(c.negatives) == 5 and len(c.off_target) == 13
    assert {it.label for it in c.off_target}.isdisjoint({"animals", "vehicles"})
    assert c.prompts == ("a photo of animals", "a photo of vehicles")
    with pytest.raises(mc.ConceptError, match="no audio examples"):
        mc.builtin_concept("animals vs vehicles", "audio")
    a = mc.builtin_concept("speech vs music", "audio")
    assert len(a.positives) == 3 and len(a.negatives) == 5 and [it.label for it in a.off_target] == ["animal"] * 2


def test_direction_is_the_mean_difference_and_membership_uses_tau():
    pos = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    neg = torch.tensor([[0.0, 1.0]])
    d = mc.concept_direction(pos, neg)
    assert torch.allclose(d.delta, torch.tensor([0.9, -0.7]))
    proto = mc.prototype(pos)
    assert torch.allclose(proto, unit(torch.tensor([0.9, 0.3])))
    member = mc.membership(torch.cat([pos, neg]), proto, tau=0.5)
    assert member.tolist() == [True, True, False]
    fit = mc.fit_threshold(mc.similarity(pos, proto).numpy(), mc.similarity(neg, proto).numpy())
    assert fit.balanced_accuracy == 1.0 and mc.similarity(neg, proto)[0] < fit.tau < mc.similarity(pos, proto).min()


def test_leave_one_out_directions_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(4, 5, generator=gen), torch.randn(3, 5, generator=gen)
    loo = mc.leave_one_out_directions(pos, neg)
    for i in range(4):
        keep = torch.cat([pos[:i], pos[i + 1 :]])
        assert torch.allclose(loo[i], keep.mean(0) - neg.mean(0), atol=1e-6)
    for j in range(3):
        keep = torch.cat([neg[:j], neg[j + 1 :]])
        assert torch.allclose(loo[4 + j], pos.mean(0) - keep.mean(0), atol=1e-6)


def test_direct_intervention_is_eq5_renormalised():
    r = unit(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)))
    delta = torch.randn(8, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(mi.direct_intervention(r, delta, 0.0), r, atol=1e-6)
    out = mi.direct_intervention(r, delta, 1.5)
    assert torch.allclose(out, unit(r + 1.5 * delta), atol=1e-6)
    assert torch.allclose(mi.direct_intervention(r, delta, 1.5, renormalize=False), r + 1.5 * delta)
    with pytest.raises(mi.InterventionError, match="finite"):
        mi.direct_intervention(r, delta, float("inf"))


def planted_eval_set(n_off: int = 12) -> mi.ConceptEvalSet:
    """Axis 0 is the concept; off-target items live on axes 2-5 with labels there."""
    gen = torch.Generator().manual_seed(0)
    d = 8
    noise = lambda n: 0.1 * torch.randn(n, d, generator=gen)  # noqa: E731
    e = torch.eye(d)
    pos, neg = unit(e[0] + noise(6)), unit(-e[0] + noise(6))
    targets = torch.arange(n_off) % 4
    off = unit(e[2 + targets] + noise(n_off))
    return mi.ConceptEvalSet(
        name="planted",
        modality="image",
        pos=pos,
        neg=neg,
        side_label_embeddings=torch.stack([e[0], -e[0]]),
        off_target=off,
        off_target_targets=targets,
        off_target_label_embeddings=e[2:6],
        off_target_labels=("a", "b", "c", "d"),
        logit_scale=20.0,
    )


def test_alpha_sweep_is_a_tidy_tradeoff_frame_with_the_expected_shape():
    es = planted_eval_set()
    alphas = [-3, -1, 0, 1, 3]
    agg = mi.alpha_sweep(es, alphas)
    assert list(agg.columns) == ["r_e", "task", "metric", "subject", "value", "stderr", "n"]
    beh = agg[agg.task == "behavior"].set_index("r_e").value
    assert beh.is_monotonic_increasing and beh[3] > 0.9 and beh[-3] < -0.9 and abs(beh[0]) < 0.2
    acc = agg[(agg.task == "helpfulness") & (agg.metric == "accuracy")].set_index("r_e").value
    p_correct = agg[(agg.task == "helpfulness") & (agg.metric == "helpfulness")].set_index("r_e").value
    # Delta_c is orthogonal to the off-target labels: the argmax survives (renormalising scales all
    # scores alike) but the shrunken label component flattens the softmax, so P(correct) drops.
    assert (acc == 1.0).all()
    assert p_correct[0] > p_correct[1] > p_correct[3] and p_correct[0] > p_correct[-1] > p_correct[-3]
    assert set(agg.subject[agg.task == "behavior"]) == {"planted"}
    assert set(agg.subject[agg.task == "helpfulness"]) == {"mean"}


def test_bound_fits_and_tradeoff_plots_accept_the_sweep():
    from mrepe_core.plots import behavior_figure, helpfulness_figure, tradeoff_figure

    es = planted_eval_set()
    agg = mi.alpha_sweep(es, np.linspace(-4, 4, 17))
    fits = fit_tradeoff(agg, n_choices=es.n_choices)
    assert fits.alignment.delta_lambda > 0 and fits.n_choices == 4
    assert np.isfinite(fits.helpfulness.predict(np.array([0.0]))).all()
    for fig in (
        behavior_figure(agg, fits.alignment, 1.0),
        helpfulness_figure(agg, fits.helpfulness, 4, 1.0),
        tradeoff_figure(agg, fits.regime, 1.0),
    ):
        assert len(fig.data) >= 2


def test_flip_rate_counts_negatives_pushed_to_positive():
    es = planted_eval_set()
    after = mi.direct_intervention(es.neg, es.delta, 3.0)
    assert mi.flip_rate(es.neg, after, es.side_label_embeddings, es.logit_scale) == 1.0
    assert mi.flip_rate(es.neg, es.neg, es.side_label_embeddings, es.logit_scale) == 0.0


def test_end_to_end_on_tiny_clip_images_and_texts(clip):
    bank = mc.EmbeddingBank(clip)
    analysis = analyse_concept(bank, mc.builtin_concept("animals vs vehicles", "image"), alphas=[-2, 0, 2])
    assert analysis.eval_set.pos.shape == (6, 16) and analysis.eval_set.n_choices == 4
    assert len(analysis.agg) == 9 and 0.5 <= analysis.tau_balanced_accuracy <= 1.0
    assert analysis.display_labels == ("animals", "vehicles", "people", "food", "indoor", "outdoor")
    image = decode_image(mc.MEDIA / "images" / "000000165518.jpg")
    found = analyse_input(clip, "image", image, analysis)
    probs = label_probabilities(found.embedding, analysis, 0.0)
    assert probs.shape == (6,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(probs, label_probabilities(found.embedding, analysis, 3.0))
    text = analyse_concept(bank, mc.builtin_concept("food vs indoor", "text"), alphas=[0, 1])
    assert text.eval_set.pos.shape[0] == 20 and text.eval_set.off_target.shape[0] == 80
    with pytest.raises(mi.InterventionError, match="is text but"):
        analyse_input(clip, "text", "a dog", analysis)


def test_audio_concept_on_tiny_clap(clap):
    analysis = analyse_concept(mc.EmbeddingBank(clap), mc.builtin_concept("speech vs music", "audio"), alphas=[0, 2])
    assert analysis.eval_set.pos.shape == (3, 16) and analysis.eval_set.off_target.shape == (2, 16)
    assert analysis.display_labels == ("speech", "music", "animal")


def test_uploaded_concepts_validate_every_file(tmp_path, clip):
    images = mc.builtin_items("image")
    concept = mc.custom_concept(
        "", "image", [images[0].path, images[1].path], [images[14].path], "a wild animal", "a plate of food"
    )
    assert concept.name == "a wild animal vs a plate of food" and concept.source == "upload"
    assert len(concept.off_target) == 24 and len(concept.off_target_labels) == 6
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].path.read_bytes()[:3000])
    with pytest.raises(MediaError, match="broken.jpg"):
        mc.custom_concept("", "image", [bad], [images[1].path], "x", "y")
    with pytest.raises(mc.ConceptError, match="both sides"):
        mc.custom_concept("", "image", [images[0].path], [images[0].path], "x", "y")
    with pytest.raises(mc.ConceptError, match="at least one example"):
        mc.custom_concept("", "text", ["a dog"], [], "x", "y")
    texts = mc.custom_concept("", "text", ["a dog runs", "a cat sleeps"], ["a red car", "a bus"], "animal", "vehicle")
    analysis = analyse_concept(mc.EmbeddingBank(clip), texts, alphas=[0, 1, 2])
    assert analysis.eval_set.off_target.shape[0] == 120
    assert isinstance(analysis.agg, pd.DataFrame)


def test_the_bank_embeds_batch_by_batch_stops_on_cancel_and_keeps_a_bounded_cache(clip):
    import threading

    from mrepe_core.limits import Cancelled

    images = mc.builtin_items("image")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        mc.EmbeddingBank(clip).items(images, cancel)
    bank = mc.EmbeddingBank(clip, max_entries=5)
    first = bank.items(images)
    assert first.shape == (24, clip.dimensions) and len(bank._items) == 5
    assert torch.allclose(bank.items(images), first, atol=1e-6)  # evicted items are embedded again, identically
    texts = [f"a photo of {i}" for i in range(8)]
    assert bank.texts(texts).shape == (8, clip.dimensions) and len(bank._texts) == 5
