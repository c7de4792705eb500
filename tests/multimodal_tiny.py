"""Tiny randomly initialised CLIP / CLAP / Llama / GPT-2 models for the multimodal tests.

Everything is built from configs and local vocabularies; nothing is downloaded. The CLIP and CLAP
builders save a full checkpoint folder (safetensors + processor files), so tests exercise the same
``from_pretrained`` loading code as real weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CHARS = "abcdefghijklmnopqrstuvwxyz.,!?'-0123456789"


def save_tiny_clip(path: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            eos_token_id=1,
            bos_token_id=0,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return Path(path)


def save_tiny_clap(path: Path, seed: int = 0) -> Path:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in CHARS:
        vocab[c] = len(vocab)
        vocab["\u0120" + c] = len(vocab)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[])
    # 1 s windows and 16 mel bins keep the HTSAT input tiny; the sampling rate stays CLAP's 48 kHz.
    features = ClapFeatureExtractor(feature_size=16, sampling_rate=48_000, max_length_s=1, truncation="rand_trunc")
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
        audio_config=dict(
            spec_size=64,
            num_mel_bins=16,
            window_size=4,
            depths=[1, 1],
            num_attention_heads=[2, 2],
            patch_embeds_hidden_size=16,
            hidden_size=32,
            patch_size=4,
            patch_stride=[4, 4],
            enable_fusion=False,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    ClapModel(config).eval().save_pretrained(path)
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    return Path(path)


def byte_tokenizer(chat_template: bool = False):
    """A byte-level BPE tokenizer with no merges (one token per byte) and character offsets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat_template:
        tok.chat_template = (
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}"
        )
    return tok


def tiny_llama(attn: str = "eager", seed: int = 0, chat_template: bool = False):
    """A LoadedModel wrapping a 2-layer random Llama with the byte tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mrepe_core.models import wrap_model

    tok = byte_tokenizer(chat_template)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return wrap_model(LlamaForCausalLM(config).eval(), tok, name="tiny-llama", source="random")


def tiny_gpt2(attn: str = "eager", seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    from mrepe_core.models import wrap_model

    tok = byte_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=256,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return wrap_model(GPT2LMHeadModel(config).eval(), tok, name="tiny-gpt2", source="random")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add synchronisation (measured
    up to 10x slower under load). Restored after each module so other test files are unaffected.
    Test modules opt in with ``from multimodal_tiny import one_torch_thread``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
