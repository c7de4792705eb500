"""Every value a Multimodal handler receives, checked as a public endpoint must check it.

Any event the page uses can be called over HTTP by its fn_index with any values, so each handler
checks types, ranges, NaN/inf, lone surrogates and sizes here before anything runs. ``handler``
turns what goes wrong into one ``gr.Error`` whose message says what to change, logged as one line;
a bug is logged with its traceback on the server and reaches the client only as a reference.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr

from mrepe_core.limits import Cancelled, check_text, limits

from .common import upload_path

log = logging.getLogger("mrepe_ui.multimodal")

MAX_FILES_PER_SIDE = 32  # uploaded examples per side of a concept
MAX_ANSWER_STARTS = 16  # '|'-separated answer starts per side (patching)
ANSWER_START_TOKENS = 16
SHORT_FIELD_TOKENS = 64  # labels, spans and the like


class InvalidInput(ValueError):
    """A value sent to a handler is unusable; the message names the field and what to send."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _raised_by_us(exc: BaseException) -> bool:
    """A ValueError raised in our own code carries a message written for people; one raised deep
    in a library (tokenizers, numpy) may carry internals, so it is reported as a bug instead."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    module = last.tb_frame.f_globals.get("__name__", "") if last is not None else ""
    return type(exc).__module__.startswith(("mrepe_core", "mrepe_ui")) or module.startswith(("mrepe_core", "mrepe_ui"))


def handler(what: str, n_outputs: int | None = None) -> Callable[[Callable], Callable]:
    """Wrap an event handler: user errors become ``gr.Error`` (one log line), a cancelled job a
    warning with its outputs left as they were (``n_outputs`` skips), bugs a reference number."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Cancelled:
                log.info("%s: cancelled", what)
                gr.Warning(f"{what} cancelled.")
                if n_outputs is None:
                    return None
                return gr.skip() if n_outputs == 1 else tuple(gr.skip() for _ in range(n_outputs))
            except gr.Error as exc:
                log.info("%s refused: %s", what, _one_line(exc.message))
                exc.print_exception = False  # logged above, as one line
                raise
            except ValueError as exc:
                if not _raised_by_us(exc):
                    raise _bug(what, exc) from None
                message = _one_line(exc) or type(exc).__name__
                log.info("%s refused: %s", what, message)
                shown = message if message.startswith(what) else f"{what}: {message}"
                raise gr.Error(shown, duration=15, print_exception=False) from None
            except Exception as exc:
                raise _bug(what, exc) from None

        return inner

    return deco


def _bug(what: str, exc: BaseException) -> gr.Error:
    ref = uuid.uuid4().hex[:8]
    log.error("%s failed (ref %s)", what, ref, exc_info=exc)
    return gr.Error(
        f"{what} failed unexpectedly (reference {ref} in the server log). Try other inputs.",
        duration=15,
        print_exception=False,  # the traceback is in the log line above, with its reference
    )


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def text(value, field: str, tokenizer=None, max_tokens: int | None = None, required: bool = False) -> str:
    """A text field within its token cap (``limits.check_text``)."""
    return check_text(value, field, tokenizer, max_tokens=max_tokens, required=required)


def number(value, field: str, low: float, high: float, integer: bool = False) -> float:
    """A finite number in ``[low, high]`` (an int when ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise InvalidInput(f"{field} must be a number between {low:g} and {high:g}.") from None
        else:
            raise InvalidInput(f"{field} must be a number between {low:g} and {high:g}.")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidInput(f"{field} must be a number between {low:g} and {high:g}; got {value:g}.")
    if integer:
        if value != int(value):
            raise InvalidInput(f"{field} must be a whole number between {low:g} and {high:g}.")
        return int(value)
    return value


def choice(value, field: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(repr(o) for o in list(options)[:8]) + (", ..." if len(options) > 8 else "")
        raise InvalidInput(f"{field} must be one of {shown}.")
    return value


def flag(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    raise InvalidInput(f"{field} must be true or false.")


def lines(value, field: str, max_lines: int | None = None, tokenizer=None, max_tokens: int | None = None) -> list[str]:
    """Non-empty lines of a multi-line field, at most ``max_lines`` (default: the server's text cap)."""
    cap = max_lines or limits().texts_per_request
    block = text(value, field, max_tokens=cap * (max_tokens or SHORT_FIELD_TOKENS))
    rows = [line.strip() for line in block.splitlines() if line.strip()]
    if len(rows) > cap:
        raise InvalidInput(f"{field} has {len(rows)} lines; the limit is {cap}. Remove some.")
    return [text(row, f"{field} line {i + 1}", tokenizer, max_tokens) for i, row in enumerate(rows)]


def files(value, field: str, max_files: int = MAX_FILES_PER_SIDE) -> list[Path]:
    """Paths of the uploads of a file field (one or several), at most ``max_files``."""
    if value is None or value == []:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) > max_files:
        raise InvalidInput(f"{field}: {len(items)} files; the limit is {max_files}. Upload fewer.")
    paths = []
    for item in items:
        if not isinstance(item, (str, dict)) and not hasattr(item, "path"):
            raise InvalidInput(f"{field}: an upload could not be read; upload it again.")
        path = upload_path(item)
        if path is None:
            raise InvalidInput(f"{field}: an upload could not be read; upload it again.")
        paths.append(path)
    return paths
