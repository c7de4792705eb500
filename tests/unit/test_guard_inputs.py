"""The public server's checks without a server: messages, the input gate, JSON depth, sweep plans."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from mrepe_core.config import SweepConfig
from mrepe_core.limits import InputError
from mrepe_ui import guard
from mrepe_ui import tradeoff_inputs as inputs


def test_messages_are_clean():
    assert guard.clean_message("R² = 0.28 < 0.5: no fit") == "R² = 0.28 < 0.5: no fit"
    assert "&lt;script" in guard.clean_message("bad <script>alert(1)</script>")
    assert guard.clean_message("'NoneType' object has no attribute 'strip'") == ""
    assert guard.clean_message('Traceback (most recent call last):\n  File "x.py"') == ""
    assert len(guard.clean_message("x" * 100_000)) < 200
    assert len(guard.clean_message("word " * 10_000)) <= guard.MAX_MESSAGE_CHARS
    assert guard.clean_message("GGUF file not found: /etc/x.gguf", public=True) == (
        "GGUF file not found: [server path]"
    )
    assert "/home/me/model" in guard.clean_message("not found: /home/me/model", public=False)


def test_public_error_words_every_failure():
    assert guard.public_error(InputError("Prompt is 600 tokens; the limit is 512.")).message.startswith("Prompt is")
    bug = guard.public_error(KeyError("internal_key"))
    assert "reference" in bug.message and "internal_key" not in bug.message and "KeyError" not in bug.message
    assert "nested too deeply" in guard.public_error(RecursionError()).message
    assert "reference" in guard.public_error(ValueError("could not convert string to float: 'x'")).message


def test_json_depth_ignores_strings():
    assert guard.json_depth(b'{"a": [[1], [2]]}') == 3
    assert guard.json_depth(b'{"a": "[[[[[[[["}') == 1
    assert guard.json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


@pytest.mark.parametrize(
    ("block", "value", "message"),
    [
        (gr.Textbox(label="Prompt"), "x" * 9000, "Prompt: 9,000 characters; this server accepts at most 8,192"),
        (gr.Textbox(label="Prompt", max_length=100), "x" * 101, "at most 100"),
        (gr.Textbox(label="Prompt"), 12, "expected text"),
        (gr.Textbox(label="Prompt"), "a\ud800", "lone surrogates"),
        (gr.Textbox(label="Prompt"), "a\x00", "NUL"),
        (gr.Number(label="Pairs", minimum=2, maximum=64), 1e308, "between 2 and 64"),
        (gr.Number(label="Pairs"), float("nan"), "finite"),
        (gr.Number(label="Pairs"), True, "expected a number"),
        (gr.Dropdown(["a", "b"], label="Preset"), "c", "choose one of the listed options"),
        (gr.Dropdown(["a", "b"], label="Subjects", multiselect=True), ["a", "a", "a"], "too many"),
        (gr.Radio(["x"], label="Method"), {"x": 1}, "choose one"),
        (gr.Checkbox(label="Flag"), "yes", "true or false"),
        (gr.Textbox(label="Deep"), [[[]]], "expected text"),
    ],
)
def test_gate_refuses_with_the_field_and_what_to_change(block, value, message):
    with pytest.raises(gr.Error, match=message):
        guard.gate_value(block, value)


def test_gate_clamps_sliders_and_bounds_nesting():
    assert guard.gate_value(gr.Slider(-8, 8, label="r_e"), 20.0) == 8
    assert guard.gate_value(gr.Slider(-8, 8, label="r_e"), -1e308) == -8
    assert guard.gate_value(gr.Slider(-8, 8, label="r_e"), 1.5) == 1.5
    deep: list = []
    for _ in range(guard.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(gr.Error, match="nested too deeply"):
        guard.gate_value(gr.File(label="Upload"), deep)


def test_numbers_and_grids():
    assert inputs.number("3", "n", 0, 5, integer=True) == 3
    for bad in (float("nan"), float("inf"), "abc", None, True, [1]):
        with pytest.raises(InputError):
            inputs.number(bad, "n")
    with pytest.raises(InputError, match="whole number"):
        inputs.number(2.5, "n", integer=True)
    assert inputs.grid_steps(-8, 8, 0.8)[2] == 21
    with pytest.raises(InputError, match="too many"):
        inputs.grid_steps(-8, 8, 0.01)
    lo, hi, steps, note = inputs.grid_steps(-1, 1, 0.3)
    assert steps == 8 and "does not divide" in note


def test_plan_counts_rows_as_the_engine_does():
    """Rows per task of the engine's staged sweep (plan.SweepPlan.n_rows) and its next-token mode."""
    assert inputs.rows_by_task("first_token", 40, 105, 21) == {"behavior": 840, "helpfulness": 2205}
    generate = inputs.rows_by_task("generate", 40, 105, 21)
    assert sum(generate.values()) == 40 * 21 + 40 * 21 + 105 * 21 + 40 * 21 + 2 * 40 + 105
    proxy = inputs.rows_by_task("proxy", 40, 105, 21)
    assert proxy["behavior"] == 40 * inputs.coarse_points(21) == proxy["coherence"]
    huge = SweepConfig(
        r_min=-8, r_max=8, r_steps=161, n_eval=2000, helpfulness_subjects=["marketing"], n_questions_per_subject=2000
    )
    p = inputs.plan(huge)
    assert p.rows > 20_000 and p.seconds and p.seconds > 600
    with pytest.raises(InputError, match=r"would evaluate [\d,]+ rows \(about [\d,]+ min here\)"):
        inputs.check_plan(p)


def test_throughput_is_measured_per_task(tmp_path, monkeypatch):
    monkeypatch.setenv("MREPE_CACHE_DIR", str(tmp_path))
    config = SweepConfig(model="m", behavior_mode="generate", r_steps=21)
    summary = {
        "n_behavior_prompts": 40,
        "n_questions": 105,
        "timings": {"load_s": 3, "extract_s": 4, "behavior_s": 840 * 0.5, "helpfulness_s": 2205 * 0.05, "proxy_s": 84},
    }
    inputs.record_throughput(config, summary)
    rates, basis = inputs.seconds_per_row("m", "generate")
    assert math.isclose(rates["behavior"], 0.5) and math.isclose(rates["helpfulness"], 0.05)
    assert math.isclose(rates["proxy"], 0.1) and rates["fixed"] == 7 and "last sweep of this model" in basis
    other, basis = inputs.seconds_per_row("m", "first_token")
    assert "No sweep of this model" in basis
