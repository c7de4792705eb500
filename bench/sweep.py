"""Benchmark the sweep engine against the paper's loop and a peer library's loop on the same work.

    python bench/sweep.py [--preset presets/harmless-smollm2.yaml] [--quick] [--naive-fraction 0.1]
                          [--peer-fraction 0.1] [--peer-batch 16] [--dtype bf16]

(a) the engine: ``run_sweep`` cold, into an empty temporary cache; (b) the paper's naive loop:
for every r_e, one full forward pass per behaviour prompt and one per (question, choice), batch
size 1, logits at every position; (c) a peer loop as repeng / steering-vectors users write it:
items batched with left padding (attention mask + position ids), one coefficient per pass through
the model's own forward with a steering hook, full logits (no ``logits_to_keep``), each cloze
choice scored by running its prefix + choice sequence (no key/value sharing); (d) all three give
the same per-item B and P(correct) (max abs difference printed; the naive loop within 1e-3 as
before, the peer loop within 1e-5); (e) the same sweep again, served from the cache; (f) the model
FLOPs the engine's work needs (``bench/flops.py``, counted on the packed runner's units) against
the rate a dense matmul of the model's shapes reaches here in the same dtype
(``hardware.matmul_flops``, measured just before and just after the engine's run; the higher
reading counts): ``flop_fraction``.

The naive loop may run on a deterministic subset of the items (every k-th prompt and question, all
coefficients); its time is then scaled to the full work by the ratio of naive tokens. The peer loop
may run on a subset of the coefficients (every k-th r_e, all items): every coefficient is the same
passes, so its time scales by the number of coefficients. The output says when a figure is scaled.
The last lines read ``speedup_vs_paper: <x>x``, ``speedup_vs_peer_loop: <x>x``,
``flop_fraction: <f>`` and ``speedup: <x>x`` (the paper's loop again; evaluation work: engine
behaviour + helpfulness time vs the loop on the same work).
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

from bench.flops import Work, model_matmul_shapes, packed_work, sequence_work  # noqa: E402
from mrepe_core import datasets, hardware, metrics, prompts  # noqa: E402
from mrepe_core.config import SweepConfig  # noqa: E402
from mrepe_core.measurements import TOKENS_PER_BATCH_ROW, FirstTokenBehavior, Helpfulness  # noqa: E402
from mrepe_core.models import load_model, resolve_layers  # noqa: E402
from mrepe_core.steering import steer  # noqa: E402
from mrepe_core.sweep import run_sweep  # noqa: E402

TOLERANCE = 1e-3  # engine vs the paper's loop (batch size 1)
PEER_TOLERANCE = 1e-5  # engine vs the peer loop
# In bf16/fp16 every layer's output is rounded to 8 (11) mantissa bits, and two correct
# implementations round at different points (packed vs padded rows, shared prefixes, fused
# attention): on the default preset the engine in bf16 differs from the engine in fp32 by up to
# 0.097 in one item's B (bench/dtype_compare.py, Intel Xeon with AMX, 2026-12-05). Equality to
# 1e-5 is a claim about fp32; in half precision the check only catches a wrong computation.
HALF_PRECISION_TOLERANCE = 0.15


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(vs the paper's loop, vs the peer loop) for a run in ``dtype``."""
    if dtype in (torch.bfloat16, torch.float16):
        return HALF_PRECISION_TOLERANCE, HALF_PRECISION_TOLERANCE
    return TOLERANCE, PEER_TOLERANCE


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


