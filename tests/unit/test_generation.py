"""Batched generation with per-row coefficients equals one-row-at-a-time generation and transformers'
own ``generate`` with a steering hook, on every family (packed prefill and plain prefill)."""

import threading

import pytest
import torch
from tiny_models import chat_texts, random_vector

from mrepe_core import runner
from mrepe_core.limits import Cancelled
from mrepe_core.steering import steer

COEFFS = [-3.0, 0.0, 2.0, 5.0]


@torch.no_grad()
def hf_generate(loaded, text, vector, layers, coeff, max_new_tokens):
    """The reference: one prompt, transformers' generate, a scalar steering hook."""
    tok = loaded.tokenizer
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with steer(loaded.model, vector, layers, float(coeff)):
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gpt2", "tiny_qwen3"])
def test_batched_rows_equal_one_at_a_time_and_transformers(request, family):
    loaded = request.getfixturevalue(family)
    vec = random_vector(loaded, seed=21)
    layers = [1, 2]
    texts = chat_texts(loaded)[:3]
    rows = [(t, c) for t in texts for c in COEFFS]
    budgets = [6 + (k % 3) for k in range(len(rows))]  # rows leave the batch at different steps
    batched = runner.generate(loaded, [t for t, _ in rows], vec, layers, [c for _, c in rows], budgets)
    for (text, c), budget, got in zip(rows, budgets, batched):
        alone = runner.generate(loaded, [text], vec, layers, [c], budget)[0]
        assert got == alone
        assert got == hf_generate(loaded, text, vec, layers, c, budget)


def test_zero_coefficient_rows_are_the_unsteered_model(tiny_llama):
    vec = random_vector(tiny_llama, seed=3)
    texts = chat_texts(tiny_llama)
    steered_mix = runner.generate(tiny_llama, texts, vec, None, [0.0, 4.0, 0.0, -4.0], 8)
    plain = runner.generate(tiny_llama, texts, None, None, 0.0, 8)
    assert steered_mix[0] == plain[0] and steered_mix[2] == plain[2]


def test_sampling_is_reproducible_with_a_seed(tiny_llama):
    texts = chat_texts(tiny_llama)
    a = runner.generate(tiny_llama, texts, None, None, 0.0, 8, do_sample=True, temperature=1.5, seed=11)
    b = runner.generate(tiny_llama, texts, None, None, 0.0, 8, do_sample=True, temperature=1.5, seed=11)
    assert a == b


def test_generation_stops_when_cancelled(tiny_llama):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        runner.generate(tiny_llama, chat_texts(tiny_llama), None, None, 0.0, 8, cancel=cancel)


def test_budgets_must_match_rows(tiny_llama):
    with pytest.raises(ValueError, match="budget"):
        runner.generate(tiny_llama, chat_texts(tiny_llama), None, None, 0.0, [4, 4])
