"""Sweeps over the steering coefficient: config -> batched work -> tidy results -> bound fits.

A sweep extracts (or reuses) a steering vector, then evaluates behaviour expectation and
helpfulness at every r_e of the grid. Work items are (item, r_e) rows batched together with a
per-row coefficient; a coarse subset of the grid runs first so partial curves are useful early.
Results are cached on disk under a content hash of config, model and data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__, bounds, datasets, metrics, prompts, runner
from .config import SweepConfig, SweepConfigError  # noqa: F401  (re-exported: the sweep's public names)
from .diagnostics import compare_with_fits, run_diagnostics
from .extract import extract_vector
from .models import LoadedModel, load_model, resolve_layers
from .result_cache import (
    default_cache_dir,
    file_cache_key,
    folder_written_atomically,  # noqa: F401
    indexed_entry,
    write_index,
)
from .vectors import SteeringVector


class SweepCancelled(RuntimeError):
    """Raised inside a sweep when its cancel event is set."""


@dataclass
class SweepResult:
    """Tidy results of a sweep: aggregates per (r_e, task, metric, subject) and per-item rows."""

    config: SweepConfig
    aggregates: pd.DataFrame
    items: pd.DataFrame
    summary: dict
    vector: SteeringVector | None = None
    from_cache: bool = False
    complete: bool = True
    diagnostics: pd.DataFrame | None = None
    noise_samples: dict | None = None  # r_e -> pooled logit-noise values (for the histogram)

    def curve(self, task: str, metric: str, subject: str) -> tuple[np.ndarray, np.ndarray]:
        df = self.aggregates
        sel = df[(df.task == task) & (df.metric == metric) & (df.subject == subject)].sort_values("r_e")
        return sel.r_e.to_numpy(float), sel.value.to_numpy(float)

    def save(self, out_dir: str | Path) -> Path:
        """Write results.csv, items.csv, summary.json and the vector (atomically)."""
        out = Path(out_dir)
        with folder_written_atomically(out) as tmp:
            self.aggregates.to_csv(tmp / "results.csv", index=False)
            self.items.to_csv(tmp / "items.csv", index=False)
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=2, default=_json_default))
            (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
            if self.vector is not None:
                self.vector.save(tmp / "vector")
            if self.diagnostics is not None:
                self.diagnostics.to_csv(tmp / "diagnostics.csv", index=False)
            if self.noise_samples:
                pd.DataFrame(
                    [(r, v) for r, vals in self.noise_samples.items() for v in vals], columns=["r_e", "value"]
                ).to_csv(tmp / "diagnostics_noise.csv", index=False)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> SweepResult:
        out = Path(out_dir)
        try:
            config = SweepConfig.from_dict(json.loads((out / "config.json").read_text()))
            agg = pd.read_csv(out / "results.csv")
            items = pd.read_csv(out / "items.csv") if (out / "items.csv").is_file() else pd.DataFrame()
            summary = json.loads((out / "summary.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise SweepConfigError(f"Results in {out} are incomplete or corrupt: {exc}") from exc
        required = {"r_e", "task", "metric", "subject", "value"}
        if not required <= set(agg.columns):
            raise SweepConfigError(f"{out / 'results.csv'} lacks columns {sorted(required - set(agg.columns))}.")
        vector = None
        if (out / "vector.safetensors").is_file():
            vector = SteeringVector.load(out / "vector")
        diag = pd.read_csv(out / "diagnostics.csv") if (out / "diagnostics.csv").is_file() else None
        noise = None
        if (out / "diagnostics_noise.csv").is_file():
            nf = pd.read_csv(out / "diagnostics_noise.csv")
            noise = {float(r): g.value.to_numpy(float) for r, g in nf.groupby("r_e")}
        return cls(config, agg, items, summary, vector, diagnostics=diag, noise_samples=noise)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def coarse_first(grid: list[float], stride: int = 4) -> list[float]:
    """Order a grid so a coarse, evenly spread subset (always with both ends and 0) comes first."""
    n = len(grid)
    first = sorted(set(range(0, n, stride)) | {n - 1} | ({int(np.argmin(np.abs(grid)))} if n else set()))
    rest = [i for i in range(n) if i not in first]
    return [grid[i] for i in first] + [grid[i] for i in rest]


def plan_batches(n_items: int, grid: list[float], batch_size: int) -> list[list[tuple[int, float]]]:
    """(item, r_e) rows in coarse-first order, chunked into batches of ``batch_size`` rows.

    An "item" is a work unit of the runner: one prompt, or several packed into one row."""
    rows = [(i, r) for r in coarse_first(grid) for i in range(n_items)]
    return [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]


def cache_key(config: SweepConfig, loaded_fingerprint: str, data_hash: str) -> str:
    payload = {k: v for k, v in config.to_dict().items() if k not in ("name", "batch_size", "device")}
    blob = json.dumps([payload, loaded_fingerprint, data_hash, __version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# Aggregation and summary
# ---------------------------------------------------------------------------------------------

ITEM_COLUMNS = ["r_e", "task", "metric", "subject", "item", "value"]
AGG_COLUMNS = ["r_e", "task", "metric", "subject", "value", "stderr", "n"]


def aggregate(items: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error per (r_e, task, metric, subject), plus the mean over subjects."""
    if items.empty:
        return pd.DataFrame(columns=AGG_COLUMNS)
    g = items.groupby(["r_e", "task", "metric", "subject"])["value"]
    agg = g.agg(["mean", "std", "count"]).reset_index()
    agg["stderr"] = agg["std"].fillna(0.0) / np.sqrt(agg["count"])
    agg = agg.rename(columns={"mean": "value", "count": "n"}).drop(columns="std")
    helpful = items[items.task == "helpfulness"]
    if not helpful.empty:
        # "mean" weights subjects equally, as the paper's per-subject curves do.
        per_subject = helpful.groupby(["r_e", "metric", "subject"])["value"].mean().reset_index()
        mean = per_subject.groupby(["r_e", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
        mean["stderr"] = mean["std"].fillna(0.0) / np.sqrt(mean["count"])
        mean = mean.rename(columns={"mean": "value", "count": "n"}).drop(columns="std")
        mean["task"], mean["subject"] = "helpfulness", "mean"
        agg = pd.concat([agg, mean[AGG_COLUMNS]], ignore_index=True)
    return agg[AGG_COLUMNS].sort_values(["task", "metric", "subject", "r_e"]).reset_index(drop=True)


def summarise(config: SweepConfig, agg: pd.DataFrame, n_choices: int = 4) -> dict:
    """Bound fits, efficient regime and plain-language notes for a (possibly partial) sweep."""
    out: dict = {"alignment_fit": None, "helpfulness_fit": None, "efficient_regime": None, "notes": []}
    sel = agg[(agg.task == "behavior") & (agg.metric == "behavior_expectation")].sort_values("r_e")
    align_fit = help_fit = None
    if len(sel) >= 3:
        try:
            align_fit = bounds.fit_alignment_bound(sel.r_e.to_numpy(float), sel.value.to_numpy(float))
            out["alignment_fit"] = align_fit.to_dict()
            diffs = np.diff(sel.value.to_numpy(float))
            out["behavior_monotone"] = bool((diffs >= -1e-9).all() or (diffs <= 1e-9).all())
        except ValueError as exc:
            out["notes"].append(f"alignment fit: {exc}")
    hsel = agg[(agg.task == "helpfulness") & (agg.metric == "helpfulness") & (agg.subject == "mean")].sort_values("r_e")
    if len(hsel) >= 3:
        try:
            help_fit = bounds.fit_helpfulness_bound(
                hsel.r_e.to_numpy(float), hsel.value.to_numpy(float), n_choices=n_choices
            )
            out["helpfulness_fit"] = help_fit.to_dict()
            h = hsel.value.to_numpy(float)
            r = hsel.r_e.to_numpy(float)
            h0 = float(np.interp(0.0, r, h)) if r.min() <= 0 <= r.max() else float("nan")
            out["helpfulness_at_0_vs_ends"] = {"h0": h0, "h_min_r": float(h[0]), "h_max_r": float(h[-1])}
        except ValueError as exc:
            out["notes"].append(f"helpfulness fit: {exc}")
    if align_fit is not None and help_fit is not None:
        try:
            # Marginal gain (dB/dr over -dH/dr) falls once B saturates, so the regime ends where
            # more steering stops paying; the average gain stays high far out and marks everything.
            regime = bounds.efficient_regime(align_fit, help_fit, (config.r_min, config.r_max), gain="marginal")
            out["efficient_regime"] = regime.to_dict()
        except ValueError as exc:
            out["notes"].append(f"efficient regime: {exc}")
    for fit in (align_fit, help_fit):
        if fit is not None:
            out["notes"].extend(fit.notes)
    return out


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

ProgressFn = Callable[[int, int, "SweepResult | None"], None]


# The packed runner budgets a forward pass in tokens; ``batch_size`` counts prompts of about this
# many tokens, so one knob sizes both paths (4096 tokens at the default 32 gave the best
# throughput measured on a 2-core CPU; a GPU wants a larger batch_size).
TOKENS_PER_BATCH_ROW = 128


def _behavior_scorer(loaded, behavior, vector, layers, config) -> runner.NextTokenScorer | None:
    """Prepared next-token work for the logit proxy (None in generation mode)."""
    if config.behavior_mode != "logit":
        return None
    texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
    return runner.NextTokenScorer(
        loaded,
        texts,
        vector,
        layers,
        plain_batch_rows=config.batch_size,
        batch_tokens=config.batch_size * TOKENS_PER_BATCH_ROW,
    )


def _helpfulness_scorer(loaded, questions, vector, layers, config):
    """Prepared MMLU work: letter logits (NextTokenScorer) or choice log-likelihoods (ChoiceScorer)."""
    budget = config.batch_size * TOKENS_PER_BATCH_ROW
    if config.helpfulness_format == "letter":
        texts = [prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in questions]
        return runner.NextTokenScorer(
            loaded, texts, vector, layers, plain_batch_rows=config.batch_size, batch_tokens=budget
        )
    texts = [prompts.mmlu_cloze_prompt(q.question, q.subject) for q in questions]
    return runner.ChoiceScorer(
        loaded,
        texts,
        [list(q.choices) for q in questions],
        vector,
        layers,
        plain_batch_rows=max(1, config.batch_size // 4),
        batch_tokens=budget,
    )


class AnswerStates:
    """Final-normed states at the answer positions that the assumption checks need, kept from the
    sweep's own passes (the first ``n_items`` items at r_e = 0 and the checks' coefficients), so
    the checks cost no forward pass of their own."""

    def __init__(self, n_items: int, coefficients) -> None:
        self.n_items, self.coefficients = n_items, {0.0, *(float(r) for r in coefficients)}
        self._states: dict[tuple[int, float], torch.Tensor] = {}

    def keep(self, out_rows, states: torch.Tensor) -> None:
        for k, (i, r) in enumerate(out_rows):
            if i < self.n_items and r in self.coefficients:
                self._states[(i, r)] = states[k].float().cpu()

    def by_coefficient(self) -> dict[float, torch.Tensor] | None:
        """r -> [n_items, d], or None when some state was not computed (e.g. r_e = 0 off the grid)."""
        if len(self._states) != self.n_items * len(self.coefficients):
            return None
        return {r: torch.stack([self._states[(i, r)] for i in range(self.n_items)]) for r in self.coefficients}


def _run_keeping(scorer, batch, keep: AnswerStates | None) -> tuple:
    """``scorer.run(batch)``; with ``keep``, the answer-position states also go to it."""
    if keep is None:
        return scorer.run(batch)
    *out, states = scorer.run(batch, return_states=True)
    keep.keep(out[0], states)
    return tuple(out)


def _behavior_rows(
    loaded, behavior, vector, layers, batch, config, scorer=None, keep: AnswerStates | None = None
) -> list[dict]:
    """Rows for one batch: ``batch`` holds (unit, r_e) of ``scorer.units`` in logit mode and
    (item, r_e) in generation mode."""
    rows: list[dict] = []
    if config.behavior_mode == "logit":
        out_rows, logits = _run_keeping(scorer, batch, keep)
        # Token sets depend on the prompt's answer starts; built-ins share one set per behaviour.
        groups: dict[tuple, list[int]] = {}
        for k, (i, _) in enumerate(out_rows):
            p = behavior.eval_prompts[i]
            groups.setdefault((p.aligned, p.misaligned), []).append(k)
        for (aligned, misaligned), ks in groups.items():
            pos, neg = metrics.answer_token_sets(loaded.tokenizer, aligned, misaligned)
            b, mass = metrics.behavior_expectation_from_logits(logits[ks], pos, neg)
            for j, k in enumerate(ks):
                i, r = out_rows[k]
                rows.append(
                    dict(
                        r_e=r, task="behavior", metric="behavior_expectation", subject=behavior.name, item=i, value=b[j]
                    )
                )
                rows.append(
                    dict(r_e=r, task="behavior", metric="covered_mass", subject=behavior.name, item=i, value=mass[j])
                )
    else:
        texts = [prompts.render_chat(loaded.tokenizer, behavior.eval_prompts[i].user) for i, _ in batch]
        coeffs = [r for _, r in batch]
        outs = runner.generate(loaded, texts, vector, layers, coeffs, max_new_tokens=config.max_new_tokens)
        text_scorer = metrics.SCORERS.get(behavior.scorer)
        if text_scorer is None:
            raise SweepConfigError("Generation mode needs a built-in behaviour scorer; use the logit mode for uploads.")
        for (i, r), text in zip(batch, outs):
            rows.append(
                dict(
                    r_e=r,
                    task="behavior",
                    metric="behavior_expectation",
                    subject=behavior.name,
                    item=i,
                    value=float(text_scorer(text)),
                )
            )
    return rows


def _helpfulness_rows(
    loaded, questions, batch, config, letter_ids, scorer, keep: AnswerStates | None = None
) -> list[dict]:
    """Rows for one batch of (unit, r_e) of ``scorer.units``."""
    if config.helpfulness_format == "letter":
        out_rows, logits = _run_keeping(scorer, batch, keep)
        answers = [questions[i].answer for i, _ in out_rows]
        p, correct = metrics.helpfulness_from_letter_logits(logits, letter_ids, answers)
    else:
        out_rows, ll, n = _run_keeping(scorer, batch, keep)
        answers = [questions[i].answer for i, _ in out_rows]
        p, correct = metrics.helpfulness_from_choice_loglik(ll, n, answers)
    rows = []
    for k, (i, r) in enumerate(out_rows):
        subject = questions[i].subject
        rows.append(dict(r_e=r, task="helpfulness", metric="helpfulness", subject=subject, item=i, value=p[k]))
        rows.append(dict(r_e=r, task="helpfulness", metric="accuracy", subject=subject, item=i, value=correct[k]))
    return rows


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


def run_sweep(
    config: SweepConfig,
    progress: ProgressFn | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    loaded: LoadedModel | None = None,
    behavior: datasets.Behavior | None = None,
    vector: SteeringVector | None = None,
    cancel: threading.Event | None = None,
    partial_every: int = 1,
) -> SweepResult:
    """Run (or fetch from cache) a sweep. ``progress(done, total, partial_result)`` is called after
    every batch; ``partial_result`` is given every ``partial_every`` batches (None otherwise; 0
    means never, for callers that only count: building one costs an aggregation of all rows so far)."""
    t0 = time.perf_counter()
    cache_path = Path(cache_dir) if cache_dir else default_cache_dir()
    # Built-in data and no vector given: the result is a function of files on disk, so an earlier
    # run can be found before the model is loaded (seconds saved on every repeated CLI run).
    quick = file_cache_key(config) if use_cache and loaded is None and behavior is None and vector is None else None
    indexed = indexed_entry(cache_path, quick)
    if indexed is not None:
        try:
            return _from_cache(indexed, t0)
        except (ValueError, OSError):
            pass  # stale or corrupt: the full lookup below decides
    loaded, behavior, questions = prepare(config, loaded, behavior)
    t_load = time.perf_counter() - t0
    data_hash = hashlib.sha256(
        json.dumps([behavior.data_hash, [(q.subject, q.question) for q in questions]]).encode()
    ).hexdigest()[:16]
    key = cache_key(config, loaded.fingerprint, data_hash + ("" if vector is None else _vector_hash(vector)))
    entry = cache_path / key
    if use_cache and (entry / "summary.json").is_file():
        try:
            res = _from_cache(entry, t0)
            write_index(cache_path, quick, key)
            return res
        except (ValueError, OSError):
            shutil.rmtree(entry, ignore_errors=True)  # corrupt entries are recomputed

    layers = resolve_layers(config.layers, loaded.n_layers)
    t1 = time.perf_counter()
    if vector is None:
        vector = extract_vector(
            loaded, behavior.pairs, config.method, layers, behavior=behavior.name, template=behavior.template
        )
    t_extract = time.perf_counter() - t1
    grid = config.r_grid()
    letter_ids = metrics.letter_token_ids(loaded.tokenizer) if config.helpfulness_format == "letter" else None
    times = {"behavior": 0.0, "helpfulness": 0.0}
    # Work units: items packed together by the runner (single items on its plain path and in
    # generation mode); a batch is a list of (unit, r_e).
    tb = time.perf_counter()
    beh_scorer = _behavior_scorer(loaded, behavior, vector, layers, config)
    beh_units = beh_scorer.units if beh_scorer else [[i] for i in range(len(behavior.eval_prompts))]
    beh_per_batch = beh_scorer.units_per_batch if beh_scorer else config.batch_size
    times["behavior"] += time.perf_counter() - tb
    tb = time.perf_counter()
    hel_scorer = _helpfulness_scorer(loaded, questions, vector, layers, config) if questions else None
    times["helpfulness"] += time.perf_counter() - tb
    units = {"behavior": beh_units, "helpfulness": hel_scorer.units if hel_scorer else []}
    beh = [("behavior", b) for b in plan_batches(len(beh_units), grid, beh_per_batch)]
    hel = (
        [("helpfulness", b) for b in plan_batches(len(units["helpfulness"]), grid, hel_scorer.units_per_batch)]
        if hel_scorer
        else []
    )
    # Interleave so that both curves fill in together (coarse grid first for each).
    ordered, i, j = [], 0, 0
    while i < len(beh) or j < len(hel):
        if i < len(beh) and (j >= len(hel) or i / max(len(beh), 1) <= j / max(len(hel), 1)):
            ordered.append(beh[i])
            i += 1
        else:
            ordered.append(hel[j])
            j += 1
    rows: list[dict] = []
    check_grid = diagnostic_grid(grid) if config.n_diagnostics and any(r != 0.0 for r in grid) else []
    keep_beh = (
        AnswerStates(min(config.n_diagnostics, len(behavior.eval_prompts)), check_grid)
        if check_grid and beh_scorer is not None
        else None
    )
    keep_hel = (
        AnswerStates(min(config.n_diagnostics, len(questions)), check_grid)
        if check_grid and hel_scorer is not None and hel_scorer.provides_states
        else None
    )

    def n_rows(task: str, batch) -> int:
        return sum(len(units[task][u]) for u, _ in batch)

    total = sum(n_rows(task, b) for task, b in ordered)
    done = 0
    for n_batch, (task, batch) in enumerate(ordered, start=1):
        if cancel is not None and cancel.is_set():
            raise SweepCancelled("Sweep cancelled.")
        tb = time.perf_counter()
        if task == "behavior":
            rows += _behavior_rows(loaded, behavior, vector, layers, batch, config, beh_scorer, keep_beh)
        else:
            rows += _helpfulness_rows(loaded, questions, batch, config, letter_ids, hel_scorer, keep_hel)
        times[task] += time.perf_counter() - tb
        done += n_rows(task, batch)
        if progress is not None:
            partial = None
            if partial_every and n_batch % partial_every == 0 and n_batch < len(ordered):
                items = pd.DataFrame(rows, columns=ITEM_COLUMNS)
                agg = aggregate(items)
                partial = SweepResult(config, agg, items, {}, vector, complete=False)
            progress(done, total, partial)
    items = (
        pd.DataFrame(rows, columns=ITEM_COLUMNS)
        .sort_values(["task", "metric", "subject", "item", "r_e"])
        .reset_index(drop=True)
    )
    agg = aggregate(items)
    summary = summarise(config, agg)
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
            "layers": layers,
            "n_behavior_prompts": len(behavior.eval_prompts),
            "n_questions": len(questions),
            "n_contrast_pairs": len(behavior.pairs),
            "timings": {
                "load_s": round(t_load, 3),
                "extract_s": round(t_extract, 3),
                "behavior_s": round(times["behavior"], 3),
                "helpfulness_s": round(times["helpfulness"], 3),
                "total_s": round(time.perf_counter() - t0, 3),
            },
            "version": __version__,
        }
    )
    diag_rows = noise = None
    if check_grid:
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
    result = SweepResult(config, agg, items, summary, vector, diagnostics=diag_rows, noise_samples=noise)
    if use_cache:
        try:
            result.save(entry)
            write_index(cache_path, quick, key)
        except OSError:
            summary["notes"].append("results could not be cached (read-only cache directory)")
    return result


def _from_cache(entry: Path, t0: float) -> SweepResult:
    res = SweepResult.load(entry)
    res.from_cache = True
    res.summary.setdefault("timings", {})["served_from_cache_s"] = round(time.perf_counter() - t0, 3)
    return res


def diagnostic_grid(grid: list[float], n: int = 8) -> list[float]:
    """A few non-zero coefficients spread over the sweep's range for the assumption checks."""
    nonzero = sorted({r for r in grid if r != 0.0}, key=abs)
    if len(nonzero) <= n:
        return sorted(nonzero)
    idx = np.unique(np.linspace(0, len(nonzero) - 1, n).round().astype(int))
    return sorted(nonzero[i] for i in idx)


def _subset(behavior: datasets.Behavior, n: int) -> datasets.Behavior:
    return dataclasses.replace(behavior, eval_prompts=behavior.eval_prompts[:n])


def _vector_hash(vector: SteeringVector) -> str:
    return hashlib.sha256(vector.directions.numpy().tobytes() + json.dumps(vector.layers).encode()).hexdigest()[:16]
