"""Bounded work per visitor in the maps tab: token and count caps on texts, the scan's row cap,
input checks as a public endpoint needs them, and messages that say what to change without
repeating a long input or telling whether a server path exists."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from mrepe_core import concept_maps as cm
from mrepe_core import throughput
from mrepe_core.layer_scan import ScanPlan, check_scan, plan_scan
from mrepe_core.limits import InputError, limits
from mrepe_ui import maps_handlers, maps_inputs, maps_scan

BIG = "word " * 20_000  # 100 KB


def test_user_texts_are_capped_in_tokens_and_count(tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("MREPE_MAX_PROMPT_TOKENS", "20")
    monkeypatch.setenv("MREPE_MAX_TEXTS", "3")
    assert cm.max_user_texts() == 3
    assert cm.clean_user_texts("one\n\n two \n", tiny_tokenizer) == ["one", "two"]
    long_line = " ".join(["Certainly"] * 30)  # few characters per token would pass a character check
    with pytest.raises(InputError, match=r"Your inputs, line 2 is \d+ tokens; the limit is 20. Shorten it."):
        cm.clean_user_texts(f"fine\n{long_line}", tiny_tokenizer)
    with pytest.raises(cm.MapInputError, match="4 inputs given; the map takes at most 3 .* Remove some lines"):
        cm.clean_user_texts("a\nb\nc\nd", tiny_tokenizer)
    # Without the model's tokenizer only the character pre-check runs (the tab checks again once loaded).
    with pytest.raises(InputError, match="characters; the limit is 60 tokens") as info:
        cm.clean_user_texts(BIG)
    assert "word word" not in str(info.value)
    with pytest.raises(InputError, match="lone surrogates"):
        cm.clean_user_texts("ok\n\ud800")
    with pytest.raises(InputError, match="NUL"):
        cm.clean_user_texts("a\x00b")
    with pytest.raises(cm.MapInputError, match="must be text"):
        cm.clean_user_texts({"a": 1})  # type: ignore[arg-type]


def test_layer_index_refuses_absurd_and_non_integer_layers():
    assert cm.layer_index(-1, 4) == 3 and cm.layer_index(2.0, 4) == 2
    for bad, message in ((math.nan, "whole number"), (1.5, "whole number"), ("x", "whole number"), (True, "whole")):
        with pytest.raises(cm.MapInputError, match=message):
            cm.layer_index(bad, 4)
    with pytest.raises(cm.MapInputError, match="Layer that far is out of range: the map has layers 0 to 3"):
        cm.layer_index(10**30, 4)


def test_scan_rows_are_planned_and_capped_with_advice(monkeypatch):
    plan = plan_scan(30, 6, 3, 5, 16, 75)
    # per window: proxy and helpfulness on 5 r_e, answers (and their coherence) on the 3 coarse r_e
    assert len(plan.windows) == 9 and plan.rows == 9 * (5 * (16 + 75) + 2 * 3 * 16)
    assert plan.describe() == (
        "9 windows × (5 r_e × (16 behaviour prompts + 75 questions) + answers at the coarse r_e) = 4,959 rows"
    )
    with pytest.raises(InputError) as info:
        check_scan(plan, rate=throughput.Rate(0.2, "measured"))
    message = str(info.value)
    assert "4,959 rows" in message and "about 16.5 min here" in message and "allows 4,000 rows per scan" in message
    assert "larger stride" in message and "MREPE_MAX_SCAN_ROWS" in message
    check_scan(plan_scan(30, 6, 6, 5, 8, 15))  # the tab's defaults fit
    monkeypatch.setenv("MREPE_MAX_SCAN_ROWS", "100")
    with pytest.raises(InputError, match="allows 100 rows"):
        check_scan(ScanPlan(((0, 2),), 5, 10, 20))


def test_throughput_rates_and_estimates():
    assert throughput.describe_seconds(40) == "40 s" and throughput.describe_seconds(600) == "10.0 min"
    assert throughput.measured("no-such-model") is None
    throughput.remember("a-model", 0.25)
    assert throughput.measured("a-model").seconds(100) == pytest.approx(25.0)
    assert "measured on this server" in throughput.measured("a-model").source
    summary = {"timings": {"behavior_s": 10.0, "helpfulness_s": 20.0}, "config": {"r_steps": 3}}
    rate = throughput.rate_from_summary({**summary, "n_behavior_prompts": 40, "n_questions": 60})
    assert rate.seconds_per_row == pytest.approx(30 / 300) and "machine that computed it" in rate.source
    clock = throughput.RowClock()
    clock.start()
    clock.add(8)
    assert not clock.calibrated and clock.rate().seconds_per_row >= 0
    clock.add(8)
    assert clock.calibrated and "first 16 rows" in clock.rate().source


@pytest.mark.parametrize(
    "value, message",
    [
        (math.nan, "finite"),
        (math.inf, "finite"),
        (1e300, "between 1 and 64"),
        (3.5, "whole number"),
        ("12", None),
        ("twelve", "must be a number"),
        ("9" * 1000, "must be a number"),
        (None, "must be a number"),
        (True, "must be a number"),
        ([4], "must be a number"),
    ],
)
def test_numbers_from_public_endpoints(value, message):
    if message is None:
        assert maps_inputs.whole_number(value, "Points per set", 1, 64) == 12
        return
    with pytest.raises(InputError, match=message) as info:
        maps_inputs.whole_number(value, "Points per set", 1, 64)
    assert len(str(info.value)) < 150


def test_choices_flags_and_specs():
    assert maps_inputs.choices(["eval", "eval", "user"], "Sets", cm.SETS) == ["eval", "user"]
    with pytest.raises(InputError, match="must be one of"):
        maps_inputs.choices(["eval", "x" * 10_000], "Sets", cm.SETS)
    with pytest.raises(InputError, match="at most 4"):
        maps_inputs.choices(["eval"] * 5, "Sets", cm.SETS)
    assert maps_inputs.flag(1, "Measure") is True
    with pytest.raises(InputError, match="true or false"):
        maps_inputs.flag("yes", "Measure")
    with pytest.raises(InputError, match="Steered layers is 100,000 characters"):
        maps_inputs.spec_text("1" * 100_000, "Steered layers")


def test_public_model_field_never_tells_whether_a_path_exists(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("MREPE_PUBLIC", "1")
    assert maps_inputs.model_spec("", "smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert maps_inputs.model_spec("HuggingFaceTB/SmolLM2-360M-Instruct", "x") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    messages = set()
    for spec in (str(tiny_model_dir), str(tmp_path / "missing"), "/etc/passwd", "~/.ssh/id_rsa", "a/../../b"):
        with pytest.raises(InputError) as info:
            maps_inputs.model_spec(spec, "smollm2-135m-instruct")
        messages.add(str(info.value).replace(maps_inputs.shown(spec), "<spec>"))
    assert len(messages) == 1 and maps_inputs.PUBLIC_MODEL_HINT in messages.pop()
    # A hub-shaped name that is a folder here is refused with the very same words.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "model").mkdir(parents=True)
    with pytest.raises(InputError, match="cannot be used here"):
        maps_inputs.model_spec("owner/model", "smollm2-135m-instruct")
    with pytest.raises(InputError, match="cannot be used here"):
        maps_inputs.encoder_spec(str(tiny_model_dir), "clip")
    monkeypatch.delenv("MREPE_PUBLIC")
    assert maps_inputs.model_spec(str(tiny_model_dir), "x") == str(tiny_model_dir)


def test_handler_errors_are_one_clear_line(caplog):
    with caplog.at_level("INFO", logger="mrepe_ui.maps"):
        with pytest.raises(gr.Error) as info:
            maps_scan.scan_plan_view("x" * 100_000, "", 6, 6, 5, 8, 1)
    assert "Unknown preset that name" in str(info.value) and len(str(info.value)) < 300
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    with pytest.raises(gr.Error, match="r_e must be a finite number"):
        maps_handlers.move_points(math.nan, None)
    with pytest.raises(gr.Error, match="Layer must be between"):
        list(maps_handlers.redraw_map(10**9, "pca", ["eval"], True, None))
    with pytest.raises(gr.Error, match="Draw the map first"):
        list(maps_handlers.redraw_map(1, "pca", ["eval"], True, None))


def test_scan_plan_says_rows_cap_and_time_before_starting(monkeypatch):
    text = maps_scan.scan_plan_view("harmless-smollm2", "", 6, 6, 5, 8, 1)
    assert "5 windows × 5 r_e × (8 behaviour prompts + 15 questions) = 115 rows" not in text  # 15 subjects
    assert "= 815 rows" in text and f"allows {limits().scan_rows:,} rows" in text
    assert "Estimated time:" in text and "s/row" in text  # from the preset's stored timings at least
    over = maps_scan.scan_plan_view("harmless-smollm2", "", 6, 3, 21, 200, 100)
    assert "Over the cap" in over
    with pytest.raises(gr.Error, match="Window width must be between 1 and 1024"):
        maps_scan.scan_plan_view("harmless-smollm2", "", 10**12, 6, 5, 8, 1)
    with pytest.raises(gr.Error, match="would evaluate"):
        next(maps_scan.scan_layers_view("harmless-smollm2", "", 6, 3, 21, 200, 100))
