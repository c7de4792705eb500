"""The paper's assumption checks (Wolf et al., appendix A.3), measured on the model.

* Assumption 1: ``|δr_e(q)| = λ|r_e|`` for small r_e, where ``δr_e(q)`` is the change of the final
  hidden state (the input of the unembedding U) at the answer position. λ is the slope of a
  line through the origin fitted on the small-|r_e| part of the curve.
* Assumption 3 (logit noise): ``<δr_e(q), U^T(e_i - e_correct)>`` over the top-10 tokens of
  helpfulness questions is roughly normal with a standard deviation growing like ``λσ·|r_e|``.
  The paper then estimates ``λσβ ≈ 0.8·λσ`` (mean of a half-normal).
* Assumption 2 (separation): ``<δr_e(q), U^T(e_good - e_bad)>`` grows like ``Δλ·r_e``; the paper
  uses the mean over good/bad token sets, as we do with the behaviour's answer-start tokens.

Because U is linear (no bias in the families we support), ``U·δr_e`` is exactly the change of
the logits, which is what we read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from . import metrics, prompts, runner
from .models import LoadedModel
from .vectors import SteeringVector

HALF_NORMAL_MEAN = float(np.sqrt(2 / np.pi))  # E|X| / sigma for X ~ N(0, sigma^2): the paper's 0.8


def _shifts(loaded, texts, vector, layers, r_grid):
    """δr and U·δr for every (r, text): arrays [n_r, n_texts, d] and [n_r, n_texts, V]."""
    states, logits = runner.next_token_states_grid(loaded, texts, vector, layers, [0.0, *r_grid])
    dh = (states[1:] - states[0]).numpy()
    dl = (logits[1:] - logits[0]).numpy()
    return dh, dl, logits[0].numpy()


def fit_slope_through_origin(x, y) -> tuple[float, float]:
    """Least-squares slope of ``y = k·x`` and its uncentred R² (the model has no intercept)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    denom = float((x * x).sum())
    if denom == 0:
        return float("nan"), float("nan")
    k = float((x * y).sum() / denom)
    ss_res = float(((y - k * x) ** 2).sum())
    ss_tot = float((y * y).sum())
    return k, (1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


@dataclass
class DiagnosticsResult:
    """Tidy rows (r_e, check, statistic, value) plus the parameter estimates."""

    rows: pd.DataFrame
    estimates: dict
    noise_samples: dict = field(default_factory=dict)  # r_e -> pooled logit-noise values

    def to_dict(self) -> dict:
        return {"estimates": self.estimates}


def run_diagnostics(
    loaded: LoadedModel,
    vector: SteeringVector,
    layers,
    questions,
    behavior,
    r_grid,
    linear_range: float | None = None,
    top_k: int = 10,
) -> DiagnosticsResult:
    """Measure the three assumption checks on a few questions and behaviour prompts."""
    r_grid = [float(r) for r in r_grid if float(r) != 0.0]
    if not r_grid:
        raise ValueError("Diagnostics need at least one non-zero coefficient.")
    if linear_range is None:
        linear_range = float(np.quantile(np.abs(r_grid), 0.5))
    rows: list[dict] = []
    estimates: dict = {}
    noise_samples: dict = {}

    if questions:
        texts = [prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in questions]
        dh, dl, logits0 = _shifts(loaded, texts, vector, layers, r_grid)
        letter_ids = metrics.letter_token_ids(loaded.tokenizer)
        correct = np.array([letter_ids[q.answer] for q in questions])
        top = np.argsort(-logits0, axis=1)[:, :top_k]
        for k, r in enumerate(r_grid):
            norm_dr = np.linalg.norm(dh[k], axis=1)
            norm_udr = np.linalg.norm(dl[k], axis=1)
            rows += [dict(r_e=r, check="final_shift", statistic="norm_delta_r", value=float(norm_dr.mean())),
                     dict(r_e=r, check="final_shift", statistic="norm_U_delta_r", value=float(norm_udr.mean()))]
            noise = []
            for i in range(len(questions)):
                others = [t for t in top[i] if t != correct[i]]
                noise.extend((dl[k, i, others] - dl[k, i, correct[i]]).tolist())
            noise = np.asarray(noise)
            noise_samples[r] = noise
            rows.append(dict(r_e=r, check="logit_noise", statistic="std", value=float(noise.std(ddof=1))))
            rows.append(dict(r_e=r, check="logit_noise", statistic="mean", value=float(noise.mean())))
        small = [k for k, r in enumerate(r_grid) if abs(r) <= linear_range]
        xs = np.array([abs(r_grid[k]) for k in small])
        lam, lam_r2 = fit_slope_through_origin(
            xs, [np.linalg.norm(dh[k], axis=1).mean() for k in small])
        lam_u, _ = fit_slope_through_origin(xs, [np.linalg.norm(dl[k], axis=1).mean() for k in small])
        lam_sigma, ls_r2 = fit_slope_through_origin(xs, [noise_samples[r_grid[k]].std(ddof=1) for k in small])
        k_max = max(small, key=lambda k: abs(r_grid[k]))
        sample = noise_samples[r_grid[k_max]]
        z = (sample - sample.mean()) / max(sample.std(ddof=1), 1e-12)
        normal = stats.normaltest(z) if len(z) >= 20 else None
        estimates.update({
            "lambda": lam, "lambda_r2": lam_r2, "lambda_U": lam_u,
            "lambda_sigma": lam_sigma, "lambda_sigma_r2": ls_r2,
            "lambda_sigma_beta_estimate": HALF_NORMAL_MEAN * lam_sigma if np.isfinite(lam_sigma) else None,
            "noise_normality": {
                "r_e": r_grid[k_max], "n": int(len(z)), "skew": float(stats.skew(z)),
                "excess_kurtosis": float(stats.kurtosis(z)),
                "dagostino_pearson_p": float(normal.pvalue) if normal is not None else None,
            },
            "linear_range": linear_range, "n_questions": len(questions), "top_k": top_k,
        })

    if behavior is not None and behavior.eval_prompts:
        p0 = behavior.eval_prompts[0]
        good, bad = metrics.answer_token_sets(loaded.tokenizer, p0.aligned, p0.misaligned)
        texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
        _, dl, _ = _shifts(loaded, texts, vector, layers, r_grid)
        sep = []
        for k, r in enumerate(r_grid):
            s = dl[k][:, good].mean(1) - dl[k][:, bad].mean(1)
            sep.append(float(s.mean()))
            rows.append(dict(r_e=r, check="separation", statistic="mean_good_minus_bad", value=sep[-1]))
        small = [k for k, r in enumerate(r_grid) if abs(r) <= linear_range]
        dl_hat, dl_r2 = fit_slope_through_origin([r_grid[k] for k in small], [sep[k] for k in small])
        estimates.update({"delta_lambda_estimate": dl_hat, "delta_lambda_r2": dl_r2,
                          "separation_tokens": {"good": [loaded.tokenizer.decode([t]) for t in good],
                                                "bad": [loaded.tokenizer.decode([t]) for t in bad]},
                          "n_behavior_prompts": len(texts)})
    return DiagnosticsResult(pd.DataFrame(rows, columns=["r_e", "check", "statistic", "value"]), estimates, noise_samples)


def compare_with_fits(estimates: dict, alignment_fit: dict | None, helpfulness_fit: dict | None) -> dict:
    """Side-by-side of the direct estimates and the bound fits' free parameters (as the paper does).

    The paper finds the fitted Δλ several times larger than the separation estimate (appendix
    A.3 explains why: the estimate is a bound over the whole range), so ratios, not equality,
    are the thing to read.
    """
    out = {}
    if alignment_fit and estimates.get("delta_lambda_estimate") is not None:
        fit, est = alignment_fit.get("delta_lambda"), estimates["delta_lambda_estimate"]
        out["delta_lambda"] = {"fit": fit, "estimate": est,
                               "ratio_fit_to_estimate": (fit / est) if fit is not None and est else None}
    if helpfulness_fit and estimates.get("lambda_sigma_beta_estimate") is not None:
        fit, est = helpfulness_fit.get("lambda_sigma_beta"), estimates["lambda_sigma_beta_estimate"]
        out["lambda_sigma_beta"] = {"fit": fit, "estimate": est,
                                    "ratio_fit_to_estimate": (fit / est) if fit is not None and est else None}
    return out
