"""Joint-embedding encoders: one interface over CLIP (image + text), CLAP (audio + text) and open_clip.

All ``embed_*`` methods return L2-normalised float32 tensors ``[n, dimensions]`` on the CPU, so
cosine similarity is a dot product and concept directions (eq. 6) live on the unit sphere's
tangent neighbourhood. Weights load only from safetensors; without weights, loading raises
:class:`WeightsMissing` whose message says how to supply them. Nothing is ever faked.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .attention import attention_bias
from .media import CLAP_SAMPLE_RATE

ENV_VARS = {"clip": "MREPE_CLIP_MODEL", "clap": "MREPE_CLAP_MODEL", "open_clip": "MREPE_OPEN_CLIP_MODEL"}
EXAMPLE_IDS = {"clip": "openai/clip-vit-base-patch32", "clap": "laion/clap-htsat-unfused"}
MODEL_TYPES = {"clip": "clip", "clap": "clap"}
BATCH_SIZE = 16


class EncoderLoadError(ValueError):
    """The encoder spec points at something that cannot be used; the message says what to fix."""


class WeightsMissing(EncoderLoadError):
    """No weights are available for an encoder; the message says how to supply them."""


class UnsupportedModality(ValueError):
    """The encoder does not embed this modality (e.g. audio with CLIP)."""


def how_to_supply(kind: str) -> str:
    """Plain instructions for supplying encoder weights (shown verbatim in the dashboard)."""
    if kind == "open_clip":
        return (
            "open_clip weights: set MREPE_OPEN_CLIP_MODEL (or the path field) to "
            "'MODEL_NAME@/path/to/open_clip_model.safetensors', e.g. 'ViT-B-32@/models/vit-b-32.safetensors'. "
            "open_clip itself needs torchvision (pip install open_clip_torch torchvision)."
        )
    env, example = ENV_VARS[kind], EXAMPLE_IDS[kind]
    return (
        f"No {kind.upper()} weights are loaded, so nothing is computed. Supply them in one of two ways: "
        f"(1) type the path of a local folder saved with save_pretrained (config.json, model.safetensors, "
        f"tokenizer and preprocessor files) into the {kind.upper()} path field - on a machine with network "
        f"access: `hf download {example} --local-dir ./{kind}-weights` - or a Hugging Face id such as "
        f"'{example}' if this machine can reach the hub; (2) set the environment variable {env} to that "
        f"path or id before starting the app. Only safetensors weights are loaded."
        + (
            " An open_clip model also works in the CLIP field as 'MODEL_NAME@/path/weights.safetensors' "
            "(needs open_clip_torch and torchvision)."
            if kind == "clip"
            else ""
        )
    )


@dataclass(frozen=True)
class ConceptAttention:
    """Eq. 7 inside an encoder: bias every query toward the keys most aligned with a concept.

    The relevant keys are the ``top_fraction`` of patch (or text) tokens whose projected final
    state has the highest cosine with ``direction``; ``strength`` is the post-scaling logit bias.
    ``layers`` defaults to the second half of the encoder, where tokens carry semantic content.
    """

    direction: torch.Tensor
    strength: float
    top_fraction: float = 0.25
    layers: Sequence[int] | str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError("top_fraction must be in (0, 1].")


@runtime_checkable
class Encoder(Protocol):
    kind: str
    name: str
    dimensions: int
    modalities: frozenset[str]
    logit_scale: float

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor: ...

    def embed_image(self, images: Sequence) -> torch.Tensor: ...

    def embed_audio(self, waveforms: Sequence[np.ndarray]) -> torch.Tensor: ...


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.detach().float().cpu(), dim=-1)


def _batches(items: Sequence, size: int = BATCH_SIZE):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BaseEncoder:
    """Shared plumbing: modality dispatch, batching, a lock so one request uses the model at a time."""

    kind = ""
    modalities: frozenset[str] = frozenset()

    def __init__(self, name: str, source: str, dimensions: int, logit_scale: float, device: torch.device):
        self.name = name
        self.source = source
        self.dimensions = int(dimensions)
        self.logit_scale = float(logit_scale)
        self.device = device
        self.lock = threading.RLock()
        self.fingerprint = hashlib.sha256(f"{self.kind}|{name}|{source}".encode()).hexdigest()[:16]

    def embed(self, modality: str, items: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        if modality not in self.modalities:
            hint = {"audio": "CLAP", "image": "CLIP"}.get(modality)
            raise UnsupportedModality(
                f"{self.name} embeds {', '.join(sorted(self.modalities))}, not {modality}"
                + (f"; load a {hint} model for {modality}." if hint else ".")
            )
        if len(items) == 0:
            return torch.zeros(0, self.dimensions)
        fn = {"text": self.embed_text, "image": self.embed_image, "audio": self.embed_audio}[modality]
        return fn(items, attention=attention) if attention is not None else fn(items)

    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed text.")

    def embed_image(self, images: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed images; load a CLIP model for images.")

    def embed_audio(self, waveforms: Sequence[np.ndarray], attention: ConceptAttention | None = None) -> torch.Tensor:
        raise UnsupportedModality(f"{self.name} does not embed audio; load a CLAP model for audio.")

    def describe(self) -> str:
        return (
            f"{self.kind.upper()} {self.name}: {', '.join(sorted(self.modalities))} -> "
            f"{self.dimensions}-d joint space on {self.device}"
        )


def _relevance_mask(
    tokens: torch.Tensor, valid: torch.Tensor, direction: torch.Tensor, fraction: float
) -> torch.Tensor:
    """Top ``fraction`` of the valid tokens of each row by cosine with ``direction``."""
    sims = _normalise(tokens) @ torch.nn.functional.normalize(direction.float(), dim=0)
    sims = sims.masked_fill(~valid, float("-inf"))
    mask = torch.zeros_like(valid)
    for row in range(sims.shape[0]):
        n_valid = int(valid[row].sum())
        k = max(1, int(round(fraction * n_valid)))
        mask[row, sims[row].topk(k).indices] = True
    return mask & valid


def _default_layers(n_layers: int, layers) -> Sequence[int] | str:
    return layers if layers is not None else list(range(n_layers // 2, n_layers))


class CLIPEncoder(BaseEncoder):
    """transformers ``CLIPModel`` + ``CLIPProcessor``: images and texts into one space."""

    kind = "clip"
    modalities = frozenset({"image", "text"})

    def __init__(self, model, processor, name: str, source: str = "", device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.model = model.to(device).eval()
        self.processor = processor
        super().__init__(
            name, source or name, model.config.projection_dim, float(model.logit_scale.detach().exp()), device
        )

    @classmethod
    def from_pretrained(cls, location: str, name: str | None = None, device: str = "cpu") -> CLIPEncoder:
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(location, use_safetensors=True, trust_remote_code=False)
        processor = CLIPProcessor.from_pretrained(location, trust_remote_code=False)
        return cls(model, processor, name or location, location, device)

    # Text -----------------------------------------------------------------------------------
    def _text_inputs(self, texts: Sequence[str]) -> dict:
        enc = self.processor(
            text=list(texts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    @torch.inference_mode()
    def text_token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected final state of every text token ``[n, T, d]`` and which tokens are real words."""
        enc = self._text_inputs(texts)
        out = self.model.text_model(**enc)
        tokens = self.model.text_projection(out.last_hidden_state)
        valid = enc["attention_mask"].bool().clone()
        valid[:, 0] = False  # start-of-text token carries no content
        ids = enc["input_ids"]
        eos = self.model.config.text_config.eos_token_id
        valid &= ids != eos
        return tokens.float().cpu(), valid.cpu()

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        out = []
        with self.lock:
            for chunk in _batches(list(texts)):
                enc = self._text_inputs(chunk)
                if attention is None or attention.strength == 0.0:
                    feats = self.model.get_text_features(**enc).pooler_output
                else:
                    tokens, valid = self.text_token_states(chunk)
                    keys = _relevance_mask(tokens, valid, attention.direction, attention.top_fraction)
                    layers = self.model.text_model.encoder.layers
                    with attention_bias(
                        layers, keys, attention.strength, _default_layers(len(layers), attention.layers)
                    ):
                        feats = self.model.get_text_features(**enc).pooler_output
                out.append(_normalise(feats))
        return torch.cat(out)

    # Images ---------------------------------------------------------------------------------
    def pixel_values(self, images: Sequence) -> torch.Tensor:
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)

    @property
    def pixel_mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        proc = self.processor.image_processor
        mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, -1, 1, 1)
        return mean.to(self.device), std.to(self.device)

    def image_features_from_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features, differentiable (used by the robustness attack)."""
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    @torch.inference_mode()
    def patch_token_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Every vision token (CLS + patches) projected like the CLS token: ``[n, 1 + P, d]``."""
        out = self.model.vision_model(pixel_values=pixel_values)
        states = self.model.vision_model.post_layernorm(out.last_hidden_state)
        return self.model.visual_projection(states).float().cpu()

    @torch.inference_mode()
    def embed_image(self, images: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        out = []
        with self.lock:
            for chunk in _batches(list(images)):
                pixels = self.pixel_values(chunk)
                if attention is None or attention.strength == 0.0:
                    feats = self.model.get_image_features(pixel_values=pixels).pooler_output
                else:
                    tokens = self.patch_token_states(pixels)
                    valid = torch.ones(tokens.shape[:2], dtype=torch.bool)
                    valid[:, 0] = False  # the CLS token is the query we steer, not a patch
                    keys = _relevance_mask(tokens, valid, attention.direction, attention.top_fraction)
                    layers = self.model.vision_model.encoder.layers
                    with attention_bias(
                        layers, keys, attention.strength, _default_layers(len(layers), attention.layers)
                    ):
                        feats = self.model.get_image_features(pixel_values=pixels).pooler_output
                out.append(_normalise(feats))
        return torch.cat(out)


class CLAPEncoder(BaseEncoder):
    """transformers ``ClapModel`` + ``ClapProcessor``: audio (48 kHz mono) and texts into one space."""

    kind = "clap"
    modalities = frozenset({"audio", "text"})

    def __init__(self, model, processor, name: str, source: str = "", device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.model = model.to(device).eval()
        self.processor = processor
        fe = processor.feature_extractor
        if int(fe.sampling_rate) != CLAP_SAMPLE_RATE:
            raise EncoderLoadError(
                f"This CLAP feature extractor expects {fe.sampling_rate} Hz; MRepE decodes audio at "
                f"{CLAP_SAMPLE_RATE} Hz as the released CLAP checkpoints require."
            )
        self.sample_rate = CLAP_SAMPLE_RATE
        self.max_samples = int(fe.nb_max_samples)
        super().__init__(
            name, source or name, model.config.projection_dim, float(model.logit_scale_a.detach().exp()), device
        )

    @classmethod
    def from_pretrained(cls, location: str, name: str | None = None, device: str = "cpu") -> CLAPEncoder:
        from transformers import ClapModel, ClapProcessor

        model = ClapModel.from_pretrained(location, use_safetensors=True, trust_remote_code=False)
        processor = ClapProcessor.from_pretrained(location, trust_remote_code=False)
        return cls(model, processor, name or location, location, device)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for CLIP encoders only.")
        out = []
        with self.lock:
            for chunk in _batches(list(texts)):
                enc = self.processor(text=list(chunk), return_tensors="pt", padding=True, truncation=True)
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                out.append(_normalise(self.model.get_text_features(**enc).pooler_output))
        return torch.cat(out)

    @torch.inference_mode()
    def embed_audio(self, waveforms: Sequence[np.ndarray], attention: ConceptAttention | None = None) -> torch.Tensor:
        """Embed mono waveforms sampled at 48 kHz.

        Clips are cut to the feature extractor's window (10 s for the released models) from the
        start, so the extractor never picks a random crop and embeddings are reproducible.
        """
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for CLIP encoders only.")
        clips = []
        for w in waveforms:
            w = np.asarray(getattr(w, "waveform", w), dtype=np.float32)
            if w.ndim != 1 or w.size == 0:
                raise ValueError("Each audio clip must be a non-empty mono waveform (1-D array).")
            clips.append(w[: self.max_samples])
        out = []
        with self.lock:
            for chunk in _batches(clips):
                enc = self.processor(audio=list(chunk), sampling_rate=self.sample_rate, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_features", "is_longer")}
                out.append(_normalise(self.model.get_audio_features(**enc).pooler_output))
        return torch.cat(out)


class OpenCLIPEncoder(BaseEncoder):
    """open_clip model (optional: needs ``open_clip_torch`` and torchvision) from local safetensors."""

    kind = "open_clip"
    modalities = frozenset({"image", "text"})

    def __init__(self, model, preprocess, tokenizer, name: str, source: str, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        with torch.inference_mode():
            dim = int(self.model.encode_text(tokenizer(["a"]).to(device)).shape[-1])
        super().__init__(name, source, dim, float(self.model.logit_scale.detach().exp()), device)

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu") -> OpenCLIPEncoder:
        try:
            import open_clip
        except ImportError as exc:
            raise EncoderLoadError(
                f"open_clip cannot be imported ({exc}). It needs torchvision; install both "
                "(pip install open_clip_torch torchvision) or use the transformers CLIP backend."
            ) from exc
        if "@" not in spec:
            raise EncoderLoadError(how_to_supply("open_clip"))
        model_name, weights = spec.split("@", 1)
        path = Path(os.path.expanduser(weights))
        if path.suffix != ".safetensors" or not path.is_file():
            raise WeightsMissing(f"{weights} is not an existing .safetensors file. " + how_to_supply("open_clip"))
        from safetensors.torch import load_file

        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        model.load_state_dict(load_file(str(path)))
        return cls(model, preprocess, open_clip.get_tokenizer(model_name), model_name, spec, device)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for transformers CLIP only.")
        with self.lock:
            return torch.cat(
                [
                    _normalise(self.model.encode_text(self.tokenizer(list(c)).to(self.device)))
                    for c in _batches(list(texts))
                ]
            )

    @torch.inference_mode()
    def embed_image(self, images: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for transformers CLIP only.")
        with self.lock:
            return torch.cat(
                [
                    _normalise(self.model.encode_image(torch.stack([self.preprocess(im) for im in c]).to(self.device)))
                    for c in _batches(list(images))
                ]
            )


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


def resolve_encoder_spec(kind: str, spec: str | None = None) -> str:
    """The spec to load: the given one, else the environment variable; none -> ``WeightsMissing``."""
    if kind not in ENV_VARS:
        raise EncoderLoadError(f"Unknown encoder kind {kind!r}; use one of {', '.join(ENV_VARS)}.")
    spec = (spec or "").strip() or os.environ.get(ENV_VARS[kind], "").strip()
    if not spec:
        raise WeightsMissing(how_to_supply(kind))
    return spec


def _check_local_folder(kind: str, path: Path) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise WeightsMissing(f"{path} has no config.json. " + how_to_supply(kind))
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EncoderLoadError(f"{config} is not valid JSON ({exc}).") from exc
    if model_type != MODEL_TYPES[kind]:
        raise EncoderLoadError(
            f"{path} holds a {model_type!r} model, not {MODEL_TYPES[kind]!r}. Point the {kind.upper()} field "
            f"at a {kind.upper()} checkpoint."
        )
    if not any(path.glob("*.safetensors")):
        raise EncoderLoadError(
            f"{path} has no .safetensors weights. Only safetensors are loaded (no pickle); convert with "
            "model.save_pretrained(dir, safe_serialization=True)."
        )


_CACHE: dict[tuple[str, str, str], BaseEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(kind: str, spec: str | None = None, device: str = "cpu", use_cache: bool = True) -> BaseEncoder:
    """Load a CLIP / CLAP / open_clip encoder from a local folder, a hub id or the env variable."""
    spec = resolve_encoder_spec(kind, spec)
    if kind == "clip" and is_open_clip_spec(spec):
        kind = "open_clip"  # 'MODEL@weights.safetensors' in the CLIP field: the open_clip backend
    key = (kind, spec, str(device))
    with _CACHE_LOCK:
        if use_cache and key in _CACHE:
            return _CACHE[key]
        if kind == "open_clip":
            encoder: BaseEncoder = OpenCLIPEncoder.from_spec(spec, device)
        else:
            path = Path(os.path.expanduser(spec))
            if path.exists():
                if not path.is_dir():
                    raise EncoderLoadError(f"{spec} is a file; give the folder that holds config.json and the weights.")
                _check_local_folder(kind, path)
                location = str(path)
            elif spec.count("/") == 1 and " " not in spec and not spec.startswith((".", "/", "~")):
                location = spec
            else:
                raise WeightsMissing(f"{spec} does not exist. " + how_to_supply(kind))
            cls = CLIPEncoder if kind == "clip" else CLAPEncoder
            try:
                encoder = cls.from_pretrained(location, name=Path(spec).name if path.exists() else spec, device=device)
            except EncoderLoadError:
                raise
            except (OSError, ValueError, KeyError) as exc:
                raise WeightsMissing(
                    f"Could not load {spec!r} ({type(exc).__name__}: {exc}). " + how_to_supply(kind)
                ) from exc
        if use_cache:
            _CACHE[key] = encoder
        return encoder


def clear_encoder_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
