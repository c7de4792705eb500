"""Sweeps over the steering coefficient: config -> batched work -> tidy results -> fits.

``iter_sweep(config)`` yields ``SweepEvent``s (stages, progress, partial results, the final result)
so a caller (the CLI, the dashboard, a notebook) iterates it instead of running threads and
queues; ``run_sweep`` is the same loop with a callback. Work items are (item, r_e) rows batched
together with a per-row coefficient; a coarse subset of the grid runs first so partial curves are
useful early. Results are cached on disk (``cache.py``); a cancelled sweep keeps its finished
batches, and the next run with the same settings starts where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, cache, datasets, provenance
from . import measurements as measure
from .agreement import proxy_agreement
from .config import SweepConfig
from .diagnostics import compare_with_fits, run_diagnostics
from .extract import extract_vector
from .models import LoadedModel, load_model, resolve_layers
from .plan import SweepPlan, coarse_first, interleave, plan_batches  # noqa: F401  (planning names)
from .result import ITEM_COLUMNS, TEXT_COLUMNS, SweepResult, aggregate
from .tradeoff import fit_tradeoff
from .vectors import SteeringVector

__all__ = ["SweepCancelled", "SweepEvent", "iter_sweep", "run_sweep", "prepare", "summarise"]

N_CHOICES = 4  # MMLU questions have four options


class SweepCancelled(RuntimeError):
    """Raised inside a sweep when its cancel event is set."""


@dataclass
class SweepEvent:
    """One step of a sweep: ``kind`` is ``stage`` (a named stage starts), ``progress`` (rows done
    of total, with a partial result every ``partial_every`` batches) or ``done`` (``result`` is final)."""

    kind: str
    stage: str = ""
    done: int = 0
    total: int = 0
    result: SweepResult | None = None
    message: str = ""


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def diagnostic_grid(grid: list[float], n: int = 8) -> list[float]:
    """A few non-zero coefficients spread over the sweep's range for the assumption checks."""
    nonzero = sorted({r for r in grid if r != 0.0}, key=abs)
    if len(nonzero) <= n:
        return sorted(nonzero)
    idx = np.unique(np.linspace(0, len(nonzero) - 1, n).round().astype(int))
    return sorted(nonzero[i] for i in idx)


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def summarise(
    config: SweepConfig, agg: pd.DataFrame, n_choices: int = N_CHOICES, behavior_metric: str = "behavior_expectation"
) -> dict:
    """Fits, efficient regime (``tradeoff.fit_tradeoff``) and plain-language notes for a sweep."""
    tradeoff = fit_tradeoff(agg, n_choices=n_choices, behavior_metric=behavior_metric)
    out = tradeoff.to_dict()
    out["notes"] = list(tradeoff.notes)
    for fit in (tradeoff.alignment, tradeoff.helpfulness):
        if fit is not None:
            out["notes"].extend(fit.notes)
    out["behavior_metric"] = behavior_metric
    r, b = _curve(agg, "behavior", behavior_metric)
    if b.size >= 3:
        diffs = np.diff(b)
        out["behavior_monotone"] = bool((diffs >= -1e-9).all() or (diffs <= 1e-9).all())
    baseline = prompting_baseline(agg, tradeoff, behavior_metric)
    if baseline:
        out["prompting_baseline"] = baseline
        out["notes"].append(baseline["verdict"])
    r, h = _curve(agg, "helpfulness", "helpfulness", "mean")
    if h.size >= 3 and r.min() <= 0 <= r.max():
        out["helpfulness_at_0_vs_ends"] = {
            "h0": float(np.interp(0.0, r, h)),
            "h_min_r": float(h[0]),
            "h_max_r": float(h[-1]),
        }
    return out


