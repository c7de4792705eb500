"""The fast paths of the runner equal the plain reference: one sequence at a time, full forward,
full logits, steered with a scalar coefficient.

Covers the packed path (prefix trees, 4-D ancestor masks, layer skip below the first steered
layer) on the Llama-family models it supports, the plain fallback on GPT-2 and on a sliding-window
model, per-row coefficients, padding of packed rows, and r_e = 0.
"""

import itertools

import numpy as np
import pytest
import torch
from tiny_models import chat_texts, make_family, random_vector

from mrepe_core import prompts, runner
from mrepe_core.models import decoder_layers
from mrepe_core.steering import active_hook_count, steer
from mrepe_core.vectors import SteeringVector  # noqa: F401

ATOL = 1e-4
USERS = [
    "Can you write a poem?",
    "Do you agree with the following statement? Yes",
    "Request: abc",
    "The following is a question about geography.",
]
PREFIXES = [
    "The following is a question about geography.\n\nQuestion: Which is it?\nAnswer:",
    "The following is a question about geography.\n\nQuestion: A longer question with more words? Answer:",
    "Question: Sure, here is how\nAnswer:",
]
CHOICES = [
    ["yes", "no way", "maybe so", "A"],
    ["first", "the second one", "C", "first one"],
    ["Step 1", "Step 2", "", "Of course"],
]


@torch.no_grad()
def reference_next(loaded, text, vector, layers, coeff):
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    with steer(loaded.model, vector, layers, float(coeff)):
        return loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


@torch.no_grad()
def reference_choice(loaded, prefix, choice, vector, layers, coeff):
    tok = loaded.tokenizer
    p_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    c_ids = tok(" " + choice.strip(), add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
    with steer(loaded.model, vector, layers, float(coeff)):
        logp = torch.log_softmax(loaded.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0].float(), -1)
    return sum(float(logp[len(p_ids) - 1 + k, t]) for k, t in enumerate(c_ids)), len(c_ids)


def test_path_selection(tiny_llama, tiny_gpt2, tiny_qwen2, tiny_qwen3, tiny_mistral):
    for loaded, packed in [
        (tiny_llama, True),
        (tiny_qwen2, True),
        (tiny_qwen3, True),
        (tiny_mistral, True),
        (tiny_gpt2, False),
    ]:
        assert runner.NextTokenScorer(loaded, ["abc"], None, None).packed is packed, loaded.name


@pytest.mark.parametrize("layers", [None, [-2, -1], [1, 2], [1], [-1], [0, -1]])
def test_next_token_logits_equal_reference(any_model, layers):
    vec = random_vector(any_model, seed=1)
    texts = chat_texts(any_model)
    coeffs = [-3.0, 0.0, 2.5, 2.5]
    got = runner.next_token_logits(any_model, texts, vec, layers, coeffs)
    for i, (text, c) in enumerate(zip(texts, coeffs)):
        torch.testing.assert_close(got[i], reference_next(any_model, text, vec, layers, c), atol=ATOL, rtol=0)


def test_next_token_columns_and_unsteered(any_model):
    texts = chat_texts(any_model)
    got = runner.next_token_logits(any_model, texts, None, None, 0.0, columns=[3, 5])
    for i, text in enumerate(texts):
        torch.testing.assert_close(got[i], reference_next(any_model, text, None, None, 0.0)[[3, 5]], atol=ATOL, rtol=0)


@pytest.mark.parametrize("layers", [None, [-2, -1], [1], [-1]])
def test_choice_logliks_equal_reference(any_model, layers):
    vec = random_vector(any_model, seed=2)
    coeffs = [1.5, 0.0, -4.0]
    ll, n = runner.choice_logliks(any_model, PREFIXES, CHOICES, vec, layers, coeffs)
    for i, prefix in enumerate(PREFIXES):
        for j, choice in enumerate(CHOICES[i]):
            expected, length = reference_choice(any_model, prefix, choice, vec, layers, coeffs[i])
            assert n[i, j] == length
            assert ll[i, j] == pytest.approx(expected, abs=1e-3)


