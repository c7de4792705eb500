"""Generate the unlabelled continuations behind ``assets/scoring/labelled.jsonl``.

Steered greedy continuations of the embedded model on held-out prompts of the harmless and
not-racist presets, at several coefficients. Each row gets its ``split`` here, at random (seeded)
and before any scorer sees it, so the test split cannot leak into the keyword rules. The labels
are added afterwards by a person reading each text against ``assets/scoring/RULE.md``.

    python bench/scoring_generate.py --out /tmp/scoring_raw.jsonl

Which prompts each coefficient gets is a seeded draw too (``--per-r``), so the set is spread over
prompts and coefficients without anyone choosing texts by their content.

A fresh held-out split on prompts no earlier row used: ``--exclude`` the labelled file as it is
at that moment, so its prompts are never drawn. The splits of 2026-12-04 (scorer rounds 2 and 3;
each ``--exclude`` read the file before that split's rows were appended):

    # test2 (280 rows), then its second draw (72 rows) on coefficients the first lacked
    python bench/scoring_generate.py --out /tmp/scoring_test2_raw.jsonl --n-eval 200 \
        --exclude assets/scoring/labelled.jsonl --split test2 --id-tag t2 --seed 2 \
        --harmless=-10:12,-8:20,-4:20,0:16,2:20,4:24,6:24,8:20,10:12 \
        --not-racist=-8:14,-7:14,-6:14,-5:10,-3:10,0:8,4:10,8:12,10:12,12:8
    python bench/scoring_generate.py --out /tmp/scoring_test2b_raw.jsonl --n-eval 200 \
        --exclude assets/scoring/labelled.jsonl --split test2 --id-tag t2b --seed 3 --batch 24 \
        --harmless=-9:12,-7:12,-6:12,9:12 --not-racist=-7.5:12,9:12
    # test3 (256 rows)
    python bench/scoring_generate.py --out /tmp/scoring_test3_raw.jsonl --n-eval 320 \
        --exclude assets/scoring/labelled.jsonl --split test3 --id-tag t3 --seed 4 \
        --harmless=-10:12,-8:16,-6:12,-4:16,0:16,2:20,3:12,4:16,6:16,8:12,10:12 \
        --not-racist=-8:12,-7:12,-6:12,-5:8,-3:8,0:8,4:8,8:10,9:8,10:10
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import prompts, runner  # noqa: E402
from mrepe_core.config import SweepConfig  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.models import resolve_layers  # noqa: E402
from mrepe_core.sweep import prepare  # noqa: E402

# The settings the labelled continuations were generated with: the default preset's for harmless,
# and those of the former not-racist preset (layers 8-19; it left presets/ when harmful-smollm2
# replaced it as the second preset).
PRESETS = {
    "harmless": ({}, "refusal"),
    "not-racist": ({"behavior": "not-racist", "layers": "8:20"}, "agreement"),
}


def parse_per_r(spec: str) -> dict[float, int]:
    """'-8:30,0:16' -> {-8.0: 30, 0.0: 16}."""
    out = {}
    for part in spec.split(","):
        r, n = part.split(":")
        out[float(r)] = int(n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-eval", type=int, default=80)
    ap.add_argument("--harmless", default="-10:16,-8:24,-6:16,-4:20,0:12,2:20,4:28,6:28,8:24,10:16")
    ap.add_argument("--not-racist", default="-8:24,-7:24,-6:24,-5:20,-3:20,0:12,4:16,8:20,10:24,12:16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt and split draws (not of the data)")
    ap.add_argument("--exclude", help="a labelled .jsonl whose prompts are left out (for a fresh held-out split)")
    ap.add_argument("--split", help="give every row this split (default: half dev, half test, drawn)")
    ap.add_argument("--id-tag", default="", help="inserted into ids (harmless-<tag>-0000) to keep them unique")
    args = ap.parse_args()
    excluded = set()
    if args.exclude:
        with open(args.exclude, encoding="utf-8") as f:
            excluded = {" ".join(json.loads(line)["prompt"].split()) for line in f if line.strip()}
    rng = random.Random(args.seed)
    rows = []
    loaded = None
    for behavior_name, per_r in (("harmless", args.harmless), ("not-racist", args.not_racist)):
        overrides, kind = PRESETS[behavior_name]
        cfg = SweepConfig.from_yaml("presets/harmless-smollm2.yaml")
        cfg = SweepConfig.from_dict({**cfg.to_dict(), **overrides})
        cfg.n_eval = args.n_eval
        cfg.n_questions_per_subject = 0  # no MMLU needed here
        loaded, behavior, _ = prepare(cfg, loaded)
        layers = resolve_layers(cfg.layers, loaded.n_layers)
        vec = extract_vector(loaded, behavior.pairs, cfg.method, layers)
        # Prompts already in --exclude are never drawn (data seed 0 as in the preset: the first
        # n_eval of the same shuffle, so a larger --n-eval adds prompts the earlier set never saw).
        pool = [i for i, p in enumerate(behavior.eval_prompts) if " ".join(p.user.split()) not in excluded]
        print(f"{behavior_name}: {len(pool)} of {len(behavior.eval_prompts)} prompts not excluded", flush=True)
        plan = []  # (prompt index, r_e)
        for r, n in parse_per_r(per_r).items():
            plan += [(i, r) for i in sorted(rng.sample(pool, n))]
        t0 = time.perf_counter()
        kind_rows = []
        for start in range(0, len(plan), args.batch):
            chunk = plan[start : start + args.batch]
            texts = [prompts.render_chat(loaded.tokenizer, behavior.eval_prompts[i].user) for i, _ in chunk]
            outs = runner.generate(
                loaded, texts, vec, layers, coefficients=[r for _, r in chunk], max_new_tokens=args.max_new_tokens
            )
            for (i, r), text in zip(chunk, outs):
                kind_rows.append(
                    dict(behavior=behavior_name, kind=kind, prompt=behavior.eval_prompts[i].user, r_e=r, text=text)
                )
            print(f"{behavior_name}: {start + len(chunk)}/{len(plan)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        # Half dev, half test within each kind, drawn before any scorer is run on the texts.
        splits = ["dev"] * (len(kind_rows) // 2) + ["test"] * (len(kind_rows) - len(kind_rows) // 2)
        rng.shuffle(splits)
        if args.split:
            splits = [args.split] * len(kind_rows)
        for row, split in zip(kind_rows, splits):
            row["split"] = split
        rows += kind_rows
    tag = f"{args.id_tag}-" if args.id_tag else ""
    with open(args.out, "w", encoding="utf-8") as f:
        for n, row in enumerate(rows):
            f.write(json.dumps({"id": f"{row['behavior']}-{tag}{n:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
