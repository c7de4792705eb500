"""bf16 against fp32 on a preset: how far the curves move, and how long each takes.

    python bench/dtype_compare.py [--preset presets/harmless-smollm2.yaml] [--quick] [--dtypes fp32,bf16]

Runs the whole sweep (vector extraction included: each dtype extracts its own vector, as a user
switching dtype would) once per dtype, uncached (``run_sweep(config, use_cache=False)`` with the
preset's ``dtype`` replaced), and prints, against the first dtype:

* max |ΔB| over the grid: of the mean curve (mean over prompts at each r_e) and per item;
* max |ΔP(correct)| over the grid: of the mean-of-subjects curve and per item;
* the cosine between the two vectors at the steered layers, and the fits' parameters;
* each run's wall time (model load included) and the engine's own timings, and the machine.

The target for bf16 is max |Δ| <= 0.01 on both curves; the output says whether it is met. Wall
times on a shared machine are inflated by whatever else runs (the load average is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mrepe_core import hardware  # noqa: E402
from mrepe_core.config import SweepConfig  # noqa: E402
from mrepe_core.models import choose_device, resolve_layers  # noqa: E402
from mrepe_core.sweep import run_sweep  # noqa: E402

TARGET = 0.01


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def per_item(items, task: str, metric: str):
    sel = items[(items.task == task) & (items.metric == metric)]
    return sel.set_index(["subject", "item", "r_e"])["value"].sort_index()


def curve(aggregates, task: str, metric: str, subject: str | None = None):
    sel = aggregates[(aggregates.task == task) & (aggregates.metric == metric)]
    if subject is not None:
        sel = sel[sel.subject == subject]
    return sel.set_index(["subject", "r_e"])["value"].sort_index()


def max_abs_delta(a, b) -> float:
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner")
    if len(joined) != len(a) or len(joined) != len(b):
        raise SystemExit(f"the two runs cover different items ({len(a)} vs {len(b)} values)")
    return float((joined.a - joined.b).abs().max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "harmless-smollm2.yaml"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 coefficients, 4 prompts, 1 question per subject")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list; the first is the reference")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--behavior-mode",
        default="first_token",
        choices=["first_token", "proxy", "generate"],
        help="how B is measured (first_token: a continuous B on every coefficient, cheapest; with "
        "generate, B counts answers and a flipped greedy answer moves it by 1/n_eval)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if len(dtypes) < 2:
        ap.error("give at least two dtypes")

    config = SweepConfig.from_yaml(args.preset)
    config = dataclasses.replace(config, behavior_mode=args.behavior_mode, baseline=False)
    if args.quick:
        config = dataclasses.replace(config, r_steps=3, n_eval=4, n_pairs=8, n_questions_per_subject=1, n_diagnostics=4)
    device = choose_device(config.device)
    print(
        f"preset {Path(args.preset).name}{' (--quick)' if args.quick else ''}: model {config.model}, "
        f"layers {config.layers}, {config.r_steps} coefficients, {config.n_eval} prompts, "
        f"{config.n_questions_per_subject} x {len(config.helpfulness_subjects)} questions; preset dtype {config.dtype}"
    )
    print(
        f"machine: {hardware.device_name(device)} ({device}); native bf16: {hardware.native_bf16(device)} "
        f"{hardware.bf16_decision(device) if device.type == 'cpu' else ''}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load_average()}"
    )

    runs = {}
    for dtype in dtypes:
        cfg = dataclasses.replace(config, dtype=dtype)
        start = time.perf_counter()
        result = run_sweep(cfg, use_cache=False)
        wall = time.perf_counter() - start
        tm = result.summary["timings"]
        runs[dtype] = (result, wall)
        print(
            f"{dtype}: {wall:.1f} s wall (load {tm['load_s']:.1f}, extract {tm['extract_s']:.1f}, behaviour "
            f"{tm.get('behavior_s', 0):.1f}, proxy {tm.get('proxy_s', 0):.1f}, helpfulness "
            f"{tm.get('helpfulness_s', 0):.1f}, checks {tm.get('diagnostics_s', 0):.1f}); "
            f"model dtype {result.summary['model']['dtype']}; load average {load_average()}"
        )

    ref_name = dtypes[0]
    ref, ref_wall = runs[ref_name]
    n_layers = ref.vector.n_layers
    steered = resolve_layers(config.layers, n_layers)
    verdicts = []
    for name in dtypes[1:]:
        other, wall = runs[name]
        d_b_curve = max_abs_delta(
            curve(ref.aggregates, "behavior", "behavior_expectation"),
            curve(other.aggregates, "behavior", "behavior_expectation"),
        )
        d_b_item = max_abs_delta(
            per_item(ref.items, "behavior", "behavior_expectation"),
            per_item(other.items, "behavior", "behavior_expectation"),
        )
        d_p_curve = max_abs_delta(
            curve(ref.aggregates, "helpfulness", "helpfulness", "mean"),
            curve(other.aggregates, "helpfulness", "helpfulness", "mean"),
        )
        d_p_item = max_abs_delta(
            per_item(ref.items, "helpfulness", "helpfulness"), per_item(other.items, "helpfulness", "helpfulness")
        )
        d_acc_curve = max_abs_delta(
            curve(ref.aggregates, "helpfulness", "accuracy", "mean"),
            curve(other.aggregates, "helpfulness", "accuracy", "mean"),
        )
        cos = torch.nn.functional.cosine_similarity(
            ref.vector.directions[steered], other.vector.directions[steered], dim=-1
        )
        print(f"\n{name} vs {ref_name}:")
        print(f"  max |dB| over the grid: mean curve {d_b_curve:.4f}, per item {d_b_item:.4f}")
        print(f"  max |dP(correct)| over the grid: mean-of-subjects curve {d_p_curve:.4f}, per item {d_p_item:.4f}")
        print(f"  max |d accuracy| (mean-of-subjects curve): {d_acc_curve:.4f}")
        print(
            f"  vector cosine at layers {steered[0]}-{steered[-1]}: min {float(cos.min()):.5f}, "
            f"mean {float(cos.mean()):.5f}"
        )
        for fit in ("alignment_fit", "helpfulness_fit"):
            a, b = ref.summary.get(fit) or {}, other.summary.get(fit) or {}
            keys = [k for k in a if isinstance(a.get(k), float) and isinstance(b.get(k), float)]
            print(f"  {fit}: " + ", ".join(f"{k} {a[k]:.4g} -> {b[k]:.4g}" for k in keys))
        print(f"  wall time: {ref_name} {ref_wall:.1f} s, {name} {wall:.1f} s ({ref_wall / wall:.2f}x)")
        met = max(d_b_curve, d_p_curve) <= TARGET
        met_items = max(d_b_item, d_p_item) <= TARGET
        verdicts.append(met)
        print(
            f"  target max |d| <= {TARGET} on the curves: {'met' if met else 'NOT met'}; "
            f"per item: {'met' if met_items else 'not met'}"
        )
        print(f"max_abs_dB_{name}: {d_b_curve:.4f}")
        print(f"max_abs_dP_{name}: {d_p_curve:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
