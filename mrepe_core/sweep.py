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
from collections.abc import Callable, Generator, Iterator
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
from .limits import Cancelled, check_cancel
from .models import LoadedModel, load_model, resolve_layers
from .plan import SweepPlan, coarse_first, interleave, plan_batches  # noqa: F401  (planning names)
from .result import ITEM_COLUMNS, TEXT_COLUMNS, SweepResult, aggregate
from .summary import summarise
from .vectors import SteeringVector

__all__ = ["SweepCancelled", "SweepEvent", "iter_sweep", "run_sweep", "prepare", "summarise"]


class SweepCancelled(Cancelled):
    """Raised inside a sweep when its cancel event is set (also when it was set during extraction
    or in the middle of a batch: every ``limits.Cancelled`` of a sweep becomes this one)."""


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
    files_only = use_cache and loaded is None and behavior is None and vector is None
    quick = cache.file_cache_key(config) if files_only else None
    hit = _cached(cache.indexed_entry(cache_dir, quick), t0)
    if hit is not None:
        yield SweepEvent("done", "cache", result=hit)
        return
    yield SweepEvent("stage", "load", message="loading the model and the data")
    loaded, behavior, questions = prepare(config, loaded, behavior)
    run = SweepRun(config, loaded, behavior, questions, vector, cancel, t0)
    entry = cache.entry_path(cache_dir, run.key)
    hit = _cached(entry, t0) if use_cache and cache.complete_entry(entry) else None
    if hit is not None:
        cache.write_index(cache_dir, quick, run.key)
        yield SweepEvent("done", "cache", result=hit)
        return
    if use_cache and cache.complete_entry(entry):
        cache.discard(entry)  # a corrupt entry is recomputed, never trusted
    yield from run.extract()
    yield from run.measure(cache_dir if use_cache else None, partial_every)
    result = yield from run.finish()
    if use_cache:
        try:
            result.save(entry)
            cache.write_index(cache_dir, quick, run.key)
            cache.PartialRows.remove(cache_dir, run.key)
        except OSError:
            result.summary["notes"].append("results could not be cached (read-only cache directory)")
    yield SweepEvent("done", "done", run.total, run.total, result=result)


