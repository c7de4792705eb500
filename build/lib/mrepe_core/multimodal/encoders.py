"""Loading joint-embedding encoders: CLIP (image + text), CLAP (audio + text) and open_clip, from a
local folder, a Hugging Face id or an environment variable, under the access rules of ``sources``.

Weights load only from safetensors; without weights, loading raises :class:`WeightsMissing` whose
message says how to supply them. Nothing is ever faked. On a public deployment the default ids
(``EXAMPLE_IDS``) load on first use without configuration. The classes live in ``encoder_base``,
``hf_encoders`` and ``open_clip_encoder`` and are re-exported here.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from ..limits import public_deployment
from .encoder_base import (  # noqa: F401  (re-exported: encoders is the public home of these)
    BATCH_SIZE,
    BaseEncoder,
    ConceptAttention,
    Encoder,
    EncoderLoadError,
    UnsupportedModality,
    WeightsMissing,
)
from .hf_encoders import CLAPEncoder, CLIPEncoder
from .open_clip_encoder import OpenCLIPEncoder
from .sources import SourceError, check_spec_text, local_path, refused, weights_folder

ENV_VARS = {"clip": "MREPE_CLIP_MODEL", "clap": "MREPE_CLAP_MODEL", "open_clip": "MREPE_OPEN_CLIP_MODEL"}
EXAMPLE_IDS = {"clip": "openai/clip-vit-base-patch32", "clap": "laion/clap-htsat-unfused"}
MODEL_TYPES = {"clip": "clip", "clap": "clap"}
_CLASSES: dict[str, type[CLIPEncoder] | type[CLAPEncoder]] = {"clip": CLIPEncoder, "clap": CLAPEncoder}


def how_to_supply(kind: str) -> str:
    """Short instructions for supplying encoder weights (shown verbatim in the dashboard)."""
    if kind == "open_clip":
        return (
            "open_clip weights: give 'MODEL_NAME@/path/to/weights.safetensors' "
            "(e.g. 'ViT-B-32@/models/vit.safetensors') "
            "in the CLIP field or MREPE_OPEN_CLIP_MODEL; open_clip needs open_clip_torch and torchvision."
        )
    name = kind.upper()
    return (
        f"No {name} weights are loaded. Give a Hugging Face id (e.g. '{EXAMPLE_IDS[kind]}') or a local folder "
        f"saved with save_pretrained in the {name} field, or set {ENV_VARS[kind]} before starting the app."
    )


def default_spec(kind: str) -> str:
    """The spec used when the field is blank: the environment variable, else (public deployment) the
    example hub id, else nothing."""
    env = os.environ.get(ENV_VARS.get(kind, ""), "").strip()
    if env:
        return env
    return EXAMPLE_IDS.get(kind, "") if public_deployment() else ""


def resolve_encoder_spec(kind: str, spec: str | None = None) -> str:
    """The spec to load: the given one, else ``default_spec``; none -> ``WeightsMissing``."""
    if kind not in ENV_VARS:
        raise EncoderLoadError(f"Unknown encoder kind {kind!r}; use one of {', '.join(ENV_VARS)}.")
    try:
        spec = check_spec_text(spec, f"{kind.upper()} weights") or default_spec(kind)
    except SourceError as exc:
        raise EncoderLoadError(str(exc)) from None
    if not spec:
        raise WeightsMissing(how_to_supply(kind))
    return spec


def is_open_clip_spec(spec: str) -> bool:
    """``MODEL_NAME@/path/weights.safetensors`` selects the optional open_clip backend."""
    name, _, weights = spec.partition("@")
    return bool(name) and weights.endswith(".safetensors") and "/" not in name


def open_clip_available() -> bool:
    try:
        import open_clip  # noqa: F401
    except ImportError:
        return False
    return True


def _folder_problem(kind: str, path: Path) -> str | None:
    """What keeps ``path`` from being a usable ``kind`` checkpoint folder (None: nothing)."""
    config = path / "config.json"
    if not path.exists():
        return f"{path} does not exist. " + how_to_supply(kind)
    if not path.is_dir():
        return f"{path} is not a folder; give the folder that holds config.json and the weights."
    if not config.is_file():
        return f"{path} has no config.json. " + how_to_supply(kind)
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return f"{config} is not a valid JSON object."
    if model_type != MODEL_TYPES[kind]:
        return f"{path} holds a {model_type!r} model, not {MODEL_TYPES[kind]!r}; give a {kind.upper()} checkpoint."
    if not any(path.glob("*.safetensors")):
        return (
            f"{path} has no .safetensors weights. Only safetensors are loaded (no pickle); convert with "
            "model.save_pretrained(dir, safe_serialization=True)."
        )
    return None


def _locate(kind: str, spec: str) -> tuple[str, str]:
    """(folder to load, display name) for a CLIP / CLAP spec, under the access rules."""
    what = f"{kind.upper()} weights"
    try:
        folder, from_hub = weights_folder(spec, what)
    except SourceError as exc:
        raise WeightsMissing(str(exc)) from None
    problem = _folder_problem(kind, folder)
    if problem is not None:
        if public_deployment() and not from_hub:
            raise WeightsMissing(str(refused(spec, what)))
        raise WeightsMissing(problem.replace(str(folder), spec))
    return str(folder), spec if from_hub else folder.name


def _open_clip(spec: str, device: str) -> OpenCLIPEncoder:
    model_name, _, weights = spec.partition("@")
    try:
        path = local_path(weights, "open_clip weights")
    except SourceError as exc:
        raise WeightsMissing(str(exc)) from None
    if path.suffix != ".safetensors" or not path.is_file():
        if public_deployment():
            raise WeightsMissing(str(refused(weights, "open_clip weights")))
        raise WeightsMissing(f"{weights} is not an existing .safetensors file. " + how_to_supply("open_clip"))
    return OpenCLIPEncoder.from_file(model_name, path, spec, device)


def max_cached_encoders() -> int:
    try:
        return max(1, int(os.environ.get("MREPE_MAX_ENCODERS", "2")))
    except ValueError:
        return 2


_CACHE: OrderedDict[tuple[str, str, str], BaseEncoder] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_LOAD_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}


def load_encoder(kind: str, spec: str | None = None, device: str = "cpu", use_cache: bool = True) -> BaseEncoder:
    """Load a CLIP / CLAP / open_clip encoder from a local folder, a hub id or the default spec.

    At most ``MREPE_MAX_ENCODERS`` (2) stay loaded; the least recently used one is dropped."""
    spec = resolve_encoder_spec(kind, spec)
    if kind == "clip" and is_open_clip_spec(spec):
        kind = "open_clip"  # 'MODEL@weights.safetensors' in the CLIP field: the open_clip backend
    key = (kind, spec, str(device))
    with _CACHE_LOCK:
        if use_cache and key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with load_lock:  # one load per spec at a time; other specs (and cache hits) do not wait for it
        with _CACHE_LOCK:
            if use_cache and key in _CACHE:
                return _CACHE[key]
        encoder = _load_uncached(kind, spec, device)
        if use_cache:
            with _CACHE_LOCK:
                _CACHE[key] = encoder
                while len(_CACHE) > max_cached_encoders():
                    _CACHE.popitem(last=False)
        return encoder


def _load_uncached(kind: str, spec: str, device: str) -> BaseEncoder:
    if kind == "open_clip":
        return _open_clip(spec, device)
    location, name = _locate(kind, spec)
    try:
        return _CLASSES[kind].from_pretrained(location, name=name, device=device)
    except EncoderLoadError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsMissing(f"Could not load {spec!r} ({type(exc).__name__}). " + how_to_supply(kind)) from exc


def loaded_encoder(kind: str, spec: str | None = None, device: str = "cpu") -> BaseEncoder | None:
    """The cached encoder for a spec, or None (never loads anything)."""
    try:
        spec = resolve_encoder_spec(kind, spec)
    except EncoderLoadError:
        return None
    if kind == "clip" and is_open_clip_spec(spec):
        kind = "open_clip"
    with _CACHE_LOCK:
        return _CACHE.get((kind, spec, str(device)))


def clear_encoder_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOAD_LOCKS.clear()