def prompting_baseline(agg: pd.DataFrame, tradeoff, behavior_metric: str) -> dict:
    """The unsteered model asked with the behaviour's system prompt, next to steering at the
    recommended r_e (or at the largest B, when there is no regime): does steering beat asking?"""
    base = agg[(agg.task == "baseline") & (agg.r_e == 0.0)]
    if base.empty:
        return {}

    def value(rows, metric, subject=None):
        sel = rows[rows.metric == metric]
        if subject is not None:
            sel = sel[sel.subject == subject]
        return float(sel.value.iloc[0]) if len(sel) else None

    out = {
        "behavior_expectation": value(base, "behavior_expectation"),
        "helpfulness": value(base, "helpfulness", "mean"),
        "coherent": value(base, "coherent"),
    }
    r, b = _curve(agg, "behavior", behavior_metric)
    if not b.size or out["behavior_expectation"] is None:
        return {}
    at = tradeoff.regime.best_r_e if tradeoff.regime is not None else float(r[int(np.argmax(b))])
    steer = agg[np.isclose(agg.r_e, at)]
    out["steering"] = {
        "r_e": at,
        "behavior_expectation": float(np.interp(at, r, b)),
        "helpfulness": value(steer[steer.task == "helpfulness"], "helpfulness", "mean"),
        "coherent": value(steer[steer.task == "coherence"], "coherent"),
    }
    gap = out["steering"]["behavior_expectation"] - out["behavior_expectation"]
    out["verdict"] = (
        f"prompting baseline: asking in a system prompt gives B = {out['behavior_expectation']:+.2f}; steering at "
        f"r_e = {at:.3g} gives B = {out['steering']['behavior_expectation']:+.2f}, so steering "
        + ("beats asking" if gap > 0.05 else "does not beat asking" if gap < -0.05 else "matches asking")
        + f" on B (by {gap:+.2f})"
        + (
            f"; helpfulness {out['helpfulness']:.3f} asked vs {out['steering']['helpfulness']:.3f} steered"
            if out["helpfulness"] is not None and out["steering"]["helpfulness"] is not None
            else ""
        )
        + "."
    )
    return out


def _curve(agg: pd.DataFrame, task: str, metric: str, subject: str | None = None):
    sel = agg[(agg.task == task) & (agg.metric == metric)]
    if subject is not None:
        sel = sel[sel.subject == subject]
    sel = sel.sort_values("r_e")
    return sel.r_e.to_numpy(float), sel.value.to_numpy(float)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def prepare(config: SweepConfig, loaded: LoadedModel | None = None, behavior: datasets.Behavior | None = None):
    """Load model and data for a config (shared by the sweep, the CLI's extract and the UI)."""
    loaded = loaded or load_model(config.model, device=config.device, dtype=config.dtype)
    if behavior is None:
        behavior = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    questions = (
        datasets.load_mmlu(config.helpfulness_subjects, config.mmlu_split, config.n_questions_per_subject, config.seed)
        if config.n_questions_per_subject
        else []
    )
    return loaded, behavior, questions


def _data_hash(behavior, questions, vector: SteeringVector | None) -> str:
    data = hashlib.sha256(
        json.dumps([behavior.data_hash, [(q.subject, q.question) for q in questions]]).encode()
    ).hexdigest()[:16]
    if vector is None:
        return data
    blob = vector.directions.numpy().tobytes() + json.dumps(vector.layers).encode()
    return data + hashlib.sha256(blob).hexdigest()[:16]


