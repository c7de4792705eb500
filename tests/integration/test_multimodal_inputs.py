"""The Multimodal handlers as public endpoints: token caps, ranges, types, choices, clear messages."""

from __future__ import annotations

import logging
import math
import re
import time

import gradio as gr
import pytest
from multimodal_tiny import one_torch_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core.multimodal.encoders import ENV_VARS, clear_encoder_cache
from mrepe_ui import multimodal_lm
from mrepe_ui import multimodal_tab as tab

LONG = 50_000 * "a"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for var in (*ENV_VARS.values(), "SPACE_ID", "MREPE_PUBLIC", "MREPE_MODEL_DIRS"):
        monkeypatch.delenv(var, raising=False)
    clear_encoder_cache()
    yield
    clear_encoder_cache()


def refused(fn, *args, match: str):
    with pytest.raises(gr.Error) as info:
        fn(*args)
    message = info.value.message
    assert "Traceback" not in message and 'File "' not in message
    assert re.search(match, message), message
    return message


def attention_args(spec, **over):
    args = dict(model_spec=spec, prompt=tab.ATTENTION_EXAMPLE[0], span=tab.ATTENTION_EXAMPLE[1], strength=1.0,
                layers="", max_new_tokens=4, use_chat=True)  # fmt: skip
    args.update(over)
    return list(args.values())


def scr_args(spec, **over):
    args = dict(model_spec=spec, n=2, instruction="Refuse harmful requests.", strength=2.0, tokens=4)
    args.update(over)
    return list(args.values())


def patch_args(spec, **over):
    first = tab.PATCHING_PRESETS["fact recall (Paris vs Rome)"]
    args = dict(model_spec=spec, positive=first[0], negative=first[1], aligned=first[2], misaligned=first[3],
                position="last", use_chat=True)  # fmt: skip
    args.update(over)
    return list(args.values())


def test_huge_texts_are_refused_before_the_model_loads(tiny_model_dir):
    spec = str(tiny_model_dir)
    start = time.perf_counter()
    refused(
        tab.run_scr,
        *scr_args(spec, instruction=LONG),
        match=r"Safety instruction is 50,000 characters; the limit is 128 tokens",
    )
    refused(
        tab.run_patching,
        *patch_args(spec, positive=LONG),
        match=r"Concept-positive prompt is 50,000 characters; the limit is 128",
    )
    refused(
        tab.run_lm_attention, *attention_args(spec, prompt=LONG), match=r"Prompt is 50,000 characters; the limit is 512"
    )
    refused(
        tab.run_patching,
        *patch_args(spec, aligned="x|" * 40),
        match=r"Aligned answer starts.*40 answer starts; the limit is 16",
    )
    assert time.perf_counter() - start < 1.0  # no tokenising of 50,000 characters, no model call


def test_texts_are_capped_in_tokens_of_the_models_tokenizer(tiny_model_dir):
    spec = str(tiny_model_dir)
    words = " ".join(f"w{i}" for i in range(300))  # under the character pre-check, over the token cap
    refused(
        tab.run_scr,
        *scr_args(spec, instruction=words[:2000]),
        match=r"Safety instruction is [\d,]+ tokens; the limit is 128\. Shorten it\.",
    )
    refused(
        tab.run_patching,
        *patch_args(spec, negative=words[:2000]),
        match=r"Concept-negative prompt is [\d,]+ tokens; the limit is 128",
    )
    refused(
        tab.run_lm_attention,
        *attention_args(spec, prompt=(words + " ") * 4),
        match=r"Prompt is [\d,]+ tokens; the limit is 512",
    )


@pytest.mark.parametrize(
    "over, match",
    [
        (dict(prompt="bad \ud800 text"), "not valid Unicode"),
        (dict(prompt="nul \x00 byte"), "NUL"),
        (dict(prompt=["a", "list"]), "Prompt must be text"),
        (dict(prompt=""), "Prompt is empty"),
        (dict(span="not in it"), "does not occur in the prompt"),
        (dict(strength=math.nan), "Strength must be a number between -6 and 6"),
        (dict(strength="inf"), "Strength must be a number between -6 and 6"),
        (dict(strength=1e9), "between -6 and 6; got 1e\\+09"),
        (dict(max_new_tokens=10**6), "New tokens must be a number between 1 and 96"),
        (dict(max_new_tokens=2.5), "New tokens must be a whole number"),
        (dict(use_chat="yes"), "Chat template must be true or false"),
        (dict(layers="abc"), "Layers must be blank.*layers 0-3"),
        (dict(layers="99"), "Layers must be blank"),
    ],
)
def test_attention_panel_validates_every_value(tiny_model_dir, over, match):
    refused(tab.run_lm_attention, *attention_args(str(tiny_model_dir), **over), match=match)


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (tab.run_scr, dict(n=10**9), "Harmful requests must be a number between 1 and 64"),
        (tab.run_scr, dict(n=True), "Harmful requests must be a number"),
        (tab.run_scr, dict(strength=-1), "Bias on the instruction must be a number between 0 and 6"),
        (tab.run_scr, dict(instruction=" "), "Safety instruction is empty"),
        (tab.run_patching, dict(position="middle"), "Patched positions must be one of 'last', 'all'"),
        (tab.run_patching, dict(misaligned="|"), "give at least one answer start"),
        (tab.run_patching, dict(model_spec=12), "language model field must be text"),
    ],
)
def test_scr_and_patching_validate_every_value(tiny_model_dir, fn, args, match):
    make = scr_args if fn is tab.run_scr else patch_args
    refused(fn, *make(str(tiny_model_dir), **args), match=match)


