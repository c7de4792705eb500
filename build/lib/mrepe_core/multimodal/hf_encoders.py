"""The transformers backends: ``CLIPEncoder`` (images + texts) and ``CLAPEncoder`` (audio + texts).

Both load only safetensors weights from a local folder (``encoders.load_encoder`` turns a hub id
into the cached snapshot folder first) and never run remote code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .attention import attention_bias
from .encoder_base import (
    BaseEncoder,
    ConceptAttention,
    EncoderLoadError,
    UnsupportedModality,
    batches,
    default_layers,
    normalise,
    relevance_mask,
)
from .media import CLAP_SAMPLE_RATE


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

    @property
    def text_window(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings) - 2  # start and end tokens

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
            for chunk in batches(list(texts)):
                enc = self._text_inputs(chunk)
                if attention is None or attention.strength == 0.0:
                    feats = self.model.get_text_features(**enc).pooler_output
                else:
                    tokens, valid = self.text_token_states(chunk)
                    keys = relevance_mask(tokens, valid, attention.direction, attention.top_fraction)
                    layers = self.model.text_model.encoder.layers
                    with attention_bias(
                        layers, keys, attention.strength, default_layers(len(layers), attention.layers)
                    ):
                        feats = self.model.get_text_features(**enc).pooler_output
                out.append(normalise(feats))
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
            for chunk in batches(list(images)):
                pixels = self.pixel_values(chunk)
                if attention is None or attention.strength == 0.0:
                    feats = self.model.get_image_features(pixel_values=pixels).pooler_output
                else:
                    tokens = self.patch_token_states(pixels)
                    valid = torch.ones(tokens.shape[:2], dtype=torch.bool)
                    valid[:, 0] = False  # the CLS token is the query we steer, not a patch
                    keys = relevance_mask(tokens, valid, attention.direction, attention.top_fraction)
                    layers = self.model.vision_model.encoder.layers
                    with attention_bias(
                        layers, keys, attention.strength, default_layers(len(layers), attention.layers)
                    ):
                        feats = self.model.get_image_features(pixel_values=pixels).pooler_output
                out.append(normalise(feats))
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

    @property
    def text_window(self) -> int:
        # RoBERTa-style position ids start after the padding index; two more for <s> and </s>.
        config = self.model.config.text_config
        return int(config.max_position_embeddings) - int(getattr(config, "pad_token_id", 1) or 0) - 3

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for CLIP encoders only.")
        out = []
        with self.lock:
            for chunk in batches(list(texts)):
                enc = self.processor(text=list(chunk), return_tensors="pt", padding=True, truncation=True)
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                out.append(normalise(self.model.get_text_features(**enc).pooler_output))
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
            for chunk in batches(clips):
                enc = self.processor(audio=list(chunk), sampling_rate=self.sample_rate, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_features", "is_longer")}
                out.append(normalise(self.model.get_audio_features(**enc).pooler_output))
        return torch.cat(out)
