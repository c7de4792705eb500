"""Attention-based intervention (eq. 7) on tiny Llama / GPT-2 and inside a tiny CLIP, alone and combined."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clip, tiny_gpt2, tiny_llama  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal.attention import (
    AttentionBiasError,
    active_bias_hooks,
    attention_bias,
    eager_attention,
    span_token_mask,
)
from mrepe_core.multimodal.interventions import (
    InterventionError,
    encode_with_span,
    intervene_embeddings,
    lm_attention_intervention,
    span_attention_mass,
)

PROMPT = "Answer in French. What is the capital of Japan?"
SPAN = "Answer in French."


@pytest.fixture(
    scope="module",
    params=[("llama", "eager"), ("llama", "sdpa"), ("gpt2", "eager"), ("gpt2", "sdpa")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def lm(request):
    family, attn = request.param
    return tiny_llama(attn) if family == "llama" else tiny_gpt2(attn)


def encoded(lm):
    _, ids, attn, mask = encode_with_span(lm.tokenizer, PROMPT, SPAN, use_chat_template=False)
    return ids, attn, mask


@torch.no_grad()
def test_zero_strength_is_bitwise_unchanged(lm):
    ids, attn, mask = encoded(lm)
    base = lm.model(input_ids=ids, attention_mask=attn).logits
    with attention_bias(lm.model, mask, 0.0):
        assert active_bias_hooks(lm.model) == 0
        same = lm.model(input_ids=ids, attention_mask=attn).logits
    with attention_bias(lm.model, np.zeros_like(mask), 4.0):  # an empty span biases nothing
        empty = lm.model(input_ids=ids, attention_mask=attn).logits
    assert torch.equal(base, same) and torch.equal(base, empty)


@torch.no_grad()
def test_positive_strength_raises_and_negative_lowers_span_attention(lm):
    ids, attn, mask = encoded(lm)
    base = span_attention_mass(lm.model, ids, attn, mask, 0.0)
    up = span_attention_mass(lm.model, ids, attn, mask, 2.0)
    down = span_attention_mass(lm.model, ids, attn, mask, -2.0)
    assert (up > base + 0.05).all() and (down < base - 0.05).all()
    only_last = span_attention_mass(lm.model, ids, attn, mask, 2.0, layers=[-1])
    assert only_last[0] == pytest.approx(base[0], abs=1e-6) and only_last[-1] > base[-1] + 0.05
    assert lm.model.config._attn_implementation in ("eager", "sdpa") and active_bias_hooks(lm.model) == 0


@torch.no_grad()
def test_bias_changes_logits_and_cached_generation_matches_full_recompute(lm):
    ids, attn, mask = encoded(lm)
    base = lm.model(input_ids=ids, attention_mask=attn).logits[0, -1]
    with attention_bias(lm.model, mask, 3.0):
        biased = lm.model(input_ids=ids, attention_mask=attn).logits[0, -1]
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=4,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=lm.tokenizer.eos_token_id,
        )
        full = lm.model(input_ids=out.sequences, use_cache=False).logits[0]
    assert (base - biased).abs().max() > 1e-3
    for step, scores in enumerate(out.scores):  # the KV-cache decode path sees the same bias
        assert torch.allclose(scores[0], full[ids.shape[1] - 1 + step], atol=1e-4)


def test_hooks_are_removed_on_error_and_bad_input_is_refused(lm):
    ids, attn, mask = encoded(lm)
    with pytest.raises(RuntimeError, match="boom"):
        with attention_bias(lm.model, mask, 1.0):
            assert active_bias_hooks(lm.model) == 2  # one per decoder layer
            raise RuntimeError("boom")
    assert active_bias_hooks(lm.model) == 0
    with pytest.raises(AttentionBiasError, match="absurd"):
        with attention_bias(lm.model, mask, 500.0):
            pass
    with pytest.raises(AttentionBiasError, match="out of range"):
        with attention_bias(lm.model, mask, 1.0, heads=[7]):
            pass
    with pytest.raises(AttentionBiasError, match="covers"):
        with attention_bias(lm.model, np.ones(ids.shape[1] + 5, dtype=bool), 1.0), torch.no_grad():
            lm.model(input_ids=ids)


def test_head_selection_leaves_other_heads_alone():
    lm = tiny_llama("eager")
    ids, attn, mask = encoded(lm)
    with torch.no_grad(), attention_bias(lm.model, mask, 3.0, layers=[0], heads=[1]):
        att = lm.model(input_ids=ids, attention_mask=attn, output_attentions=True).attentions[0]
    with torch.no_grad():
        ref = lm.model(input_ids=ids, attention_mask=attn, output_attentions=True).attentions[0]
    assert torch.equal(att[0, 0], ref[0, 0]) and not torch.allclose(att[0, 1], ref[0, 1])


def test_eager_switch_is_restored():
    lm = tiny_llama("sdpa")
    with eager_attention(lm.model):
        assert lm.model.config._attn_implementation == "eager"
    assert lm.model.config._attn_implementation == "sdpa"


def test_span_location_and_token_mask():
    lm = tiny_llama(chat_template=True)
    text, ids, _, mask = encode_with_span(lm.tokenizer, PROMPT, SPAN, use_chat_template=True)
    assert text.startswith("<user>") and mask.sum() == len(SPAN)  # byte tokenizer: one token per character
    assert lm.tokenizer.decode(ids[0][torch.as_tensor(mask)]) == SPAN
    assert span_token_mask([(0, 3), (3, 5), (5, 9)], 4, 6).tolist() == [False, True, True]
    with pytest.raises(InterventionError, match="does not occur"):
        encode_with_span(lm.tokenizer, PROMPT, "Reply in German", use_chat_template=False)
    with pytest.raises(InterventionError, match="Mark a span"):
        encode_with_span(lm.tokenizer, PROMPT, "  ", use_chat_template=False)


def test_lm_attention_intervention_and_combined_mode():
    from mrepe_core.vectors import SteeringVector

    lm = tiny_llama("sdpa", chat_template=True)
    result = lm_attention_intervention(lm, PROMPT, SPAN, 3.0, max_new_tokens=6)
    assert result.span_mask.sum() == len(SPAN) and result.layers == [0, 1]
    assert (result.span_mass_intervened > result.span_mass_baseline).all()
    assert result.next_token_kl > 0 and len(result.baseline_top) == 5
    with torch.no_grad():
        _, ids, attn, _ = encode_with_span(lm.tokenizer, PROMPT, SPAN, use_chat_template=True)
        ref = torch.softmax(lm.model(input_ids=ids, attention_mask=attn).logits[0, -1], -1).topk(5)
    assert [p for _, p in result.baseline_top] == pytest.approx(ref.values.tolist(), abs=1e-5)
    none = lm_attention_intervention(lm, PROMPT, SPAN, 0.0, max_new_tokens=6)
    assert none.next_token_kl == 0.0 and none.baseline_text == none.intervened_text

    from mrepe_core.steering import active_hook_count

    # transformers installs its own permanent output-capturing hooks on first use: count ours as a delta.
    hooks_before = active_hook_count(lm.model)
    directions = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    vector = SteeringVector(directions=directions, layers=[0, 1])
    combined = lm_attention_intervention(
        lm, PROMPT, SPAN, 3.0, max_new_tokens=6, vector=vector, steering_layers=[1], steering_coefficient=4.0
    )
    assert combined.next_token_kl != pytest.approx(result.next_token_kl, abs=1e-6)
    assert combined.intervened_top != result.intervened_top or combined.next_token_kl > result.next_token_kl
    assert active_hook_count(lm.model) == hooks_before and active_bias_hooks(lm.model) == 0


def test_clip_attention_and_combined_modes(tmp_path):
    from mrepe_core.multimodal.concepts import MEDIA
    from mrepe_core.multimodal.encoders import ConceptAttention, load_encoder
    from mrepe_core.multimodal.media import decode_image

    clip = load_encoder("clip", str(save_tiny_clip(tmp_path / "clip")), use_cache=False)
    images = [decode_image(MEDIA / "images" / f) for f in ("000000020247.jpg", "000000423617.jpg")]
    delta = torch.randn(16, generator=torch.Generator().manual_seed(3))
    plain = clip.embed_image(images)
    zero = clip.embed_image(images, attention=ConceptAttention(delta, 0.0))
    assert torch.equal(plain, zero)
    att = intervene_embeddings(clip, "image", images, delta, "attention", attention_strength=3.0)
    direct = intervene_embeddings(clip, "image", images, delta, "direct", alpha=2.0)
    both = intervene_embeddings(clip, "image", images, delta, "combined", alpha=2.0, attention_strength=3.0)
    assert not torch.allclose(att, plain, atol=1e-4)
    assert torch.allclose(both, torch.nn.functional.normalize(att + 2.0 * delta, dim=-1), atol=1e-5)
    assert not torch.allclose(both, direct, atol=1e-4)
    text_att = clip.embed_text(["a photo of a dog"], attention=ConceptAttention(delta, 3.0))
    assert not torch.allclose(text_att, clip.embed_text(["a photo of a dog"]), atol=1e-4)
    layers = clip.model.vision_model.encoder.layers
    assert active_bias_hooks(layers) == 0
    with pytest.raises(InterventionError, match="Unknown mode"):
        intervene_embeddings(clip, "image", images, delta, "sideways")
