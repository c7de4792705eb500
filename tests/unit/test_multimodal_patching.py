"""Activation patching (eq. 2) on tiny random Llama and GPT-2 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multimodal_tiny import one_torch_thread, tiny_gpt2, tiny_llama  # noqa: F401 (autouse fixture)

from mrepe_core.models import decoder_layers
from mrepe_core.multimodal.patching import PatchingError, layer_patching_effects, logit_difference, patching_for_prompts

ALIGNED, MISALIGNED = [ord("P")], [ord("R")]  # byte tokenizer: token id = byte value for ASCII


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def lm(request):
    return tiny_llama("sdpa") if request.param == "llama" else tiny_gpt2("sdpa")


def ids(lm, text: str) -> torch.Tensor:
    return lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


def n_hooks(model) -> int:
    """Hooks of ours left on the layers (transformers leaves output-capturing hooks of its own
    after any output_hidden_states call; those are not ours to remove)."""
    from mrepe_core import hooks

    return hooks.count(decoder_layers(model))


def test_logit_difference_is_the_log_odds_of_the_two_sets():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.3]]))
    assert float(logit_difference(logits, [0], [1, 2])[0]) == pytest.approx(np.log(0.5 / 0.5), abs=1e-6)
    assert float(logit_difference(logits, [2], [1])[0]) == pytest.approx(np.log(0.3 / 0.2), abs=1e-6)
    with pytest.raises(PatchingError, match="both sides"):
        logit_difference(logits, [0], [0])


def test_patching_the_last_layer_at_the_last_position_restores_the_positive_metric(lm):
    pos, neg = ids(lm, "The tower is in Paris and"), ids(lm, "The arena is in Rome, so")
    before = n_hooks(lm.model)
    result = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED)
    assert result.layers == [0, 1] and n_hooks(lm.model) == before
    assert result.total_effect != pytest.approx(0.0, abs=1e-4)
    # The last layer's last-position state determines the next-token logits: patching it is the
    # positive run, so its effect is the whole gap (normalised effect 1).
    assert result.effects[-1] == pytest.approx(result.total_effect, abs=1e-4)
    assert result.normalized[-1] == pytest.approx(1.0, abs=1e-4)
    assert not np.isclose(result.effects[0], result.total_effect, atol=1e-4)


def test_patching_every_position_at_the_first_layer_reproduces_the_positive_run(lm):
    pos, neg = ids(lm, "cat sat on a mat"), ids(lm, "dog ran to a car")
    result = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED, layers=[0], position="all")
    assert result.effects[0] == pytest.approx(result.total_effect, abs=1e-4)


def test_identical_prompts_have_zero_effect_everywhere(lm):
    same = ids(lm, "nothing changes here")
    result = layer_patching_effects(lm.model, same, same, ALIGNED, MISALIGNED)
    assert np.allclose(result.effects, 0.0, atol=1e-5) and np.isnan(result.normalized).all()


def test_bad_requests_are_refused(lm):
    short, longer = ids(lm, "ab"), ids(lm, "abcd")
    with pytest.raises(PatchingError, match="equal token length"):
        layer_patching_effects(lm.model, short, longer, ALIGNED, MISALIGNED, position="all")
    with pytest.raises(PatchingError, match="position"):
        layer_patching_effects(lm.model, short, short, ALIGNED, MISALIGNED, position="middle")
    with pytest.raises(ValueError, match="out of range"):
        layer_patching_effects(lm.model, short, short, ALIGNED, MISALIGNED, layers=[5])


def test_text_front_end_with_chat_template():
    lm = tiny_llama("sdpa", chat_template=True)
    result = patching_for_prompts(lm, "Is Paris in France?", "Is Rome in France?", ["Yes"], ["No"])
    rows = result.to_rows()
    assert [r["layer"] for r in rows] == [0, 1] and rows[-1]["normalized_effect"] == pytest.approx(1.0, abs=1e-4)
    assert result.best_layers(1) == [int(np.argmax(np.abs(result.effects)))]
    with pytest.raises(PatchingError, match="empty"):
        patching_for_prompts(lm, " ", "x", ["Yes"], ["No"])


def test_patching_a_few_layers_per_pass_equals_all_in_one_pass(lm):
    pos, neg = ids(lm, "The tower is in Paris and"), ids(lm, "The arena is in Rome, so")
    one = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED, rows_per_pass=1)
    many = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED, rows_per_pass=64)
    assert np.allclose(one.effects, many.effects, atol=1e-5)
    seen = []
    layer_patching_effects(
        lm.model, pos, neg, ALIGNED, MISALIGNED, rows_per_pass=1, on_progress=lambda *a: seen.append(a)
    )
    assert seen[-1] == (len(one.layers) + 2, len(one.layers) + 2)


def test_a_set_cancel_switch_stops_patching_and_leaves_no_hooks(lm):
    import threading

    from mrepe_core.limits import Cancelled

    cancel = threading.Event()
    cancel.set()
    pos = ids(lm, "The tower is in Paris and")
    with pytest.raises(Cancelled, match="Activation patching was cancelled"):
        layer_patching_effects(lm.model, pos, pos, ALIGNED, MISALIGNED, cancel=cancel)
    assert n_hooks(lm.model) == 0


def test_an_unset_cancel_switch_changes_no_number(lm):
    import threading

    from mrepe_core.multimodal.interventions import lm_attention_intervention

    pos, neg = ids(lm, "The tower is in Paris and"), ids(lm, "The arena is in Rome, so")
    plain = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED)
    watched = layer_patching_effects(lm.model, pos, neg, ALIGNED, MISALIGNED, cancel=threading.Event())
    assert np.array_equal(plain.effects, watched.effects)
    args = (lm, "Answer in French. What is the capital?", "Answer in French.", 2.0, None, 6, False)
    a, b = lm_attention_intervention(*args), lm_attention_intervention(*args, cancel=threading.Event())
    assert a.intervened_text == b.intervened_text and a.baseline_top == b.baseline_top
    assert np.array_equal(a.span_mass_intervened, b.span_mass_intervened)
