"""Input checks for the maps tab's handlers, written for public endpoints.

Any event the page uses can be called over HTTP by its fn_index with any JSON values, so every
handler checks types, ranges, sizes, NaN/inf and text (tokens, NUL, lone surrogates) here before
anything runs. Messages say what to change and never repeat a long input back. On a public
deployment (``limits.public_deployment()``) model and encoder fields take the embedded model, a
preset's model or a hub id only: a server path is never opened, so no answer tells whether one
exists.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import gradio as gr

from mrepe_core.limits import Cancelled, InputError, check_text, public_deployment
from mrepe_core.model_specs import DEFAULT_MODEL

log = logging.getLogger("mrepe_ui.maps")

SPEC_TOKENS = 16  # model / encoder / layer fields: a short spec, not a prompt (256 characters)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_EMBEDDED = {DEFAULT_MODEL, "default", "smollm2", "smollm2-135m"}
PUBLIC_MODEL_HINT = (
    "On this server the model is the preset's, the embedded default or a Hugging Face id (owner/name) it can download."
)


def shown(value, limit: int = 40) -> str:
    """A value for an error message: its repr when short, else only its type and size."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"a text of {len(value):,} characters"
    if isinstance(value, (int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else "that number"
    return f"a {type(value).__name__}"


def whole_number(value, field: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]`` (a whole float or numeric text is accepted)."""
    number = finite_number(value, field, lo, hi)
    if number != int(number):
        raise InputError(f"{field} must be a whole number; got {shown(value)}.")
    return int(number)


def finite_number(value, field: str, lo: float, hi: float) -> float:
    """``value`` as a finite float in ``[lo, hi]``."""
    if isinstance(value, bool) or value is None or value == "":
        raise InputError(f"{field} must be a number.")
    if isinstance(value, str):
        if len(value) > 40:
            raise InputError(f"{field} must be a number.")
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"{field} must be a number; got {shown(value)}.") from None
    if not isinstance(value, (int, float)):
        raise InputError(f"{field} must be a number; got {shown(value)}.")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{field} must be a finite number.")
    if not lo <= number <= hi:
        raise InputError(f"{field} must be between {lo:g} and {hi:g}; got {shown(value)}.")
    return number


def flag(value, field: str) -> bool:
    """A checkbox's value: a bool (0 / 1 accepted)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InputError(f"{field} must be true or false.")


def choice(value, field: str, options: Sequence[str] | Mapping[str, object]) -> str:
    """One of ``options`` (exact match)."""
    allowed = list(options)
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{field} must be one of {', '.join(allowed)}; got {shown(value)}.")
    return value


def choices(value, field: str, options: Sequence[str]) -> list[str]:
    """A list of distinct values from ``options``."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or len(value) > len(options):
        raise InputError(f"{field} must be a list of at most {len(options)} of: {', '.join(options)}.")
    return list(dict.fromkeys(choice(v, field, options) for v in value))


def spec_text(value, field: str) -> str:
    """A short spec field (model, layers, encoder): text within ``SPEC_TOKENS`` tokens, stripped."""
    return check_text(value, field, None, max_tokens=SPEC_TOKENS).strip()


def _hub_shaped(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and ".." not in spec


def model_spec(value, default: str, allowed: Sequence[str] = ()) -> str:
    """The model to load: ``default`` (the preset's) when blank. On a public deployment only the
    embedded model, one of ``allowed`` (the presets' models) or a hub id are accepted, and a hub id
    that names a path on this server is refused with the same words as any other refusal."""
    spec = spec_text(value, "Model") or default
    if not public_deployment() or spec in allowed or spec.lower() in _EMBEDDED:
        return spec
    if not _hub_shaped(spec) or os.path.exists(os.path.expanduser(spec)):
        raise InputError(f"Model {shown(spec)} cannot be used here. {PUBLIC_MODEL_HINT}")
    return spec


def encoder_spec(value, kind: str) -> str | None:
    """Encoder weights: None (the environment variable's) when blank; hub ids only when public."""
    spec = spec_text(value, f"{kind.upper()} weights")
    if not spec:
        return None
    if public_deployment() and (not _hub_shaped(spec) or os.path.exists(os.path.expanduser(spec))):
        raise InputError(
            f"{kind.upper()} weights {shown(spec)} cannot be used here: on this server give a Hugging Face id "
            "(owner/name) or leave the field blank for the server's own."
        )
    return spec


def _fail(what: str, message: str) -> gr.Error:
    return gr.Error(f"{what}: {message}" if what else message, duration=15, print_exception=False)


@contextmanager
def maps_errors(what: str) -> Iterator[None]:
    """Turn errors into a ``gr.Error`` toast with a clear message and one log line; never a
    traceback to the client. ``limits.Cancelled`` passes through (callers report it).

    On a public deployment an unexpected error's text stays in the log (it may name server paths).
    """
    try:
        yield
    except gr.Error as exc:
        log.info("maps: %s refused: %s", what, str(exc)[:300])
        raise
    except Cancelled:
        raise
    except ValueError as exc:
        message = str(exc).strip() or type(exc).__name__
        log.info("maps: %s refused: %s", what, message[:300])
        raise _fail(what, message) from None
    except Exception as exc:  # a bug, not the visitor's input
        log.error("maps: %s failed: %s: %s", what, type(exc).__name__, str(exc)[:300])
        log.debug("maps: %s traceback", what, exc_info=True)
        detail = type(exc).__name__ if public_deployment() else f"{type(exc).__name__}: {str(exc)[:200]}"
        raise _fail(what, f"failed unexpectedly ({detail}). The server log has the details.") from None
