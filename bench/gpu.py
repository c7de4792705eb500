"""The engine on a GPU: default-preset-shaped work on randomly initialised Llama-family models.

    python bench/gpu.py                     # CUDA, bf16: SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B shapes
    python bench/gpu.py --tiny              # the same code on the CPU with a tiny model, in seconds
    python bench/gpu.py --quick             # the real shapes on a slice of the work (a first check on a card)
    python bench/gpu.py --record            # rewrite bench/gpu_workload.json (needs the embedded model)

Nothing is downloaded: the models are ``LlamaForCausalLM`` built from configs with the real shapes
(hidden size, MLP size, layers, heads, key/value heads, vocabulary, rope, tied embeddings) and
random weights; speed does not depend on the weights' values. The work is the default preset's
(``presets/harmless-smollm2.yaml``): 40 chat prompts x 21 coefficients for B, and 105 cloze MMLU
questions x 4 choices x 21 coefficients for helpfulness, as token ids. ``bench/gpu_workload.json``
holds those sequences as SmolLM2's tokenizer cuts them, with each distinct token replaced by its
index of first appearance, so lengths and shared prefixes (chat template, subject header, question
shared by its choices) are the real data's while the content is not; here each index is mapped to a
random token of the model's vocabulary. The steering vector is random (unit directions), injected
at the preset's layers scaled to the model's depth (10:18 of 30).

The work runs through the engine's scorers (``runner.NextTokenScorer``, ``runner.ChoiceScorer``)
with the sweep's metrics on their outputs, after a warm-up on a few items. Per model and token
budget per forward pass, one JSON line per task: seconds; tokens/s (``tokens``: the tokens of the
full sequences at every coefficient, what a loop over sequences would feed; ``nodes``: the prefix-
tree nodes the engine ran); model FLOPs of the work (``bench/flops.py``) and ``flop_fraction``
against the bf16 matmul rate this card reaches on the model's shapes (``hardware.matmul_flops``,
its own JSON line); peak memory (``torch.cuda.max_memory_allocated``, weights included). Then the
5,000-point UMAP through ``mrepe_core.projection.fit_umap`` on ``device_for_projection()`` (the GPU
when there is one). Every line starts with ``{"bench": "gpu"``; a summary table ends the output.
``--budget-s`` skips what is left (with a ``skipped`` line) once that much time has passed.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.flops import model_matmul_shapes, packed_work  # noqa: E402
from mrepe_core import hardware, metrics, runner  # noqa: E402
from mrepe_core.models import wrap_model  # noqa: E402
from mrepe_core.vectors import SteeringVector  # noqa: E402

WORKLOAD = Path(__file__).resolve().parent / "gpu_workload.json"
PRESET = ROOT / "presets" / "harmless-smollm2.yaml"

# Real shapes (the models' config.json on the Hugging Face Hub).
MODELS = {
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
    ),
    "llama-3.1-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=False,
    ),
}
TINY_MODEL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=512,
    max_position_embeddings=1024,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    tie_word_embeddings=True,
)
PRESET_LAYERS = (10, 18, 30)  # "10:18" of SmolLM2's 30 layers


def emit(record: dict) -> dict:
    print(json.dumps({"bench": "gpu", **record}, default=float), flush=True)
    return record


# ---------------------------------------------------------------------------------------------
# Workload: token-id sequences shaped like the default preset's data
# ---------------------------------------------------------------------------------------------


class IdTokenizer:
    """A tokenizer for texts that are already token ids ("12 7 301"): the engine's scorers take
    texts, so the random workload goes through exactly the code a real one does."""

    chat_template = None
    padding_side = "left"

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.pad_token_id = self.eos_token_id = 0
        self.pad_token = self.eos_token = "0"

    @staticmethod
    def encode(text: str) -> list[int]:
        return [int(t) for t in text.split()]

    def __call__(self, texts, add_special_tokens: bool = False, **_):
        if isinstance(texts, str):
            return {"input_ids": self.encode(texts)}
        return {"input_ids": [self.encode(t) for t in texts]}

    def __len__(self) -> int:
        return self.vocab_size


def as_text(ids) -> str:
    return " ".join(str(int(i)) for i in ids)


def record_workload(path: Path = WORKLOAD) -> None:
    """Tokenise the default preset's evaluation data with the embedded model's tokenizer and store
    it relabelled (each distinct token id -> its index of first appearance)."""
    from mrepe_core import datasets, prompts
    from mrepe_core.config import SweepConfig
    from mrepe_core.models import load_model

    config = SweepConfig.from_yaml(PRESET)
    tok = load_model(config.model, device="cpu", dtype="fp32").tokenizer
    behavior = datasets.load_behavior(config.behavior, tok, config.n_pairs, config.n_eval, config.seed)
    questions = datasets.load_mmlu(
        config.helpfulness_subjects, config.mmlu_split, config.n_questions_per_subject, config.seed
    )
    index: dict[int, int] = {}

    def relabel(ids) -> list[int]:
        return [index.setdefault(int(t), len(index)) for t in ids]

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    beh = [relabel(ids(prompts.render_chat(tok, p.user))) for p in behavior.eval_prompts]
    pos, neg = metrics.answer_token_sets(tok, behavior.eval_prompts[0].aligned, behavior.eval_prompts[0].misaligned)
    mmlu = []
    for q in questions:
        prefix = relabel(ids(prompts.mmlu_cloze_prompt(q.question, q.subject)))
        choices = [relabel(ids(" " + c.strip()) or [tok.eos_token_id]) for c in q.choices]
        mmlu.append({"subject": q.subject, "prefix": prefix, "choices": choices, "answer": int(q.answer)})
    aligned, misaligned = relabel(pos), relabel(neg)
    data = {
        "source": f"{PRESET.name}: {config.model} tokenizer, {len(beh)} behaviour prompts (chat template), "
        f"{len(mmlu)} cloze MMLU questions; token ids relabelled by first appearance",
        "grid": config.r_grid(),
        "layers": config.layers,
        "distinct_tokens": len(index),
        "aligned_ids": aligned,
        "misaligned_ids": misaligned,
        "behavior": beh,
        "mmlu": mmlu,
    }
    lines = ["{"]
    items = list(data.items())
    for k, (key, value) in enumerate(items):
        comma = "," if k < len(items) - 1 else ""
        if key in ("behavior", "mmlu"):
            inner = ",\n".join("    " + json.dumps(v) for v in value)
            lines.append(f'  "{key}": [\n{inner}\n  ]{comma}')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    print(
        f"wrote {path}: {len(beh)} prompts, {len(mmlu)} questions, {len(index)} distinct tokens, "
        f"{sum(map(len, beh))} behaviour tokens, {sum(len(q['prefix']) for q in mmlu)} question-prefix tokens"
    )


class Workload:
    """The recorded sequences with token indices mapped to random ids of a ``vocab_size`` vocabulary."""

    def __init__(self, data: dict, vocab_size: int, seed: int = 0, n_prompts=None, n_questions=None, n_r=None):
        perm = np.random.default_rng(seed).permutation(vocab_size)

        def ids(seq) -> list[int]:
            return [int(perm[i % vocab_size]) for i in seq]

        grid = list(data["grid"])
        if n_r is not None and n_r < len(grid):
            grid = [grid[int(k)] for k in np.linspace(0, len(grid) - 1, n_r).round()]
        self.grid = grid
        self.behavior = [ids(s) for s in data["behavior"][:n_prompts]]
        questions = data["mmlu"][:n_questions]
        self.prefixes = [ids(q["prefix"]) for q in questions]
        self.choices = [[ids(c) for c in q["choices"]] for q in questions]
        self.answers = [int(q["answer"]) for q in questions]
        self.aligned = sorted(set(ids(data["aligned_ids"])))
        self.misaligned = sorted(set(ids(data["misaligned_ids"])) - set(self.aligned))

    def behavior_tokens(self) -> int:
        return sum(len(s) for s in self.behavior) * len(self.grid)

    def helpfulness_tokens(self) -> int:
        per_r = sum(len(p) + len(c) for p, row in zip(self.prefixes, self.choices) for c in row)
        return per_r * len(self.grid)


def steered_layers(n_layers: int) -> list[int]:
    start, stop, of = PRESET_LAYERS
    lo = max(0, min(n_layers - 2, round(start * n_layers / of)))
    hi = max(lo + 1, min(n_layers - 1, round(stop * n_layers / of)))
    return list(range(lo, hi))


# ---------------------------------------------------------------------------------------------
# Models and measurements
# ---------------------------------------------------------------------------------------------


def build_model(shape: dict, dtype: torch.dtype, device: torch.device, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **shape,
        rms_norm_eps=1e-5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=0,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    with torch.device(device):  # weights are created (and initialised) on the device, in dtype
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval()


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def run_behavior(scorer, work: Workload) -> np.ndarray:
    """Every (unit, r_e) in batches of ``units_per_batch`` as the sweep plans them, with the B metric."""
    todo = [(u, r) for r in work.grid for u in range(len(scorer.units))]
    out = []
    for k in range(0, len(todo), scorer.units_per_batch):
        _, logits = scorer.run(todo[k : k + scorer.units_per_batch])
        b, _ = metrics.behavior_expectation_from_logits(logits, work.aligned, work.misaligned)
        out.append(b)
    return np.concatenate(out)


def run_helpfulness(scorer, work: Workload) -> np.ndarray:
    todo = [(u, r) for r in work.grid for u in range(len(scorer.units))]
    out = []
    for k in range(0, len(todo), scorer.units_per_batch):
        rows, sums, lengths = scorer.run(todo[k : k + scorer.units_per_batch])
        p, _ = metrics.helpfulness_from_choice_loglik(sums, lengths, [work.answers[i] for i, _ in rows])
        out.append(p)
    return np.concatenate(out)


def make_scorers(loaded, work: Workload, vector, layers, batch_tokens: int, n_prompts=None, n_questions=None):
    """(behaviour scorer, helpfulness scorer) on the first items of the work (None where 0 are asked for)."""
    texts = [as_text(s) for s in work.behavior[:n_prompts]]
    beh = runner.NextTokenScorer(loaded, texts, vector, layers, batch_tokens=batch_tokens) if texts else None
    prefixes = [as_text(p) for p in work.prefixes[:n_questions]]
    choices = [[as_text(c) for c in row] for row in work.choices[:n_questions]]
    hel = (
        runner.ChoiceScorer(loaded, prefixes, choices, vector, layers, batch_tokens=batch_tokens) if prefixes else None
    )
    return beh, hel


def measure_model(name, shape, args, device, dtype, data, rows: list[dict]) -> None:
    t0 = time.perf_counter()
    model = build_model(shape, dtype, device)
    synchronise(device)
    build_s = time.perf_counter() - t0
    loaded = wrap_model(model, IdTokenizer(shape["vocab_size"]), name=name, device=device)
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    work = Workload(data, shape["vocab_size"], n_prompts=args.n_prompts, n_questions=args.n_questions, n_r=args.n_r)
    layers = steered_layers(loaded.n_layers)
    directions = torch.nn.functional.normalize(
        torch.randn(loaded.n_layers, loaded.hidden_size, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    vector = SteeringVector(directions, layers, {"random": True})
    n_params = sum(p.numel() for p in model.parameters())
    emit(
        {
            "kind": "model",
            "model": name,
            "params": n_params,
            "weights_gb": round(weights_gb, 3),
            "layers": loaded.n_layers,
            "steered_layers": f"{layers[0]}:{layers[-1] + 1}",
            "hidden": loaded.hidden_size,
            "vocab": shape["vocab_size"],
            "dtype": str(dtype).replace("torch.", ""),
            "device": str(device),
            "build_s": round(build_s, 3),
            "prompts": len(work.behavior),
            "questions": len(work.prefixes),
            "coefficients": len(work.grid),
        }
    )
    rates: dict[int, float] = {}
    for batch_tokens in args.batch_tokens:
        shapes = model_matmul_shapes(model, batch_tokens)
        rate = hardware.matmul_flops(dtype, device, shapes, seconds=args.matmul_seconds)
        rates[batch_tokens] = rate
        emit(
            {
                "kind": "matmul",
                "model": name,
                "dtype": str(dtype).replace("torch.", ""),
                "device": str(device),
                "rows": batch_tokens,
                "shapes": shapes,
                "gflops": round(rate, 3),
            }
        )
    for batch_tokens in args.batch_tokens:
        # Warm-up on a few items with scorers of their own (the timed ones start with empty caches).
        warm = _subset(work, 2)
        beh, hel = make_scorers(loaded, work, vector, layers, batch_tokens, n_prompts=4, n_questions=4)
        run_behavior(beh, warm)
        run_helpfulness(hel, warm)
        synchronise(device)
        reset_peak(device)
        total = {"seconds": 0.0, "tokens": 0, "nodes": 0, "flops": 0.0}
        for task in ("behavior", "helpfulness"):
            start = time.perf_counter()
            # Scorers are built inside the timing, as the sweep's timings include them.
            if task == "behavior":
                scorer = make_scorers(loaded, work, vector, layers, batch_tokens, n_questions=0)[0]
                values = run_behavior(scorer, work)
                tokens = work.behavior_tokens()
            else:
                scorer = make_scorers(loaded, work, vector, layers, batch_tokens, n_prompts=0)[1]
                values = run_helpfulness(scorer, work)
                tokens = work.helpfulness_tokens()
            synchronise(device)
            seconds = time.perf_counter() - start
            counted = packed_work(scorer, len(work.grid))
            nodes = sum(len(u) for u in scorer._runner.units) * len(work.grid) if scorer.packed else None
            record = emit(
                {
                    "kind": "engine",
                    "model": name,
                    "task": task,
                    "batch_tokens": batch_tokens,
                    "packed": bool(scorer.packed),
                    "units": len(scorer.units),
                    "values": int(len(values)),
                    "finite": bool(np.isfinite(values).all()),
                    "seconds": round(seconds, 4),
                    "tokens": tokens,
                    "tokens_per_s": round(tokens / seconds, 1),
                    "nodes": nodes,
                    "nodes_per_s": round(nodes / seconds, 1) if nodes else None,
                    "flops": counted.flops,
                    "achieved_gflops": round(counted.flops / seconds / 1e9, 3),
                    "matmul_gflops": round(rates[batch_tokens], 3),
                    "flop_fraction": round(counted.flops / seconds / 1e9 / rates[batch_tokens], 4),
                    "peak_mem_gb": None if peak_gb(device) is None else round(peak_gb(device), 3),
                }
            )
            for key in ("seconds", "tokens", "flops"):
                total[key] += record[key]
            total["nodes"] += nodes or 0
        record = emit(
            {
                "kind": "engine",
                "model": name,
                "task": "total",
                "batch_tokens": batch_tokens,
                "seconds": round(total["seconds"], 4),
                "tokens": total["tokens"],
                "tokens_per_s": round(total["tokens"] / total["seconds"], 1),
                "nodes": total["nodes"],
                "nodes_per_s": round(total["nodes"] / total["seconds"], 1),
                "flops": total["flops"],
                "achieved_gflops": round(total["flops"] / total["seconds"] / 1e9, 3),
                "matmul_gflops": round(rates[batch_tokens], 3),
                "flop_fraction": round(total["flops"] / total["seconds"] / 1e9 / rates[batch_tokens], 4),
                "peak_mem_gb": None if peak_gb(device) is None else round(peak_gb(device), 3),
                "weights_gb": round(weights_gb, 3),
            }
        )
        rows.append(record)
    del loaded, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _subset(work: Workload, n: int) -> Workload:
    small = Workload.__new__(Workload)
    small.__dict__.update(work.__dict__)
    small.grid = work.grid[:n]
    return small


def measure_umap(args, rows: list[dict]) -> None:
    from mrepe_core.projection import device_for_projection, fit_umap

    device = device_for_projection("auto") if not args.tiny else torch.device("cpu")
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(10, args.umap_dims)).astype(np.float32)
    points = centres[rng.integers(0, 10, size=args.umap_points)] + rng.normal(
        size=(args.umap_points, args.umap_dims)
    ).astype(np.float32)
    start = time.perf_counter()
    fit_umap(points[:64], n_neighbors=5, n_pca=4, n_epochs=6, device=device)  # imports, numba compile
    warm = time.perf_counter() - start
    times, fitted = [], None
    for _ in range(args.umap_repeats):
        start = time.perf_counter()
        fitted = fit_umap(points, n_neighbors=15, n_pca=50, n_epochs=args.umap_epochs, device=device)
        times.append(time.perf_counter() - start)
    record = emit(
        {
            "kind": "umap",
            "points": args.umap_points,
            "dims": args.umap_dims,
            "epochs": args.umap_epochs,
            "device": str(fitted.device),
            "backend": fitted.backend,
            "warmup_s": round(warm, 3),
            "seconds": round(statistics.median(times), 4),
            "runs_s": [round(t, 4) for t in times],
            "stages_s": {k: round(float(v), 4) for k, v in fitted.timings.items()},
            "finite": bool(np.isfinite(fitted.embedding).all()),
        }
    )
    rows.append(record)


def summary_table(rows: list[dict], machine: dict) -> str:
    lines = [
        f"summary ({machine['device_name']}, {machine['dtype']}; tokens = sequence tokens x coefficients, "
        "as a loop over sequences would feed them)",
        f"{'model':<14} {'batch tok':>9} {'seconds':>9} {'tokens/s':>11} {'nodes/s':>10} {'TFLOP':>8} "
        f"{'TFLOP/s':>8} {'matmul':>8} {'fraction':>8} {'peak GB':>8}",
    ]
    for r in rows:
        if r["kind"] == "engine":
            peak = "-" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.2f}"
            lines.append(
                f"{r['model']:<14} {r['batch_tokens']:>9} {r['seconds']:>9.3f} {r['tokens_per_s']:>11.0f} "
                f"{r['nodes_per_s']:>10.0f} {r['flops'] / 1e12:>8.3f} {r['achieved_gflops'] / 1e3:>8.2f} "
                f"{r['matmul_gflops'] / 1e3:>8.1f} {r['flop_fraction']:>8.3f} {peak:>8}"
            )
    for r in rows:
        if r["kind"] == "umap":
            lines.append(
                f"UMAP {r['points']} points x {r['dims']} dims, {r['epochs']} epochs on {r['device']} "
                f"({r['backend']}): {r['seconds']:.3f} s median (stages "
                + ", ".join(f"{k} {v:.3f}" for k, v in r["stages_s"].items())
                + ")"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU, a tiny model and a slice of the work: seconds")
    ap.add_argument(
        "--quick", action="store_true", help="the real shapes on a slice of the work (8 prompts, 12 questions, 5 r_e)"
    )
    ap.add_argument("--record", action="store_true", help="rewrite bench/gpu_workload.json and exit")
    ap.add_argument("--models", default=None, help=f"comma list of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--batch-tokens", default=None, help="comma list of token budgets per forward pass")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32", "fp16"])
    ap.add_argument("--matmul-seconds", type=float, default=None)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining models after this long")
    args = ap.parse_args()
    if args.record:
        record_workload()
        return 0

    start = time.perf_counter()
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("torch sees no CUDA device; use --tiny (or --device cpu) on a machine without one")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    if args.tiny:
        models = {"tiny-llama": TINY_MODEL}
        args.batch_tokens = [int(b) for b in (args.batch_tokens or "256,1024").split(",")]
        args.n_prompts, args.n_questions, args.n_r = 6, 8, 3
        args.matmul_seconds = args.matmul_seconds or 0.05
        args.umap_points, args.umap_dims, args.umap_epochs, args.umap_repeats = 300, 32, 10, 1
    else:
        names = [m.strip() for m in (args.models or ",".join(MODELS)).split(",") if m.strip()]
        unknown = set(names) - set(MODELS)
        if unknown:
            ap.error(f"unknown models {sorted(unknown)}; choose from {', '.join(MODELS)}")
        models = {n: MODELS[n] for n in names}
        args.batch_tokens = [int(b) for b in (args.batch_tokens or "4096,16384").split(",")]
        args.n_prompts, args.n_questions, args.n_r = (8, 12, 5) if args.quick else (None, None, None)
        args.matmul_seconds = args.matmul_seconds or (0.5 if args.quick else 2.0)
        args.umap_points, args.umap_dims, args.umap_epochs = 5000, 576, 50
        args.umap_repeats = 1 if args.quick else 3
    data = json.loads(WORKLOAD.read_text())

    machine = emit(
        {
            "kind": "machine",
            "device": str(device),
            "device_name": hardware.device_name(device),
            "cpu": hardware.cpu_name(),
            "native_bf16": hardware.native_bf16(device),
            "dtype": str(dtype).replace("torch.", ""),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "workload": data["source"],
        }
    )
    rows: list[dict] = []
    for name, shape in models.items():
        if time.perf_counter() - start > args.budget_s:
            emit({"kind": "skipped", "model": name, "reason": f"past --budget-s {args.budget_s:.0f}"})
            continue
        with torch.inference_mode():
            measure_model(name, shape, args, device, dtype, data, rows)
    measure_umap(args, rows)
    print(summary_table(rows, machine))
    emit({"kind": "done", "seconds": round(time.perf_counter() - start, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
