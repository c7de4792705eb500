"""Many visitors, one model: concurrent generation requests decoded together, continuously.

On a shared server each visitor's "Generate" is a couple of rows (unsteered and steered). Run one
after another, twenty visitors wait twenty times as long as one. Here one worker keeps a running
decode batch (``runner.DecodeBatch``): requests that share its model, vector and layers join it
between two decoding steps (prefilled, then merged), each row with its own coefficient and token
budget, and leave as soon as their rows finish; so a visitor waits for a step, not for the
others' whole answers. Requests for another model or vector wait until the batch drains (no new
rows are admitted while they wait). Answers equal serial ones: every row is decoded as if alone
(tested against one-at-a-time generation).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from . import runner
from .limits import Cancelled
from .models import LoadedModel
from .vectors import SteeringVector

log = logging.getLogger(__name__)
GENERATE_DTYPES = ("auto", "fp32", "bf16", "fp16")


def generate_dtype(result_dtype: str) -> str:
    """The precision a server writes visitors' answers in: ``MREPE_GENERATE_DTYPE``, by default
    ``auto`` (bf16 where the hardware computes it natively, else fp32); ``result`` keeps the dtype
    of the result on screen (presets record fp32 so that their numbers reproduce on any machine).

    Why not the result's dtype by default: on a CPU with native bf16 a 40-row decode step is cheap
    next to a 2-row one, so 20 concurrent clients waited p95 2.8-3.0x one idle call in bf16 and
    5.1x in fp32 (``bench/concurrency.py``, README *Measured*); a visitor's own prompt is not one
    of the sweep's measurements. The app shows the dtype used with the answers."""
    wanted = os.environ.get("MREPE_GENERATE_DTYPE", "auto").strip().lower() or "auto"
    if wanted == "result":
        return result_dtype
    if wanted not in GENERATE_DTYPES:
        log.warning("MREPE_GENERATE_DTYPE=%r is not result or one of %s; using auto", wanted[:20], GENERATE_DTYPES)
        return "auto"
    return wanted


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

    def _admit(self, key: tuple | None, room: int) -> list[_Request]:
        """Waiting requests for the running batch (same model, vector and layers) that fit in
        ``room`` rows, in arrival order; with no batch running, the first waiting request's kind.
        A request of another kind that is waiting stops admissions, so the batch drains for it."""
        with self._cond:
            if key is None:
                while not self._queue:
                    self._cond.wait()
                key = self._queue[0].key()
            taken: list[_Request] = []
            rest: deque[_Request] = deque()
            blocked = False
            while self._queue:
                req = self._queue.popleft()
                if req.key() != key:
                    blocked = True
                    rest.append(req)
                elif not blocked and len(req.texts) <= room:
                    taken.append(req)
                    room -= len(req.texts)
                else:
                    rest.append(req)
            self._queue.extendleft(reversed(rest))
        return taken

    def _serve(self) -> None:
        batch: runner.DecodeBatch | None = None
        owners: dict[int, tuple[_Request, int]] = {}  # row id -> (request, index in it)
        pending: dict[int, list] = {}  # id(request) -> its rows' tokens as they finish
        next_id = 0
        while True:
            if batch is None or not len(batch):
                batch, key = None, None
                time.sleep(0)  # yield to the threads that are queueing requests
                requests = self._admit(None, self.max_rows)
                time.sleep(self.wait_s)  # requests that arrive together are prefilled together
                requests += self._admit(
                    requests[0].key() if requests else None, self.max_rows - sum(len(r.texts) for r in requests)
                )
            else:
                requests = self._admit(key, self.max_rows - len(batch))
            live = [r for r in requests if not self._dropped(r)]
            if live:
                first = live[0]
                key = first.key()
                ids = list(range(next_id, next_id + sum(len(r.texts) for r in live)))
                next_id += len(ids)
                k = 0
                for r in live:
                    pending[id(r)] = [None] * len(r.texts)
                    for j in range(len(r.texts)):
                        owners[ids[k]] = (r, j)
                        k += 1
                try:
                    coeff = torch.tensor([c for r in live for c in r.coefficients], dtype=torch.float32)
                    layers = None if first.layers is None else list(first.layers)
                    prefill = runner.prefill_rows(
                        first.loaded, [t for r in live for t in r.texts], first.vector, layers, coeff
                    )
                    if batch is None:
                        batch = runner.DecodeBatch(first.loaded, first.vector, layers)
                    self._deliver(
                        batch.merge(prefill, ids, coeff, [b for r in live for b in r.budgets]), owners, pending
                    )
                    self.batches_run += 1
                except BaseException as exc:  # the requests just admitted get the error; the batch goes on
                    self._fail(live, exc, owners, pending)
            if batch is not None and len(batch):
                self._drop_left(batch, owners, pending)
                try:
                    self._deliver(batch.step(), owners, pending)
                except BaseException as exc:
                    self._fail(list({id(r): r for r, _ in owners.values()}.values()), exc, owners, pending)
                    batch = None

    @staticmethod
    def _dropped(req: _Request) -> bool:
        if req.cancel is not None and req.cancel.is_set():  # the visitor left: no work for them
            req.error = Cancelled("The request was cancelled before it ran.")
            req.done.set()
            return True
        return False

    def _drop_left(self, batch, owners, pending) -> None:
        """Rows of requests whose visitor left while they were being written leave the batch."""
        gone = [
            k for k, row in enumerate(batch.ids) if owners[row][0].cancel is not None and owners[row][0].cancel.is_set()
        ]
        if gone:
            for k in gone:
                req, _ = owners.pop(batch.ids[k])
                if pending.pop(id(req), None) is not None:
                    req.error = Cancelled("The request was cancelled while it ran.")
                    req.done.set()
            batch.drop([k for k in range(len(batch.ids)) if k not in set(gone)])

    def _deliver(self, finished: dict, owners, pending) -> None:
        for row, tokens in finished.items():
            if row not in owners:
                continue
            req, j = owners.pop(row)
            rows = pending.get(id(req))
            if rows is None:
                continue
            rows[j] = tokens
            if all(t is not None for t in rows):
                del pending[id(req)]
                req.result = [req.loaded.tokenizer.decode(t, skip_special_tokens=True) for t in rows]
                req.done.set()

    def _fail(self, requests, exc, owners, pending) -> None:
        for req in requests:
            if pending.pop(id(req), None) is not None or not req.done.is_set():
                req.error = exc
                req.done.set()
        for row in [row for row, (r, _) in owners.items() if r in requests]:
            owners.pop(row)


BATCHER = GenerationBatcher()
