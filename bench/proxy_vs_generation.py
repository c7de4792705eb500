"""How well do the proxies of B agree with B from the answers the model writes?

On the preset's prompts and every coefficient of its grid: greedy answers (32 new tokens) scored by
the keyword scorer (``mrepe_core/scoring/``) give B_gen; the sequence proxy (openings the model wrote at the
coarse coefficients, scored at every r_e through the prefix tree, as a sweep does) and the
next-token proxy (first tokens of fixed answer starts) give B_proxy. Prints both curves and the
agreement targets of the issue: sign agreement where |B_gen| >= 0.2, mean |B_proxy - B_gen| <= 0.2,
rank correlation of the curves over r_e >= 0.95, per-prompt AUC >= 0.8 where both answers occur,
plus the probability mass each proxy reads.

``--dev`` runs the same on the prompts after the evaluated ones (never the evaluated ones) for each
``--opening-tokens`` length. Rule for the default length, fixed before running it: the length with
the smallest mean |B_proxy - B_gen| on the dev prompts (ties: the shorter).

    python bench/proxy_vs_generation.py [--preset presets/harmless-smollm2.yaml] [--dev] [--opening-tokens 2,3,4,6,8]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import datasets, hardware, measurements  # noqa: E402
from mrepe_core import proxy as proxy_mod  # noqa: E402
from mrepe_core.agreement import proxy_agreement  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.models import load_model, resolve_layers  # noqa: E402
from mrepe_core.plan import coarse_grid  # noqa: E402
from mrepe_core.presets import load_preset  # noqa: E402


def run(rows_of, measurement, grid) -> list[dict]:
    todo = [(u, r) for r in grid for u in range(len(measurement.units))]
    out = []
    for k in range(0, len(todo), measurement.units_per_batch):
        out += rows_of(todo[k : k + measurement.units_per_batch])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="presets/harmless-smollm2.yaml")
    ap.add_argument("--dev", action="store_true", help="the prompts after the evaluated ones (for choosing)")
    ap.add_argument("--opening-tokens", default=None, help="comma list of opening lengths (default: the preset's)")
    args = ap.parse_args()
    config = load_preset(args.preset).config
    lengths = [int(k) for k in (args.opening_tokens or str(config.opening_tokens)).split(",")]
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    print(
        f"# {Path(args.preset).name}: {hardware.device_name(loaded.device)}, {loaded.dtype}, "
        f"{platform.python_version()}, command: python {' '.join(sys.argv)}"
    )
    n = config.n_eval
    full = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, 2 * n, config.seed)
    behavior = dataclasses.replace(full, eval_prompts=full.eval_prompts[n:] if args.dev else full.eval_prompts[:n])
    layers = resolve_layers(config.layers, loaded.n_layers)
    vector = extract_vector(loaded, full.pairs, config.method, layers)
    grid, coarse = config.r_grid(), coarse_grid(config.r_grid())
    t = time.perf_counter()
    gen = measurements.GeneratedBehavior(
        loaded, behavior, vector, layers, measurements.text_scorer(behavior), config.max_new_tokens, config.batch_size
    )
    gen_rows = run(gen.rows, gen, grid)
    print(f"generation: {len(gen_rows)} answers in {time.perf_counter() - t:.0f} s")
    first = measurements.FirstTokenBehavior(loaded, behavior, vector, layers, config.batch_size)
    first_rows = pd.DataFrame(run(first.rows, first, grid))
    coarse_answers = {k: v for k, v in gen.answers.items() if k[1] in coarse}
    results = {}
    for k in lengths:
        sides = proxy_mod.openings(loaded, behavior, coarse_answers, n_tokens=k)
        proxy = proxy_mod.SequenceProxy(loaded, behavior, vector, layers, sides, config.batch_size)
        t = time.perf_counter()
        rows = pd.DataFrame(gen_rows + run(proxy.rows, proxy, grid))
        agree = proxy_agreement(rows)
        mass = rows[rows.metric == "covered_mass"].groupby("r_e").value.mean()
        results[k] = agree
        curve = rows[rows.metric == "behavior_proxy"].groupby("r_e").value.mean()
        print(f"\n## sequence proxy, openings of {k} tokens ({time.perf_counter() - t:.0f} s)")
        print("r_e      " + " ".join(f"{r:+6.1f}" for r in curve.index))
        print(
            "B_gen    "
            + " ".join(f"{v:+6.2f}" for v in rows[rows.metric == "behavior_expectation"].groupby("r_e").value.mean())
        )
        print("B_proxy  " + " ".join(f"{v:+6.2f}" for v in curve))
        print("mass     " + " ".join(f"{v:6.3f}" for v in mass))
        for key in ("sign_agreement", "mean_abs_difference", "rank_correlation", "mean_per_prompt_auc"):
            print(f"{key}: {agree.get(key)}")
    fr = first_rows.copy()
    fr.loc[fr.metric == "behavior_expectation", "metric"] = "behavior_proxy"
    agree = proxy_agreement(pd.DataFrame(gen_rows + fr.to_dict("records")))
    mass = first_rows[first_rows.metric == "covered_mass"].value.mean()
    print(f"\n## next-token proxy (first tokens of fixed starts), mean covered mass {mass:.3f}")
    for key in ("sign_agreement", "mean_abs_difference", "rank_correlation", "mean_per_prompt_auc"):
        print(f"{key}: {agree.get(key)}")
    best = min(results, key=lambda k: (results[k]["mean_abs_difference"], k))
    print(f"\nsmallest mean |B_proxy - B_gen| on {'dev' if args.dev else 'the evaluated'} prompts: {best} tokens")
    print(
        f"per-prompt AUC by coefficient ({best} tokens): "
        + ", ".join(f"{r:+.1f}: {a:.2f}" for r, a in results[best]["per_prompt_auc"].items())
    )


if __name__ == "__main__":
    main()
