"""Benchmark the sweep engine against a naive loop on the same work, dtype and steering vector.

    python bench/sweep.py [--preset presets/harmless-smollm2.yaml] [--quick] [--naive-fraction 0.1]

(a) the engine: ``run_sweep`` cold, into an empty temporary cache; (b) a naive loop written
here, as the paper's code does it: for every r_e, one full forward pass per behaviour prompt and
one per (question, choice), batch size 1, logits at every position; (c) both give the same
per-item B and P(correct) (max abs difference printed, must be < 1e-3); (d) the same sweep
again, served from the cache. The naive loop may run on a deterministic subset of the items (every
k-th prompt and question, all coefficients); its time is then scaled to the full work by the ratio
of naive tokens, and the output says so. The last line reads ``speedup: <ratio>x`` (evaluation
work: engine behaviour + helpfulness time vs the naive loop on the same work).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mrepe_core import datasets, metrics, prompts  # noqa: E402
from mrepe_core.config import SweepConfig  # noqa: E402
from mrepe_core.models import load_model, resolve_layers  # noqa: E402
from mrepe_core.steering import steer  # noqa: E402
from mrepe_core.sweep import run_sweep  # noqa: E402

TOLERANCE = 1e-3


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def subset(n: int, fraction: float) -> list[int]:
    """Every k-th index, k = round(1 / fraction): deterministic and spread over all subjects."""
    step = max(1, round(1 / fraction))
    return list(range(0, n, step))


@torch.no_grad()
def naive_behavior(loaded, behavior, vector, layers, grid, items) -> tuple[dict, int]:
    """B per (item, r_e): one full forward per prompt and coefficient, all positions' logits."""
    tok, model = loaded.tokenizer, loaded.model
    out, n_tokens = {}, 0
    for r in grid:
        for i in items:
            p = behavior.eval_prompts[i]
            ids = tok(prompts.render_chat(tok, p.user), add_special_tokens=False)["input_ids"]
            with steer(model, vector, layers, r):
                logits = model(input_ids=torch.tensor([ids], device=loaded.device)).logits
            pos, neg = metrics.answer_token_sets(tok, p.aligned, p.misaligned)
            b, _ = metrics.behavior_expectation_from_logits(logits[:, -1].float(), pos, neg)
            out[(i, r)] = float(b[0])
            n_tokens += len(ids)
    return out, n_tokens


