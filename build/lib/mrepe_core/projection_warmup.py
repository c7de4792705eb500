"""Background warm-up of umap-learn: a cold import plus numba compilation costs tens of seconds, so
the app starts it early (``warm_umap_in_background``) and the UI asks ``umap_state`` (and waits on
``wait_for_umap``) instead of paying the cold start inside a visitor's request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

_log = logging.getLogger(__name__)

# umap_state() answers
IDLE, WARMING, READY, FAILED = "idle", "warming", "ready", "failed"


def _compile_umap() -> None:
    """A tiny fit and transform through our own path compiles every numba function we use."""
    from .projection_umap import fit_umap

    generator = np.random.default_rng(0)
    points = generator.normal(size=(64, 8)).astype(np.float32)
    tiny = fit_umap(points, n_neighbors=5, n_pca=4, n_epochs=6, device="cpu", backend="umap-learn")
    tiny.transform(points[:3] + 0.5)


class UmapWarmup:
    """One warm-up: started at most once, in a daemon thread; its state can be read at any time."""

    def __init__(self, work: Callable[[], None] = _compile_umap) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()  # set on success and on failure
        self.error: BaseException | None = None
        self.seconds: float | None = None

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._work()
        except BaseException as error:  # reported by state(); the thread must not die loudly
            self.error = error
            _log.warning("umap-learn warm-up failed: %s: %s", type(error).__name__, error)
        else:
            self.seconds = time.perf_counter() - t0
            _log.info("umap-learn ready (warm-up %.1f s)", self.seconds)
        finally:
            self._finished.set()

    def start(self) -> threading.Thread:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="umap-warmup", daemon=True)
                self._thread.start()
            return self._thread

    def state(self) -> str:
        if not self._finished.is_set():
            return IDLE if self._thread is None else WARMING
        return FAILED if self.error is not None else READY

    def wait(self, timeout: float | None = None) -> str:
        self._finished.wait(timeout)
        return self.state()


WARMUP = UmapWarmup()


def warm_umap_in_background() -> threading.Thread:
    """Import umap-learn and compile its numba kernels in a daemon thread (idempotent)."""
    return WARMUP.start()


def umap_state() -> str:
    """``"idle"`` (never started), ``"warming"``, ``"ready"`` or ``"failed"``."""
    return WARMUP.state()


def wait_for_umap(timeout: float | None = None) -> str:
    """Block until the warm-up finished (or ``timeout`` seconds passed); returns ``umap_state()``."""
    return WARMUP.wait(timeout)


def umap_ready() -> bool:
    """Whether the background warm-up finished, so a UMAP fit will not pay the cold start."""
    return WARMUP.state() == READY


def umap_warmup_error() -> BaseException | None:
    """The exception that stopped the background warm-up, if any."""
    return WARMUP.error
