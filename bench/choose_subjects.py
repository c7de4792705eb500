"""Choose MMLU subjects for a preset from unsteered P(correct) on the *dev* split (never test).

A helpfulness curve on subjects where the model is at chance cannot fall, so it says nothing about
the steering tradeoff. The dev split has only 5 questions per subject, and ranking 57 subjects on
5 questions each picks noise: the five best on dev (0.43-0.51) scored 0.267 with accuracy 0.23 on
test. So the rule pools the dev questions by MMLU category (60-90 questions each), fixed before
looking at any test question of the chosen subjects:

1. keep the categories whose pooled dev P(correct) is above the pooled mean of all subjects;
2. within them, keep the subjects whose dev questions average at most ``--max-tokens`` tokens
   (cloze prompt + the four choices): the preset must run cold in under 3 minutes, and the
   former default averaged 61 tokens per question;
3. take ``ceil(--n-questions / n_subjects)`` test questions per subject.

    python bench/choose_subjects.py [--model smollm2-135m-instruct] [--format cloze|letter]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import datasets, metrics, prompts, runner  # noqa: E402
from mrepe_core.models import load_model  # noqa: E402


def question_tokens(tokenizer, q: datasets.MCQuestion) -> int:
    """Tokens the cloze format feeds for one question: its prompt and each choice."""
    n = len(tokenizer(prompts.mmlu_cloze_prompt(q.question, q.subject), add_special_tokens=False)["input_ids"])
    return n + sum(len(tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"]) for c in q.choices)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--format", choices=["cloze", "letter"], default="cloze")
    ap.add_argument("--max-tokens", type=float, default=70.0)
    ap.add_argument("--n-questions", type=int, default=100)
    args = ap.parse_args()
    loaded = load_model(args.model)
    letter_ids = metrics.letter_token_ids(loaded.tokenizer)
    per_question: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lengths: dict[str, float] = {}
    t0 = time.perf_counter()
    for subject in datasets.mmlu_subjects():
        qs = datasets.load_mmlu([subject], "dev")
        if args.format == "letter":
            texts = [prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in qs]
            logits = runner.next_token_logits(loaded, texts, None, None, 0.0)
            p, acc = metrics.helpfulness_from_letter_logits(logits, letter_ids, [q.answer for q in qs])
        else:
            texts = [prompts.mmlu_cloze_prompt(q.question, q.subject) for q in qs]
            ll, n = runner.choice_logliks(loaded, texts, [list(q.choices) for q in qs], None, None, [0.0] * len(qs))
            p, acc = metrics.helpfulness_from_choice_loglik(ll, n, [q.answer for q in qs])
        per_question[subject] = (np.asarray(p, float), np.asarray(acc, float))
        lengths[subject] = float(np.mean([question_tokens(loaded.tokenizer, q) for q in qs]))
    print(
        f"{'subject':40s} {'category':16s} P(correct) accuracy tokens  ({args.format}, dev split, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    for s in sorted(per_question, key=lambda s: -per_question[s][0].mean()):
        p, a = per_question[s]
        print(f"{s:40s} {datasets.mmlu_category(s):16s} {p.mean():9.3f} {a.mean():8.2f} {lengths[s]:6.0f}")

    pooled = defaultdict(list)
    for s, (p, a) in per_question.items():
        pooled[datasets.mmlu_category(s)] += list(zip(p, a))
    overall = np.mean([p for s in per_question for p in per_question[s][0]])
    print(f"\npooled by category (dev; all subjects: P(correct) {overall:.3f}, chance 0.25):")
    kept = []
    for cat, v in sorted(pooled.items(), key=lambda kv: -np.mean([p for p, _ in kv[1]])):
        v = np.array(v)
        keep = v[:, 0].mean() > overall
        kept += [cat] if keep else []
        print(
            f"  {cat:16s} n={len(v):3d}  P(correct) {v[:, 0].mean():.3f} ± {v[:, 0].std(ddof=1) / np.sqrt(len(v)):.3f}"
            f"  accuracy {v[:, 1].mean():.3f}{'  kept' if keep else ''}"
        )
    chosen = [s for s in sorted(per_question) if datasets.mmlu_category(s) in kept and lengths[s] <= args.max_tokens]
    if not chosen:
        print("no subject passes the rule")
        return
    k = math.ceil(args.n_questions / len(chosen))
    p = np.concatenate([per_question[s][0] for s in chosen])
    print(
        f"\nrule: categories {', '.join(kept)}; subjects averaging <= {args.max_tokens:g} tokens on dev; "
        f"{k} questions each ({k * len(chosen)} in all)"
    )
    print(f"chosen ({len(chosen)}; dev P(correct) {p.mean():.3f}): [{', '.join(chosen)}]")


if __name__ == "__main__":
    main()
