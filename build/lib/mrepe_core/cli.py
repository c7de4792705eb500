"""Command line: ``mrepe {sweep,extract,export} ...`` (also ``python -m mrepe_core ...``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _config(args):
    from .config import SweepConfig

    config = SweepConfig.from_yaml(args.preset) if args.preset else SweepConfig()
    overrides = {
        k: getattr(args, k)
        for k in (
            "model",
            "behavior",
            "method",
            "layers",
            "r_min",
            "r_max",
            "r_steps",
            "n_eval",
            "dtype",
            "device",
            "seed",
            "behavior_mode",
            "max_new_tokens",
            "scorer",
        )
        if getattr(args, k, None) is not None
    }
    if overrides:
        config = SweepConfig.from_dict({**config.to_dict(), **overrides})
    return config


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="YAML preset (see presets/)")
    p.add_argument("--model", help="'smollm2-135m-instruct' (embedded), an HF id, a folder or a .gguf file")
    p.add_argument("--behavior", help="harmless | harmful | not-racist | racist")
    p.add_argument("--method", choices=["pca", "mean_diff"])
    p.add_argument("--layers", help="layer selection, e.g. '8:20' or '-12:-4' or '3,5,7'")
    p.add_argument("--r-min", dest="r_min", type=float)
    p.add_argument("--r-max", dest="r_max", type=float)
    p.add_argument("--r-steps", dest="r_steps", type=int)
    p.add_argument("--n-eval", dest="n_eval", type=int)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--behavior-mode",
        dest="behavior_mode",
        choices=["generate", "proxy", "first_token"],
        help="B from generated answers (default), the sequence proxy alone, or the next-token proxy",
    )
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    p.add_argument("--scorer", help="'keyword' (default), 'hf-classifier:<id>' or 'hf-judge:<id>'")


def cmd_sweep(args) -> int:
    t0 = time.perf_counter()
    config = _config(args)
    if not args.no_cache:
        # A repeated run is a file copy: look the result up before torch is even imported.
        from .cache import copy_entry, default_cache_dir, file_cache_key, indexed_entry

        entry = indexed_entry(args.cache_dir or default_cache_dir(), file_cache_key(config))
        if entry is not None:
            try:
                out = copy_entry(entry, args.out)
            except (OSError, ValueError):
                pass  # unreadable entry: the sweep below looks again and recomputes what it must
            else:
                _report(out, json.loads((out / "summary.json").read_text()), time.perf_counter() - t0)
                return 0

    from tqdm import tqdm

    from .sweep import run_sweep

    bar = tqdm(total=None, unit="row", desc="sweep", disable=args.quiet)

    def progress(done, total, partial):
        bar.total = total
        bar.n = done
        bar.refresh()

    result = run_sweep(
        config, progress=progress, use_cache=not args.no_cache, cache_dir=args.cache_dir, partial_every=0
    )  # the bar only counts rows
    bar.close()
    out = result.save(args.out)
    _report(out, result.summary, time.perf_counter() - t0 if result.from_cache else None)
    return 0


def _report(out: Path, s: dict, served_s: float | None) -> None:
    """Print what was written and the fits; ``served_s`` is set when the result came from the cache."""
    a, h = s.get("alignment_fit") or {}, s.get("helpfulness_fit") or {}
    if s.get("alignment_fit_problem"):
        print(f"alignment: no fit ({s['alignment_fit_problem']})")
        a = {}
    if s.get("helpfulness_fit_problem"):
        print(f"helpfulness: no fit ({s['helpfulness_fit_problem']})")
        h = {}
    print(
        f"wrote {out}/results.csv, items.csv, summary.json, vector.safetensors"
        f"{' (from cache)' if served_s is not None else ''}"
    )
    if a:
        print(f"alignment fit: delta_lambda={a['delta_lambda']:.3f} B0={a['b0']:.3f} R2={a['r2']:.3f}")
    if h:
        print(
            f"helpfulness fit: P0={h['p0']:.3f} alpha={h['alpha']:.3f} "
            f"lambda_sigma_beta={h['lambda_sigma_beta']:.3f} R2={h['r2']:.3f}"
        )
    regime = s.get("efficient_regime")
    if regime:
        lo, hi, best = regime["r_min"], regime["r_max"], regime["best_r_e"]
        print(f"efficient regime: [{lo:.3g}, {hi:.3g}], recommended r_e = {best:.3g}")
    elif s.get("no_efficient_regime"):
        print(s["no_efficient_regime"])
    for note in s.get("notes", []):
        print(f"note: {note}")
    computed = s.get("timings", {}).get("total_s")
    if served_s is not None:
        print(f"served from cache in {served_s:.2f} s (computed in {computed} s)")
    else:
        print(f"total: {computed} s")


def cmd_extract(args) -> int:
    from .extract import extract_vector
    from .models import resolve_layers
    from .sweep import prepare

    config = _config(args)
    if args.pairs:
        from .datasets import parse_user_behavior

        path = Path(args.pairs)
        behavior = parse_user_behavior(path.read_bytes(), path.name, name=path.stem)
    else:
        behavior = None
    loaded, behavior, _ = prepare(config, behavior=behavior)
    layers = resolve_layers(config.layers, loaded.n_layers)
    vec = extract_vector(
        loaded, behavior.pairs, config.method, layers, behavior=behavior.name, template=behavior.template
    )
    t, m = vec.save(args.out)
    print(f"wrote {t} and {m} ({vec.n_layers} layers x {vec.hidden_size}, default layers {layers})")
    return 0


# What `export --format` offers for vectors (llama.cpp/repeng/EasySteer, IBM, lm-eval); kept here
# rather than imported so `mrepe --help` needs no torch.
# (the names of vector_formats.FORMATS; tests/unit/test_vector_formats.py checks they agree)
VECTOR_FORMATS = {
    "mrepe": "ours (.safetensors + .json)",
    "gguf": "llama.cpp / repeng / EasySteer control vector (--control-vector-scaled FILE:R_E)",
    "svec": "IBM activation-steering / AISteer360 JSON",
    "lm_eval": "lm-evaluation-harness 'steered' model file (.pt, export only)",
}


def cmd_export(args) -> int:
    """Re-export a results folder as one JSON document (curves + summary) or CSV, or write its
    vector in another tool's format."""
    if args.format in VECTOR_FORMATS:
        return _export_vector(args)
    from .result import SweepResult

    res = SweepResult.load(args.results)
    if args.format == "json":
        doc = {
            "config": res.config.to_dict(),
            "summary": res.summary,
            "results": res.aggregates.to_dict(orient="records"),
        }
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
    else:
        res.aggregates.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


