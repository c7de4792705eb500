"""Rank MMLU subjects by unsteered P(correct) on the *dev* split (never test) for one model.

Used to choose the default preset's helpfulness subjects: a helpfulness curve on a subject where
the model is at chance cannot fall, so it says nothing about the steering tradeoff.

    python bench/choose_subjects.py [--model smollm2-135m-instruct] [--format cloze|letter]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mrepe_core import datasets, metrics, prompts, runner
from mrepe_core.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--format", choices=["cloze", "letter"], default="cloze")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    loaded = load_model(args.model)
    letter_ids = metrics.letter_token_ids(loaded.tokenizer)
    rows = []
    t0 = time.perf_counter()
    for subject in datasets.mmlu_subjects():
        qs = datasets.load_mmlu([subject], "dev")
        if args.format == "letter":
            texts = [prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in qs]
            logits = runner.next_token_logits(loaded, texts, None, None, 0.0)
            p, acc = metrics.helpfulness_from_letter_logits(logits, letter_ids, [q.answer for q in qs])
        else:
            texts = [prompts.mmlu_cloze_prompt(q.question, q.subject) for q in qs]
            ll, n = runner.choice_logliks(loaded, texts, [list(q.choices) for q in qs], None, None,
                                          [0.0] * len(qs))
            p, acc = metrics.helpfulness_from_choice_loglik(ll, n, [q.answer for q in qs])
        n_tok = np.mean([len(loaded.tokenizer(t)["input_ids"]) for t in texts])
        rows.append((subject, float(p.mean()), float(acc.mean()), len(qs), n_tok))
    rows.sort(key=lambda r: -r[1])
    print(f"{'subject':40s} P(correct)  accuracy  n  prompt_tokens   ({args.format}, dev split, "
          f"{time.perf_counter() - t0:.0f} s)")
    for s, p, a, n, t in rows:
        print(f"{s:40s} {p:9.3f} {a:9.2f} {n:3d} {t:8.0f}")
    print(f"mean over subjects: {np.mean([r[1] for r in rows]):.3f} (chance 0.25)")


if __name__ == "__main__":
    main()
