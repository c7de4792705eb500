"""Real cancellation in the maps tab's long jobs, on tiny models whose batches are made slow.

Each scorer batch holds the model for ``BATCH_S`` (as a real model's batch does on a busy CPU).
Checked: a scan stops within ~2 s of its cancel; while it runs, another thread's generation gets the
model within a batch or two; after it stops, the model is free; extraction, measured steered points
and "measure the checks now" stop too; the tab's streamed scan reports how long stopping took.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
import yaml
from multimodal_tiny import one_torch_thread  # noqa: F401  (fixture: one intra-op thread per module)
from tiny_models import tiny_sweep_fields

from mrepe_core import datasets, hooks, runner
from mrepe_core.concept_maps import steered_states
from mrepe_core.config import SweepConfig
from mrepe_core.extract import extract_vector
from mrepe_core.layer_scan import iter_scan
from mrepe_core.limits import Cancelled
from mrepe_core.live_checks import measure_checks
from mrepe_core.models import decoder_layers, exclusive
from mrepe_core.vectors import SteeringVector
from mrepe_ui import maps_handlers, maps_jobs, maps_scan

BATCH_S = 0.3
STOP_WITHIN_S = 2.0

CONFIG = SweepConfig(**tiny_sweep_fields(n_eval=6, n_diagnostics=0))


@pytest.fixture
def slow_batches(monkeypatch):
    """Every scorer batch holds the model BATCH_S longer (the engine holds it per batch only)."""
    for cls in (runner.NextTokenScorer, runner.ChoiceScorer):
        original = cls.run

        def slow(self, rows, return_states=False, original=original):
            with exclusive(self.loaded.model):
                time.sleep(BATCH_S)
                return original(self, rows, return_states=return_states)

        monkeypatch.setattr(cls, "run", slow)


def model_wait(loaded, timeout: float = 10.0) -> float:
    """Seconds until a greedy generation on ``loaded`` (another visitor's Generate) has finished."""
    t0 = time.perf_counter()
    done = threading.Event()

    def generate():
        runner.generate(loaded, ["Hello"], None, [], 0.0, max_new_tokens=2)
        done.set()

    threading.Thread(target=generate, daemon=True).start()
    assert done.wait(timeout), "the generation never got the model"
    return time.perf_counter() - t0


def lock_free(loaded, timeout: float = 1.0) -> bool:
    got = threading.Event()

    def take():
        with exclusive(loaded.model):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got.wait(timeout)


def test_scan_stops_within_a_batch_and_frees_the_model(tiny_llama, slow_batches):
    cancel = threading.Event()
    events: list = []
    outcome: dict = {}

    def scan():
        try:
            for event in iter_scan(CONFIG, 1, 1, 5, tiny_llama, None, cancel, use_cache=False, batch_size=2):
                events.append((time.perf_counter(), event))
        except Cancelled as exc:
            outcome["stopped"] = time.perf_counter()
            outcome["message"] = str(exc)

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    deadline = time.perf_counter() + 60
    while sum(e.kind == "progress" for _, e in events) < 2 and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert any(e.kind == "estimate" for _, e in events), [e.kind for _, e in events]
    # Another visitor's generation waits for the current batch at most, not for the scan.
    waited = model_wait(tiny_llama)
    assert waited < 2 * BATCH_S + 1.0, f"generation waited {waited:.2f} s"
    plan = next(e.plan for _, e in events if e.plan is not None)
    cancel.set()
    asked = time.perf_counter()
    thread.join(10)
    assert not thread.is_alive() and "cancelled" in outcome["message"]
    took = outcome["stopped"] - asked
    print(f"\nscan stopped {took:.2f} s after cancel ({plan.rows} rows planned, batch {BATCH_S} s)")
    assert took < STOP_WITHIN_S
    assert events[-1][1].done < plan.rows  # it did not run to the end
    assert lock_free(tiny_llama) and hooks.count(decoder_layers(tiny_llama.model)) == 0


def test_extraction_stops_between_forward_passes(tiny_gpt2):
    behavior = datasets.load_behavior("harmless", tiny_gpt2.tokenizer, 12, 1)
    cancel = threading.Event()
    block = decoder_layers(tiny_gpt2.model)[0]
    handle = block.register_forward_pre_hook(lambda mod, args: time.sleep(0.2))
    try:
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        t0 = time.perf_counter()
        with pytest.raises(Cancelled, match="Extraction"):
            extract_vector(tiny_gpt2, behavior.pairs, "pca", batch_size=2, cancel=cancel)
        took = time.perf_counter() - t0 - 0.5
    finally:
        handle.remove()
    assert took < STOP_WITHIN_S and lock_free(tiny_gpt2)


def test_measured_steered_points_stop_between_batches(tiny_llama):
    cancel = threading.Event()
    vector = SteeringVector(torch.nn.functional.normalize(torch.randn(4, 64), dim=1), [1, 2])
    batches = []

    def progress(done, total):
        batches.append(done)
        cancel.set()  # the visitor pressed Cancel during the first batch

    with pytest.raises(Cancelled, match="steered points"):
        steered_states(tiny_llama, ["a", "b", "c"], vector, [1, 2], [-1.0, 0.0, 1.0], 2, 2, progress, cancel)
    assert batches == [1] and lock_free(tiny_llama)


def test_measure_now_checks_stop_between_coefficients(tiny_llama, slow_batches):
    behavior = datasets.load_behavior("harmless", tiny_llama.tokenizer, 4, 3)
    questions = datasets.load_mmlu(["marketing"], "dev", 3)
    vector = SteeringVector(torch.nn.functional.normalize(torch.randn(4, 64), dim=1), [1, 2])
    cancel = threading.Event()
    steps = []

    def progress(done, total):
        steps.append((done, total))
        if done == 2:
            cancel.set()

    with pytest.raises(Cancelled, match="assumption checks"):
        measure_checks(tiny_llama, vector, [1, 2], questions, behavior, [-2.0, 2.0], "cloze", cancel, progress)
    assert steps == [(1, 6), (2, 6)] and lock_free(tiny_llama)


@pytest.fixture
def tiny_preset(tmp_path, monkeypatch, tiny_model_dir):
    """A presets folder with one preset on the tiny Llama (no stored results: the vector is extracted)."""
    fields = {**CONFIG.to_dict(), "name": "tiny-scan", "model": str(tiny_model_dir)}
    (tmp_path / "tiny-scan.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    monkeypatch.setenv("MREPE_PRESETS_DIR", str(tmp_path))
    return "tiny-scan"


def test_the_tab_streams_the_scan_and_its_cancel_button_stops_it(tiny_preset, slow_batches):
    session = maps_handlers.MapsSession()
    statuses: list[str] = []
    stream = maps_scan.scan_layers_view(tiny_preset, "", 1, 1, 5, 6, 3, session)
    thread = threading.Thread(target=lambda: [statuses.append(out[2]) for out in stream], daemon=True)
    thread.start()
    deadline = time.perf_counter() + 60
    while not any("rows (" in str(s) for s in statuses) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert any("Estimated time" in str(s) for s in statuses)
    assert maps_jobs.JOBS.running(maps_jobs.session_key(None, session), maps_jobs.SCAN)
    maps_handlers.cancel_job(maps_jobs.SCAN)(session)
    thread.join(10)
    assert not thread.is_alive()
    final = statuses[-1]
    assert final.startswith("✗ The layer scan cancelled: stopped") and "s after Cancel" in final
    took = float(final.split("stopped ")[1].split(" s")[0])
    assert took < STOP_WITHIN_S
    assert not maps_jobs.JOBS.running(maps_jobs.session_key(None, session), maps_jobs.SCAN)


def test_leaving_the_page_cancels_the_sessions_jobs():
    jobs = maps_jobs.Jobs()
    first = jobs.start("abc", maps_jobs.SCAN)
    second = jobs.start("abc", maps_jobs.SCAN)  # a new scan replaces the session's previous one
    other = jobs.start("xyz", maps_jobs.MAP)
    assert first.is_set() and not second.is_set()
    assert jobs.cancel("abc") == 1 and second.is_set() and second.seconds_since_request() >= 0
    assert not other.is_set()

    class Request:
        session_hash = "xyz"

    maps_jobs.JOBS, saved = jobs, maps_jobs.JOBS
    try:
        maps_jobs.end_session(Request())  # type: ignore[arg-type]
    finally:
        maps_jobs.JOBS = saved
    assert other.is_set()