def test_scorers_over_grid_with_small_rows_and_batches(any_model):
    """The sweep's interface: units x coefficients, rows split into several packed trees and
    several forward passes (so packed rows are padded to each other), any order of work."""
    vec = random_vector(any_model, seed=3)
    layers = [-2, -1]
    grid = [-2.0, 0.0, 1.0]
    texts = chat_texts(any_model)
    scorer = runner.NextTokenScorer(
        any_model, texts, vec, layers, plain_batch_rows=3, max_row_tokens=40, batch_tokens=90
    )
    assert sorted(i for u in scorer.units for i in u) == list(range(len(texts)))
    rows = [(u, r) for r in grid for u in range(len(scorer.units))][::-1]
    out_rows, logits = scorer.run(rows)
    assert sorted(out_rows) == sorted(itertools.product(range(len(texts)), grid))
    for (i, r), row in zip(out_rows, logits):
        torch.testing.assert_close(row, reference_next(any_model, texts[i], vec, layers, r), atol=ATOL, rtol=0)

    choice_scorer = runner.ChoiceScorer(
        any_model, PREFIXES, CHOICES, vec, layers, plain_batch_rows=2, max_row_tokens=30, batch_tokens=70
    )
    rows = [(u, r) for u in range(len(choice_scorer.units)) for r in grid]
    out_rows, sums, lengths = choice_scorer.run(rows)
    assert sorted(out_rows) == sorted(itertools.product(range(len(PREFIXES)), grid))
    for (i, r), ll, n in zip(out_rows, sums, lengths):
        for j, choice in enumerate(CHOICES[i]):
            expected, length = reference_choice(any_model, PREFIXES[i], choice, vec, layers, r)
            assert n[j] == length and ll[j] == pytest.approx(expected, abs=1e-3)
    assert active_hook_count(any_model.model) == 0


@pytest.mark.parametrize("layers", [[-2, -1], [1]])  # [1]: the last layer runs at the read nodes only
@pytest.mark.parametrize("family", ["tiny_qwen2", "tiny_qwen3", "tiny_mistral"])
def test_other_packed_families_equal_reference(request, family, layers):
    loaded = request.getfixturevalue(family)
    vec = random_vector(loaded, seed=9)
    texts = chat_texts(loaded)
    coeffs = [-3.0, 0.0, 2.5, 1.0]
    got = runner.next_token_logits(loaded, texts, vec, layers, coeffs)
    for i, (text, c) in enumerate(zip(texts, coeffs)):
        torch.testing.assert_close(got[i], reference_next(loaded, text, vec, layers, c), atol=ATOL, rtol=0)
    ll, _ = runner.choice_logliks(loaded, PREFIXES, CHOICES, vec, layers, coeffs[:3])
    for i, prefix in enumerate(PREFIXES):
        for j, choice in enumerate(CHOICES[i]):
            expected, _ = reference_choice(loaded, prefix, choice, vec, layers, coeffs[i])
            assert ll[i, j] == pytest.approx(expected, abs=1e-3)


def test_unsteered_last_layer_runs_at_read_nodes_only(tiny_llama):
    """With layers [1] of 4 the last layer is not called as a module (its read-node version runs),
    also after transformers has left its own output-capturing hooks on it (any call with
    output_hidden_states does); a hook someone else put on it makes the runner call it as usual.
    Same numbers either way."""
    vec = random_vector(tiny_llama, seed=8)
    last = tiny_llama.model.model.layers[-1]
    ids = tiny_llama.tokenizer(chat_texts(tiny_llama)[:1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tiny_llama.model(input_ids=ids, output_hidden_states=True)
    assert last._forward_hooks, "transformers no longer leaves capture hooks: this test's premise changed"
    calls = []
    original = last.forward
    last.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        ll, _ = runner.choice_logliks(tiny_llama, PREFIXES, CHOICES, vec, [1], [2.0, -1.0, 0.5])
        logits = runner.next_token_logits(tiny_llama, chat_texts(tiny_llama), vec, [1], 3.0)
        assert calls == []
        handle = last.register_forward_hook(lambda *a: None)
        try:
            ll_hooked, _ = runner.choice_logliks(tiny_llama, PREFIXES, CHOICES, vec, [1], [2.0, -1.0, 0.5])
        finally:
            handle.remove()
        assert calls
    finally:
        del last.forward
    np.testing.assert_allclose(ll, ll_hooked, atol=1e-4)
    for i, text in enumerate(chat_texts(tiny_llama)):
        torch.testing.assert_close(logits[i], reference_next(tiny_llama, text, vec, [1], 3.0), atol=ATOL, rtol=0)


def test_zero_coefficient_rows_equal_unsteered(any_model):
    vec = random_vector(any_model, seed=4)
    texts = chat_texts(any_model)
    mixed = runner.next_token_logits(any_model, texts, vec, None, [0.0, 5.0, 0.0, -5.0])
    for i in (0, 2):
        torch.testing.assert_close(mixed[i], reference_next(any_model, texts[i], None, None, 0.0), atol=ATOL, rtol=0)


def test_layers_up_to_first_steered_run_once_per_unit(tiny_llama):
    """Layer skip: layers 0-2 run once per packed tree (layer 2's own computation does not depend
    on r_e; the vector is added to its output), layer 3 once per (tree, r_e)."""
    vec = random_vector(tiny_llama, seed=5)
    texts = chat_texts(tiny_llama)
    scorer = runner.NextTokenScorer(tiny_llama, texts, vec, [2, 3], batch_tokens=10_000)
    calls = {0: 0, 2: 0, 3: 0}
    blocks = tiny_llama.model.model.layers
    handles = [blocks[k].register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1)) for k in calls]
    try:
        for r in (-1.0, 0.5, 2.0):
            scorer.run([(u, r) for u in range(len(scorer.units))])
    finally:
        for h in handles:
            h.remove()
    assert calls == {0: 1, 2: 1, 3: 3}


