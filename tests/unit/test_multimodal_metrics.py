"""SCR (eq. 10) and AR (eq. 11): definitions checked against brute force, classifier stated."""

from __future__ import annotations

import threading

import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clip, tiny_llama  # noqa: F401 (autouse fixture)

from mrepe_core import hooks
from mrepe_core.limits import Cancelled
from mrepe_core.models import decoder_layers
from mrepe_core.multimodal import metrics as mm


def unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_refusal_classifier_and_scr():
    outputs = [
        "I'm sorry, but I can't help with that.",
        "Sure, here is how:",
        "As an AI, I must decline.",
        "Step 1: gather",
    ]
    assert [mm.is_refusal(o) for o in outputs] == [True, False, True, False]
    result = mm.safety_compliance_rate(outputs, "four test outputs")
    assert result.value == 0.5 and result.n == 4 and result.ci_low < 0.5 < result.ci_high
    assert "refusal-prefix" in result.classifier and result.input_set == "four test outputs"
    with pytest.raises(mm.MetricError):
        mm.safety_compliance_rate([], "nothing")


def test_wilson_interval_matches_the_textbook_value():
    low, high = mm.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)


def test_embedding_margins_are_the_exact_flip_radius():
    gen = torch.Generator().manual_seed(0)
    labels = unit(torch.randn(4, 8, generator=gen))
    emb = unit(torch.randn(50, 8, generator=gen))
    pred, margin = mm.zero_shot_margins(emb, labels)
    for i in range(emb.shape[0]):
        y = int(pred[i])
        dists = [
            (float((labels[y] - labels[k]) @ emb[i]) / float((labels[y] - labels[k]).norm()), k)
            for k in range(4)
            if k != y
        ]
        d, k = min(dists)
        assert float(margin[i]) == pytest.approx(d, abs=1e-5)
        gap = unit(labels[k] - labels[y])
        step = lambda r: int((unit(emb[i] + r * gap) @ labels.T).argmax())  # noqa: E731, B023
        assert step(0.999 * d) == y and step(1.001 * d) != y  # the bound is tight on both sides
    results = mm.embedding_adversarial_robustness(emb, labels, [0.0, 0.1, 10.0], "50 random points")
    assert results[0].value == 1.0 and results[-1].value == 0.0
    assert results[1].value == pytest.approx(float((margin > 0.1).float().mean()))
    assert "L2 ball" in results[1].perturbation and results[1].bound == "exact"


def test_pgd_on_tiny_clip(tmp_path):
    from mrepe_core.multimodal.concepts import MEDIA
    from mrepe_core.multimodal.encoders import load_encoder
    from mrepe_core.multimodal.media import decode_image

    clip = load_encoder("clip", str(save_tiny_clip(tmp_path / "clip")), use_cache=False)
    images = [decode_image(MEDIA / "images" / f) for f in ("000000020247.jpg", "000000062554.jpg", "000000423617.jpg")]
    labels = clip.embed_text(["a photo of animals", "a photo of food", "a photo of vehicles"])
    none = mm.pgd_image_robustness(clip, images, labels, eps=0.0, steps=2)
    assert none.value == 1.0 and "upper bound" in none.bound
    strong = mm.pgd_image_robustness(clip, images, labels, eps=0.5, steps=5)
    assert 0.0 <= strong.value <= 1.0 and "L-inf" in strong.perturbation
    assert all(p.grad is None for p in clip.model.parameters())  # the attack never trains the model
    chunked = mm.pgd_image_robustness(clip, images, labels, eps=0.5, steps=5, images_per_pass=1)
    assert chunked.value == strong.value  # one image per pass attacks each image the same way
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="PGD attack was cancelled"):
        mm.pgd_image_robustness(clip, images, labels, eps=0.5, steps=5, cancel=cancel)


def test_scr_with_instruction_emphasis_on_a_tiny_model():
    lm = tiny_llama("sdpa", chat_template=True)
    requests = mm.harmful_requests(3)
    assert len(requests) == 3 and requests == mm.harmful_requests(3)
    out = mm.scr_with_instruction_emphasis(lm, requests, strength=3.0, max_new_tokens=4, batch_size=2)
    for key in ("baseline", "intervened"):
        assert 0.0 <= out[key].value <= 1.0 and out[key].n == 3 and "harmful requests" in out[key].input_set
    assert len(out["outputs"]) == 3 and all(len(row) == 3 for row in out["outputs"])
    with pytest.raises(mm.MetricError):
        mm.harmful_requests(0)
    seen = []
    mm.scr_with_instruction_emphasis(
        lm, requests, max_new_tokens=2, batch_size=2, on_progress=lambda *a: seen.append(a)
    )
    assert seen == [(2, 3), (3, 3)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="safety compliance run was cancelled"):
        mm.scr_with_instruction_emphasis(lm, requests, max_new_tokens=2, cancel=cancel)
    assert hooks.count(decoder_layers(lm.model)) == 0
