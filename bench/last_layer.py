"""Time the sweep's scorers with the last decoder layer run at the read nodes only, and in full.

    python bench/last_layer.py [--preset presets/harmless-smollm2.yaml] [--coefficients 4] [--repeats 2]

Builds the preset's behaviour and helpfulness scorers (its vector, layers, questions), then runs the
same rows (every unit at ``--coefficients`` of the grid) with the read-only last layer switched on
and off, alternating so that the VM's drift hits both, and checks that both give the same numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mrepe_core import runner  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.measurements import FirstTokenBehavior, Helpfulness  # noqa: E402
from mrepe_core.models import resolve_layers  # noqa: E402
from mrepe_core.presets import load_preset  # noqa: E402
from mrepe_core.sweep import prepare  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "harmless-smollm2.yaml"))
    ap.add_argument("--coefficients", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    config = load_preset(args.preset).config
    loaded, behavior, questions = prepare(config)
    layers = resolve_layers(config.layers, loaded.n_layers)
    vector = extract_vector(
        loaded, behavior.pairs, config.method, layers, behavior=behavior.name, template=behavior.template
    )
    grid = config.r_grid()
    picked = [grid[k] for k in np.linspace(0, len(grid) - 1, args.coefficients).round().astype(int)]
    scorers = {
        "behaviour": FirstTokenBehavior(loaded, behavior, vector, layers, config.batch_size).scorer,
        "helpfulness": Helpfulness(
            loaded, questions, vector, layers, config.helpfulness_format, config.batch_size
        ).scorer,
    }
    for s in scorers.values():
        s.run([(u, 0.0) for u in range(len(s.units))])  # pre-steering states cached, as in a sweep
    print(f"{config.name}: layers {config.layers}, coefficients {picked}, torch threads {torch.get_num_threads()}")
    times = {(task, mode): [] for task in scorers for mode in ("read nodes", "full")}
    outputs = {}
    for rep in range(args.repeats):
        for mode in ("read nodes", "full") if rep % 2 == 0 else ("full", "read nodes"):
            switch = (
                mock.patch.object(runner.PackedRunner, "_last_layer_at_reads_applies", return_value=False)
                if mode == "full"
                else contextlib.nullcontext()
            )
            for task, scorer in scorers.items():
                rows = [(u, r) for r in picked for u in range(len(scorer.units))]
                with switch:
                    t = time.perf_counter()
                    out = scorer.run(rows)
                    times[(task, mode)].append(time.perf_counter() - t)
                outputs[(task, mode)] = out[1]
    for task in scorers:
        a, b = (
            np.asarray(outputs[(task, "read nodes")], dtype=np.float64),
            np.asarray(outputs[(task, "full")], dtype=np.float64),
        )
        on, off = min(times[(task, "read nodes")]), min(times[(task, "full")])
        print(
            f"{task:12s} read-node last layer {on:6.1f} s, full {off:6.1f} s (best of {args.repeats}): "
            f"{100 * (1 - on / off):+.1f}% time saved; max |difference| {np.abs(a - b).max():.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
