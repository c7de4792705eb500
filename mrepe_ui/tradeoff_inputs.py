"""The Trade-off tab's inputs as a public endpoint sees them: checked, bounded, and priced.

Every handler of the tab can be called by anyone over HTTP with any JSON, so each input goes
through one of these checks (``InputError``, a ``ValueError``, says what to change; the app turns
it into the visitor's message). Texts are capped in tokens once the tokenizer is known
(``limits.check_text``); a sweep is planned in (item, r_e) rows before it starts, refused above
``limits().sweep_rows`` and shown with its estimated time, from the seconds per row this machine
measured on earlier sweeps (kept in the cache folder).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mrepe_core import datasets
from mrepe_core.config import BEHAVIOR_MODES, HELPFULNESS_FORMATS, MAX_ITEMS, SweepConfig
from mrepe_core.limits import InputError, check_rows, check_text, limits
from mrepe_core.model_specs import DEFAULT_MODEL, cache_root
from mrepe_core.paths import ASSETS

from .common import read_upload

CUSTOM = "custom"
UPLOAD_SUFFIXES = (".csv", ".jsonl")
MAX_MODEL_TOKENS = 64  # a model id or folder name, in tokens of any tokenizer (characters/16 before one is known)
MAX_ABS_R = 1e4
BEHAVIOR_CHOICES = (*datasets.BUILTIN_BEHAVIORS, CUSTOM)
METHODS = ("pca", "mean_diff")


# ---------------------------------------------------------------------------------------------
# Field checks
# ---------------------------------------------------------------------------------------------


def number(value, field: str, lo: float | None = None, hi: float | None = None, integer: bool = False):
    """``value`` as a finite number within [lo, hi] (an int when ``integer``), else InputError."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{field} must be a number.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{field} must be a number.") from None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{field} must be a number.") from None
    if not math.isfinite(x):
        raise InputError(f"{field} must be a finite number.")
    if integer:
        if abs(x - round(x)) > 1e-9:
            raise InputError(f"{field} must be a whole number.")
        x = int(round(x))
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        lo_s = "" if lo is None else f"{lo:g}"
        hi_s = "" if hi is None else f"{hi:g}"
        raise InputError(f"{field} must be between {lo_s or '−∞'} and {hi_s or '∞'}.")
    return x


