"""What makes the dashboard safe to share with strangers (a public Space, a live demo).

Every event the page uses can be called by anyone over HTTP (``queue/join`` with its
``fn_index``), whatever its API visibility, so the protections sit below the tabs and cover all
of them:

* ``PublicBlocks.process_api`` checks every event's raw inputs against their components before
  Gradio touches them (types, finite numbers, lone surrogates, text size, nesting depth, choices;
  sliders are clamped to their range) and turns every failure into one clear message: no
  traceback, no Python internals, no echo of a long input, no server path on a public server.
  User errors are logged as one line; bugs keep their traceback in the log under a reference
  that the visitor's message quotes.
* ``install_queue_guard`` bounds the work one visitor can queue: at most
  ``limits().queued_jobs_per_session`` + 1 jobs per browser session waiting or running in the
  limited concurrency groups (the model queue, batched generation, exports...), optionally a cap
  per client address, and a global cap on waiting jobs that events without a concurrency limit
  (opening a preset) never count against and are never refused by. When a visitor's connection
  goes, their waiting jobs are dropped (Gradio) and their running generation requests are
  cancelled (``session_cancel``).
* ``BodyLimitMiddleware`` refuses request bodies above ``MREPE_MAX_BODY_BYTES`` (uploads have
  their own limit) and JSON nested deeper than ``MAX_DEPTH`` before they are parsed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator

import gradio as gr

from mrepe_core.limits import limits, public_deployment

log = logging.getLogger("mrepe_ui")

MAX_FIELD_CHARS = 100_000  # any one string an event receives (handlers cap far lower, in tokens)
MAX_DEPTH = 32  # nesting of any input value
MAX_NODES = 200_000  # list items + dict entries of any input value
MAX_MESSAGE_CHARS = 600
DEFAULT_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_WAITING = 64  # waiting jobs in the limited groups, all visitors together

# Error texts that are Python talking, not the application: replaced by a plain message.
_INTERNAL = re.compile(
    r"Traceback|File \"|object has no attribute|is not subscriptable|unsupported operand|could not convert|"
    r"invalid literal|NoneType|not JSON serializable|validation errors? for|Input should be|\[Errno|"
    r"<function|<class |0x[0-9a-fA-F]{6,}|takes \d+ positional|missing \d+ required|index out of range|"
    r"math domain|object is not|unhashable|maximum recursion|has no len|must be str, not|expected str|"
    r"argument of type|cannot unpack|too many values|not enough values|division by zero|out of bounds for axis|"
    r"could not broadcast|KeyError|TypeError|AttributeError|IndexError|pydantic|site-packages"
)
_ABS_PATH = re.compile(r"(?<![\w.~-])(?:/[\w.@%+=~-]+){2,}/?")
_LONG_WORD = re.compile(r"\S{121,}")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


def clean_message(text: str, public: bool | None = None) -> str:
    """A message fit to show a stranger: no Python internals ("" if it is one), no server path
    on a public server, no word longer than 120 characters, at most ``MAX_MESSAGE_CHARS``, no HTML
    tag or entity that Gradio's page would render."""
    text = " ".join(str(text).split())
    if not text or _INTERNAL.search(text):
        return ""
    if public_deployment() if public is None else public:
        text = _ABS_PATH.sub("[server path]", text)
    text = _LONG_WORD.sub(lambda m: m.group(0)[:40] + "…", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    # Gradio renders messages as HTML: no tag can open ("<script", "<img", "</"), while a
    # comparison such as "R² < 0.5" stays readable for API clients, who read the text as it is.
    return _TAG_START.sub("&lt;", text.replace("&", "&amp;") if _ENTITY.search(text) else text)


def _user_error_types() -> tuple[type, ...]:
    from mrepe_core.limits import Cancelled, InputError

    return (ValueError, InputError, Cancelled)


def public_error(exc: BaseException, event: str = "request") -> gr.Error:
    """The gr.Error a visitor sees for ``exc`` (logged here: one line for a user error, the
    traceback under a reference for anything else)."""
    if isinstance(exc, gr.Error):
        message = clean_message(exc.message)
        if message:
            log.warning("%s refused: %s", event, message[:200])
            return gr.Error(message, duration=exc.duration, title=exc.title, print_exception=False)
    elif isinstance(exc, RecursionError):
        log.warning("%s refused: an input is nested too deeply", event)
        return gr.Error("An input is nested too deeply; send flat data.", print_exception=False)
    elif isinstance(exc, MemoryError):
        log.warning("%s refused: out of memory", event)
        return gr.Error("This request needs more memory than the server has; make it smaller.", print_exception=False)
    elif isinstance(exc, _user_error_types()):
        message = clean_message(str(exc))
        if message:
            log.warning("%s refused: %s", event, message[:200])
            return gr.Error(message, duration=15, print_exception=False)
    ref = uuid.uuid4().hex[:8]
    log.error("%s failed (reference %s)", event, ref, exc_info=(type(exc), exc, exc.__traceback__))
    return gr.Error(
        "This request could not be processed with these inputs: check their types and ranges, or try again. "
        f"If it keeps failing, report reference {ref} (the server log has the details).",
        duration=15,
        print_exception=False,
    )


# ---------------------------------------------------------------------------------------------
# Input gate
# ---------------------------------------------------------------------------------------------


class InputRefused(gr.Error):
    def __init__(self, message: str):
        super().__init__(message, duration=15, print_exception=False)


def _label(block) -> str:
    label = getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__
    return clean_message(str(label)[:60]) or "An input"


def _walk(value, where: str, depth: int = 0, count: list | None = None) -> None:
    """Refuse values nested too deeply, too large, with non-finite numbers or invalid Unicode."""
    count = count if count is not None else [0]
    count[0] += 1
    if count[0] > MAX_NODES:
        raise InputRefused(f"{where}: too many items; send at most {MAX_NODES:,}.")
    if depth > MAX_DEPTH:
        raise InputRefused(f"{where}: nested too deeply (more than {MAX_DEPTH} levels); send flat data.")
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS:
            raise InputRefused(
                f"{where}: {len(value):,} characters; this server accepts at most {MAX_FIELD_CHARS:,} per field. "
                "Shorten it."
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputRefused(
                f"{where}: contains characters that are not valid Unicode (lone surrogates); retype it."
            ) from None
        if "\x00" in value:
            raise InputRefused(f"{where}: contains a NUL character; remove it.")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InputRefused(f"{where}: numbers must be finite (not NaN or infinity).")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(k, where, depth + 1, count)
            _walk(v, where, depth + 1, count)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk(v, where, depth + 1, count)


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputRefused(f"{where}: expected a number.")
    if isinstance(value, int) and abs(value) > 10**15:
        raise InputRefused(f"{where}: the number is too large.")
    return float(value)


def text_cap(block) -> int:
    """Characters a text box accepts: its ``max_length`` when set, else the token cap of one field
    at 16 characters per token (4x that for boxes of several lines, which hold lists)."""
    explicit = getattr(block, "max_length", None)
    if isinstance(explicit, int) and explicit > 0:
        return min(explicit, MAX_FIELD_CHARS)
    one = limits().prompt_tokens * 16
    return min(one * (4 if (getattr(block, "lines", 1) or 1) >= 3 else 1), MAX_FIELD_CHARS)


def _choice_values(block) -> list:
    out = []
    for choice in getattr(block, "choices", None) or []:
        out.append(choice[1] if isinstance(choice, (list, tuple)) and len(choice) == 2 else choice)
    return out


def gate_value(block, value):
    """``value`` for ``block`` checked (and, for sliders, clamped to the range); ``InputRefused``
    says what to change."""
    where = _label(block)
    _walk(value, where)
    if value is None:
        return value
    if isinstance(block, gr.Slider):
        x = _number(value, where)
        lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
        if lo is not None and x < lo:
            return lo
        if hi is not None and x > hi:
            return hi
        return value
    if isinstance(block, gr.Number):
        x = _number(value, where)
        lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            lo_s = "−∞" if lo is None else f"{lo:g}"
            hi_s = "∞" if hi is None else f"{hi:g}"
            raise InputRefused(f"{where}: must be between {lo_s} and {hi_s}.")
        return value
    if isinstance(block, gr.Checkbox):
        if not isinstance(value, bool):
            raise InputRefused(f"{where}: expected true or false.")
        return value
    if isinstance(block, (gr.Textbox, gr.Code)):
        if not isinstance(value, str):
            raise InputRefused(f"{where}: expected text.")
        cap = text_cap(block)
        if len(value) > cap:
            raise InputRefused(
                f"{where}: {len(value):,} characters; this server accepts at most {cap:,} here. Shorten it."
            )
        return value
    if isinstance(block, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)):
        choices = _choice_values(block)
        many = isinstance(block, gr.CheckboxGroup) or getattr(block, "multiselect", False)
        values = value if many else [value]
        if many and not isinstance(value, list):
            raise InputRefused(f"{where}: expected a list of options.")
        if many and len(values) > max(len(choices), 1):
            raise InputRefused(f"{where}: too many options chosen.")
        if not getattr(block, "allow_custom_value", False):
            for v in values:
                if isinstance(v, (dict, list)) or v not in choices:
                    raise InputRefused(f"{where}: choose one of the listed options.")
        elif not all(isinstance(v, (str, int, float)) for v in values):
            raise InputRefused(f"{where}: expected an option.")
        return value
    return value


def gate_inputs(block_fn, inputs: list, state) -> list:
    """Check every raw input of an event against its component (the session's copy when the
    session changed its range or choices)."""
    if not isinstance(inputs, list):
        raise InputRefused("The request's data must be a list of input values.")
    expected = len(block_fn.inputs)
    if len(inputs) != expected:
        raise InputRefused(f"This event takes {expected} input values, not {len(inputs)}.")
    out = []
    for block, value in zip(block_fn.inputs, inputs):
        if getattr(block, "stateful", False):
            out.append(value)
            continue
        if state is not None:
            with contextlib.suppress(Exception):
                if block._id in state:
                    block = state[block._id]
        out.append(gate_value(block, value))
    return out


def _event_name(block_fn) -> str:
    return str(getattr(block_fn, "api_name", None) or getattr(block_fn, "name", None) or "event")


class PublicBlocks(gr.Blocks):
    """``gr.Blocks`` whose every event checks its inputs and speaks in clear messages (module docstring)."""

    async def process_api(self, block_fn, inputs, state=None, request=None, iterator=None, *args, **kwargs):
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        name = _event_name(fn)
        try:
            if iterator is None and not getattr(fn, "batch", False):
                inputs = gate_inputs(fn, inputs, state)
            return await super().process_api(fn, inputs, state, request, iterator, *args, **kwargs)
        except InputRefused as exc:
            log.warning("%s refused: %s", name, exc.message[:200])
            raise
        except Exception as exc:
            raise public_error(exc, name) from None


# ---------------------------------------------------------------------------------------------
# Queue: bounded work per visitor, cancelled work of visitors who left
# ---------------------------------------------------------------------------------------------

_CANCELS: dict[str, set[threading.Event]] = {}
_CANCELS_LOCK = threading.Lock()


@contextlib.contextmanager
def session_cancel(request) -> Iterator[threading.Event]:
    """A cancel switch for work done for ``request``'s session: set when the visitor's connection
    closes (the page is closed, the client process ends)."""
    event = threading.Event()
    session = getattr(request, "session_hash", None)
    if session:
        with _CANCELS_LOCK:
            _CANCELS.setdefault(session, set()).add(event)
    try:
        yield event
    finally:
        if session:
            with _CANCELS_LOCK:
                events = _CANCELS.get(session)
                if events is not None:
                    events.discard(event)
                    if not events:
                        _CANCELS.pop(session, None)


def cancel_session(session_hash: str | None) -> int:
    """Set every cancel switch of ``session_hash``; returns how many."""
    if not session_hash:
        return 0
    with _CANCELS_LOCK:
        events = list(_CANCELS.get(session_hash, ()))
    for event in events:
        event.set()
    return len(events)


def jobs_per_session() -> int:
    """Jobs one browser session may have waiting or running in the limited groups."""
    return limits().queued_jobs_per_session + 1


def jobs_per_address() -> int:
    """Jobs one client address may have (0: no cap). Off by default on a private server (many
    test clients share 127.0.0.1); on a public one, 4 sessions' worth."""
    default = 4 * jobs_per_session() if public_deployment() else 0
    try:
        return max(0, int(os.environ.get("MREPE_MAX_JOBS_PER_ADDRESS", default)))
    except ValueError:
        return default


def client_address(request) -> str:
    """The visitor's address: behind the Spaces proxy, the last X-Forwarded-For hop (the one the
    proxy added); elsewhere the socket's peer (a client could forge the header)."""
    try:
        if public_deployment():
            forwarded = request.headers.get("x-forwarded-for", "")
            if forwarded.strip():
                return forwarded.split(",")[-1].strip()
        return request.client.host if request.client else ""
    except Exception:
        return ""


def max_waiting() -> int:
    try:
        return max(1, int(os.environ.get("MREPE_MAX_WAITING", DEFAULT_WAITING)))
    except ValueError:
        return DEFAULT_WAITING


def install_queue_guard(demo: gr.Blocks) -> None:
    """Wrap the queue's ``push`` (job admission) and ``clean_events`` (a visitor's connection
    closed) with the limits of the module docstring. Call after ``demo.queue()``."""
    queue = demo._queue
    if getattr(queue, "_mrepe_guarded", False):
        return
    original_push, original_clean = queue.push, queue.clean_events
    queue.max_size = None  # the global cap below applies to the limited groups only

    def limit_of(fn) -> int | None:
        limit = fn.concurrency_limit
        return queue.default_concurrency_limit if limit == "default" else limit

    def in_flight():
        for group in queue.event_queue_per_concurrency_id.values():
            if group.concurrency_limit is not None:
                for event in group.queue:
                    yield event, False
        for jobs in queue.active_jobs:
            for event in jobs or ():
                if limit_of(event.fn) is not None:
                    yield event, True

    admission: list = []  # one asyncio.Lock, made in the server's event loop on first use

    async def push(body, request, username):
        import asyncio

        if not admission:
            admission.append(asyncio.Lock())
        async with admission[0]:  # counting and joining happen as one step
            return await admit(body, request, username)

    async def admit(body, request, username):
        fn = demo.fns.get(body.fn_index) if isinstance(body.fn_index, int) else None
        if fn is None:
            return False, "There is no such event on this page.", "error"
        if limit_of(fn) is not None:
            session, address = body.session_hash, client_address(request)
            per_session, per_address = jobs_per_session(), jobs_per_address()
            mine = theirs = waiting = 0
            for event, running in in_flight():
                waiting += not running
                mine += event.session_hash == session
                if per_address:
                    theirs += client_address(event.request) == address
            if mine >= per_session:
                log.info("refused a job: session already has %d jobs", mine)
                return (
                    False,
                    f"You already have {mine} jobs running or waiting on this server (the limit per visitor is "
                    f"{per_session}). Wait for one to finish or cancel it, then try again.",
                    "error",
                )
            if per_address and theirs >= per_address:
                log.info("refused a job: address already has %d jobs", theirs)
                return (
                    False,
                    f"Your network already has {theirs} jobs running or waiting on this server (the limit is "
                    f"{per_address}). Wait for one to finish, then try again.",
                    "error",
                )
            if waiting >= max_waiting():
                return False, f"The server is busy: {waiting} jobs are waiting. Try again in a minute.", "queue_full"
        return await original_push(body, request, username)

    async def clean_events(*, session_hash=None, event_id=None):
        await original_clean(session_hash=session_hash, event_id=event_id)
        if session_hash:
            n = cancel_session(session_hash)
            if n:
                log.info("a visitor left: %d running requests cancelled", n)

    queue.push = push
    queue.clean_events = clean_events
    queue._mrepe_guarded = True
    _DEMO[:] = [demo]


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


def max_body_bytes() -> int:
    try:
        return max(64 * 1024, int(os.environ.get("MREPE_MAX_BODY_BYTES", DEFAULT_BODY_BYTES)))
    except ValueError:
        return DEFAULT_BODY_BYTES


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """Deepest nesting of a JSON text (strings ignored), without parsing it."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        if m.group(0) in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_DEMO: list = []  # the Blocks whose events the middleware checks (set by install_queue_guard)
_EVENT_ROUTES = re.compile(r"/(queue/join|run/[^/]+|api/[^/]+)/?$")


def _event_problem(body: bytes) -> str | None:
    """Why an event request cannot name an event of this page (None: it can)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "The request body is not valid JSON."
    if not isinstance(data, dict):
        return "The request body must be a JSON object."
    if "data" in data and not isinstance(data["data"], list):
        return "'data' must be a list of input values."
    session = data.get("session_hash")
    if session is not None and (not isinstance(session, str) or len(session) > 128):
        return "'session_hash' must be a short string."
    index = data.get("fn_index")
    if index is None or not _DEMO:
        return None
    if isinstance(index, bool) or not isinstance(index, int) or index not in _DEMO[0].fns:
        return "'fn_index' does not name an event of this page."
    return None


class BodyLimitMiddleware:
    """ASGI middleware: request bodies of the API routes (not uploads, which Gradio limits) at most
    ``max_body_bytes()``, JSON at most ``MAX_DEPTH`` + 8 levels deep, event requests naming an
    event that exists; else 413/400 with a message."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        cap = max_body_bytes()
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return await _reply(
                    send,
                    413,
                    f"The request is {size / 2**20:.1f} MB or more; this server accepts {cap / 2**20:.1f} MB.",
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        if b"json" in headers.get(b"content-type", b"") and json_depth(body) > MAX_DEPTH + 8:
            return await _reply(
                send, 400, f"The request nests data more than {MAX_DEPTH + 8} levels deep; send flat data."
            )
        if _EVENT_ROUTES.search(path):
            problem = _event_problem(body)
            if problem:
                return await _reply(send, 400, problem)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _reply(send, status: int, message: str) -> None:
    payload = json.dumps({"detail": message, "error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _malformed_request(request, exc):
    """FastAPI's answer to a body that does not match a route's schema, without the echo of the
    offending input that its default answer carries."""
    from fastapi.responses import JSONResponse

    where = []
    with contextlib.suppress(Exception):
        for err in exc.errors()[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")[:60]
            where.append(f"{loc or 'body'}: {str(err.get('msg', 'invalid'))[:80]}")
    message = "The request is malformed" + (f" ({'; '.join(where)})" if where else "") + "."
    return JSONResponse({"detail": clean_message(message) or "The request is malformed."}, status_code=422)


def app_kwargs() -> dict:
    """``launch(app_kwargs=...)``: the FastAPI app gets ``BodyLimitMiddleware`` and answers a
    malformed request without echoing it."""
    from fastapi.exceptions import RequestValidationError
    from starlette.middleware import Middleware

    return {
        "middleware": [Middleware(BodyLimitMiddleware)],
        "exception_handlers": {RequestValidationError: _malformed_request},
    }


# ---------------------------------------------------------------------------------------------
# Console
# ---------------------------------------------------------------------------------------------


def configure_console(level: str | None = None) -> None:
    """One line per event in the server's console: our log format, no deprecation or future
    warnings from the libraries, no download or loading progress bars."""
    import warnings

    logging.basicConfig(
        level=level or os.environ.get("MREPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    for name in ("httpx", "httpcore", "urllib3", "huggingface_hub", "transformers", "matplotlib", "numba", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