def _export_vector(args) -> int:
    from .vectors import SteeringVector

    source = Path(args.results)
    vector = SteeringVector.load(source / "vector" if source.is_dir() else source)
    options = {"coefficient": args.r_e} if args.format == "lm_eval" else {}
    paths = vector.save(args.out, format=args.format, **options)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mrepe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="run a sweep over r_e and write results")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    p.add_argument("--cache-dir", help="sweep cache folder (default: ~/.cache/mrepe/sweeps)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("extract", help="extract a steering vector")
    _add_config_args(p)
    p.add_argument("--pairs", help="CSV/JSONL of user contrast pairs instead of a built-in behaviour")
    p.add_argument("--out", required=True, help="output path without suffix (writes .safetensors + .json)")
    p.set_defaults(fn=cmd_extract)
    p = sub.add_parser(
        "export",
        help="export a results folder as JSON or CSV, or its vector (or a vector file) for other tools",
        description="Vector formats: " + "; ".join(f"{name}: {text}" for name, text in VECTOR_FORMATS.items()),
    )
    p.add_argument("results", help="folder written by 'sweep', or a vector file (.safetensors/.gguf/.svec)")
    p.add_argument("--format", choices=["json", "csv", *VECTOR_FORMATS], default="json")
    p.add_argument("--r-e", dest="r_e", type=float, default=1.0, help="coefficient stored in lm-eval files")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_export)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as exc:  # validation errors are user errors: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
