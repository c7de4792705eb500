"""Choose the second preset's behaviour on development prompts, by a rule fixed before running it.

The bias behaviour's B was an inverted U under the next-token proxy (R² 0.23). Under B from the
answers the model writes it is measured again here, with the other built-ins as candidates.

Rule (written before any candidate was run): for each built-in behaviour other than the default
preset's (``harmful``, ``not-racist``, ``racist``), extract the vector from its extraction pairs,
steer layers 10:18 (the default preset's window) over r_e in [-8, 8] (11 coefficients), and
measure B from greedy 32-token answers on the ``--n-dev`` prompts that follow the first 40 of its
shuffled evaluation pool (never the evaluated ones). Keep the behaviours whose B moves back by at
most 0.1 between any two coefficients (monotone up to noise) and spans at least 0.5; among those
take the highest tanh R² (ties: the larger span). If none qualifies, keep ``not-racist`` and say so.

    python bench/choose_behavior.py [--n-dev 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import datasets, hardware  # noqa: E402
from mrepe_core.bounds import BoundFitError, fit_alignment_bound  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.measurements import GeneratedBehavior, text_scorer  # noqa: E402
from mrepe_core.models import load_model, resolve_layers  # noqa: E402

CANDIDATES = ("harmful", "not-racist", "racist")
LAYERS = "10:18"
N_EVALUATED = 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-dev", type=int, default=24)
    args = ap.parse_args()
    loaded = load_model("smollm2-135m-instruct", dtype="fp32")
    grid = [round(float(r), 6) for r in np.linspace(-8, 8, 11)]
    print(f"# {hardware.device_name(loaded.device)}; command: python {' '.join(sys.argv)}")
    print(
        f"{'behaviour':>12} {'step back':>9} {'span':>6} {'tanh R2':>8} {'B(-8)':>6} {'B(0)':>6} {'B(8)':>6} {'s':>5}"
    )
    rows = []
    for name in CANDIDATES:
        t = time.perf_counter()
        full = datasets.load_behavior(name, loaded.tokenizer, 64, N_EVALUATED + args.n_dev, 0)
        dev = dataclasses.replace(full, eval_prompts=full.eval_prompts[N_EVALUATED:])
        layers = resolve_layers(LAYERS, loaded.n_layers)
        vector = extract_vector(loaded, full.pairs, "pca", layers, behavior=name)
        gen = GeneratedBehavior(loaded, dev, vector, layers, text_scorer(dev), 32, 32)
        todo = [(u, r) for r in grid for u in range(len(gen.units))]
        out = []
        for k in range(0, len(todo), gen.units_per_batch):
            out += gen.rows(todo[k : k + gen.units_per_batch])
        b = np.array([np.mean([row["value"] for row in out if row["r_e"] == r]) for r in grid])
        step_back = float(max(0.0, -np.diff(b).min()))
        span = float(b.max() - b.min())
        try:
            r2 = fit_alignment_bound(grid, b).r2
        except BoundFitError:
            r2 = float("nan")
        rows.append((name, step_back, span, r2))
        print(
            f"{name:>12} {step_back:9.3f} {span:6.2f} {r2:8.3f} {b[0]:+6.2f} {b[5]:+6.2f} {b[-1]:+6.2f} "
            f"{time.perf_counter() - t:5.0f}"
        )
    kept = [r for r in rows if r[1] <= 0.1 and r[2] >= 0.5]
    if not kept:
        print("no candidate qualifies: keep not-racist and say so in its description")
        return
    best = max(kept, key=lambda r: (np.nan_to_num(r[3], nan=-1.0), r[2]))
    print(f"chosen: {best[0]} (step back {best[1]:.3f}, span {best[2]:.2f}, R² {best[3]:.3f})")


if __name__ == "__main__":
    main()
