"""Shared plumbing for the dashboard tabs: the model queue, error display, uploads, exports, Spaces.

Nothing here computes science; it only connects Gradio to ``mrepe_core``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

log = logging.getLogger("mrepe_ui")

# Every event that runs a model joins this concurrency group (limit 1): one forward pass at a time,
# so requests queue instead of fighting for the CPU/GPU. Cheap redraws use queue=False instead.
MODEL_QUEUE = "model"
# Chart image export drives a headless browser: its own group, so it never blocks the model.
EXPORT_QUEUE = "export"
MAX_FILE_SIZE = "5mb"  # launch(max_file_size=...); the core checks the bytes again
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
PLOTLY_JS = STATIC_DIR / "plotly-basic.min.js"
MREPE_JS = STATIC_DIR / "mrepe.js"
CHART_HEIGHT = 360


class UploadError(ValueError):
    """An uploaded file is missing, of the wrong type or too large; the message says what to fix."""


def on_spaces() -> bool:
    """True when running on Hugging Face Spaces (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def gpu(fn: Callable | None = None, *, duration: int = 120):
    """``spaces.GPU`` when the ``spaces`` package is importable, the function unchanged otherwise.

    On CPU and dedicated-GPU Spaces ``spaces.GPU`` is itself a no-op; on ZeroGPU it attaches a GPU
    for the call. ``spaces`` is never a hard dependency.
    """

    def wrap(f: Callable) -> Callable:
        try:
            import spaces  # type: ignore
        except ImportError:
            return f
        return spaces.GPU(duration=duration)(f)

    return wrap(fn) if fn is not None else wrap


def error_message(exc: BaseException) -> str:
    """What the user reads: the engine's ValueError messages are written for people already."""
    text = str(exc).strip() or type(exc).__name__
    return text


@contextmanager
def user_errors(what: str = "") -> Iterator[None]:
    """Turn engine ValueErrors into a gr.Error toast (the app keeps serving); log anything else."""
    try:
        yield
    except gr.Error:
        raise
    except ValueError as exc:
        raise gr.Error(f"{what}: {error_message(exc)}" if what else error_message(exc), duration=15) from exc
    except Exception as exc:  # a bug, not a user error: keep the traceback in the log
        log.exception("%s failed", what or "request")
        raise gr.Error(
            f"{what or 'Request'} failed unexpectedly ({type(exc).__name__}: {exc}). See the server log for details.",
            duration=15,
        ) from exc


def reports_errors(what: str) -> Callable[[Callable], Callable]:
    """Decorator form of :func:`user_errors` for event handlers (plain functions only)."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with user_errors(what):
                return fn(*args, **kwargs)

        return inner

    return deco


def upload_path(file) -> Path | None:
    """The server-side path of a gr.File / gr.UploadButton value (str path or FileData-like)."""
    if file is None:
        return None
    if isinstance(file, (str, os.PathLike)):
        return Path(file)
    path = getattr(file, "path", None) or getattr(file, "name", None)
    if isinstance(file, dict):
        path = file.get("path") or file.get("name")
    return Path(path) if path else None


def read_upload(file, suffixes: Sequence[str], max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[bytes, str]:
    """Bytes and original name of an uploaded file, after type and size checks (before reading it all)."""
    path = upload_path(file)
    if path is None:
        raise UploadError("No file uploaded.")
    name = path.name
    if not name.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise UploadError(f"{name}: expected a {' or '.join(suffixes)} file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UploadError(f"{name} could not be read ({exc.strerror}); upload it again.") from exc
    if size > max_bytes:
        raise UploadError(f"{name} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    return path.read_bytes(), name


def export_root() -> Path:
    """Folder for files offered as downloads; inside the temp dir, which Gradio is allowed to serve."""
    root = Path(tempfile.gettempdir()) / "mrepe-exports"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_export_dir(prefix: str) -> Path:
    """A fresh folder per export, so concurrent sessions never overwrite each other's files."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in prefix)[:40] or "export"
    path = export_root() / f"{safe}-{uuid.uuid4().hex[:10]}"
    path.mkdir(parents=True)
    return path


def fmt(x, digits: int = 3) -> str:
    """A number for people: 3 significant digits, 'n/a' for missing or non-finite values."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if x != x or x in (float("inf"), float("-inf")):
        return "n/a"
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------
# Plotly charts
# ---------------------------------------------------------------------------------------------
#
# gr.Plot loads the full plotly.js bundle, whose start-up alone blows the 3 s page-load budget on a
# small CPU (see static/README.md). The dashboard's charts are scatter plots, so they are drawn by
# plotly's basic bundle inside a gr.HTML component. The component's value is the figure as plotly
# JSON (``fig.to_json()``), which is also what API clients receive. The browser-side code (drawing,
# the slider's marker and answer tables) lives in ``static/mrepe.js``, loaded once per page.

_MOUNT_JS = """
const mount = () => (window.mrepe ? window.mrepe.%s(element, props, watch) : setTimeout(mount, 10));
mount();
"""
CHART_MOUNT_JS = _MOUNT_JS % "mountChart"
ANSWER_TABLE_MOUNT_JS = _MOUNT_JS % "mountAnswerTable"


def marker_move_js(chart_ids: Sequence[str], final: bool = True) -> str:
    """``js=`` of the r_e slider's release (``final``) and input events, with outputs ``[readout,
    steered answer, slider]``: moves every chart's marker in the browser (``window.mrepe.slide``)
    and returns the readout, the precomputed steered answer at the new position and, when the typed
    value was outside the slider's range, the clamped value. No server round trip."""
    ids = json.dumps(list(chart_ids))
    flag = "true" if final else "false"
    return f"(r) => (window.mrepe ? window.mrepe.slide(r, {ids}, {flag}) : [undefined, undefined, undefined])"