def test_small_handlers_validate_their_choices():
    refused(tab.patching_preset, "no such example", match="Example must be one of")
    refused(tab.modality_changed, "video", match="Modality must be one of 'image', 'text', 'audio'")
    refused(tab.source_changed, None, match="Concept must be one of")
    refused(tab.use_layers, {"a": 1}, match="Run the patching first")
    refused(tab.redraw, None, math.inf, match="alpha must be a number between -4 and 4")
    refused(tab.run_alignment, "x", 10, "", "", match="Pairs must be one of")
    refused(
        tab.run_alignment,
        list(tab.ALIGNMENT_PAIRS)[0],
        10**6,
        "",
        "",
        match="Epochs must be a number between 10 and 400",
    )


def analysis(clip_dir, **over):
    args = dict(modality="text", media=None, text="", source="upload", builtin="", pos_files=None, neg_files=None,
                pos_texts="a dog\\na puppy", neg_texts="a cat\\na kitten", pos_label="dog", neg_label="cat",
                mode="direct", strength=2.0, alpha=0.0, clip=str(clip_dir), clap="")  # fmt: skip
    args.update(over)
    args["pos_texts"], args["neg_texts"] = (
        str(args["pos_texts"]).replace("\\n", "\n"),
        str(args["neg_texts"]).replace("\\n", "\n"),
    )
    return list(args.values())


def test_concept_texts_are_capped_in_count_and_in_the_encoders_tokens(clip_dir, tmp_path):
    session, *_ = tab.run_analysis(*analysis(clip_dir))
    assert session.analysis.concept.positive_label == "dog"
    window = 62  # the tiny CLIP reads 64 positions: start, 62 tokens, end
    refused(
        tab.run_analysis, *analysis(clip_dir, text="word " * 40), match=f"Text is \\d+ tokens; the limit is {window}"
    )
    refused(
        tab.run_analysis,
        *analysis(clip_dir, pos_texts="word " * 20),
        match=f"c\\+ texts line 1 is \\d+ tokens; the limit is {window}",
    )
    many = "\\n".join(f"text {i}" for i in range(100))
    refused(tab.run_analysis, *analysis(clip_dir, neg_texts=many), match="c- texts has 100 lines; the limit is 64")
    refused(tab.run_analysis, *analysis(clip_dir, pos_label="x" * 2000), match="c\\+ label is .* the limit is 64")
    refused(tab.run_analysis, *analysis(clip_dir, modality="image", pos_files=[str(tmp_path / "f.png")] * 40),
            match="c\\+ examples: 40 files; the limit is 32")  # fmt: skip
    refused(tab.run_analysis, *analysis(clip_dir, mode="attention", modality="audio"), match="CLIP only")
    refused(tab.run_analysis, *analysis(clip_dir, strength=math.nan), match="Attention strength must be a number")


def test_a_library_error_reaches_the_client_only_as_a_reference(tiny_model_dir, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ValueError("internal detail of some library")

    monkeypatch.setattr(multimodal_lm, "lm_attention_intervention", broken)
    with caplog.at_level(logging.INFO, logger="mrepe_ui.multimodal"):
        message = refused(
            tab.run_lm_attention,
            *attention_args(str(tiny_model_dir)),
            match="failed unexpectedly \\(reference [0-9a-f]{8}",
        )
        assert "internal detail" not in message
        refused(tab.run_scr, *scr_args(str(tiny_model_dir), n=-3), match="Harmful requests")
    refusal = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusal and all("\n" not in r.getMessage() for r in refusal)


def test_public_deployment_refuses_server_paths_in_the_model_field(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/mrepe")
    for spec in ("/etc", "~/.ssh", "/etc/shadow", "/no/such"):
        message = refused(tab.run_scr, *scr_args(spec), match="cannot be used for the language model")
        assert "exist" not in message and "is a file" not in message
