"""The engine's generation against a plain batched ``generate`` with per-row coefficients.

The default preset's generation work: its 40 held-out prompts x 21 coefficients, greedy, 32 new
tokens. The engine (``runner.generate``: prefix-shared prefill, layers below the first steered one
once per prompt, rows leaving the batch as they finish) runs it all; the baseline is what a user
would write with transformers: left-padded batches of rows through ``model.generate`` under a
steering hook with one coefficient per row. Both must give the same answers (counted), and the
script prints both times, the ratio and the machine.

    python bench/generation.py [--preset presets/harmless-smollm2.yaml] [--dtype fp32|bf16]
                               [--baseline-fraction 0.34] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import datasets, hardware, prompts, runner  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.models import load_model, resolve_layers  # noqa: E402
from mrepe_core.presets import load_preset  # noqa: E402
from mrepe_core.steering import steer  # noqa: E402


@torch.inference_mode()
def plain_generate(loaded, texts, vector, layers, coeffs, max_new_tokens: int, batch: int) -> list[str]:
    """transformers' generate on left-padded batches, one steering coefficient per row."""
    tok, out = loaded.tokenizer, []
    for k in range(0, len(texts), batch):
        enc = tok(texts[k : k + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with steer(loaded.model, vector, layers, torch.tensor(coeffs[k : k + batch], dtype=torch.float32)):
            gen = loaded.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        out += [tok.decode(row[enc["input_ids"].shape[1] :], skip_special_tokens=True) for row in gen]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="presets/harmless-smollm2.yaml")
    ap.add_argument("--dtype", default=None, help="override the preset's dtype")
    ap.add_argument(
        "--baseline-fraction",
        type=float,
        default=0.34,
        help="share of the coefficients the "
        "baseline runs (every k-th, all prompts); its time is scaled to the whole grid",
    )
    ap.add_argument("--batch", type=int, default=64, help="rows per batch of the baseline")
    args = ap.parse_args()
    config = load_preset(args.preset).config
    loaded = load_model(config.model, dtype=args.dtype or config.dtype)
    print(
        f"# {hardware.device_name(loaded.device)}, {loaded.dtype}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; command: python {' '.join(sys.argv)}"
    )
    behavior = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    layers = resolve_layers(config.layers, loaded.n_layers)
    vector = extract_vector(loaded, behavior.pairs, config.method, layers)
    grid = config.r_grid()
    texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
    rows = [(t, r) for r in grid for t in texts]
    t = time.perf_counter()
    ours = runner.generate(loaded, [x for x, _ in rows], vector, layers, [r for _, r in rows], config.max_new_tokens)
    engine_s = time.perf_counter() - t
    step = max(1, round(1 / args.baseline_fraction))
    sub = [k for k, (_, r) in enumerate(rows) if grid.index(r) % step == 0]
    t = time.perf_counter()
    theirs = plain_generate(
        loaded, [rows[k][0] for k in sub], vector, layers, [rows[k][1] for k in sub], config.max_new_tokens, args.batch
    )
    baseline_s = (time.perf_counter() - t) * len(rows) / len(sub)
    same = sum(ours[k] == a for k, a in zip(sub, theirs))
    print(f"rows: {len(rows)} ({len(texts)} prompts x {len(grid)} r_e), {config.max_new_tokens} new tokens")
    print(f"engine: {engine_s:.1f} s")
    print(f"plain batched generate: {baseline_s:.1f} s (timed on {len(sub)} rows, scaled)")
    print(f"same answers: {same}/{len(sub)}")
    print(f"speedup_vs_plain_generate: {baseline_s / engine_s:.2f}x")


if __name__ == "__main__":
    main()
