"""Long Multimodal jobs stop within ~2 s of Cancel or of the visitor leaving, and hand the model
to other requests between forward passes.

The tiny models are too fast to cancel by hand, so a test slows each decoder layer down with a
sleeping pre-hook (``slow_layers``): times then depend on the sleeps, not on the shared CPU.
"""

from __future__ import annotations

import contextlib
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import gradio as gr
import pytest
import torch
from multimodal_tiny import one_torch_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from mrepe_core import hooks
from mrepe_core.limits import Cancelled
from mrepe_core.models import decoder_layers, exclusive
from mrepe_core.multimodal import alignment
from mrepe_core.multimodal.encoders import clear_encoder_cache
from mrepe_core.multimodal.metrics import DEFAULT_SAFETY_INSTRUCTION
from mrepe_core.multimodal.sources import load_language_model
from mrepe_ui import multimodal_encoders
from mrepe_ui import multimodal_tab as tab
from mrepe_ui.multimodal_jobs import JOBS

STOP_S = 2.0  # Cancel -> the handler has returned
LOCK_S = 1.5  # another thread waits at most this long for the model while a job runs


@contextmanager
def slow_layers(model: torch.nn.Module, seconds: float):
    handles = [b.register_forward_pre_hook(lambda *a: time.sleep(seconds)) for b in decoder_layers(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class Job:
    """Run a handler in a thread, as Gradio's worker would; keep its result or exception."""

    def __init__(self, fn, *args, session: str = "s1"):
        self.request = SimpleNamespace(session_hash=session)
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn, args):
        try:
            self.result = fn(*args, request=self.request)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc

    def wait_running(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while JOBS.running_count() == 0:
            assert time.monotonic() < deadline, "the job never started"
            assert self.thread.is_alive(), f"the job ended early: {self.error!r}"
            time.sleep(0.01)

    def cancel_and_time(self, name: str) -> float:
        start = time.perf_counter()
        assert JOBS.cancel(self.request, name)
        self.thread.join(10)
        return time.perf_counter() - start


def lock_waits(model, n: int = 5, every: float = 0.15) -> list[float]:
    """How long a second thread waits for the model, sampled ``n`` times while a job runs."""
    waits = []
    for _ in range(n):
        start = time.perf_counter()
        with exclusive(model):
            waits.append(time.perf_counter() - start)
        time.sleep(every)
    return waits


def assert_cancelled(job: Job, n_outputs: int) -> None:
    assert job.error is None, repr(job.error)
    assert job.result == tuple(gr.skip() for _ in range(n_outputs))  # outputs left as they were


def test_scr_stops_on_cancel_and_hands_the_model_over_between_batches(tiny_model_dir):
    spec = str(tiny_model_dir)
    loaded = load_language_model(spec)
    with slow_layers(loaded.model, 0.01):  # ~0.4 s per batch of 4 requests x 8 tokens; 64 requests ~13 s
        job = Job(tab.run_scr, spec, 64, "Refuse harmful requests.", 2.0, 8)
        job.wait_running()
        waits = lock_waits(loaded.model)
        took = job.cancel_and_time("scr")
    print(f"\nSCR: stopped {took:.2f} s after Cancel; another thread waited at most {max(waits):.2f} s for the model")
    assert took < STOP_S and max(waits) < LOCK_S
    assert_cancelled(job, 2)
    assert hooks.count(decoder_layers(loaded.model)) == 0 and JOBS.running_count() == 0


def test_patching_stops_on_cancel_and_hands_the_model_over_between_passes(tiny_model_dir):
    spec = str(tiny_model_dir)
    loaded = load_language_model(spec)
    preset = tab.PATCHING_PRESETS["fact recall (Paris vs Rome)"]
    with slow_layers(loaded.model, 0.25):  # 1 s per pass (4 layers); 3 passes
        job = Job(tab.run_patching, spec, *preset, "last", True)
        job.wait_running()
        waits = lock_waits(loaded.model, n=2, every=0.05)
        took = job.cancel_and_time("patching")
    print(f"\npatching: stopped {took:.2f} s after Cancel; another thread waited at most {max(waits):.2f} s")
    assert took < STOP_S and max(waits) < LOCK_S
    assert_cancelled(job, 4)
    assert hooks.count(decoder_layers(loaded.model)) == 0


def test_alignment_training_stops_on_cancel(tmp_path, monkeypatch):
    clear_encoder_cache()
    clip = save_tiny_clip(tmp_path / "clip")
    monkeypatch.setattr(multimodal_encoders, "EPOCH_RANGE", (10, 1_000_000))
    job = Job(tab.run_alignment, list(tab.ALIGNMENT_PAIRS)[0], 10_000, str(clip), "")  # ~10 s here
    job.wait_running()
    time.sleep(0.5)  # into the epochs
    took = job.cancel_and_time("alignment")
    print(f"\nalignment: stopped {took:.2f} s after Cancel")
    assert took < STOP_S
    assert_cancelled(job, 5)
    clear_encoder_cache()


def test_engine_functions_raise_cancelled_when_the_switch_is_set():
    cancel = threading.Event()
    cancel.set()
    x = torch.randn(8, 4)
    with pytest.raises(Cancelled, match="Alignment training was cancelled"):
        alignment.train_alignment(x, x, alignment.AlignmentConfig(epochs=5), cancel=cancel)


def test_a_new_run_of_a_panel_cancels_the_sessions_previous_one():
    request = SimpleNamespace(session_hash="s2")
    with JOBS.running(request, "scr") as first:
        with JOBS.running(request, "scr") as second:
            assert first.is_set() and not second.is_set()
        assert not JOBS.cancel(SimpleNamespace(session_hash="other"), "scr")
    assert JOBS.running_count() == 0


def test_leaving_the_page_stops_the_sessions_jobs(tiny_model_dir):
    """Over HTTP, as a browser does it: a heartbeat stream keeps the session; closing it ends the
    session, Gradio's unload event fires and the running job stops."""
    import httpx

    spec = str(tiny_model_dir)
    loaded = load_language_model(spec)
    with gr.Blocks() as demo:
        tab.build_multimodal_tab()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    fn_index = next(i for i, fn in demo.fns.items() if getattr(fn, "name", "") == "run_scr")
    session = "leaving-visitor"
    try:
        with slow_layers(loaded.model, 0.01), httpx.Client(base_url=url, timeout=10) as http:
            with http.stream("GET", f"gradio_api/heartbeat/{session}") as beat:
                alive = beat.iter_lines()  # kept: a discarded iterator would close the stream
                assert next(alive) == "data: ALIVE"
                body = dict(
                    data=[spec, 64, "Refuse harmful requests.", 2.0, 8], fn_index=fn_index, session_hash=session
                )
                assert http.post("gradio_api/queue/join", json=body).status_code == 200
                deadline = time.monotonic() + 30
                while JOBS.running_count() == 0:
                    assert time.monotonic() < deadline, "the job never started"
                    time.sleep(0.02)
            start = time.perf_counter()  # the heartbeat connection is closed: the visitor left
            while JOBS.running_count() and time.perf_counter() - start < 10:
                time.sleep(0.02)
            took = time.perf_counter() - start
        print(f"\nleaving the page: the job stopped {took:.2f} s after the heartbeat closed")
        assert took < STOP_S
    finally:
        demo.close()


@pytest.mark.slow
@pytest.mark.parametrize("panel", ["scr", "patching"])
def test_on_the_embedded_model_cancel_and_the_model_lock_are_prompt(panel):
    """The same measurements on SmolLM2-135M at the tab's defaults. SCR runs at full speed; the
    patching of a ~110-token prompt (the panel's cap is 128) takes ~20 s in fp32 on two cores but
    under 2 s where the CPU has native bf16, too short to cancel, so its layers are slowed a little
    (20 ms each: ~0.6 s per patched pass) to keep it running whatever the machine."""
    loaded = load_language_model("")
    if panel == "scr":
        slowed = contextlib.nullcontext()
        job_args = (tab.run_scr, "", 64, DEFAULT_SAFETY_INSTRUCTION, 2.0, 24)
    else:
        long = (
            "Some background. " * 20 + "The Eiffel Tower, which was built for the 1889 World's Fair, is in the city of"
        )
        slowed = slow_layers(loaded.model, 0.02)
        job_args = (
            tab.run_patching,
            "",
            long,
            long.replace("Eiffel Tower", "Colosseum"),
            " Paris",
            " Rome",
            "last",
            True,
        )
    with slowed:
        job = Job(*job_args)
        job.wait_running()
        time.sleep(1.0)
        waits = lock_waits(loaded.model, n=4, every=0.3)
        took = job.cancel_and_time(panel)
    print(f"\n{panel} on {loaded.name}: stopped {took:.2f} s after Cancel; lock waits {[round(w, 2) for w in waits]} s")
    assert took < STOP_S and max(waits) < 4.0  # one batch (2 x 24 tokens) or one patched pass, 2 busy CPU cores
    assert job.error is None
