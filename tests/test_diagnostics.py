"""Assumption checks and the layer x coefficient scan on tiny models."""

import numpy as np
import pytest
import torch

from mrepe_core import datasets
from mrepe_core.diagnostics import compare_with_fits, fit_slope_through_origin, run_diagnostics
from mrepe_core.layer_scan import layer_windows, scan_layers
from mrepe_core.sweep import SweepConfig
from mrepe_core.vectors import SteeringVector


def test_slope_recovers_planted_linear_relation():
    rng = np.random.default_rng(0)
    x = np.linspace(0.1, 4, 30)
    y = 2.5 * x + rng.normal(0, 0.05, x.size)
    k, r2 = fit_slope_through_origin(x, y)
    assert k == pytest.approx(2.5, abs=0.03) and r2 > 0.99
    k_bad, r2_bad = fit_slope_through_origin(x, rng.normal(0, 1, x.size))
    assert abs(k_bad) < 0.5 and r2_bad < 0.2


def test_diagnostics_on_tiny_model(tiny_llama):
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(tiny_llama.n_layers, tiny_llama.hidden_size, generator=g), dim=1)
    vec = SteeringVector(d, [1, 2])
    questions = datasets.load_mmlu(["marketing"], "dev", 5)
    behavior = datasets.load_behavior("harmless", tiny_llama.tokenizer, 4, 4)
    res = run_diagnostics(tiny_llama, vec, [1, 2], questions, behavior, [-0.02, -0.01, 0.01, 0.02, 0.04],
                          linear_range=0.02)
    rows = res.rows
    assert set(rows.check) == {"final_shift", "logit_noise", "separation"}
    norms = rows[(rows.check == "final_shift") & (rows.statistic == "norm_delta_r")].sort_values("r_e")
    # |δr| grows with |r_e| and is close to linear for small coefficients (assumption 1): the
    # random model's hidden states are tiny (init std 0.02), so 'small' means ~0.01 here.
    by_r = dict(zip(norms.r_e, norms.value))
    assert by_r[0.02] > by_r[0.01] > 0 and by_r[-0.02] > by_r[-0.01]
    est = res.estimates
    assert est["lambda"] > 0 and est["lambda_r2"] > 0.9
    assert est["lambda_sigma"] > 0 and est["lambda_sigma_beta_estimate"] == pytest.approx(
        np.sqrt(2 / np.pi) * est["lambda_sigma"])
    assert np.isfinite(est["delta_lambda_estimate"])
    assert len(res.noise_samples[0.04]) >= 5 * 9  # top-10 minus the correct answer, per question
    cmp = compare_with_fits(est, {"delta_lambda": 2 * est["delta_lambda_estimate"]},
                            {"lambda_sigma_beta": est["lambda_sigma_beta_estimate"]})
    assert cmp["delta_lambda"]["ratio_fit_to_estimate"] == pytest.approx(2.0)
    assert cmp["lambda_sigma_beta"]["ratio_fit_to_estimate"] == pytest.approx(1.0)


def test_diagnostics_need_nonzero_grid(tiny_llama):
    vec = SteeringVector(torch.ones(tiny_llama.n_layers, tiny_llama.hidden_size) / 8, [0])
    with pytest.raises(ValueError, match="non-zero"):
        run_diagnostics(tiny_llama, vec, [0], [], None, [0.0])


@pytest.mark.parametrize("n,width,stride,expected", [
    (4, 2, None, [(0, 2), (1, 3), (2, 4)]),
    (5, 2, 2, [(0, 2), (2, 4), (3, 5)]),
    (3, 3, None, [(0, 3)]),
])
def test_layer_windows(n, width, stride, expected):
    assert layer_windows(n, width, stride) == expected


def test_layer_windows_bad_width():
    with pytest.raises(ValueError):
        layer_windows(4, 0)


def test_scan_layers_tiny(tiny_model_dir):
    cfg = SweepConfig(model=str(tiny_model_dir), layers="0:4", r_min=-2, r_max=2, r_steps=3, n_pairs=4, n_eval=2,
                      helpfulness_subjects=["marketing"], n_questions_per_subject=2, dtype="fp32")
    df = scan_layers(cfg, width=2, r_steps=3)
    assert set(zip(df.layer_start, df.layer_stop)) == {(0, 2), (1, 3), (2, 4)}
    assert set(df.metric) == {"behavior_expectation", "helpfulness"}
    assert len(df) == 3 * 3 * 2