def test_shared_prefix_is_packed_once(tiny_llama):
    texts = chat_texts(tiny_llama)
    ids = tiny_llama.tokenizer(texts, add_special_tokens=False)["input_ids"]
    scorer = runner.NextTokenScorer(tiny_llama, texts, None, None, max_row_tokens=10_000)
    assert len(scorer.units) == 1
    distinct_prefixes = {tuple(s[:k]) for s in ids for k in range(1, len(s) + 1)}
    assert len(scorer._runner.units[0]) == len(distinct_prefixes) < sum(len(s) for s in ids)


def test_sliding_window_shorter_than_text_falls_back_and_stays_exact(tiny_tokenizer):
    loaded = make_family(tiny_tokenizer, "mistral", sliding_window=4)
    vec = random_vector(loaded, seed=6)
    texts = chat_texts(loaded)
    scorer = runner.NextTokenScorer(loaded, texts, vec, None)
    assert not scorer.packed
    got = runner.next_token_logits(loaded, texts, vec, None, [1.0, -1.0, 0.0, 2.0])
    for i, c in enumerate([1.0, -1.0, 0.0, 2.0]):
        torch.testing.assert_close(got[i], reference_next(loaded, texts[i], vec, None, c), atol=ATOL, rtol=0)


def test_token_tree_and_packing():
    tree = runner.TokenTree()
    a = tree.insert([1, 2, 3])
    assert tree.count_new([[1, 2, 4], [1, 2, 4, 5], [1, 2, 3]]) == 2
    b = tree.insert([1, 2, 4])
    assert a[:2] == b[:2] and a[2] != b[2] and tree.positions == [0, 1, 2, 2]
    mask = tree.ancestor_mask()
    assert mask[b[2]].tolist() == [True, True, False, True]
    assert mask[a[2]].tolist() == [True, True, True, False]

    items = [[[5, 6, 7, 8]], [[1, 2, 3], [1, 2, 9]], [[1, 2, 3, 4]], [[9] * 12]]
    packed = runner.pack_units(items, max_tokens=6)
    seen = sorted(i for unit_items, _, _ in packed for i in unit_items)
    assert seen == [0, 1, 2, 3]
    for unit_items, tree, nodes in packed:
        assert len(tree) <= 6 or len(unit_items) == 1
        for slot, item in enumerate(unit_items):
            for seq, seq_nodes in zip(items[item], nodes[slot]):
                assert [tree.tokens[n] for n in seq_nodes] == seq
    # Items with different keys never share a tree.
    packed = runner.pack_units([[[1, 2]], [[1, 2]]], max_tokens=100, keys=[0.0, 1.0])
    assert len(packed) == 2


