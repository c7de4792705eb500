"""The optional open_clip backend (needs ``open_clip_torch`` and torchvision): 'MODEL@weights.safetensors'."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .encoder_base import BaseEncoder, ConceptAttention, EncoderLoadError, UnsupportedModality, batches, normalise


class OpenCLIPEncoder(BaseEncoder):
    """open_clip model (optional: needs ``open_clip_torch`` and torchvision) from local safetensors."""

    kind = "open_clip"
    modalities = frozenset({"image", "text"})

    def __init__(self, model, preprocess, tokenizer, name: str, source: str, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.clip_tokenizer = tokenizer  # open_clip's own callable, not a transformers tokenizer
        with torch.inference_mode():
            dim = int(self.model.encode_text(tokenizer(["a"]).to(device)).shape[-1])
        super().__init__(name, source, dim, float(self.model.logit_scale.detach().exp()), device)

    @classmethod
    def from_file(cls, model_name: str, weights: Path, spec: str, device: str = "cpu") -> OpenCLIPEncoder:
        """``weights``: a checked local .safetensors file (``encoders.load_encoder`` applies the access rules)."""
        try:
            import open_clip
        except ImportError as exc:
            raise EncoderLoadError(
                f"open_clip cannot be imported ({type(exc).__name__}). It needs torchvision; install both "
                "(pip install open_clip_torch torchvision) or use the transformers CLIP backend."
            ) from exc
        from safetensors.torch import load_file

        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        model.load_state_dict(load_file(str(weights)))
        return cls(model, preprocess, open_clip.get_tokenizer(model_name), model_name, spec, device)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for transformers CLIP only.")
        with self.lock:
            return torch.cat(
                [
                    normalise(self.model.encode_text(self.clip_tokenizer(list(c)).to(self.device)))
                    for c in batches(list(texts))
                ]
            )

    @torch.inference_mode()
    def embed_image(self, images: Sequence, attention: ConceptAttention | None = None) -> torch.Tensor:
        if attention is not None and attention.strength != 0.0:
            raise UnsupportedModality("The attention intervention is implemented for transformers CLIP only.")
        with self.lock:
            return torch.cat(
                [
                    normalise(self.model.encode_image(torch.stack([self.preprocess(im) for im in c]).to(self.device)))
                    for c in batches(list(images))
                ]
            )
