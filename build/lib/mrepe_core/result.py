"""``SweepResult``: tidy rows of a sweep, its summary and vector, and their files on disk.

Rows are ``r_e, task, metric, subject, item, value`` per item (``items``) and their mean and
standard error per ``(r_e, task, metric, subject)`` (``aggregates``); the generated answers are
kept per item in ``texts`` so people can read what the model wrote at each coefficient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import folder_written_atomically
from .config import SweepConfig, SweepConfigError
from .vectors import SteeringVector

ITEM_COLUMNS = ["r_e", "task", "metric", "subject", "item", "value"]
AGG_COLUMNS = ["r_e", "task", "metric", "subject", "value", "stderr", "n"]
TEXT_COLUMNS = ["r_e", "task", "item", "prompt", "text"]
RESULT_FILES = ("results.csv", "summary.json", "config.json")


def aggregate(items: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error per (r_e, task, metric, subject), plus the mean over subjects."""
    if items.empty:
        return pd.DataFrame(columns=AGG_COLUMNS)
    g = items.groupby(["r_e", "task", "metric", "subject"])["value"]
    agg = g.agg(["mean", "std", "count"]).reset_index()
    agg["stderr"] = agg["std"].fillna(0.0) / np.sqrt(agg["count"])
    agg = agg.rename(columns={"mean": "value", "count": "n"}).drop(columns="std")
    # "mean" weights subjects equally, as the paper's per-subject curves do (the baseline's
    # questions are the same subjects, asked with a system prompt).
    helpful = items[items.metric.isin(["helpfulness", "accuracy"])]
    for task, rows in helpful.groupby("task"):
        per_subject = rows.groupby(["r_e", "metric", "subject"])["value"].mean().reset_index()
        mean = per_subject.groupby(["r_e", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
        mean["stderr"] = mean["std"].fillna(0.0) / np.sqrt(mean["count"])
        mean = mean.rename(columns={"mean": "value", "count": "n"}).drop(columns="std")
        mean["task"], mean["subject"] = task, "mean"
        agg = pd.concat([agg, mean[AGG_COLUMNS]], ignore_index=True)
    return agg[AGG_COLUMNS].sort_values(["task", "metric", "subject", "r_e"]).reset_index(drop=True)


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
    texts: pd.DataFrame | None = None  # generated answers: r_e, task, item, prompt, text

    def curve(self, task: str, metric: str, subject: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        df = self.aggregates
        sel = df[(df.task == task) & (df.metric == metric)]
        if subject is not None:
            sel = sel[sel.subject == subject]
        sel = sel.sort_values("r_e")
        return sel.r_e.to_numpy(float), sel.value.to_numpy(float)

    def save(self, out_dir: str | Path) -> Path:
        """Write results.csv, items.csv, texts.csv, summary.json and the vector (atomically)."""
        out = Path(out_dir)
        with folder_written_atomically(out) as tmp:
            self.aggregates.to_csv(tmp / "results.csv", index=False)
            self.items.to_csv(tmp / "items.csv", index=False)
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=2, default=_json_default))
            (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
            if self.vector is not None:
                self.vector.save(tmp / "vector")
            if self.texts is not None and not self.texts.empty:
                self.texts.to_csv(tmp / "texts.csv", index=False)
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
            texts = pd.read_csv(out / "texts.csv", keep_default_na=False) if (out / "texts.csv").is_file() else None
        except (OSError, ValueError, KeyError) as exc:
            raise SweepConfigError(f"Results in {out.name} are incomplete or corrupt: {exc}") from exc
        required = {"r_e", "task", "metric", "subject", "value"}
        if not required <= set(agg.columns):
            raise SweepConfigError(f"results.csv in {out.name} lacks columns {sorted(required - set(agg.columns))}.")
        vector = SteeringVector.load(out / "vector") if (out / "vector.safetensors").is_file() else None
        diag = pd.read_csv(out / "diagnostics.csv") if (out / "diagnostics.csv").is_file() else None
        noise = None
        if (out / "diagnostics_noise.csv").is_file():
            nf = pd.read_csv(out / "diagnostics_noise.csv")
            noise = {float(r): g.value.to_numpy(float) for r, g in nf.groupby("r_e")}
        return cls(config, agg, items, summary, vector, diagnostics=diag, noise_samples=noise, texts=texts)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
