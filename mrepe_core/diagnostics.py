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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats

from . import metrics, prompts, runner
from .models import LoadedModel
from .vectors import SteeringVector

HALF_NORMAL_MEAN = float(np.sqrt(2 / np.pi))  # E|X| / sigma for X ~ N(0, sigma^2): the paper's 0.8


def answer_prompts(tokenizer, questions, helpfulness_format: str = "letter") -> tuple[list[str], list[int]]:
    """Each question's text up to its answer, and the correct answer's token at that position.

    Letter format: the letter prompt and the correct letter (the paper's setting). Cloze format:
    the question prefix and the first token of the correct choice, i.e. the position and token the
    sweep's cloze helpfulness reads first, so the estimates describe the curve they are compared with.
    """
    if helpfulness_format == "letter":
        texts = [prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in questions]
        letter_ids = metrics.letter_token_ids(tokenizer)
        return texts, [int(letter_ids[q.answer]) for q in questions]
    if helpfulness_format != "cloze":
        raise ValueError(f"Unknown helpfulness format {helpfulness_format!r} (letter or cloze).")
    texts = [prompts.mmlu_cloze_prompt(q.question, q.subject) for q in questions]
    correct = runner.choice_token_ids(tokenizer, [[q.choices[q.answer]] for q in questions])
    return texts, [int(ids[0][0]) for ids in correct]


def states_by_coefficient(loaded, texts, vector, layers, r_grid) -> dict[float, torch.Tensor]:
    """Final-normed hidden state after each text at r_e = 0 and every coefficient: r -> [n, d]."""
    grid = [0.0, *[float(r) for r in r_grid if float(r) != 0.0]]
    states, _ = runner.next_token_states_grid(loaded, texts, vector, layers, grid)
    return {r: states[k] for k, r in enumerate(grid)}


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
    helpfulness_format: str = "letter",
    question_states: dict[float, torch.Tensor] | None = None,
    behavior_states: dict[float, torch.Tensor] | None = None,
) -> DiagnosticsResult:
    """Measure the three assumption checks on a few questions and behaviour prompts. States at the
    answer positions that the caller already has (the sweep keeps its own) are used as given; the
    rest come from forward passes run here."""
    grid = _nonzero(r_grid)
    correct = None
    if questions:
        texts, correct = answer_prompts(loaded.tokenizer, questions, helpfulness_format)
        if question_states is None:
            question_states = states_by_coefficient(loaded, texts, vector, layers, grid)
    else:
        question_states = None
    if behavior is not None and behavior.eval_prompts:
        if behavior_states is None:
            texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
            behavior_states = states_by_coefficient(loaded, texts, vector, layers, grid)
    else:
        behavior_states = None
    return checks_from_states(
        loaded, grid, question_states, correct, behavior_states, behavior, linear_range=linear_range, top_k=top_k
    )


def _nonzero(r_grid) -> list[float]:
    grid = [float(r) for r in r_grid if float(r) != 0.0]
    if not grid:
        raise ValueError("Diagnostics need at least one non-zero coefficient.")
    return grid


Logits = Callable[[torch.Tensor], torch.Tensor]  # final-normed states [n, d] -> logits [n, vocab]


def _question_series(
    logits: Logits, question_states: dict[float, torch.Tensor], correct: list[int], r_grid: list[float], top_k: int
) -> tuple[list[dict], dict[str, list[float]], dict]:
    """Per coefficient, at the questions' answer positions: the final-layer shift |Δr| and its logit
    image |UΔr|, and the logit noise (the shift of the top-k wrong answers' logits relative to the
    correct one). Returns the rows, the per-coefficient series and the noise samples."""
    base = question_states[0.0]
    logits0 = logits(base)
    correct_t = torch.tensor(correct)
    top = torch.argsort(-logits0, dim=1)[:, :top_k]
    others = [[int(t) for t in top[i] if t != correct_t[i]] for i in range(len(correct))]
    rows: list[dict] = []
    noise_samples: dict = {}
    norms_dr, norms_udr, stds = [], [], []
    for r in r_grid:
        dh = (question_states[r] - base).numpy()
        dl = (logits(question_states[r]) - logits0).numpy()
        norm_dr, norm_udr = np.linalg.norm(dh, axis=1), np.linalg.norm(dl, axis=1)
        norms_dr.append(float(norm_dr.mean()))
        norms_udr.append(float(norm_udr.mean()))
        noise = np.concatenate([dl[i, others[i]] - dl[i, correct[i]] for i in range(len(correct))])
        noise_samples[r] = noise
        stds.append(float(noise.std(ddof=1)))
        rows += [
            dict(r_e=r, check="final_shift", statistic="norm_delta_r", value=norms_dr[-1]),
            dict(r_e=r, check="final_shift", statistic="norm_U_delta_r", value=norms_udr[-1]),
            dict(r_e=r, check="logit_noise", statistic="std", value=stds[-1]),
            dict(r_e=r, check="logit_noise", statistic="mean", value=float(noise.mean())),
        ]
    return rows, {"norm_dr": norms_dr, "norm_udr": norms_udr, "std": stds}, noise_samples