@torch.no_grad()
def naive_helpfulness(loaded, questions, vector, layers, grid, items) -> tuple[dict, int]:
    """P(correct) per (item, r_e): one full forward of prefix + choice per choice and coefficient."""
    tok, model = loaded.tokenizer, loaded.model
    out, n_tokens = {}, 0
    for r in grid:
        for i in items:
            q = questions[i]
            p_ids = tok(prompts.mmlu_cloze_prompt(q.question, q.subject), add_special_tokens=False)["input_ids"]
            sums, lengths = [], []
            for choice in q.choices:
                c_ids = tok(" " + choice.strip(), add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
                with steer(model, vector, layers, r):
                    logits = model(input_ids=torch.tensor([p_ids + c_ids], device=loaded.device)).logits
                logp = torch.log_softmax(logits[0].float(), -1)
                sums.append(sum(float(logp[len(p_ids) - 1 + k, t]) for k, t in enumerate(c_ids)))
                lengths.append(len(c_ids))
                n_tokens += len(p_ids) + len(c_ids)
            p, _ = metrics.helpfulness_from_choice_loglik(np.array([sums]), np.array([lengths]), [q.answer])
            out[(i, r)] = float(p[0])
    return out, n_tokens


def naive_token_count(loaded, behavior, questions, items_b, items_q) -> int:
    """Tokens the naive loop feeds per coefficient for the given items (for scaling its time)."""
    tok = loaded.tokenizer
    n = sum(
        len(tok(prompts.render_chat(tok, behavior.eval_prompts[i].user), add_special_tokens=False)["input_ids"])
        for i in items_b
    )
    for i in items_q:
        q = questions[i]
        p = len(tok(prompts.mmlu_cloze_prompt(q.question, q.subject), add_special_tokens=False)["input_ids"])
        n += sum(p + len(tok(" " + c.strip(), add_special_tokens=False)["input_ids"] or [0]) for c in q.choices)
    return n


def engine_values(items_df, task: str, metric: str) -> dict:
    sel = items_df[(items_df.task == task) & (items_df.metric == metric)]
    return {(int(i), round(float(r), 6)): float(v) for i, r, v in zip(sel["item"], sel["r_e"], sel["value"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "harmless-smollm2.yaml"))
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 5 coefficients, 8 prompts, 4 questions per subject"
    )
    ap.add_argument(
        "--naive-fraction",
        type=float,
        default=0.1,
        help="share of the items the naive loop runs (all coefficients); its time is scaled up",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both runs (default: torch's)")
    args = ap.parse_args()
    if not 0 < args.naive_fraction <= 1:
        ap.error("--naive-fraction must be in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)

    config = SweepConfig.from_yaml(args.preset)
    if config.behavior_mode != "logit" or config.helpfulness_format != "cloze":
        ap.error("the naive reference here covers behavior_mode=logit and helpfulness_format=cloze")
    if args.quick:
        config = dataclasses.replace(config, r_steps=5, n_eval=8, n_pairs=16, n_questions_per_subject=4)
    grid = config.r_grid()
    print(
        f"preset {Path(args.preset).name}{' (--quick)' if args.quick else ''}: model {config.model}, "
        f"dtype {config.dtype}, layers {config.layers}, {len(grid)} coefficients in [{config.r_min}, {config.r_max}], "
        f"{config.n_eval} behaviour prompts, {config.n_questions_per_subject} x {len(config.helpfulness_subjects)} "
        f"questions ({config.helpfulness_format})"
    )
    print(f"torch threads {torch.get_num_threads()}, load average at start {load_average()}")

    t = time.perf_counter()
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    print(
        f"model load: {time.perf_counter() - t:.1f} s ({loaded.dtype}, {loaded.device}); "
        f"the engine below reuses this instance"
    )

    with tempfile.TemporaryDirectory(prefix="mrepe-bench-cache-") as cache_dir:
        # (a) Engine, cold: the temporary cache is empty, so this computes everything (and saves).
        t = time.perf_counter()
        result = run_sweep(config, cache_dir=cache_dir, use_cache=True, loaded=loaded)
        engine_total = time.perf_counter() - t
        assert not result.from_cache
        tm = result.summary["timings"]
        engine_eval = tm["behavior_s"] + tm["helpfulness_s"]
        print(
            f"engine: {engine_total:.1f} s total (extract {tm['extract_s']:.1f} s, behaviour {tm['behavior_s']:.1f} s, "
            f"helpfulness {tm['helpfulness_s']:.1f} s); load average {load_average()}"
        )

        # (d) The same sweep again: must come from the cache.
        t = time.perf_counter()
        again = run_sweep(config, cache_dir=cache_dir, use_cache=True, loaded=loaded)
        cached_s = time.perf_counter() - t
        if not again.from_cache:
            print("FAIL: the repeated sweep was not served from the cache")
            return 1
        print(f"repeat served from cache: {cached_s:.2f} s (model already loaded in this process)")

    # (b) Naive loop with the engine's vector, on every k-th item and all coefficients.
    behavior = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    questions = datasets.load_mmlu(
        config.helpfulness_subjects, config.mmlu_split, config.n_questions_per_subject, config.seed
    )
    layers = resolve_layers(config.layers, loaded.n_layers)
    items_b = subset(len(behavior.eval_prompts), args.naive_fraction)
    items_q = subset(len(questions), args.naive_fraction)
    t = time.perf_counter()
    naive_b, tok_b = naive_behavior(loaded, behavior, result.vector, layers, grid, items_b)
    naive_q, tok_q = naive_helpfulness(loaded, questions, result.vector, layers, grid, items_q)
    naive_s = time.perf_counter() - t
    full_tokens = naive_token_count(
        loaded, behavior, questions, range(len(behavior.eval_prompts)), range(len(questions))
    ) * len(grid)
    ran_tokens = tok_b + tok_q
    scale = full_tokens / ran_tokens
    naive_full = naive_s * scale
    print(
        f"naive: {naive_s:.1f} s on {len(items_b)}/{len(behavior.eval_prompts)} prompts and "
        f"{len(items_q)}/{len(questions)} questions x {len(grid)} coefficients ({ran_tokens} tokens); "
        f"scaled by tokens x{scale:.2f} to the full work ({full_tokens} tokens): {naive_full:.1f} s"
        f"{'' if scale == 1 else ' (estimate)'}; load average {load_average()}"
    )

    # (c) Same numbers on the same items and coefficients.
    eng_b = engine_values(result.items, "behavior", "behavior_expectation")
    eng_q = engine_values(result.items, "helpfulness", "helpfulness")
    diff_b = max(abs(eng_b[(i, round(r, 6))] - v) for (i, r), v in naive_b.items())
    diff_q = max(abs(eng_q[(i, round(r, 6))] - v) for (i, r), v in naive_q.items())
    ok = diff_b < TOLERANCE and diff_q < TOLERANCE
    print(
        f"max |engine - naive|: B {diff_b:.2e} over {len(naive_b)} values, P(correct) {diff_q:.2e} over "
        f"{len(naive_q)} values -> {'OK' if ok else 'MISMATCH'} (tolerance {TOLERANCE})"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB; load average at end {load_average()}")
    print(
        f"engine evaluation {engine_eval:.1f} s vs naive {naive_full:.1f} s"
        f"{' (scaled)' if scale != 1 else ''}; end to end incl. extraction: engine {engine_total:.1f} s vs "
        f"naive {naive_full + tm['extract_s']:.1f} s -> {(naive_full + tm['extract_s']) / engine_total:.2f}x"
    )
    if not ok:
        return 1
    print(f"speedup: {naive_full / engine_eval:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
