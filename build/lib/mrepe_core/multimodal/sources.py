"""Where model weights may be read from, for a server shared by strangers.

A weights field (CLIP, CLAP, language model) takes a Hugging Face id or a local path. On a public
deployment (``limits.public_deployment()``: a Space, or ``MREPE_PUBLIC=1``) a local path is accepted
only inside the folders listed in ``MREPE_MODEL_DIRS`` (colon-separated), after resolving ``~``,
``..`` and symlinks; and no message says whether a path outside them, or an unusable one inside
them, exists. Whether something is a path or a hub id is decided by its spelling there, never by
looking at the disk. On a private machine any local folder works and messages say exactly what
is wrong with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..hub import HubError, fetch_snapshot, is_hub_id
from ..limits import public_deployment

MODEL_DIRS_ENV = "MREPE_MODEL_DIRS"
MAX_SPEC_CHARS = 300


class SourceError(ValueError):
    """A weights spec is not allowed or cannot be served; the message says what to give instead."""


def allowed_dirs() -> list[Path]:
    """The resolved folders of ``MREPE_MODEL_DIRS`` (empty: no local path on a public deployment)."""
    raw = os.environ.get(MODEL_DIRS_ENV, "")
    return [Path(os.path.expanduser(p.strip())).resolve() for p in raw.split(":") if p.strip()]


def _allowed_note() -> str:
    dirs = allowed_dirs()
    if not dirs:
        return "This public server accepts Hugging Face ids only (no local paths)."
    return "This public server accepts Hugging Face ids, or folders under " + ", ".join(str(d) for d in dirs) + "."


def refused(spec: str, what: str) -> SourceError:
    """The one message for any local path a public server will not use (says nothing about the disk)."""
    return SourceError(f"{spec!r} cannot be used for {what}. {_allowed_note()}")


def is_local_spec(spec: str) -> bool:
    """Path spelling (public deployment), or, on a private machine, also anything that exists on disk."""
    if not is_hub_id(spec):
        return True
    return not public_deployment() and Path(os.path.expanduser(spec)).exists()


def local_path(spec: str, what: str) -> Path:
    """The resolved path of a local spec. Public deployment: inside ``MREPE_MODEL_DIRS`` or refused."""
    try:
        resolved = Path(os.path.expanduser(spec)).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        raise refused(spec, what) from None
    if public_deployment() and not any(resolved.is_relative_to(root) for root in allowed_dirs()):
        raise refused(spec, what)
    return resolved


def check_spec_text(spec, what: str) -> str:
    """A weights spec as text: a string, no control characters, not absurdly long."""
    if spec is None:
        return ""
    if not isinstance(spec, str):
        raise SourceError(f"The {what} field must be text.")
    spec = spec.strip()
    if len(spec) > MAX_SPEC_CHARS:
        raise SourceError(f"The {what} field is {len(spec):,} characters; give a hub id or a path under 300.")
    if any(ord(c) < 32 for c in spec) or any(0xD800 <= ord(c) <= 0xDFFF for c in spec):
        raise SourceError(f"The {what} field contains control or invalid characters; retype it.")
    return spec


def weights_folder(spec: str, what: str, patterns=None) -> tuple[Path, bool]:
    """(folder, from_hub) for a spec: a local path under the access rules, or a hub id's snapshot."""
    if is_local_spec(spec):
        return local_path(spec, what), False
    try:
        folder = fetch_snapshot(spec, what, patterns) if patterns else fetch_snapshot(spec, what)
    except HubError as exc:
        raise SourceError(str(exc)) from None
    return folder, True


def load_language_model(spec: str, device: str = "auto"):
    """``models.load_model`` behind the access rules: the embedded default, a hub id (cache first,
    fast failure when the hub is unreachable), or a local folder / .gguf file allowed here."""
    from ..model_specs import _ALIASES, DEFAULT_MODEL, ModelLoadError
    from ..models import load_model

    spec = check_spec_text(spec, "language model")
    if not spec or spec.lower() in _ALIASES:
        return load_model(DEFAULT_MODEL, device=device)
    folder, from_hub = weights_folder(spec, "the language model")
    try:
        return load_model(str(folder), device=device)
    except ModelLoadError as exc:
        if public_deployment() and not from_hub:
            raise refused(spec, "the language model") from None
        raise SourceError(str(exc).replace(str(folder), spec)) from None
