"""``SweepConfig``: everything that determines a sweep's numbers, read from YAML presets.

Imports neither torch nor transformers, so the CLI can validate a preset and look its result up in
the cache (``cache``) before paying for them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from . import datasets
from .model_specs import DEFAULT_MODEL

# generate: decode every (prompt, r_e) row and score the answers (B as the model behaves);
# proxy: the sequence proxy over the model's own openings; first_token: the next-token proxy.
BEHAVIOR_MODES = ("generate", "proxy", "first_token")
_MODE_ALIASES = {"logit": "first_token"}  # the name presets used before the sequence proxy
HELPFULNESS_FORMATS = ("cloze", "letter")
MAX_GRID = 201
MAX_ITEMS = 2000


class SweepConfigError(ValueError):
    """A sweep configuration is invalid; the message names the field."""


@dataclass
class SweepConfig:
    """Everything that determines a sweep's numbers (and so its cache key)."""

    model: str = DEFAULT_MODEL
    behavior: str = "harmless"
    method: str = "pca"
    layers: str = "10:18"  # the default preset's mid-depth window (bench/choose_layers.py)
    r_min: float = -8.0
    r_max: float = 8.0
    r_steps: int = 21
    n_pairs: int = 64
    n_eval: int = 40
    behavior_mode: str = "generate"
    helpfulness_subjects: list[str] = field(default_factory=lambda: ["high_school_geography", "marketing"])
    helpfulness_format: str = "cloze"
    n_questions_per_subject: int = 50
    mmlu_split: str = "test"
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    batch_size: int = 32
    max_new_tokens: int = 32
    n_diagnostics: int = 64  # items per task for the assumption checks (their states come from the sweep itself)
    # How generated answers are scored: "keyword" (mrepe_core/scoring/), or a judge model
    # ("hf-classifier:<id>", "hf-judge:<id>"); measured against assets/scoring/labelled.jsonl.
    scorer: str = "keyword"
    opening_tokens: int = 4  # length of the sequence proxy's openings (bench/proxy_vs_generation.py --dev)
    baseline: bool = True  # also measure the prompting baseline (the behaviour asked in a system prompt)
    name: str = ""

    def __post_init__(self) -> None:
        self.behavior_mode = _MODE_ALIASES.get(self.behavior_mode, self.behavior_mode)
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise SweepConfigError(msg)

        need(self.method in ("pca", "mean_diff"), f"method must be pca or mean_diff, not {self.method!r}.")
        need(self.behavior_mode in BEHAVIOR_MODES, f"behavior_mode must be one of {BEHAVIOR_MODES}.")
        need(
            self.helpfulness_format in HELPFULNESS_FORMATS, f"helpfulness_format must be one of {HELPFULNESS_FORMATS}."
        )
        for name in ("r_min", "r_max"):
            v = getattr(self, name)
            need(
                isinstance(v, (int, float)) and np.isfinite(v) and abs(v) <= 1e4,
                f"{name} must be a finite number with |{name}| <= 10000.",
            )
        need(self.r_max > self.r_min, "r_max must be larger than r_min.")
        need(
            isinstance(self.r_steps, int) and 2 <= self.r_steps <= MAX_GRID,
            f"r_steps must be an integer in [2, {MAX_GRID}].",
        )
        need(2 <= self.n_pairs <= MAX_ITEMS, f"n_pairs must be in [2, {MAX_ITEMS}].")
        need(1 <= self.n_eval <= MAX_ITEMS, f"n_eval must be in [1, {MAX_ITEMS}].")
        need(0 <= self.n_questions_per_subject <= MAX_ITEMS, f"n_questions_per_subject must be in [0, {MAX_ITEMS}].")
        need(1 <= self.batch_size <= 512, "batch_size must be in [1, 512].")
        need(1 <= self.max_new_tokens <= 256, "max_new_tokens must be in [1, 256].")
        need(0 <= self.n_diagnostics <= 256, "n_diagnostics must be in [0, 256] (0 turns the assumption checks off).")
        need(self.mmlu_split in ("dev", "test"), "mmlu_split must be dev or test.")
        need(
            isinstance(self.opening_tokens, int) and 1 <= self.opening_tokens <= 32,
            "opening_tokens must be an integer in [1, 32].",
        )
        need(isinstance(self.baseline, bool), "baseline must be true or false.")
        need(isinstance(self.scorer, str) and 0 < len(self.scorer) <= 300, "scorer must be 'keyword' or a judge spec.")
        need(isinstance(self.helpfulness_subjects, list), "helpfulness_subjects must be a list of MMLU subjects.")
        unknown = set(self.helpfulness_subjects) - set(datasets.mmlu_subjects())
        need(not unknown, f"Unknown MMLU subjects: {', '.join(sorted(unknown))}.")

    def r_grid(self) -> list[float]:
        return [round(float(r), 6) for r in np.linspace(self.r_min, self.r_max, self.r_steps)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SweepConfig:
        if not isinstance(data, dict):
            raise SweepConfigError("A preset must be a mapping of config fields.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"results", "description"}
        if unknown:
            raise SweepConfigError(
                f"Unknown config fields: {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}."
            )
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise SweepConfigError(str(exc)) from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepConfig:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SweepConfigError(f"Cannot read preset {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise SweepConfigError(f"Preset {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data)