def left_padded(rows: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """A left-padded batch with its attention mask and position ids (0 at each row's first real token)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, width - len(r) :] = torch.tensor(r)
        mask[k, width - len(r) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": position_ids.to(device)}


def batched(n: int, size: int) -> list[range]:
    return [range(k, min(k + size, n)) for k in range(0, n, size)]


@torch.no_grad()
def peer_behavior(loaded, behavior, vector, layers, grid, batch_rows) -> tuple[dict, int]:
    """B per (item, r_e) as a repeng / steering-vectors user computes it: prompts in left-padded
    batches, one coefficient per pass (a scalar steering hook), the model's own forward with full
    logits, the last position read."""
    tok, model = loaded.tokenizer, loaded.model
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    out, padded_tokens = {}, 0
    for r in grid:
        with steer(model, vector, layers, r):
            for batch in batched(len(behavior.eval_prompts), batch_rows):
                prompts_ = [behavior.eval_prompts[i] for i in batch]
                rows = [tok(prompts.render_chat(tok, p.user), add_special_tokens=False)["input_ids"] for p in prompts_]
                enc = left_padded(rows, pad_id, loaded.device)
                logits = model(**enc, use_cache=False).logits  # every position, as those libraries do
                padded_tokens += enc["input_ids"].numel()
                for k, (i, p) in enumerate(zip(batch, prompts_)):
                    pos, neg = metrics.answer_token_sets(tok, p.aligned, p.misaligned)
                    b, _ = metrics.behavior_expectation_from_logits(logits[k : k + 1, -1].float(), pos, neg)
                    out[(i, r)] = float(b[0])
    return out, padded_tokens


@torch.no_grad()
def peer_helpfulness(loaded, questions, vector, layers, grid, batch_rows) -> tuple[dict, int]:
    """P(correct) per (item, r_e) the same way: every (question, choice) is its own sequence, prefix
    ids + choice ids (tokenised apart, as lm-eval-harness does), in left-padded batches; full
    logits, log-softmax over the whole batch, the choice tokens' log-probabilities summed."""
    tok, model = loaded.tokenizer, loaded.model
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    seqs = []  # (question, choice, prefix length, ids)
    for i, q in enumerate(questions):
        p_ids = tok(prompts.mmlu_cloze_prompt(q.question, q.subject), add_special_tokens=False)["input_ids"]
        for j, choice in enumerate(q.choices):
            c_ids = tok(" " + choice.strip(), add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
            seqs.append((i, j, len(p_ids), p_ids + c_ids))
    n_choices = len(questions[0].choices)
    out, padded_tokens = {}, 0
    for r in grid:
        sums = np.zeros((len(questions), n_choices))
        lengths = np.zeros((len(questions), n_choices), dtype=int)
        with steer(model, vector, layers, r):
            for batch in batched(len(seqs), batch_rows):
                rows = [seqs[k][3] for k in batch]
                enc = left_padded(rows, pad_id, loaded.device)
                logp = torch.log_softmax(model(**enc, use_cache=False).logits.float(), -1)
                padded_tokens += enc["input_ids"].numel()
                width = enc["input_ids"].shape[1]
                for row, k in enumerate(batch):
                    i, j, n_prefix, ids = seqs[k]
                    offset = width - len(ids)
                    targets = torch.tensor(ids[n_prefix:], device=logp.device)
                    at = torch.arange(offset + n_prefix - 1, offset + len(ids) - 1, device=logp.device)
                    sums[i, j] = float(logp[row, at, targets].double().sum())
                    lengths[i, j] = len(ids) - n_prefix
        p, _ = metrics.helpfulness_from_choice_loglik(sums, lengths, [q.answer for q in questions])
        for i in range(len(questions)):
            out[(i, r)] = float(p[i])
    return out, padded_tokens


def every_kth(values: list, fraction: float) -> list:
    return [values[k] for k in subset(len(values), fraction)]


def engine_values(items_df, task: str, metric: str) -> dict:
    sel = items_df[(items_df.task == task) & (items_df.metric == metric)]
    return {(int(i), round(float(r), 6)): float(v) for i, r, v in zip(sel["item"], sel["r_e"], sel["value"])}


def engine_work(loaded, result, config, behavior, questions, layers) -> tuple[Work, Work]:
    """Model FLOPs of the engine's behaviour and helpfulness work, counted on the scorers the sweep
    builds (same units, same trees) for its vector."""
    n_r = len(config.r_grid())
    beh = FirstTokenBehavior(loaded, behavior, result.vector, layers, config.batch_size).scorer
    hel = Helpfulness(loaded, questions, result.vector, layers, config.helpfulness_format, config.batch_size).scorer
    return packed_work(beh, n_r), packed_work(hel, n_r)


def naive_work(loaded, behavior, questions, n_r: int) -> Work:
    """FLOPs of the paper's loop on the full work: every sequence alone, logits at every position."""
    tok = loaded.tokenizer
    lengths = [
        len(tok(prompts.render_chat(tok, p.user), add_special_tokens=False)["input_ids"]) for p in behavior.eval_prompts
    ]
    for q in questions:
        n = len(tok(prompts.mmlu_cloze_prompt(q.question, q.subject), add_special_tokens=False)["input_ids"])
        lengths += [n + len(tok(" " + c.strip(), add_special_tokens=False)["input_ids"] or [0]) for c in q.choices]
    return sequence_work(loaded.model, lengths * n_r)


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
        help="share of the items the paper's loop runs (all coefficients); its time is scaled up",
    )
    ap.add_argument(
        "--peer-fraction",
        type=float,
        default=0.1,
        help="share of the coefficients the peer loop runs (every k-th r_e, all items); its time is scaled up",
    )
    ap.add_argument("--peer-batch", type=int, default=16, help="sequences per forward pass in the peer loop")
    ap.add_argument("--dtype", default=None, help="override the preset's dtype (fp32, bf16, auto)")
    ap.add_argument("--matmul-seconds", type=float, default=3.0, help="how long to measure the matmul rate")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for all runs (default: torch's)")
    args = ap.parse_args()
    for name in ("naive_fraction", "peer_fraction"):
        if not 0 < getattr(args, name) <= 1:
            ap.error(f"--{name.replace('_', '-')} must be in (0, 1]")
    if args.peer_batch < 1:
        ap.error("--peer-batch must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    config = SweepConfig.from_yaml(args.preset)
    if config.helpfulness_format != "cloze":
        ap.error("the reference loops here cover helpfulness_format=cloze")
    # The paper's and the peer loops re-implement the next-token proxy and cloze helpfulness, so the
    # engine runs that same work here; the default sweep (answers generated) is timed by bench/cold.py.
    config = dataclasses.replace(config, behavior_mode="first_token", n_diagnostics=0)
    if args.quick:
        config = dataclasses.replace(config, r_steps=5, n_eval=8, n_pairs=16, n_questions_per_subject=4)
    if args.dtype:
        config = dataclasses.replace(config, dtype=args.dtype)
    grid = config.r_grid()
    print(
        f"preset {Path(args.preset).name}{' (--quick)' if args.quick else ''}: model {config.model}, "
        f"dtype {config.dtype}, layers {config.layers}, {len(grid)} coefficients in [{config.r_min}, {config.r_max}], "
        f"{config.n_eval} behaviour prompts, {config.n_questions_per_subject} x {len(config.helpfulness_subjects)} "
        f"questions ({config.helpfulness_format})"
    )

    t = time.perf_counter()
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    print(
        f"machine: {hardware.device_name(loaded.device)} ({loaded.device}); native bf16: "
        f"{hardware.native_bf16(loaded.device)}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average at start {load_average()}"
    )
    print(
        f"model load: {time.perf_counter() - t:.1f} s ({loaded.dtype}, {loaded.device}); "
        f"the engine below reuses this instance"
    )

    # The matmul rate is measured just before and just after the engine's run, and the higher one
    # is the reference: on a shared machine a single reading can land in someone else's burst.
    batch_tokens = config.batch_size * TOKENS_PER_BATCH_ROW
    shapes = model_matmul_shapes(loaded.model, batch_tokens)
    rates = [hardware.matmul_flops(loaded.dtype, loaded.device, shapes, seconds=args.matmul_seconds)]

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

        # (e) The same sweep again: must come from the cache.
        t = time.perf_counter()
        again = run_sweep(config, cache_dir=cache_dir, use_cache=True, loaded=loaded)
        cached_s = time.perf_counter() - t
        if not again.from_cache:
            print("FAIL: the repeated sweep was not served from the cache")
            return 1
        print(f"repeat served from cache: {cached_s:.2f} s (model already loaded in this process)")

    behavior = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    questions = datasets.load_mmlu(
        config.helpfulness_subjects, config.mmlu_split, config.n_questions_per_subject, config.seed
    )
    layers = resolve_layers(config.layers, loaded.n_layers)

    # (f) FLOPs the engine's work needs, and what a dense matmul of the model's shapes reaches here.
    work_b, work_q = engine_work(loaded, result, config, behavior, questions, layers)
    work = work_b + work_q
    rates.append(hardware.matmul_flops(loaded.dtype, loaded.device, shapes, seconds=args.matmul_seconds))
    rate = max(rates)
    achieved = work.flops / engine_eval / 1e9
    print(f"engine work: {work.describe()}")
    print(
        f"matmul rate here: {rate:.1f} GFLOP/s, the higher of {rates[0]:.1f} before and {rates[1]:.1f} after the "
        f"engine ({str(loaded.dtype).replace('torch.', '')}, one decoder layer's {len(shapes)} linear maps at "
        f"{batch_tokens} rows, {args.matmul_seconds:g} s each); engine achieved "
        f"{achieved:.1f} GFLOP/s over its evaluation time; load average {load_average()}"
    )
    paper_flops = naive_work(loaded, behavior, questions, len(grid)).flops
    print(
        f"the paper's loop needs {paper_flops / 1e12:.2f} TFLOP for the same work "
        f"({paper_flops / work.flops:.1f}x the engine's {work.flops / 1e12:.2f})"
    )

    # (b) Naive loop with the engine's vector, on every k-th item and all coefficients.
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

    # (c) Peer loop with the engine's vector, on every k-th coefficient and all items.
    peer_grid = every_kth(grid, args.peer_fraction)
    t = time.perf_counter()
    peer_b, pad_b = peer_behavior(loaded, behavior, result.vector, layers, peer_grid, args.peer_batch)
    peer_q, pad_q = peer_helpfulness(loaded, questions, result.vector, layers, peer_grid, args.peer_batch)
    peer_s = time.perf_counter() - t
    peer_scale = len(grid) / len(peer_grid)
    peer_full = peer_s * peer_scale
    print(
        f"peer loop: {peer_s:.1f} s on all {len(behavior.eval_prompts)} prompts and {len(questions)} questions x "
        f"{len(peer_grid)}/{len(grid)} coefficients (r_e {', '.join(f'{r:g}' for r in peer_grid)}; batches of "
        f"{args.peer_batch} sequences, {pad_b + pad_q} padded tokens); scaled by coefficients x{peer_scale:.2f}: "
        f"{peer_full:.1f} s{'' if peer_scale == 1 else ' (estimate)'}; load average {load_average()}"
    )

    # (d) Same numbers on the same items and coefficients.
    eng_b = engine_values(result.items, "behavior", "behavior_expectation")
    eng_q = engine_values(result.items, "helpfulness", "helpfulness")

    def max_diff(ref: dict, eng: dict) -> float:
        return max(abs(eng[(i, round(r, 6))] - v) for (i, r), v in ref.items())

    diff_b, diff_q = max_diff(naive_b, eng_b), max_diff(naive_q, eng_q)
    peer_diff_b, peer_diff_q = max_diff(peer_b, eng_b), max_diff(peer_q, eng_q)
    tol_naive, tol_peer = tolerances(loaded.dtype)
    ok_naive = diff_b < tol_naive and diff_q < tol_naive
    ok_peer = peer_diff_b < tol_peer and peer_diff_q < tol_peer
    rounding = " (half-precision rounding; equality to 1e-5 is checked in fp32)" if tol_peer != PEER_TOLERANCE else ""
    print(
        f"max |engine - naive|: B {diff_b:.2e} over {len(naive_b)} values, P(correct) {diff_q:.2e} over "
        f"{len(naive_q)} values -> {'OK' if ok_naive else 'MISMATCH'} (tolerance {tol_naive}{rounding})"
    )
    print(
        f"max |engine - peer|: B {peer_diff_b:.2e} over {len(peer_b)} values, P(correct) {peer_diff_q:.2e} over "
        f"{len(peer_q)} values -> {'OK' if ok_peer else 'MISMATCH'} (tolerance {tol_peer}{rounding})"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB; load average at end {load_average()}")
    print(
        f"engine evaluation {engine_eval:.1f} s vs naive {naive_full:.1f} s"
        f"{' (scaled)' if scale != 1 else ''} vs peer loop {peer_full:.1f} s{' (scaled)' if peer_scale != 1 else ''}; "
        f"end to end incl. extraction: engine {engine_total:.1f} s vs naive {naive_full + tm['extract_s']:.1f} s "
        f"-> {(naive_full + tm['extract_s']) / engine_total:.2f}x"
    )
    if not (ok_naive and ok_peer):
        return 1
    print(f"speedup_vs_paper: {naive_full / engine_eval:.2f}x")
    print(f"speedup_vs_peer_loop: {peer_full / engine_eval:.2f}x")
    print(f"flop_fraction: {achieved / rate:.4f}")
    print(f"speedup: {naive_full / engine_eval:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
