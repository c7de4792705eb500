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
# JSON (``fig.to_json()``), which is also what API clients receive.

_CHART_JS = """
const host = element.querySelector('.mrepe-chart');
let chain = Promise.resolve();
const plotlyReady = () => new Promise((resolve) => {
  const check = () => (window.Plotly ? resolve(window.Plotly) : setTimeout(check, 10));
  check();
});
// What is on screen, as (everything but the marker traces, the marker's coordinates to 6 digits):
// a server update that only confirms a marker the browser already moved is not redrawn.
let shownBase = null, shownMarker = null;
const frameTable = (fig) => (fig && fig.layout && fig.layout.meta && fig.layout.meta.marker_frames) || null;
const round6 = (a) => (a || []).map((v) => (typeof v === 'number' ? Number(v.toPrecision(6)) : v));
const markerKey = (traces) => JSON.stringify(traces.map((t) => [round6(t.x), round6(t.y)]));
function keys(fig) {
  const mf = frameTable(fig);
  const n = mf ? mf.traces[0] : (fig.data || []).length;
  return [JSON.stringify([(fig.data || []).slice(0, n), fig.layout || {}]),
          mf ? markerKey((fig.data || []).slice(n)) : null];
}
async function draw() {
  const Plotly = await plotlyReady();
  const text = props.value;
  if (!text) { Plotly.purge(host); shownBase = shownMarker = null; return; }
  const fig = JSON.parse(text);
  const [base, marker] = keys(fig);
  if (marker !== null && base === shownBase && marker === shownMarker) return;
  const name = (element.closest('[id$="-plot"]') || {}).id || 'chart';
  await Plotly.react(host, fig.data || [], fig.layout || {}, {responsive: true, displaylogo: false,
    toImageButtonOptions: {format: 'png', filename: name, scale: 2}});
  shownBase = base;
  shownMarker = marker;
}
const redraw = () => { chain = chain.then(draw).catch((e) => console.error('chart', e)); };
// Slider fast path: move the marker to r_e from the figure's own table (layout.meta.marker_frames,
// one entry per slider position), without a server round trip. Returns the table's index, or -1
// when there is no table or r_e is not one of its positions (the server's update then draws it).
// The marker's SVG elements are moved in place (~1 ms; a plotly redraw costs 30-45 ms per chart on
// a 2-core CPU), then, after that frame is painted, Plotly.react brings plotly's own state (hover,
// zoom) to the same figure. Anything the in-place step does not recognise goes straight to react.
let moveSeq = 0;
host.__mrepeMove = (v) => {
  const mf = frameTable(host);
  if (!window.Plotly || !mf || !host.data) return -1;
  const k = nearestIndex(mf.r, v);
  if (k < 0) return -1;
  const data = host.data.slice();
  mf.traces.forEach((idx, j) => { data[idx] = Object.assign({}, data[idx], mf.frames[k][j]); });
  const react = () => window.Plotly.react(host, data, host.layout)
    .then(() => { shownMarker = markerKey(mf.frames[k]); });
  const seq = ++moveSeq;
  const moved = moveInPlace(host, mf.traces, mf.frames[k]);
  // Only the latest move is reconciled: an older one would briefly paint its stale position.
  chain = chain.then(() => (moved ? new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))) : null))
    .then(() => (seq === moveSeq ? react() : null)).catch((e) => console.error('marker', e));
  return k;
};
// Set the marker traces' painted geometry to new x/y: points ('path.point' translate) and lines
// ('path.js-line' d) of scatter traces, in the pixel frame plotly drew them in. False (nothing
// changed) unless every trace has exactly the elements the new data needs.
function moveInPlace(gd, traceIdx, frame) {
  const fl = gd._fullLayout;
  if (!fl || !gd._fullData) return false;
  const groups = new Map();
  gd.querySelectorAll('.scatterlayer .trace').forEach((g) => {
    const cd = g.__data__ && g.__data__[0];
    if (cd && cd.trace) groups.set(cd.trace.index, g);
  });
  const updates = [];
  for (let j = 0; j < traceIdx.length; j++) {
    const tr = gd._fullData[traceIdx[j]], g = groups.get(traceIdx[j]), f = frame[j];
    if (!tr || !g || tr.type !== 'scatter' || !f.x || !f.y || f.x.length !== f.y.length) return false;
    const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
    if (!xa || !ya) return false;
    const px = f.x.map((x) => xa.c2p(x)), py = f.y.map((y) => ya.c2p(y));
    if (!px.concat(py).every(Number.isFinite)) return false;
    if (tr.mode === 'lines') {
      const lines = g.querySelectorAll('path.js-line');
      if (lines.length !== 1 || px.length < 2) return false;
      updates.push(() => lines[0].setAttribute('d', 'M' + px.map((x, i) => x + ',' + py[i]).join('L')));
    } else if (tr.mode === 'markers') {
      const pts = g.querySelectorAll('path.point');
      if (pts.length !== px.length) return false;
      updates.push(() => pts.forEach((p, i) => p.setAttribute('transform', `translate(${px[i]},${py[i]})`)));
    } else {
      return false;
    }
  }
  updates.forEach((u) => u());
  return true;
}
function nearestIndex(grid, v) {
  let k = -1, best = Infinity;
  for (let i = 0; i < grid.length; i++) {
    const d = Math.abs(grid[i] - v);
    if (d < best) { best = d; k = i; }
  }
  const span = Math.abs(grid[grid.length - 1] - grid[0]) || 1;
  return best <= 1e-6 * span + 1e-9 ? k : -1;
}
redraw();
watch('value', redraw);
"""


def marker_move_js(chart_ids: Sequence[str]) -> str:
    """``js=`` of a slider's release with the readout Markdown as its one output: moves the marker of
    every chart in ``chart_ids`` in the browser and returns the readout for the new position from the
    first chart's ``layout.meta.readouts`` (one per slider position). The server's handler for the
    same release still runs and confirms both."""
    return """
(r) => {
  const v = Number(r);
  const hosts = %s.map((id) => document.querySelector('#' + id + ' .mrepe-chart'));
  const ks = hosts.map((h) => (h && h.__mrepeMove ? h.__mrepeMove(v) : -1));
  const meta = hosts[0] && hosts[0].layout && hosts[0].layout.meta;
  if (ks[0] >= 0 && meta && meta.readouts) return meta.readouts[ks[0]];
  return '**r_e = ' + Number(v.toPrecision(3)) + '** · …';
}
""" % (json.dumps(list(chart_ids)),)  # noqa: UP031


def plotly_script_url() -> str:
    """URL of the basic plotly bundle (relative, so it also works behind a proxy's root path)."""
    return f"gradio_api/file={PLOTLY_JS}"


def plotly_head() -> str:
    """<head> tag that starts loading plotly with the page (launch(head=...)), before any chart mounts."""
    return f'<script async src="{plotly_script_url()}"></script>'


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
        js_on_load=_CHART_JS,
        apply_default_css=False,
        head=plotly_head(),
        **kwargs,
    )


def message_figure(text: str, height: int = 360):
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