class SweepRun:
    """One sweep's state while it runs: extraction, the plan's stages, then summary and checks."""

    def __init__(self, config: SweepConfig, loaded: LoadedModel, behavior, questions, vector, cancel, t0: float):
        self.config, self.loaded, self.behavior, self.questions = config, loaded, behavior, questions
        self.vector, self.cancel, self.t0 = vector, cancel, t0
        self.timings = {"load_s": round(time.perf_counter() - t0, 3)}
        # The dtype and device that "auto" resolved to are part of what the numbers depend on.
        model_id = f"{loaded.fingerprint}|{loaded.dtype}|{loaded.device.type}"
        self.key = cache.cache_key(config, model_id, _data_hash(behavior, questions, vector))
        self.layers = resolve_layers(config.layers, loaded.n_layers)
        grid = config.r_grid()
        self.check_grid = diagnostic_grid(grid) if config.n_diagnostics and any(r != 0.0 for r in grid) else []
        n = config.n_diagnostics
        self.keep_beh = (
            measure.AnswerStates(min(n, len(behavior.eval_prompts)), self.check_grid) if self.check_grid else None
        )
        self.keep_hel = measure.AnswerStates(min(n, len(questions)), self.check_grid) if self.check_grid else None
        self.partial = cache.PartialRows()
        self.total = 0
        # Taken when the run starts: the code that computes the numbers, not whatever is checked
        # out when a long run ends.
        self.provenance = provenance.stack(loaded.device, loaded.dtype)

    def extract(self) -> Iterator[SweepEvent]:
        t = time.perf_counter()
        if self.vector is None:
            yield SweepEvent("stage", "extract", message=f"extracting a {self.config.method} vector")
            b = self.behavior
            try:
                self.vector = extract_vector(
                    self.loaded,
                    b.pairs,
                    self.config.method,
                    self.layers,
                    behavior=b.name,
                    template=b.template,
                    positive=b.description,
                    cancel=self.cancel,
                )
            except Cancelled:
                raise SweepCancelled("Sweep cancelled during extraction.") from None
        self.timings["extract_s"] = round(time.perf_counter() - t, 3)

    def measure(self, cache_dir: Path | None, partial_every: int) -> Iterator[SweepEvent]:
        """The plan's stages, batch by batch; finished batches of a cancelled run are skipped."""
        plan = SweepPlan(
            self.config,
            self.loaded,
            self.behavior,
            self.questions,
            self.vector,
            self.layers,
            self.keep_beh,
            self.keep_hel,
            self.cancel,
        )
        self.plan = plan
        if cache_dir is not None:
            self.partial = cache.PartialRows.load(cache_dir, self.key)
            plan.restore(self.partial.texts, self.partial.rows)
        self.total, done, n_batch = plan.n_rows(), 0, 0
        for stage in plan.stages():
            yield SweepEvent("stage", stage.name, done, self.total, message=stage.message)
            for task, batch in stage.batches:
                n_batch += 1
                done += stage.work[task].n_rows(batch)
                if n_batch - 1 in self.partial.batches:
                    continue
                t = time.perf_counter()
                try:
                    check_cancel(self.cancel, "The sweep")
                    rows = stage.work[task].rows(batch)
                except Cancelled:
                    if cache_dir is not None:  # the finished batches are kept for a rerun
                        self.partial.save(cache_dir, self.key, plan_texts(plan))
                    raise SweepCancelled("Sweep cancelled.") from None
                self.partial.add(n_batch - 1, rows)
                self.timings[f"{task}_s"] = round(self.timings.get(f"{task}_s", 0.0) + time.perf_counter() - t, 3)
                shown = self._partial_result() if partial_every and n_batch % partial_every == 0 else None
                yield SweepEvent("progress", stage.name, min(done, self.total), self.total, result=shown)

    def _partial_result(self) -> SweepResult:
        items = pd.DataFrame(self.partial.rows, columns=ITEM_COLUMNS)
        summary = {"behavior_metric": self.plan.behavior_metric}
        return SweepResult(self.config, aggregate(items), items, summary, self.vector, complete=False)

    def finish(self) -> Generator[SweepEvent, None, SweepResult]:
        """Aggregates, summary (fits, regime, baseline, agreement, provenance) and the checks."""
        items = pd.DataFrame(self.partial.rows, columns=ITEM_COLUMNS)
        items = items.sort_values(["task", "metric", "subject", "item", "r_e"]).reset_index(drop=True)
        agg = aggregate(items)
        summary = summarise(self.config, agg, behavior_metric=self.plan.behavior_metric)
        summary["proxy_agreement"] = proxy_agreement(items)
        summary.update(self._provenance())
        diag_rows = noise = None
        if self.check_grid:
            yield SweepEvent("stage", "diagnostics", self.total, self.total, message="checking the paper's assumptions")
            t = time.perf_counter()
            diag_rows, noise = self._diagnostics(summary)
            self.timings["diagnostics_s"] = round(time.perf_counter() - t, 3)
        self.timings["total_s"] = round(time.perf_counter() - self.t0, 3)
        summary["timings"] = self.timings
        texts = plan_texts(self.plan)
        return SweepResult(
            self.config,
            agg,
            items,
            summary,
            self.vector,
            diagnostics=diag_rows,
            noise_samples=noise,
            texts=pd.DataFrame(texts, columns=TEXT_COLUMNS) if texts else None,
        )

    def _provenance(self) -> dict:
        loaded = self.loaded
        return {
            "config": self.config.to_dict(),
            "model": {
                "name": loaded.name,
                "source": loaded.source,
                "n_layers": loaded.n_layers,
                "hidden_size": loaded.hidden_size,
                "dtype": str(loaded.dtype).replace("torch.", ""),
                "device": str(loaded.device),
            },
            "provenance": self.provenance,
            "layers": self.layers,
            "behavior_mode": self.config.behavior_mode,
            "n_behavior_prompts": len(self.behavior.eval_prompts),
            "n_questions": len(self.questions),
            "n_contrast_pairs": len(self.behavior.pairs),
            "version": __version__,
        }

    def _diagnostics(self, summary: dict):
        """The assumption checks, from the states the sweep kept (its own passes where it could not)."""
        n = self.config.n_diagnostics
        keep_hel = self.keep_hel if self.plan.hel is not None and self.plan.hel.keep is not None else None
        diag = run_diagnostics(
            self.loaded,
            self.vector,
            self.layers,
            self.questions[:n],
            _subset(self.behavior, n),
            self.check_grid,
            helpfulness_format=self.config.helpfulness_format,
            question_states=keep_hel.by_coefficient() if keep_hel is not None else None,
            behavior_states=self.keep_beh.by_coefficient() if self.keep_beh is not None else None,
        )
        summary["diagnostics"] = {
            **diag.estimates,
            "comparison_with_fits": compare_with_fits(
                diag.estimates, summary.get("alignment_fit"), summary.get("helpfulness_fit")
            ),
        }
        return diag.rows, diag.noise_samples


ProgressFn = Callable[[int, int, "SweepResult | None"], None]


def run_sweep(config: SweepConfig, progress: ProgressFn | None = None, **kwargs) -> SweepResult:
    """``iter_sweep`` to its end; ``progress(done, total, partial_result)`` after every batch."""
    for event in iter_sweep(config, **kwargs):
        if event.kind == "progress" and progress is not None:
            progress(event.done, event.total, event.result)
        if event.kind == "done" and event.result is not None:
            return event.result
    raise RuntimeError("The sweep ended without a result.")  # pragma: no cover - iter_sweep always ends with done


def plan_texts(plan: SweepPlan) -> list[dict]:
    """The generated answers of a plan (steered and baseline), for ``SweepResult.texts``."""
    return [t for g in (plan.generated, plan.baseline) if g is not None for t in g.texts]


def _cached(entry: Path | None, t0: float) -> SweepResult | None:
    """The result saved in a cache entry, or None (no entry, or one that does not load)."""
    if entry is None:
        return None
    try:
        res = SweepResult.load(entry)
    except (ValueError, OSError):
        return None
    res.from_cache = True
    res.summary.setdefault("timings", {})["served_from_cache_s"] = round(time.perf_counter() - t0, 3)
    return res


def _subset(behavior: datasets.Behavior, n: int) -> datasets.Behavior:
    return dataclasses.replace(behavior, eval_prompts=behavior.eval_prompts[:n])
