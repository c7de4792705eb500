"""The shipped presets are what the engine computes: in the dtype each preset records, a sample of
their numbers is recomputed from scratch (vector, sequence proxy, helpfulness, answers) and
compared with the files shipped in presets/.

Continuous values agree to 1e-5: float32 matrix products differ in the last bits from one CPU
kernel to another (the presets were computed on one machine, CI runs on others). Greedy answers
are compared as text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrepe_core import datasets, proxy
from mrepe_core.extract import extract_vector
from mrepe_core.measurements import GeneratedBehavior, Helpfulness, text_scorer
from mrepe_core.models import load_model, resolve_layers
from mrepe_core.plan import coarse_grid
from mrepe_core.presets import list_presets

pytestmark = pytest.mark.slow
ATOL = 1e-5
PRESETS = [p for p in list_presets() if p.results_dir is not None]


@pytest.fixture(scope="module", params=PRESETS, ids=[p.name for p in PRESETS])
def shipped(request):
    preset = request.param
    result = preset.load_results()
    config = preset.config
    assert result is not None and config.dtype != "auto"  # a preset records the dtype it was computed in
    loaded = load_model(config.model, dtype=config.dtype)
    behavior = datasets.load_behavior(config.behavior, loaded.tokenizer, config.n_pairs, config.n_eval, config.seed)
    layers = resolve_layers(config.layers, loaded.n_layers)
    vector = extract_vector(loaded, behavior.pairs, config.method, layers)
    return preset, result, loaded, behavior, layers, vector


def stored(result, task: str, metric: str) -> dict:
    sel = result.items[(result.items.task == task) & (result.items.metric == metric)]
    return {(int(i), round(float(r), 6)): float(v) for i, r, v in zip(sel["item"], sel["r_e"], sel["value"])}


def test_vector_and_provenance(shipped):
    preset, result, loaded, _, _, vector = shipped
    np.testing.assert_allclose(vector.directions.numpy(), result.vector.directions.numpy(), atol=ATOL)
    prov = result.summary["provenance"]
    assert {"mrepe", "torch", "transformers", "numpy", "device", "device_name", "dtype"} <= set(prov)
    assert prov["dtype"] == str(loaded.dtype).replace("torch.", "")


def test_sequence_proxy_and_answers(shipped):
    preset, result, loaded, behavior, layers, vector = shipped
    grid = preset.config.r_grid()
    texts = result.texts[result.texts.task == "behavior"]
    scores = stored(result, "behavior", "behavior_expectation")
    coarse = coarse_grid(grid)
    answers = {
        (int(i), round(float(r), 6)): (t, int(scores[(int(i), round(float(r), 6))]))
        for i, r, t in zip(texts["item"], texts["r_e"], texts["text"])
        if round(float(r), 6) in coarse
    }
    sides = proxy.openings(loaded, behavior, answers, n_tokens=preset.config.opening_tokens)
    seq = proxy.SequenceProxy(loaded, behavior, vector, layers, sides, preset.config.batch_size)
    picked = [grid[0], 0.0, grid[-1]]
    rows = [r for u in range(len(seq.units)) for r in seq.rows([(u, c) for c in picked])]
    want = stored(result, "behavior", "behavior_proxy")
    got = {(r["item"], round(r["r_e"], 6)): r["value"] for r in rows if r["metric"] == "behavior_proxy"}
    assert got and max(abs(v - want[k]) for k, v in got.items()) < ATOL
    # Greedy answers of two prompts at three coefficients, as shipped.
    gen = GeneratedBehavior(loaded, behavior, vector, layers, text_scorer(behavior), preset.config.max_new_tokens)
    gen.rows([(i, c) for i in (0, 1) for c in picked])
    shipped_text = {(int(i), round(float(r), 6)): t for i, r, t in zip(texts["item"], texts["r_e"], texts["text"])}
    for (i, r), (text, _) in gen.answers.items():
        assert text == shipped_text[(i, round(r, 6))]


def test_helpfulness(shipped):
    preset, result, loaded, _, layers, vector = shipped
    config = preset.config
    questions = datasets.load_mmlu(
        config.helpfulness_subjects, config.mmlu_split, config.n_questions_per_subject, config.seed
    )
    hel = Helpfulness(loaded, questions[:6], vector, layers, config.helpfulness_format, config.batch_size)
    grid = config.r_grid()
    rows = [r for u in range(len(hel.units)) for r in hel.rows([(u, c) for c in (grid[0], 0.0, grid[-1])])]
    want = stored(result, "helpfulness", "helpfulness")
    got = pd.DataFrame([r for r in rows if r["metric"] == "helpfulness"])
    diffs = [abs(v - want[(int(i), round(float(r), 6))]) for i, r, v in zip(got["item"], got["r_e"], got["value"])]
    assert diffs and max(diffs) < ATOL
