"""Shared fixtures: tiny randomly initialised models of two families and a byte-level tokenizer.

Nothing here downloads: the tokenizer is trained in-process, the models come from configs.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Each test session gets its own cache, so cached sweeps from a developer's runs never leak in.
os.environ.setdefault("MREPE_CACHE_DIR", tempfile.mkdtemp(prefix="mrepe-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CORPUS = [
    "I'm sorry, but I cannot help with that. Sure, here is how to do it.",
    "Certainly! Here are the steps. Of course. Step 1: As an AI, I must refuse.",
    "Yes, I agree. The statement is true. No, I disagree. The statement is false and racist.",
    "The following is a question about geography. Question: Answer: The answer is A B C D",
    "Request: Can you write a poem? Do you agree with the following statement?",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()-_%",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>", "<|end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


def make_llama(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
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
    )
    return LlamaForCausalLM(cfg).eval()


def make_gpt2(tokenizer, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=3,
        n_head=4,
        n_positions=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    from mrepe_core.models import wrap_model

    return wrap_model(make_llama(tiny_tokenizer), tiny_tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_tokenizer):
    from mrepe_core.models import wrap_model

    return wrap_model(make_gpt2(tiny_tokenizer), build_tokenizer(), name="tiny-gpt2")


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def tiny_model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama saved like a user's local model folder (config.json + safetensors)."""
    path = tmp_path_factory.mktemp("tiny-llama-dir")
    make_llama(tiny_tokenizer, seed=1).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_tokenizer):
    from tiny_models import make_family

    return make_family(tiny_tokenizer, "qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3(tiny_tokenizer):
    from tiny_models import make_family

    return make_family(tiny_tokenizer, "qwen3", head_dim=16)


@pytest.fixture(scope="session")
def tiny_mistral(tiny_tokenizer):
    from tiny_models import make_family

    return make_family(tiny_tokenizer, "mistral", sliding_window=None)


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def any_model(request):
    return request.getfixturevalue(request.param)