def iter_sweep(
    config: SweepConfig,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    loaded: LoadedModel | None = None,
    behavior: datasets.Behavior | None = None,
    vector: SteeringVector | None = None,
    cancel: threading.Event | None = None,
    partial_every: int = 1,
) -> Iterator[SweepEvent]:
    """Run (or fetch from cache) a sweep, yielding its events; the last one is ``done`` with the result.

    ``partial_every``: a partial result every this many batches (0: never; building one costs an
    aggregation of all rows so far). ``cancel`` is checked between batches (``SweepCancelled``)."""
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir else cache.default_cache_dir()
    # Built-in data and no vector given: the result is a function of files on disk, so an earlier
    # run can be found before the model is loaded (seconds saved on every repeated CLI run).
    quick = (
        cache.file_cache_key(config) if use_cache and loaded is None and behavior is None and vector is None else None
    )
    indexed = cache.indexed_entry(cache_dir, quick)
    if indexed is not None:
        try:
            yield SweepEvent("done", "cache", result=_from_cache(indexed, t0))
            return
        except (ValueError, OSError):
            pass  # stale or corrupt: the full lookup below decides
    yield SweepEvent("stage", "load", message="loading the model and the data")
    loaded, behavior, questions = prepare(config, loaded, behavior)
    t_load = time.perf_counter() - t0
    # The dtype and device that "auto" resolved to are part of what the numbers depend on.
    model_id = f"{loaded.fingerprint}|{loaded.dtype}|{loaded.device.type}"
    key = cache.cache_key(config, model_id, _data_hash(behavior, questions, vector))
    entry = cache.entry_path(cache_dir, key)
    if use_cache and cache.complete_entry(entry):
        try:
            res = _from_cache(entry, t0)
            cache.write_index(cache_dir, quick, key)
            yield SweepEvent("done", "cache", result=res)
            return
        except (ValueError, OSError):
            cache.discard(entry)  # corrupt entries are recomputed
    layers = resolve_layers(config.layers, loaded.n_layers)
    t1 = time.perf_counter()
    if vector is None:
        yield SweepEvent("stage", "extract", message=f"extracting a {config.method} vector")
        vector = extract_vector(
            loaded,
            behavior.pairs,
            config.method,
            layers,
            behavior=behavior.name,
            template=behavior.template,
            positive=behavior.description,
        )
    t_extract = time.perf_counter() - t1
    grid = config.r_grid()
    check_grid = diagnostic_grid(grid) if config.n_diagnostics and any(r != 0.0 for r in grid) else []
    keep_beh = (
        measure.AnswerStates(min(config.n_diagnostics, len(behavior.eval_prompts)), check_grid) if check_grid else None
    )
    keep_hel = measure.AnswerStates(min(config.n_diagnostics, len(questions)), check_grid) if check_grid else None
    plan = SweepPlan(config, loaded, behavior, questions, vector, layers, keep_beh, keep_hel, cancel)
    # The behaviour checks' states come from the next-token proxy's or the sequence proxy's passes
    # (packed path only; the checks run their own passes otherwise).
    if plan.hel is None or plan.hel.keep is None:
        keep_hel = None
    partial = _Partial.load(cache_dir, key) if use_cache else _Partial()
    plan.restore(partial.texts, partial.rows)
    times: dict[str, float] = {}
    total, done, n_batch = plan.n_rows(), 0, 0
    for stage in plan.stages():
        yield SweepEvent("stage", stage.name, done, total, message=stage.message)
        for task, batch in stage.batches:
            n_batch += 1
            if n_batch - 1 in partial.batches:
                done += stage.work[task].n_rows(batch)
                continue
            if cancel is not None and cancel.is_set():
                if use_cache:
                    partial.save(cache_dir, key, plan_texts(plan))
                raise SweepCancelled("Sweep cancelled.")
            tb = time.perf_counter()
            partial.add(n_batch - 1, stage.work[task].rows(batch))
            times[task] = times.get(task, 0.0) + time.perf_counter() - tb
            done += stage.work[task].n_rows(batch)
            shown = None
            if partial_every and n_batch % partial_every == 0:
                items = pd.DataFrame(partial.rows, columns=ITEM_COLUMNS)
                shown = SweepResult(
                    config, aggregate(items), items, {"behavior_metric": plan.behavior_metric}, vector, complete=False
                )
            yield SweepEvent("progress", stage.name, min(done, total), total, result=shown)
    texts = plan_texts(plan)
    items = (
        pd.DataFrame(partial.rows, columns=ITEM_COLUMNS)
        .sort_values(["task", "metric", "subject", "item", "r_e"])
        .reset_index(drop=True)
    )
    agg = aggregate(items)
    summary = summarise(config, agg, behavior_metric=plan.behavior_metric)
    summary["proxy_agreement"] = proxy_agreement(items)
    summary.update(
        {
            "config": config.to_dict(),
            "model": {
                "name": loaded.name,
                "source": loaded.source,
                "n_layers": loaded.n_layers,
                "hidden_size": loaded.hidden_size,
                "dtype": str(loaded.dtype).replace("torch.", ""),
                "device": str(loaded.device),
            },
            "provenance": provenance.stack(loaded.device, loaded.dtype),
            "layers": layers,
            "behavior_mode": config.behavior_mode,
            "n_behavior_prompts": len(behavior.eval_prompts),
            "n_questions": len(questions),
            "n_contrast_pairs": len(behavior.pairs),
            "timings": {
                "load_s": round(t_load, 3),
                "extract_s": round(t_extract, 3),
                **{f"{task}_s": round(t, 3) for task, t in times.items()},
            },
            "version": __version__,
        }
    )
    diag_rows = noise = None
    if check_grid:
        yield SweepEvent("stage", "diagnostics", done, total, message="checking the paper's assumptions")
        td = time.perf_counter()
        # States the sweep could not keep (generation mode, plain path, r_e = 0 off the grid) are
        # computed by the checks' own passes.
        diag = run_diagnostics(
            loaded,
            vector,
            layers,
            questions[: config.n_diagnostics],
            _subset(behavior, config.n_diagnostics),
            check_grid,
            helpfulness_format=config.helpfulness_format,
            question_states=keep_hel.by_coefficient() if keep_hel is not None else None,
            behavior_states=keep_beh.by_coefficient() if keep_beh is not None else None,
        )
        diag_rows, noise = diag.rows, diag.noise_samples
        summary["diagnostics"] = {
            **diag.estimates,
            "comparison_with_fits": compare_with_fits(
                diag.estimates, summary.get("alignment_fit"), summary.get("helpfulness_fit")
            ),
        }
        summary["timings"]["diagnostics_s"] = round(time.perf_counter() - td, 3)
    summary["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    result = SweepResult(
        config,
        agg,
        items,
        summary,
        vector,
        diagnostics=diag_rows,
        noise_samples=noise,
        texts=pd.DataFrame(texts, columns=TEXT_COLUMNS) if texts else None,
    )
    if use_cache:
        try:
            result.save(entry)
            cache.write_index(cache_dir, quick, key)
            _Partial.remove(cache_dir, key)
        except OSError:
            summary["notes"].append("results could not be cached (read-only cache directory)")
    yield SweepEvent("done", "done", total, total, result=result)


