"""Rank steering-layer windows for a preset on *development* data, never on its evaluation items.

Used to choose the default preset's layers the way ``choose_subjects.py`` chooses its subjects:

* behaviour: the ``--n-dev`` prompts that follow the preset's evaluated ones in its shuffled
  evaluation pool (so disjoint from them, and from the extraction pairs, which the data loader
  already keeps apart);
* helpfulness: the MMLU *dev* split (5 questions per subject) of the preset's subjects.

For every window it runs the preset's full r_e grid with one vector (extracted once, as the preset
does) and prints the targets of the core-engine issue: B's largest step back (monotone means
<= 0), the tanh fit's R², and h(0) minus the larger of h at the two ends. The rule, fixed before
looking: keep the windows with a monotone B and h(0) >= both ends, then take the highest R².

    python bench/choose_layers.py [--preset presets/harmless-smollm2.yaml] [--starts 6,8,10,12] [--stops 18,20,22]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import datasets  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.models import load_model  # noqa: E402
from mrepe_core.presets import load_preset  # noqa: E402
from mrepe_core.sweep import run_sweep  # noqa: E402
from mrepe_core.vectors import SteeringVector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="presets/harmless-smollm2.yaml")
    ap.add_argument("--starts", default="6,8,10,12")
    ap.add_argument("--stops", default="18,20,22")
    ap.add_argument("--n-dev", type=int, default=40)
    args = ap.parse_args()
    config = load_preset(args.preset).config
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    full = datasets.load_behavior(
        config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval + args.n_dev, config.seed
    )
    evaluated = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    dev_prompts = full.eval_prompts[config.n_eval :]
    assert [p.user for p in full.eval_prompts[: config.n_eval]] == [p.user for p in evaluated.eval_prompts]
    assert not {p.user for p in dev_prompts} & {p.user for p in evaluated.eval_prompts}
    dev = dataclasses.replace(evaluated, eval_prompts=dev_prompts, data_hash=evaluated.data_hash + "-dev")
    dev_config = dataclasses.replace(config, mmlu_split="dev", n_questions_per_subject=5, n_diagnostics=0)
    vector_all = extract_vector(
        loaded, evaluated.pairs, config.method, None, behavior=evaluated.name, template=evaluated.template
    )
    print(
        f"{config.name}: {len(dev_prompts)} dev behaviour prompts (after the {config.n_eval} evaluated), "
        f"MMLU dev of {', '.join(config.helpfulness_subjects)}; r_e grid {config.r_min:g}..{config.r_max:g} "
        f"({config.r_steps} points)"
    )
    print(
        f"{'layers':>8} {'B step back':>11} {'tanh R2':>8} {'h(0)':>7} {'h(lo)':>7} {'h(hi)':>7} "
        f"{'h(0)-max':>9} {'s':>5}"
    )
    rows = []
    for start in [int(s) for s in args.starts.split(",")]:
        for stop in [int(s) for s in args.stops.split(",")]:
            t = time.perf_counter()
            layers = list(range(start, stop))
            vec = SteeringVector(vector_all.directions, layers, dict(vector_all.metadata))
            res = run_sweep(
                dataclasses.replace(dev_config, layers=f"{start}:{stop}"),
                loaded=loaded,
                behavior=dev,
                vector=vec,
                use_cache=False,
            )
            r, b = res.curve("behavior", "behavior_expectation", dev.name)
            _, h = res.curve("helpfulness", "helpfulness", "mean")
            step_back = float(max(0.0, -np.diff(b).min()))
            r2 = (res.summary.get("alignment_fit") or {}).get("r2") or float("nan")
            h0 = float(h[np.argmin(np.abs(r))])
            margin = h0 - max(h[0], h[-1])
            rows.append((f"{start}:{stop}", step_back, r2, margin))
            print(
                f"{start:>4}:{stop:<3} {step_back:11.3f} {r2:8.3f} {h0:7.3f} {h[0]:7.3f} {h[-1]:7.3f} "
                f"{margin:+9.3f} {time.perf_counter() - t:5.0f}",
                flush=True,
            )
    passing = [row for row in rows if row[1] == 0.0 and row[3] >= 0]
    if passing:
        best = max(passing, key=lambda row: row[2])
        print(
            f"chosen on dev: layers {best[0]} (monotone B, h(0) >= both ends, highest R² {best[2]:.3f} "
            f"of {len(passing)} passing windows)"
        )
    else:
        print("no window has both a monotone B and h(0) >= both ends on the dev data")


if __name__ == "__main__":
    main()
