"""Many visitors, one model: concurrent generation requests served together in one batched decode.

On a shared server each visitor's "Generate" is a couple of rows (unsteered and steered). Run one
after another, twenty visitors wait twenty times as long as one; here requests that arrive while a
batch is being formed (within ``wait_s``) and share a model and vector are decoded together, each
row with its own coefficient and token budget (``runner.generate``), so a visitor waits about as
long as an idle call plus at most one batch. Answers equal serial ones: every row is decoded as if
alone (the batched runner is tested equal to one-at-a-time generation).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import runner
from .limits import Cancelled
from .models import LoadedModel
from .vectors import SteeringVector


@dataclass
class _Request:
    loaded: LoadedModel
    texts: list[str]
    vector: SteeringVector | None
    layers: tuple | None
    coefficients: list[float]
    budgets: list[int]
    cancel: threading.Event | None
    done: threading.Event = field(default_factory=threading.Event)
    result: list[str] | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        return (id(self.loaded), id(self.vector), self.layers)


class GenerationBatcher:
    """A worker thread that gathers requests for ``wait_s`` (up to ``max_rows`` rows) and decodes
    those with the same model, vector and layers as one batch; the rest wait for the next round,
    in arrival order."""

    def __init__(self, max_rows: int = 48, wait_s: float = 0.02) -> None:
        self.max_rows, self.wait_s = max_rows, wait_s
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches_run = 0  # for tests and benchmarks: how many batched decodes served the requests

    def generate(
        self,
        loaded: LoadedModel,
        texts: Sequence[str],
        vector: SteeringVector | None,
        layers,
        coefficients: Sequence[float],
        max_new_tokens: int | Sequence[int],
        cancel: threading.Event | None = None,
    ) -> list[str]:
        """Block until this request's rows are decoded (in a batch with others) and return them."""
        texts = list(texts)
        budgets = [int(max_new_tokens)] * len(texts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        request = _Request(
            loaded,
            texts,
            vector,
            None if layers is None else tuple(layers),
            [float(c) for c in coefficients],
            budgets,
            cancel,
        )
        with self._cond:
            self._queue.append(request)
            self._ensure_worker()
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result or []

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._serve, name="mrepe-generation-batcher", daemon=True)
            self._worker.start()

    def _take_batch(self) -> list[_Request]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
        time.sleep(self.wait_s)  # let the requests that arrive together join this batch
        with self._cond:
            first = self._queue.popleft()
            batch, rows = [first], len(first.texts)
            rest: deque[_Request] = deque()
            while self._queue:
                req = self._queue.popleft()
                if req.key() == first.key() and rows + len(req.texts) <= self.max_rows:
                    batch.append(req)
                    rows += len(req.texts)
                else:
                    rest.append(req)
            self._queue.extendleft(reversed(rest))
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._take_batch()
            live = []
            for req in batch:
                if req.cancel is not None and req.cancel.is_set():  # the visitor left: drop the work
                    req.error = Cancelled("The request was cancelled before it ran.")
                    req.done.set()
                else:
                    live.append(req)
            if not live:
                continue
            try:
                first = live[0]
                outs = runner.generate(
                    first.loaded,
                    [t for r in live for t in r.texts],
                    first.vector,
                    None if first.layers is None else list(first.layers),
                    [c for r in live for c in r.coefficients],
                    [b for r in live for b in r.budgets],
                )
                self.batches_run += 1
                k = 0
                for req in live:
                    req.result = outs[k : k + len(req.texts)]
                    k += len(req.texts)
            except BaseException as exc:  # each waiting caller gets the error, the worker lives on
                for req in live:
                    req.error = exc
            for req in live:
                req.done.set()


BATCHER = GenerationBatcher()