def choice(value, field: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise InputError(f"{field}: choose one of {', '.join(options)}.")
    return value


def model_spec(value) -> str:
    """A model id or path as typed, stripped and capped (the embedded default when blank)."""
    text = check_text(value if value is not None else "", "Model", max_tokens=MAX_MODEL_TOKENS)
    return text.strip() or DEFAULT_MODEL


def subjects(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InputError("Helpfulness subjects must be a list of MMLU subjects.")
    known = set(datasets.mmlu_subjects())
    out = []
    for s in value:
        if not isinstance(s, str) or s not in known:
            raise InputError("Helpfulness subjects: choose subjects from the list.")
        if s not in out:
            out.append(s)
    return out


def prompt_text(value, tokenizer=None) -> str:
    """The visitor's prompt: text, not empty, within the token cap (characters before the
    tokenizer is known)."""
    text = check_text(value, "Your prompt", tokenizer, required=True)
    return text.strip()


def grid_steps(r_min, r_max, r_step) -> tuple[float, float, int, str]:
    """(r_min, r_max, number of grid points, a note when the step does not divide the range)."""
    lo = number(r_min, "r_e min", -MAX_ABS_R, MAX_ABS_R)
    hi = number(r_max, "r_e max", -MAX_ABS_R, MAX_ABS_R)
    step = number(r_step, "r_e step", 0.0, 2 * MAX_ABS_R)
    if step <= 0:
        raise InputError("r_e step must be positive.")
    if hi <= lo:
        raise InputError("r_e max must be larger than r_e min.")
    cap = limits().grid_points
    raw = (hi - lo) / step
    if raw + 1 > cap:
        raise InputError(
            f"{int(raw) + 1:,} grid points is too many (this server allows {cap}); use a larger r_e step "
            f"(at least {(hi - lo) / (cap - 1):.3g})."
        )
    steps = max(int(round(raw)) + 1, 2)
    spacing = (hi - lo) / (steps - 1)
    note = ""
    if abs(spacing - step) > 0.01 * step:
        note = (
            f"r_e step {step:g} does not divide [{lo:g}, {hi:g}]; using {steps} points {spacing:.4g} apart "
            "so the grid ends at r_e max."
        )
    return lo, hi, steps, note


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------


def parse_upload(file) -> datasets.Behavior:
    """A user behaviour from an uploaded CSV/JSONL; DataValidationError/UploadError say what to fix."""
    data, name = read_upload(file, UPLOAD_SUFFIXES)
    try:
        behavior = datasets.parse_user_behavior(data, name)
    except RecursionError:
        raise datasets.DataValidationError(
            f"{name} nests JSON too deeply; each line must be one flat object like "
            '{"kind": "pair", "positive": "...", "negative": "..."}.'
        ) from None
    if not behavior.eval_prompts:
        raise datasets.DataValidationError(
            f"{name} has {len(behavior.pairs)} contrast pairs but no evaluation rows; add rows with kind=eval, "
            "a prompt and aligned/misaligned answer starts (see the template) so B can be measured."
        )
    return behavior


def upload_counts(behavior: datasets.Behavior) -> tuple[int, int, str]:
    """(pairs, evaluation prompts) a sweep will use from an upload, and a note when it uses fewer."""
    cap = limits().texts_per_request
    pairs, evals = len(behavior.pairs), len(behavior.eval_prompts)
    notes = []
    if pairs > cap:
        notes.append(f"the first {cap} of its {pairs} contrast pairs (this server's limit)")
    if evals > MAX_ITEMS:
        notes.append(f"the first {MAX_ITEMS} of its {evals} evaluation prompts")
    return min(pairs, cap), min(evals, MAX_ITEMS), ("; a sweep uses " + " and ".join(notes)) if notes else ""


def check_upload_tokens(behavior: datasets.Behavior, tokenizer, n_pairs: int, n_eval: int) -> None:
    """Every text of the part of an upload a sweep uses, within the token cap of this tokenizer."""
    for k, pair in enumerate(behavior.pairs[:n_pairs], start=1):
        check_text(pair.positive, f"Contrast pair {k} (positive)", tokenizer)
        check_text(pair.negative, f"Contrast pair {k} (negative)", tokenizer)
    for k, prompt in enumerate(behavior.eval_prompts[:n_eval], start=1):
        check_text(prompt.user, f"Evaluation prompt {k}", tokenizer)
        for start in (*prompt.aligned, *prompt.misaligned):
            check_text(start, f"Evaluation prompt {k} (answer start)", tokenizer)
    if behavior.system_prompt:
        check_text(behavior.system_prompt, "System prompt", tokenizer)


# ---------------------------------------------------------------------------------------------
# Sweep plan: rows and time
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mmlu_counts() -> dict[str, int]:
    """Test questions per MMLU subject (read once)."""
    out = {}
    for subject in datasets.mmlu_subjects():
        path = ASSETS / "mmlu" / "test" / f"{subject}_test.csv"
        try:
            with open(path, newline="", encoding="utf-8") as f:
                out[subject] = sum(1 for _ in csv.DictReader(f))
        except OSError:
            out[subject] = 0
    return out


@functools.lru_cache(maxsize=1)
def eval_pool_sizes() -> dict[str, int]:
    sizes = {}
    for name, file in (("harmless", "harmful_eval.json"), ("not-racist", "stereoset_race_eval.json")):
        try:
            sizes[name] = len(json.loads((ASSETS / "behaviors" / file).read_text(encoding="utf-8"))["items"])
        except (OSError, ValueError, KeyError):
            sizes[name] = MAX_ITEMS
    sizes["harmful"], sizes["racist"] = sizes["harmless"], sizes["not-racist"]
    return sizes


@dataclass(frozen=True)
class Plan:
    """What a sweep will compute, in (item, r_e) rows per task, and how long it should take here."""

    rows_by_task: dict
    seconds: float | None
    basis: str  # where the seconds per row come from, in words

    @property
    def rows(self) -> int:
        return sum(self.rows_by_task.values())

    @property
    def behavior_rows(self) -> int:
        return self.rows - self.rows_by_task.get("helpfulness", 0)

    @property
    def helpfulness_rows(self) -> int:
        return self.rows_by_task.get("helpfulness", 0)

    @property
    def seconds_per_row(self) -> float | None:
        return self.seconds / self.rows if self.seconds and self.rows else None


def coarse_points(n: int, stride: int = 4) -> int:
    """How many coefficients of an n-point grid the engine's coarse pass covers (every
    ``stride``-th, both ends and the one nearest 0)."""
    if n <= 0:
        return 0
    return len(set(range(0, n, stride)) | {n - 1, (n - 1) // 2})


def rows_by_task(mode: str, n_eval: int, n_questions: int, n_grid: int) -> dict[str, int]:
    """The engine's rows per task (``plan.SweepPlan.n_rows``): answers generated on the grid (the
    coarse part of it in ``proxy`` mode), the sequence proxy, helpfulness, the answers' coherence
    and the prompting baseline; the next-token proxy and helpfulness alone in ``first_token`` mode."""
    if mode == "first_token":
        return {"behavior": n_eval * n_grid, "helpfulness": n_questions * n_grid}
    generated = n_eval * (n_grid if mode == "generate" else coarse_points(n_grid))
    return {
        "behavior": generated,
        "proxy": n_eval * n_grid,
        "helpfulness": n_questions * n_grid,
        "coherence": generated,
        "baseline": 2 * n_eval + n_questions,
    }


def plan(config: SweepConfig, n_eval_available: int | None = None) -> Plan:
    """Rows of a sweep and its estimated time on this machine."""
    steps = config.r_steps
    pool = n_eval_available if n_eval_available is not None else eval_pool_sizes().get(config.behavior, MAX_ITEMS)
    n_eval = min(config.n_eval, pool)
    counts = mmlu_counts()
    n_q = (
        sum(min(config.n_questions_per_subject, counts.get(s, 0)) for s in config.helpfulness_subjects)
        if config.n_questions_per_subject
        else 0
    )
    rows = rows_by_task(config.behavior_mode, n_eval, n_q, steps)
    rates, basis = seconds_per_row(config.model, config.behavior_mode)
    seconds = None
    if rates:
        seconds = sum(n * rates.get(task, rates.get("behavior", 0.0)) for task, n in rows.items())
        seconds += rates.get("fixed", 0.0)
    return Plan(rows, seconds, basis)


def check_plan(p: Plan) -> None:
    """Refuse a sweep above the row cap, saying how to shrink it and how long it would take."""
    check_rows(p.rows, "This sweep", limits().sweep_rows, p.seconds_per_row)


def duration_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown time"
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def plan_markdown(p: Plan, note: str = "") -> str:
    cap = limits().sweep_rows
    over = p.rows > cap
    head = (
        f"**This sweep: {p.rows:,} rows** ({p.behavior_rows:,} behaviour, {p.helpfulness_rows:,} helpfulness) · "
        f"{duration_text(p.seconds)} on this machine"
    )
    tail = (
        f" · ✗ over this server's cap of {cap:,} rows: use fewer coefficients, prompts or questions."
        if over
        else f" · cap {cap:,} rows"
    )
    return head + tail + f"\n\n<sub>{p.basis}{(' ' + note) if note else ''}</sub>"


# Seconds per row measured on this machine, per (model, behaviour mode): updated after every
# sweep that ran (not one served from the cache), so estimates follow this machine's speed.
_THROUGHPUT_LOCK = threading.Lock()
# Seconds per row of the default model on the development machine (2-core CPU, fp32): next-token
# proxy and cloze helpfulness from the default preset's timings (README, "Measured"), generation
# (32 new tokens per row, batched) and the scoring passes measured with bench/concurrency.py's model.
_RATES = {"behavior": 0.025, "proxy": 0.03, "helpfulness": 0.061, "coherence": 0.02, "baseline": 0.4, "fixed": 10.0}
_FALLBACK = {
    "first_token": _RATES,
    "proxy": {**_RATES, "behavior": 0.4},
    "generate": {**_RATES, "behavior": 0.4},
}


def _throughput_path() -> Path:
    return cache_root() / "ui" / "throughput.json"


def _read_throughput() -> dict:
    try:
        data = json.loads(_throughput_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def seconds_per_row(model: str, mode: str) -> tuple[dict | None, str]:
    """({"behavior", "helpfulness", "fixed"} seconds, where they come from in words)."""
    data = _read_throughput()
    key = f"{model}|{mode}"
    entry = data.get(key)
    fallback = _FALLBACK.get(mode if mode in _FALLBACK else "first_token")
    if isinstance(entry, dict) and isinstance(entry.get("behavior"), (int, float)):
        measured = {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "when"}
        return {**fallback, **measured}, (
            f"Estimate from the last sweep of this model here ({measured['behavior']:.3g} s per behaviour row)."
        )
    if model == DEFAULT_MODEL:
        return fallback, "Estimate from the default model on a 2-core CPU; the first sweep here measures this machine."
    return fallback, (
        "No sweep of this model has run here yet: estimated as the default 135M model (larger models take longer)."
    )


def record_throughput(config: SweepConfig, summary: dict) -> None:
    """Remember this machine's seconds per row, per task, from a finished sweep's timings."""
    summary = summary or {}
    t = summary.get("timings") or {}
    try:
        rows = rows_by_task(
            config.behavior_mode,
            int(summary.get("n_behavior_prompts") or 0),
            int(summary.get("n_questions") or 0),
            config.r_steps,
        )
        seconds: dict[str, float] = {}
        for key, value in t.items():
            if key.endswith("_s") and key[:-2] not in ("load", "extract", "diagnostics", "total", "served_from_cache"):
                task = "baseline" if key.startswith("baseline") else key[:-2]
                seconds[task] = seconds.get(task, 0.0) + float(value)
        entry = {task: seconds[task] / rows[task] for task in seconds if rows.get(task)}
        entry["fixed"] = sum(float(t.get(k, 0.0)) for k in ("load_s", "extract_s", "diagnostics_s"))
    except (TypeError, ValueError):
        return
    if "behavior" not in entry or not all(math.isfinite(v) and v >= 0 for v in entry.values()):
        return
    entry["when"] = time.time()
    with _THROUGHPUT_LOCK:
        data = _read_throughput()
        data[f"{config.model}|{config.behavior_mode}"] = entry
        if len(data) > 200:  # a stranger naming many models cannot grow this file without bound
            for k in sorted(data, key=lambda k: data[k].get("when", 0) if isinstance(data[k], dict) else 0)[:-200]:
                data.pop(k, None)
        path = _throughput_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError:
            pass


def build_config(
    model,
    behavior,
    method,
    first_layer,
    last_layer,
    r_min,
    r_max,
    r_step,
    subject_list,
    help_format,
    n_pairs,
    n_eval,
    n_questions,
    behavior_mode="first_token",
) -> tuple[SweepConfig, str]:
    """The SweepConfig the form describes (every field checked as a public input) and a note."""
    spec = model_spec(model)
    behavior = choice(behavior if behavior is not None else "harmless", "Behaviour", BEHAVIOR_CHOICES)
    method = choice(method, "Extraction method", METHODS)
    first = number(first_layer, "First layer", 0, 4096, integer=True)
    last = number(last_layer, "Last layer", 0, 4096, integer=True)
    if last < first:
        raise InputError("The last layer must not come before the first layer.")
    lo, hi, steps, note = grid_steps(r_min, r_max, r_step)
    subject_list = subjects(subject_list)
    help_format = choice(help_format, "Question format", HELPFULNESS_FORMATS)
    pairs = number(n_pairs, "Contrast pairs", 2, limits().texts_per_request, integer=True)
    evals = number(n_eval, "Behaviour prompts", 1, MAX_ITEMS, integer=True)
    questions = number(n_questions, "Questions per subject", 0, MAX_ITEMS, integer=True)
    mode = choice(behavior_mode or "first_token", "B measured from", BEHAVIOR_MODES)
    config = SweepConfig(
        model=spec,
        behavior=behavior,
        method=method,
        layers=f"{first}:{last + 1}",
        r_min=lo,
        r_max=hi,
        r_steps=steps,
        n_pairs=pairs,
        n_eval=evals,
        behavior_mode=mode,
        helpfulness_subjects=subject_list,
        helpfulness_format=help_format,
        n_questions_per_subject=questions if subject_list else 0,
        name="custom sweep",
    )
    return config, note