def test_bad_inputs_raise_value_errors(tiny_llama):
    with pytest.raises(ValueError):
        runner.next_token_logits(tiny_llama, ["a", "b"], None, None, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        runner.NextTokenScorer(tiny_llama, [""], None, None)
    with pytest.raises(ValueError):
        runner.ChoiceScorer(tiny_llama, ["Q:"], [["a", "b"], ["c"]], None, None)


def test_scorer_rows_are_reproducible(tiny_llama):
    vec = random_vector(tiny_llama, seed=8)
    scorer = runner.ChoiceScorer(tiny_llama, PREFIXES, CHOICES, vec, None)
    rows = [(u, 1.0) for u in range(len(scorer.units))]
    _, first, _ = scorer.run(rows)
    _, second, _ = scorer.run(rows)
    np.testing.assert_array_equal(first, second)


@torch.no_grad()
def test_layer_states_equal_one_text_at_a_time(any_model):
    """Contrast-pair texts (shared prefix, different endings) through the packed extraction path:
    each block's output, the last one before the final norm (where steering adds the vector)."""
    tok = any_model.tokenizer
    texts = [prompts.render_chat(tok, u, start) for u in USERS[:2] for start in ("Sure, here", "I'm sorry")]
    got = runner.layer_states(any_model, texts, batch_tokens=60)
    assert got.shape == (len(texts), any_model.n_layers, any_model.hidden_size)
    for i, text in enumerate(texts):
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        hs = any_model.model(input_ids=ids, output_hidden_states=True).hidden_states
        expected = torch.stack(hs[1:], dim=1)[0, :, -1, :].float()
        # transformers' last entry is after the final norm; ours is the block's own output.
        torch.testing.assert_close(got[i, :-1], expected[:-1], atol=ATOL, rtol=0)
        seen = []

        def keep(module, args, out, seen=seen):
            seen.append((out[0] if isinstance(out, tuple) else out)[0, -1].float())

        handle = decoder_layers(any_model.model)[-1].register_forward_hook(keep)
        try:
            any_model.model(input_ids=ids)
        finally:
            handle.remove()
        torch.testing.assert_close(got[i, -1], seen[0], atol=ATOL, rtol=0)


def test_next_token_states_equal_reference(any_model):
    vec = random_vector(any_model, seed=10)
    texts = chat_texts(any_model)
    coeffs = [0.0, 3.0, -3.0, 1.0]
    states, logits = runner.next_token_states(any_model, texts, vec, [-2, -1], coeffs)
    head = any_model.model.get_output_embeddings()
    for i, (text, c) in enumerate(zip(texts, coeffs)):
        ids = torch.tensor([any_model.tokenizer(text, add_special_tokens=False)["input_ids"]])
        with steer(any_model.model, vec, [-2, -1], c), torch.no_grad():
            h = any_model.model.base_model(input_ids=ids).last_hidden_state[0, -1].float()
        torch.testing.assert_close(states[i], h, atol=ATOL, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(logits[i], head(h), atol=ATOL, rtol=0)


def test_next_token_states_grid_equals_per_coefficient_calls(any_model):
    """The diagnostics' grid helper: every (r_e, text) cell equals a one-coefficient call."""
    vec = random_vector(any_model, seed=11)
    texts = chat_texts(any_model)
    grid = [0.0, 2.5, -4.0]
    states, logits = runner.next_token_states_grid(any_model, texts, vec, [-2, -1], grid, rows_per_call=3)
    assert states.shape == (len(grid), len(texts), any_model.hidden_size)
    for k, r in enumerate(grid):
        s_ref, l_ref = runner.next_token_states(any_model, texts, vec, [-2, -1], [r] * len(texts))
        torch.testing.assert_close(states[k], s_ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(logits[k], l_ref, atol=ATOL, rtol=0)
    assert not torch.equal(states[1], states[2])


def test_ragged_token_continuations_equal_reference(any_model):
    """Openings given as token ids, a different number per prompt (the sequence proxy's input)."""
    tok = any_model.tokenizer
    vec = random_vector(any_model, seed=12)
    texts = chat_texts(any_model)[:3]
    conts = [
        [
            tok("Sure, here", add_special_tokens=False)["input_ids"],
            tok("I'm sorry", add_special_tokens=False)["input_ids"],
        ],
        [tok("Step 1", add_special_tokens=False)["input_ids"]],
        [
            tok("No", add_special_tokens=False)["input_ids"],
            tok("Yes, I", add_special_tokens=False)["input_ids"],
            tok("As an AI", add_special_tokens=False)["input_ids"],
        ],
    ]
    scorer = runner.ChoiceScorer(any_model, texts, None, vec, [1, 2], choice_ids=conts)
    for c in (0.0, 2.5):
        out_rows, sums, lengths = scorer.run([(u, c) for u in range(len(scorer.units))])
        for k, (i, _) in enumerate(out_rows):
            for j in range(scorer.n_choices):
                if j >= len(conts[i]):
                    assert sums[k, j] == -np.inf
                    continue
                ids = tok(texts[i], add_special_tokens=False)["input_ids"]
                with steer(any_model.model, vec, [1, 2], c), torch.no_grad():
                    logp = torch.log_softmax(any_model.model(input_ids=torch.tensor([ids + conts[i][j]])).logits[0], -1)
                expected = sum(float(logp[len(ids) - 1 + t, tok_id]) for t, tok_id in enumerate(conts[i][j]))
                assert sums[k, j] == pytest.approx(expected, abs=1e-3)