ProgressFn = Callable[[int, int, "SweepResult | None"], None]


def run_sweep(config: SweepConfig, progress: ProgressFn | None = None, **kwargs) -> SweepResult:
    """``iter_sweep`` to its end; ``progress(done, total, partial_result)`` after every batch."""
    for event in iter_sweep(config, **kwargs):
        if event.kind == "progress" and progress is not None:
            progress(event.done, event.total, event.result)
        if event.kind == "done" and event.result is not None:
            return event.result
    raise RuntimeError("The sweep ended without a result.")  # pragma: no cover - iter_sweep always ends with done


class _Partial:
    """Rows of finished batches, kept when a sweep is cancelled so a rerun skips them."""

    def __init__(self, batches=(), rows=(), texts=()) -> None:
        self.batches, self.rows, self.texts = set(batches), list(rows), list(texts)

    def add(self, batch: int, rows: list[dict]) -> None:
        self.batches.add(batch)
        self.rows.extend(rows)

    @staticmethod
    def _path(cache_dir: Path, key: str) -> Path:
        return cache_dir / f"{key}.partial.json"

    def save(self, cache_dir: Path, key: str, texts: list[dict]) -> None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._path(cache_dir, key).with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "version": __version__,
                        "batches": sorted(self.batches),
                        "rows": self.rows,
                        "texts": texts,
                    },
                    default=float,
                )
            )
            tmp.replace(self._path(cache_dir, key))
        except OSError:
            pass  # a read-only cache only costs the recomputation

    @classmethod
    def load(cls, cache_dir: Path, key: str) -> _Partial:
        try:
            data = json.loads(cls._path(cache_dir, key).read_text())
            if data.get("version") != __version__:
                return cls()
            return cls(data["batches"], data["rows"], data.get("texts", []))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    @classmethod
    def remove(cls, cache_dir: Path, key: str) -> None:
        cls._path(cache_dir, key).unlink(missing_ok=True)


def plan_texts(plan: SweepPlan) -> list[dict]:
    """The generated answers of a plan (steered and baseline), for ``SweepResult.texts``."""
    return [t for g in (plan.generated, plan.baseline) if g is not None for t in g.texts]


def _from_cache(entry: Path, t0: float) -> SweepResult:
    res = SweepResult.load(entry)
    res.from_cache = True
    res.summary.setdefault("timings", {})["served_from_cache_s"] = round(time.perf_counter() - t0, 3)
    return res


def _subset(behavior: datasets.Behavior, n: int) -> datasets.Behavior:
    return dataclasses.replace(behavior, eval_prompts=behavior.eval_prompts[:n])
