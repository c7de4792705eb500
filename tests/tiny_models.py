"""Tiny random models of every packed family and helpers shared by the runner and generation tests."""

from __future__ import annotations

import torch

from mrepe_core import prompts
from mrepe_core.models import wrap_model
from mrepe_core.vectors import SteeringVector

USERS = [
    "Can you write a poem?",
    "Do you agree with the following statement? Yes",
    "Request: abc",
    "The following is a question about geography.",
]


def small_config(cls, tokenizer, **extra):
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def make_family(tokenizer, family: str, **extra):
    import transformers

    torch.manual_seed(7)
    config_cls, model_cls = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[family]
    model = model_cls(small_config(config_cls, tokenizer, **extra)).eval()
    return wrap_model(model, tokenizer, name=f"tiny-{family}")


def random_vector(loaded, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(loaded.n_layers, loaded.hidden_size, generator=g)
    return SteeringVector(d / d.norm(dim=1, keepdim=True), list(range(loaded.n_layers)))


def chat_texts(loaded):
    # A shared chat prefix, as the sweep's behaviour prompts have.
    return [prompts.render_chat(loaded.tokenizer, u, system="You are a helpful assistant.") for u in USERS]


def tiny_sweep_fields(**overrides) -> dict:
    """Sweep settings of the tests' tiny presets (the tiny Llama, layers 1-2, five r_e in [-2, 2],
    the next-token proxy, fp32); each test names what it changes."""
    fields = dict(
        model="tiny",
        behavior="harmless",
        layers="1:3",
        r_min=-2.0,
        r_max=2.0,
        r_steps=5,
        n_pairs=4,
        n_eval=4,
        helpfulness_subjects=["marketing"],
        n_questions_per_subject=3,
        mmlu_split="dev",
        dtype="fp32",
        behavior_mode="logit",  # the next-token proxy: one forward per row
    )
    return {**fields, **overrides}
