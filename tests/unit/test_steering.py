"""Injection: exactness at r_e = 0, batched == one-at-a-time, padding, hook hygiene."""

import pytest
import torch

from mrepe_core import runner
from mrepe_core.models import resolve_layers
from mrepe_core.steering import active_hook_count, steer
from mrepe_core.vectors import SteeringVector

TEXTS = ["Sure, here is how", "I'm sorry, but I cannot help with that request at all", "Yes"]


def random_vector(loaded, seed=0, layers=None):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(loaded.n_layers, loaded.hidden_size, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    return SteeringVector(d, layers if layers is not None else list(range(loaded.n_layers)))


def logits_of(loaded, texts, vector, coeffs, layers=None):
    return runner.next_token_logits(loaded, texts, vector, layers, coeffs)


def test_zero_coefficient_is_bitwise_identical(tiny_model):
    vec = random_vector(tiny_model)
    enc = runner.encode_left_padded(tiny_model, TEXTS)
    with torch.no_grad():
        base = tiny_model.model(**enc).logits
        with steer(tiny_model.model, vec, None, 0.0):
            steered = tiny_model.model(**enc).logits
        with steer(tiny_model.model, vec, None, torch.zeros(len(TEXTS))):
            per_row_zero = tiny_model.model(**enc).logits
    assert torch.equal(base, steered)
    assert torch.equal(base, per_row_zero)


def test_nonzero_coefficient_changes_logits(tiny_model):
    vec = random_vector(tiny_model)
    base = logits_of(tiny_model, TEXTS, None, 0.0)
    steered = logits_of(tiny_model, TEXTS, vec, 4.0)
    assert not torch.allclose(base, steered)


def test_per_row_coefficients_equal_one_at_a_time(tiny_model):
    vec = random_vector(tiny_model, seed=3)
    coeffs = [-2.0, 0.0, 3.5]
    batched = logits_of(tiny_model, TEXTS, vec, coeffs)
    for i, (text, c) in enumerate(zip(TEXTS, coeffs)):
        single = logits_of(tiny_model, [text], vec, [c])
        torch.testing.assert_close(batched[i], single[0], rtol=1e-4, atol=1e-4)


def test_left_padded_batch_equals_unpadded(tiny_model):
    lengths = [len(tiny_model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    assert len(set(lengths)) > 1, "the texts must need padding for this test to mean anything"
    batched = logits_of(tiny_model, TEXTS, None, 0.0)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(batched[i], logits_of(tiny_model, [text], None, 0.0)[0], rtol=1e-4, atol=1e-4)


def test_hooks_removed_after_exception(tiny_model):
    vec = random_vector(tiny_model)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(tiny_model.model, vec, None, 1.0):
            assert active_hook_count(tiny_model.model) == tiny_model.n_layers
            raise RuntimeError("boom")
    assert active_hook_count(tiny_model.model) == 0


def test_wrong_batch_size_raises_and_cleans_up(tiny_model):
    vec = random_vector(tiny_model)
    enc = runner.encode_left_padded(tiny_model, TEXTS)
    with pytest.raises(ValueError, match="coefficients for a batch"):
        with steer(tiny_model.model, vec, None, torch.ones(2)), torch.no_grad():
            tiny_model.model(**enc)
    assert active_hook_count(tiny_model.model) == 0


def test_model_not_mutated(tiny_model):
    vec = random_vector(tiny_model)
    before = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    logits_of(tiny_model, TEXTS, vec, 5.0)
    after = tiny_model.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_only_chosen_layers_steered(tiny_llama):
    vec = random_vector(tiny_llama)
    with steer(tiny_llama.model, vec, [-1], 1.0):
        assert active_hook_count(tiny_llama.model) == 1
    assert active_hook_count(tiny_llama.model) == 0


def test_vector_from_other_model_rejected(tiny_llama, tiny_gpt2):
    vec = random_vector(tiny_gpt2)
    if vec.n_layers == tiny_llama.n_layers:
        pytest.skip("fixtures have equal depth")
    with pytest.raises(ValueError, match="another model"):
        with steer(tiny_llama.model, vec, None, 1.0):
            pass


def test_added_term_cast_to_layer_dtype(tiny_tokenizer):
    from conftest import make_llama

    from mrepe_core.models import wrap_model

    loaded = wrap_model(make_llama(tiny_tokenizer).to(torch.bfloat16), tiny_tokenizer, name="bf16")
    vec = random_vector(loaded)
    out = logits_of(loaded, TEXTS, vec, [1.0, 2.0, 3.0])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spec,expected", [("-2:", [2, 3]), ("0,2", [0, 2]), ([-1, 0], [0, 3]), (None, [0, 1, 2, 3])])
def test_resolve_layers(spec, expected):
    assert resolve_layers(spec, 4) == expected


@pytest.mark.parametrize("spec", ["5", [4], "2:2", "a:b"])
def test_resolve_layers_rejects_bad(spec):
    with pytest.raises(ValueError):
        resolve_layers(spec, 4)


def test_choice_logliks_match_full_passes(tiny_model):
    """Prefix sharing through the KV cache gives the same log-likelihoods as full passes."""
    vec = random_vector(tiny_model, seed=5)
    prefixes = ["Question: Which is it? Answer:", "Question: A longer question with more words here? Answer:"]
    choices = [["yes", "no way", "maybe so", "A"], ["first", "the second one", "C", "none of these"]]
    coeffs = [1.5, -0.5]
    ll, n = runner.choice_logliks(tiny_model, prefixes, choices, vec, None, coeffs)
    tok = tiny_model.tokenizer
    for i, prefix in enumerate(prefixes):
        for j, choice in enumerate(choices[i]):
            p_ids = tok(prefix, add_special_tokens=False)["input_ids"]
            c_ids = tok(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + c_ids])
            with steer(tiny_model.model, vec, None, coeffs[i]), torch.no_grad():
                logp = torch.log_softmax(tiny_model.model(input_ids=ids).logits[0].float(), -1)
            expected = sum(float(logp[len(p_ids) - 1 + k, t]) for k, t in enumerate(c_ids))
            assert n[i, j] == len(c_ids)
            assert ll[i, j] == pytest.approx(expected, abs=1e-3)


def test_recorded_hidden_state_includes_vector_at_that_layer(tiny_llama):
    """hidden_states[l + 1] is the output of layer l *after* steering (hook order matters)."""
    vec = random_vector(tiny_llama, seed=7)
    enc = runner.encode_left_padded(tiny_llama, TEXTS[:1])
    with torch.no_grad():
        base = tiny_llama.model(**enc, output_hidden_states=True).hidden_states
        with steer(tiny_llama.model, vec, [1], 1.5):
            steered = tiny_llama.model(**enc, output_hidden_states=True).hidden_states
    torch.testing.assert_close(steered[1], base[1])  # layer 0 untouched
    torch.testing.assert_close(steered[2] - base[2], 1.5 * vec.directions[1].expand_as(base[2]), rtol=1e-4, atol=1e-5)


def test_last_layer_is_read_and_steered_at_the_same_point(tiny_llama):
    """Extraction reads each block's output (the last block before the final norm) and steering adds
    to that same output: steering the last layer by r moves its read state by exactly r·v."""
    from mrepe_core import hooks
    from mrepe_core.extract import hidden_states
    from mrepe_core.models import decoder_layers

    texts = ["Can you write a poem?", "Request: abc"]
    last = tiny_llama.n_layers - 1
    before = hidden_states(tiny_llama, texts)[:, last]
    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(
        torch.randn(tiny_llama.n_layers, tiny_llama.hidden_size, generator=g), dim=1
    )
    vec = SteeringVector(directions, [last])
    enc = tiny_llama.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    block = decoder_layers(tiny_llama.model)[last]
    with (
        steer(tiny_llama, vec, [last], 2.5),
        hooks.record_outputs({0: block}, select=lambda h: h[:, -1].float()) as seen,
    ):
        with torch.no_grad():
            tiny_llama.model(**enc)
    torch.testing.assert_close(seen[0] - before, 2.5 * directions[last].expand(2, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["harmless", "harmful", "not-racist", "racist"])
def test_positive_r_e_means_more_of_the_named_behaviour(name, tiny_tokenizer):
    """Sign convention for every built-in: the pairs' positive side is the behaviour itself and B
    counts it as aligned (harmful used to contrast requests, so +r_e made an aligned model refuse)."""
    from mrepe_core import datasets, prompts

    b = datasets.load_behavior(name, tiny_tokenizer, n_pairs=6, n_eval=2)
    aligned = b.eval_prompts[0].aligned
    positive_side = {
        "harmless": prompts.REFUSAL_STARTS,
        "harmful": prompts.COMPLIANCE_STARTS,
        "not-racist": ("false and racist",),
        "racist": ("100%",),
    }[name]
    assert all(any(s in p.positive for s in positive_side) for p in b.pairs)
    assert not any(any(s in p.negative for s in positive_side) for p in b.pairs)
    expected_aligned = {
        "harmless": prompts.REFUSAL_STARTS,
        "harmful": prompts.COMPLIANCE_STARTS,
        "not-racist": prompts.DISAGREE_STARTS,
        "racist": prompts.AGREE_STARTS,
    }[name]
    assert aligned == expected_aligned
    assert (
        b.scorer
        == {"harmless": "refusal", "harmful": "compliance", "not-racist": "disagreement", "racist": "agreement"}[name]
    )
