"""Assumption checks and the layer x coefficient scan on tiny models."""

import numpy as np
import pytest
import torch

from mrepe_core import datasets
from mrepe_core.config import SweepConfig
from mrepe_core.diagnostics import compare_with_fits, fit_slope_through_origin, run_diagnostics
from mrepe_core.layer_scan import layer_windows, scan_layers
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
    res = run_diagnostics(
        tiny_llama, vec, [1, 2], questions, behavior, [-0.02, -0.01, 0.01, 0.02, 0.04], linear_range=0.02
    )
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
        np.sqrt(2 / np.pi) * est["lambda_sigma"]
    )
    assert np.isfinite(est["delta_lambda_estimate"])
    assert len(res.noise_samples[0.04]) >= 5 * 9  # top-10 minus the correct answer, per question
    cmp = compare_with_fits(
        est,
        {"delta_lambda": 2 * est["delta_lambda_estimate"]},
        {"lambda_sigma_beta": est["lambda_sigma_beta_estimate"]},
    )
    assert cmp["delta_lambda"]["ratio_fit_to_estimate"] == pytest.approx(2.0)
    assert cmp["lambda_sigma_beta"]["ratio_fit_to_estimate"] == pytest.approx(1.0)


def test_diagnostics_need_nonzero_grid(tiny_llama):
    vec = SteeringVector(torch.ones(tiny_llama.n_layers, tiny_llama.hidden_size) / 8, [0])
    with pytest.raises(ValueError, match="non-zero"):
        run_diagnostics(tiny_llama, vec, [0], [], None, [0.0])


@pytest.mark.parametrize(
    "n,width,stride,expected",
    [
        (4, 2, None, [(0, 2), (1, 3), (2, 4)]),
        (5, 2, 2, [(0, 2), (2, 4), (3, 5)]),
        (3, 3, None, [(0, 3)]),
    ],
)
def test_layer_windows(n, width, stride, expected):
    assert layer_windows(n, width, stride) == expected


def test_layer_windows_bad_width():
    with pytest.raises(ValueError):
        layer_windows(4, 0)


def test_scan_layers_tiny(tiny_model_dir):
    cfg = SweepConfig(
        model=str(tiny_model_dir),
        layers="0:4",
        r_min=-2,
        r_max=2,
        r_steps=3,
        n_pairs=4,
        n_eval=2,
        helpfulness_subjects=["marketing"],
        n_questions_per_subject=2,
        dtype="fp32",
    )
    df = scan_layers(cfg, width=2, r_steps=3)
    assert set(zip(df.layer_start, df.layer_stop)) == {(0, 2), (1, 3), (2, 4)}
    assert set(df.metric) == {"behavior_expectation", "helpfulness"}
    assert len(df) == 3 * 3 * 2


@pytest.mark.parametrize("fmt", ["cloze", "letter"])
def test_sweep_checks_use_its_own_passes_and_equal_a_separate_run(tiny_model_dir, tmp_path, monkeypatch, fmt):
    """The sweep reads the checks' states from its own forward passes (no extra pass) and gets
    the numbers a separate ``run_diagnostics`` on the same items and coefficients gets."""
    from mrepe_core import diagnostics, sweep
    from mrepe_core.models import load_model

    config = SweepConfig(
        model=str(tiny_model_dir),
        behavior="harmless",
        layers="1:3",
        r_min=-4,
        r_max=4,
        r_steps=5,
        n_pairs=4,
        n_eval=3,
        helpfulness_subjects=["marketing"],
        n_questions_per_subject=3,
        helpfulness_format=fmt,
        dtype="fp32",
        n_diagnostics=3,
    )

    def no_extra_pass(*args, **kwargs):
        raise AssertionError("the sweep ran forward passes of its own for the checks")

    monkeypatch.setattr(diagnostics, "states_by_coefficient", no_extra_pass)
    res = sweep.run_sweep(config, cache_dir=tmp_path)
    monkeypatch.undo()
    loaded, behavior, questions = sweep.prepare(config, load_model(str(tiny_model_dir), dtype="fp32"))
    grid = sweep.diagnostic_grid(config.r_grid())
    separate = run_diagnostics(
        loaded,
        res.vector,
        res.summary["layers"],
        questions[:3],
        sweep._subset(behavior, 3),
        grid,
        helpfulness_format=fmt,
    )
    key = ["check", "statistic", "r_e"]
    got = res.diagnostics.sort_values(key).reset_index(drop=True)
    want = separate.rows.sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) == 5 * len(grid)  # 4 question statistics + 1 separation per r_e
    np.testing.assert_allclose(got.value, want.value, rtol=1e-4, atol=1e-6)
    assert set(res.noise_samples) == set(grid)
