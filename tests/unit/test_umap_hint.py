"""The "UMAP not ready" hint follows the background warm-up: set on page load, updated by a timer
while umap-learn compiles, and the timer stops once it is ready (or failed)."""

from __future__ import annotations

import threading

import pytest

from mrepe_core import projection, projection_warmup
from mrepe_ui import maps_handlers


@pytest.fixture
def gated_warmup(monkeypatch):
    """A warm-up that finishes when the test opens its gate (instead of compiling numba for a minute)."""
    gate = threading.Event()
    warmup = projection_warmup.UmapWarmup(lambda: gate.wait(30) or None)
    monkeypatch.setattr(projection_warmup, "WARMUP", warmup)
    yield gate, warmup
    gate.set()


def test_hint_updates_when_the_warmup_finishes(gated_warmup):
    gate, warmup = gated_warmup
    hint, timer = maps_handlers.umap_hint_on_load()
    assert projection.umap_state() == projection.IDLE
    assert "loads when first chosen" in hint["info"] and timer.active is False
    # Choosing UMAP before it is ready starts the warm-up (the map falls back to PCA meanwhile).
    assert "not ready yet" in maps_handlers.check_projection("umap")
    assert projection.umap_state() == projection.WARMING
    hint, timer = maps_handlers.umap_hint_on_load()  # a page opened now ticks until ready
    assert "not ready yet" in hint["info"] and timer.active is True
    hint, timer = maps_handlers.umap_tick()
    assert "not ready yet" in hint["info"] and timer.active is True
    gate.set()
    assert projection.wait_for_umap(5) == projection.READY and projection.umap_ready()
    hint, timer = maps_handlers.umap_tick()
    assert hint["info"] == "UMAP ready." and timer.active is False
    assert maps_handlers.check_projection("umap") is None
    hint, timer = maps_handlers.umap_hint_on_load()
    assert hint["info"] == "UMAP ready." and timer.active is False
    assert warmup.seconds is not None


def test_hint_reports_a_failed_warmup_and_stops(monkeypatch):
    def broken():
        raise ImportError("numba is missing")

    warmup = projection_warmup.UmapWarmup(broken)
    monkeypatch.setattr(projection_warmup, "WARMUP", warmup)
    projection.warm_umap_in_background()
    assert projection.wait_for_umap(5) == projection.FAILED
    assert isinstance(projection.umap_warmup_error(), ImportError)
    hint, timer = maps_handlers.umap_tick()
    assert hint["info"] == "UMAP unavailable (ImportError); PCA works." and timer.active is False