def _question_estimates(
    r_grid: list[float],
    small: list[int],
    series: dict[str, list[float]],
    noise_samples: dict,
    linear_range: float,
    n_questions: int,
    top_k: int,
) -> dict:
    """λ, λ_U and λσ (slopes through the origin over the coefficients ``small``, |r| within the
    linear range) and the normality of the noise at the largest of them."""
    xs = np.array([abs(r_grid[k]) for k in small])
    lam, lam_r2 = fit_slope_through_origin(xs, [series["norm_dr"][k] for k in small])
    lam_u, _ = fit_slope_through_origin(xs, [series["norm_udr"][k] for k in small])
    lam_sigma, ls_r2 = fit_slope_through_origin(xs, [series["std"][k] for k in small])
    k_max = max(small, key=lambda k: abs(r_grid[k]))
    sample = noise_samples[r_grid[k_max]]
    z = (sample - sample.mean()) / max(sample.std(ddof=1), 1e-12)
    normal = stats.normaltest(z) if len(z) >= 20 else None
    return {
        "lambda": lam,
        "lambda_r2": lam_r2,
        "lambda_U": lam_u,
        "lambda_sigma": lam_sigma,
        "lambda_sigma_r2": ls_r2,
        "lambda_sigma_beta_estimate": HALF_NORMAL_MEAN * lam_sigma if np.isfinite(lam_sigma) else None,
        "noise_normality": {
            "r_e": r_grid[k_max],
            "n": int(len(z)),
            "skew": float(stats.skew(z)),
            "excess_kurtosis": float(stats.kurtosis(z)),
            "dagostino_pearson_p": float(normal.pvalue) if normal is not None else None,
        },
        "linear_range": linear_range,
        "n_questions": n_questions,
        "top_k": top_k,
    }


def _behavior_checks(
    loaded: LoadedModel,
    logits: Logits,
    behavior_states: dict[float, torch.Tensor],
    behavior,
    r_grid: list[float],
    small: list[int],
) -> tuple[list[dict], dict]:
    """The separation of the aligned and misaligned answer tokens' logits per coefficient, and Δλ
    (its slope through the origin over the coefficients ``small``). Returns the rows and estimates."""
    p0 = behavior.eval_prompts[0]
    good, bad = metrics.answer_token_sets(loaded.tokenizer, p0.aligned, p0.misaligned)
    logits0 = logits(behavior_states[0.0])
    rows: list[dict] = []
    sep = []
    for r in r_grid:
        dl_b = logits(behavior_states[r]) - logits0
        sep.append(float((dl_b[:, good].mean(1) - dl_b[:, bad].mean(1)).mean()))
        rows.append(dict(r_e=r, check="separation", statistic="mean_good_minus_bad", value=sep[-1]))
    dl_hat, dl_r2 = fit_slope_through_origin([r_grid[k] for k in small], [sep[k] for k in small])
    estimates = {
        "delta_lambda_estimate": dl_hat,
        "delta_lambda_r2": dl_r2,
        "separation_tokens": {
            "good": [loaded.tokenizer.decode([t]) for t in good],
            "bad": [loaded.tokenizer.decode([t]) for t in bad],
        },
        "n_behavior_prompts": int(behavior_states[0.0].shape[0]),
    }
    return rows, estimates


def checks_from_states(
    loaded: LoadedModel,
    r_grid,
    question_states: dict[float, torch.Tensor] | None,
    correct: list[int] | None,
    behavior_states: dict[float, torch.Tensor] | None,
    behavior=None,
    linear_range: float | None = None,
    top_k: int = 10,
) -> DiagnosticsResult:
    """The assumption checks from final-normed states at the answer positions (r -> [n, d], with
    r = 0 and every coefficient of ``r_grid``), wherever they were computed: the sweep keeps them
    from its own passes, ``run_diagnostics`` runs its own."""
    r_grid = _nonzero(r_grid)
    if linear_range is None:
        linear_range = float(np.quantile(np.abs(r_grid), 0.5))
    head = loaded.model.get_output_embeddings()
    rows: list[dict] = []
    estimates: dict = {}
    noise_samples: dict = {}
    small = [k for k, r in enumerate(r_grid) if abs(r) <= linear_range]

    def logits(states: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return head(states.to(device=loaded.device, dtype=loaded.dtype)).float().cpu()

    if question_states is not None:
        if correct is None:
            raise ValueError("Question states need the correct answers' token ids.")
        q_rows, series, samples = _question_series(logits, question_states, correct, r_grid, top_k)
        rows += q_rows
        noise_samples.update(samples)
        estimates.update(_question_estimates(r_grid, small, series, noise_samples, linear_range, len(correct), top_k))

    if behavior_states is not None:
        b_rows, b_estimates = _behavior_checks(loaded, logits, behavior_states, behavior, r_grid, small)
        rows += b_rows
        estimates.update(b_estimates)
    return DiagnosticsResult(
        pd.DataFrame(rows, columns=["r_e", "check", "statistic", "value"]), estimates, noise_samples
    )


def compare_with_fits(estimates: dict, alignment_fit: dict | None, helpfulness_fit: dict | None) -> dict:
    """Side-by-side of the direct estimates and the bound fits' free parameters (as the paper does).

    The paper finds the fitted Δλ several times larger than the separation estimate (appendix
    A.3 explains why: the estimate is a bound over the whole range), so ratios, not equality,
    are the thing to read.
    """
    out = {}
    if alignment_fit and estimates.get("delta_lambda_estimate") is not None:
        fit, est = alignment_fit.get("delta_lambda"), estimates["delta_lambda_estimate"]
        out["delta_lambda"] = {
            "fit": fit,
            "estimate": est,
            "ratio_fit_to_estimate": (fit / est) if fit is not None and est else None,
        }
    if helpfulness_fit and estimates.get("lambda_sigma_beta_estimate") is not None:
        fit, est = helpfulness_fit.get("lambda_sigma_beta"), estimates["lambda_sigma_beta_estimate"]
        out["lambda_sigma_beta"] = {
            "fit": fit,
            "estimate": est,
            "ratio_fit_to_estimate": (fit / est) if fit is not None and est else None,
        }
    return out
