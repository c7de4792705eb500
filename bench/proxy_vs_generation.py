"""How well does the fast logit proxy of B agree with generation + scorer on the same prompts?

Runs the default preset's behaviour twice on identical prompts and coefficients: logit mode
(next-token probabilities of answer starts) and generate mode (greedy continuation scored by the
refusal / agreement scorer). Prints both curves, their Pearson correlation and max difference.

    python bench/proxy_vs_generation.py [--preset presets/harmless-smollm2.yaml] [--n-eval 24] [--r-steps 9]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np

from mrepe_core.config import SweepConfig
from mrepe_core.sweep import run_sweep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="presets/harmless-smollm2.yaml")
    ap.add_argument("--n-eval", type=int, default=24)
    ap.add_argument("--r-steps", type=int, default=9)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()
    base = SweepConfig.from_yaml(args.preset)
    base = dataclasses.replace(
        base,
        n_eval=args.n_eval,
        r_steps=args.r_steps,
        n_questions_per_subject=0,
        n_diagnostics=0,
        max_new_tokens=args.max_new_tokens,
    )
    curves = {}
    with tempfile.TemporaryDirectory() as cache:
        for mode in ("logit", "generate"):
            t = time.perf_counter()
            res = run_sweep(dataclasses.replace(base, behavior_mode=mode), cache_dir=cache)
            r, b = res.curve("behavior", "behavior_expectation", base.behavior)
            curves[mode] = b
            print(f"{mode:9s} ({time.perf_counter() - t:.0f} s): " + " ".join(f"{v:+.2f}" for v in b))
    print("r_e      : " + " ".join(f"{v:+5.1f}" for v in r))
    corr = float(np.corrcoef(curves["logit"], curves["generate"])[0, 1])
    diff = float(np.max(np.abs(curves["logit"] - curves["generate"])))
    sign = float(np.mean(np.sign(curves["logit"]) == np.sign(curves["generate"])))
    print(f"pearson: {corr:.3f}  max_abs_diff: {diff:.2f}  sign_agreement: {sign:.2f}")


if __name__ == "__main__":
    main()
