"""Metrics on hand-made logits; datasets and user uploads with clear errors."""

import math

import numpy as np
import pytest
import torch

from mrepe_core import datasets, metrics, scoring


def test_behavior_expectation_logit_proxy():
    logits = torch.full((2, 10), -1e9)
    logits[0, [1, 2, 5]] = torch.log(torch.tensor([0.3, 0.1, 0.2]))  # P+ = .4, P- = .2
    logits[0, 9] = math.log(0.4)
    logits[1, [5, 6]] = 0.0  # all mass misaligned
    b, mass = metrics.behavior_expectation_from_logits(logits, [1, 2], [5, 6])
    assert b[0] == pytest.approx((0.4 - 0.2) / 0.6, abs=1e-5)
    assert mass[0] == pytest.approx(0.6, abs=1e-5)
    assert b[1] == pytest.approx(-1.0) and mass[1] == pytest.approx(1.0)


def test_answer_token_sets_drop_shared_first_tokens(tiny_tokenizer):
    pos, neg = metrics.answer_token_sets(tiny_tokenizer, ["I'm sorry", "No"], ["I will", "Yes"])
    assert set(pos).isdisjoint(neg)
    with pytest.raises(ValueError, match="same tokens"):
        metrics.answer_token_sets(tiny_tokenizer, ["Sure a"], ["Sure b"])


def test_letter_helpfulness():
    logits = torch.zeros(2, 8)
    logits[0, 3] = 5.0  # letter index 1 ("B") dominates
    p, correct = metrics.helpfulness_from_letter_logits(logits, [2, 3, 4, 5], [1, 0])
    assert p[0] == pytest.approx(math.exp(5) / (math.exp(5) + 3), rel=1e-5)
    assert p[1] == pytest.approx(0.25)  # uniform row
    assert correct.tolist() == [1.0, 1.0]  # ties resolve to the first letter
    p2, correct2 = metrics.helpfulness_from_letter_logits(logits[:1], [2, 3, 4, 5], [0])
    assert p2[0] == pytest.approx(1 / (math.exp(5) + 3), rel=1e-4) and correct2[0] == 0.0


def test_cloze_helpfulness_length_normalised():
    # Choice 0 has the higher total but is long; per-token it is worse than choice 1.
    ll = np.array([[-6.0, -4.0, -30.0, -30.0]])
    n = np.array([[6, 2, 3, 3]])
    p, correct = metrics.helpfulness_from_choice_loglik(ll, n, [1])
    per_tok = np.array([-1.0, -2.0, -10.0, -10.0])
    expected = np.exp(per_tok) / np.exp(per_tok).sum()
    assert p[0] == pytest.approx(expected[1])
    assert correct[0] == 0.0  # choice 0 (per-token -1) wins


@pytest.mark.parametrize("name", list(datasets.BUILTIN_BEHAVIORS))
def test_builtin_behaviors_disjoint_and_templated(name, tiny_tokenizer):
    b = datasets.load_behavior(name, tiny_tokenizer, n_pairs=16, n_eval=8)
    assert len(b.pairs) == 16 and len(b.eval_prompts) == 8
    contrast = {p.positive for p in b.pairs} | {p.negative for p in b.pairs}
    assert not any(e.user in t for e in b.eval_prompts for t in contrast)
    if name == "harmless":
        assert all(p.positive.startswith("<|user|>") for p in b.pairs)  # chat template applied
    assert b.data_hash and b.scorer in scoring.KINDS


def test_behavior_seed_changes_sample(tiny_tokenizer):
    a = datasets.load_behavior("harmless", tiny_tokenizer, 8, 8, seed=0)
    b = datasets.load_behavior("harmless", tiny_tokenizer, 8, 8, seed=1)
    assert a.data_hash != b.data_hash


def test_user_behavior_csv_template_parses():
    b = datasets.parse_user_behavior(datasets.USER_TEMPLATE_CSV.encode(), "t.csv")
    assert len(b.pairs) == 2 and len(b.eval_prompts) == 1
    assert b.eval_prompts[0].aligned == ("I love", "Great")


def test_user_behavior_jsonl():
    data = b'{"positive": "good a", "negative": "bad a"}\n{"positive": "good b", "negative": "bad b"}\n'
    assert len(datasets.parse_user_behavior(data, "x.jsonl").pairs) == 2


@pytest.mark.parametrize(
    "data,name,match",
    [
        (b"", "x.csv", "empty"),
        (b"\xff\xfe\x00\x01binary", "x.csv", "binary|UTF-8"),
        (b"caf\xe9,x\n", "x.csv", "UTF-8"),
        (b"a,b\n1,2\n", "x.csv", "header"),
        (b"positive,negative\nonly one,\n", "x.csv", "needs both"),
        (b"positive,negative\na,b\n", "x.csv", "at least 2"),
        (b"{bad json\n", "x.jsonl", "not valid JSON"),
        (b"positive,negative\n", "x.xlsx", "csv or .jsonl"),
    ],
)
def test_user_behavior_errors(data, name, match):
    with pytest.raises(datasets.DataValidationError, match=match):
        datasets.parse_user_behavior(data, name)


def test_user_behavior_too_big():
    with pytest.raises(datasets.DataValidationError, match="limit"):
        datasets.parse_user_behavior(b"x" * (datasets.MAX_UPLOAD_BYTES + 1), "x.csv")


def test_mmlu_loading():
    subjects = datasets.mmlu_subjects()
    assert len(subjects) == 57 and "international_law" in subjects
    qs = datasets.load_mmlu(["marketing"], "dev", 3)
    assert len(qs) == 3 and all(len(q.choices) == 4 and 0 <= q.answer < 4 for q in qs)
    with pytest.raises(datasets.DataValidationError):
        datasets.load_mmlu(["not_a_subject"])


def test_mmlu_categories_cover_every_subject_once():
    # Hendrycks et al.'s four categories: 18 STEM, 13 humanities, 12 social sciences, 14 other.
    assert set(datasets.MMLU_CATEGORIES) == set(datasets.mmlu_subjects())
    counts = {c: list(datasets.MMLU_CATEGORIES.values()).count(c) for c in set(datasets.MMLU_CATEGORIES.values())}
    assert counts == {"stem": 18, "humanities": 13, "social_sciences": 12, "other": 14}
    assert datasets.mmlu_category("anatomy") == "other" and datasets.mmlu_category("sociology") == "social_sciences"
    with pytest.raises(datasets.DataValidationError):
        datasets.mmlu_category("not_a_subject")