def static_url(path: Path) -> str:
    """URL of a file in ``static/`` (relative, so it also works behind a proxy's root path), with a
    content hash so a browser never runs a stale copy after an update."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return f"gradio_api/file={path}?v={digest}"


def plotly_script_url() -> str:
    """URL of the basic plotly bundle."""
    return static_url(PLOTLY_JS)


@functools.lru_cache(maxsize=1)
def plotly_head() -> str:
    """<head> tags that start loading plotly and the dashboard's script with the page
    (launch(head=...)), before any chart mounts."""
    return f'<script async src="{plotly_script_url()}"></script><script src="{static_url(MREPE_JS)}"></script>'


def register_static() -> None:
    """Let Gradio serve ``static/`` (plotly bundle); idempotent."""
    from gradio.data_classes import _StaticFiles

    if STATIC_DIR.resolve() not in _StaticFiles.all_paths:
        gr.set_static_paths([STATIC_DIR])


def chart_value(fig, meta: dict | None = None) -> str | None:
    """A plotly figure as the JSON a chart component (and an API client) receives.

    Arrays are plain JSON lists (not plotly's base64 ``bdata``), so clients can read the numbers
    directly: ``json.loads(value)["data"][0]["y"]`` or ``plotly.io.from_json(value)``. ``meta``
    (plain JSON data) becomes ``layout.meta`` without passing through plotly's figure objects,
    whose copying costs ~10 ms per 100 KB.
    """
    if fig is None:
        return None
    spec = _plain_arrays(fig.to_plotly_json())
    if meta is not None:
        spec["layout"]["meta"] = meta
    try:
        import orjson  # a Gradio dependency; ~5x faster than json for these figures

        return orjson.dumps(spec, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except ImportError:
        return json.dumps(spec, default=_json_array, allow_nan=False)


def _plain_arrays(obj):
    """Replace plotly's base64 typed arrays ({"dtype", "bdata"[, "shape"]}) by nested lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            import base64

            import numpy as np

            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if "shape" in obj:
                arr = arr.reshape([int(n) for n in str(obj["shape"]).split(",")])
            return arr
        return {k: _plain_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain_arrays(v) for v in obj]
    return obj


def _json_array(obj):
    import numpy as np

    if isinstance(obj, np.ndarray):
        return [None if isinstance(x, float) and x != x else x for x in obj.tolist()]
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def plotly_chart(fig=None, *, label: str, elem_id: str, height: int = CHART_HEIGHT, **kwargs) -> gr.HTML:
    """A chart component drawn with plotly's basic bundle; update it with ``chart_value(fig)``."""
    register_static()
    return gr.HTML(
        chart_value(fig),
        label=label,
        show_label=True,
        container=True,
        elem_id=elem_id,
        # contain: redraws only lay out the chart's own subtree, not the whole (large) page.
        html_template=(f'<div class="mrepe-chart" style="width:100%;height:{int(height)}px;contain:strict"></div>'),
        js_on_load=CHART_MOUNT_JS,
        apply_default_css=False,
        head=plotly_head(),
        **kwargs,
    )


def message_figure(text: str, height: int = CHART_HEIGHT):
    """An empty chart that says why it is empty."""
    import plotly.graph_objects as go

    # A plain layout dict: plotly's named templates cost ~0.2 s per figure to expand.
    return go.Figure(
        layout=dict(
            height=height,
            paper_bgcolor="white",
            plot_bgcolor="white",
            xaxis=dict(visible=False),
            yaxis=dict(visible=False),
            annotations=[
                dict(
                    text=text,
                    x=0.5,
                    y=0.5,
                    xref="paper",
                    yref="paper",
                    showarrow=False,
                    font=dict(size=14, color="#666"),
                )
            ],
        )
    )
