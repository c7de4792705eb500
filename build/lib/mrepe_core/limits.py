"""Bounds on what one request may ask for, for a server shared by strangers (a public Space).

Every text a visitor sends is capped in tokens, not characters (2,000 astral-plane characters are
~8,000 tokens); every job that creates (item, r_e) rows is capped in rows, with its estimated time
shown before it starts. The caps are read from the environment so a private machine can raise
them (``MREPE_MAX_PROMPT_TOKENS=4096 make run``). Long jobs check a cancel switch between batches
with ``check_cancel``; ``Cancelled`` is the one exception they raise for it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields

from .config import MAX_GRID

# A token is at least one byte of UTF-8 in every tokenizer we know, and at most 4 bytes per
# character: text longer than this many characters per allowed token is refused without tokenising.
_MAX_CHARS_PER_TOKEN = 16


class InputError(ValueError):
    """A visitor's input is over a limit or malformed; the message says what to change."""


class Cancelled(RuntimeError):
    """A long job stopped because its cancel switch was set (Cancel button, or the visitor left)."""


def check_cancel(cancel: threading.Event | None, what: str = "The job") -> None:
    """Raise ``Cancelled`` when ``cancel`` is set; long jobs call this between batches."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} was cancelled.")


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return max(1, value)


def public_deployment() -> bool:
    """A Space (``SPACE_ID`` is set there) or a server declared public with ``MREPE_PUBLIC=1``."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("MREPE_PUBLIC", "0") not in ("", "0", "false")


@dataclass(frozen=True)
class Limits:
    """Per-request caps (environment variable in brackets)."""

    prompt_tokens: int = 512  # any single text field [MREPE_MAX_PROMPT_TOKENS]
    new_tokens: int = 256  # tokens generated per answer [MREPE_MAX_NEW_TOKENS]
    sweep_rows: int = 20_000  # (item, r_e) rows one sweep may create [MREPE_MAX_SWEEP_ROWS]
    scan_rows: int = 4_000  # (item, r_e, window) rows one layer scan may create [MREPE_MAX_SCAN_ROWS]
    texts_per_request: int = 64  # texts (map inputs, contrast pairs, captions) per request [MREPE_MAX_TEXTS]
    grid_points: int = MAX_GRID  # r_e values per sweep [MREPE_MAX_GRID]
    queued_jobs_per_session: int = 2  # jobs one browser session may have waiting [MREPE_MAX_QUEUED]
    cached_models: int = 2  # language models kept loaded at once [MREPE_MAX_MODELS]

    @classmethod
    def from_env(cls) -> Limits:
        names = {
            "prompt_tokens": "MREPE_MAX_PROMPT_TOKENS",
            "new_tokens": "MREPE_MAX_NEW_TOKENS",
            "sweep_rows": "MREPE_MAX_SWEEP_ROWS",
            "scan_rows": "MREPE_MAX_SCAN_ROWS",
            "texts_per_request": "MREPE_MAX_TEXTS",
            "grid_points": "MREPE_MAX_GRID",
            "queued_jobs_per_session": "MREPE_MAX_QUEUED",
            "cached_models": "MREPE_MAX_MODELS",
        }
        defaults = cls()
        return cls(**{f.name: _env_int(names[f.name], getattr(defaults, f.name)) for f in fields(cls)})


def limits() -> Limits:
    """The caps in force (read from the environment each time: tests and operators may change it)."""
    return Limits.from_env()


def check_text(text, field: str, tokenizer=None, max_tokens: int | None = None, required: bool = False) -> str:
    """``text`` if it is a string within ``max_tokens`` tokens (default: ``prompt_tokens``), else
    ``InputError`` naming the field, its size and the limit. Without a tokenizer only the
    character pre-check applies (call again with the model's tokenizer once it is loaded)."""
    cap = max_tokens or limits().prompt_tokens
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{field} must be text.")
    if "\x00" in text:
        raise InputError(f"{field} contains a NUL character; remove it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{field} contains characters that are not valid Unicode (lone surrogates); retype or paste it again."
        ) from None
    if required and not text.strip():
        raise InputError(f"{field} is empty; type something.")
    if len(text) > cap * _MAX_CHARS_PER_TOKEN:
        raise InputError(f"{field} is {len(text):,} characters; the limit is {cap:,} tokens. Shorten it.")
    if tokenizer is not None:
        n = count_tokens(tokenizer, text)
        if n > cap:
            raise InputError(f"{field} is {n:,} tokens; the limit is {cap:,}. Shorten it.")
    return text


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_rows(n_rows: int, what: str, cap: int, seconds_per_row: float | None = None) -> None:
    """Refuse a job that would create more than ``cap`` rows, saying how to shrink it."""
    if n_rows > cap:
        eta = f" (about {n_rows * seconds_per_row / 60:.0f} min here)" if seconds_per_row else ""
        raise InputError(
            f"{what} would evaluate {n_rows:,} rows{eta}; this server allows {cap:,}. Use fewer coefficients, "
            "prompts or questions (or run it on your own machine, where MREPE_MAX_SWEEP_ROWS raises the cap)."
        )
