"""Long jobs on a shared language model: hold it for one forward pass at a time, stop on Cancel.

``forward_pass`` holds the model (``models.exclusive``) for one forward pass or one ``generate``
call, and, when given a cancel switch, checks it at the output of every decoder layer, so Cancel
stops a job within one layer's compute. Between two passes another request (another visitor's
Generate) gets the model: the lock is released and this thread steps aside for a moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .. import hooks
from ..limits import check_cancel
from ..models import decoder_layers, exclusive

# After releasing the model, sleep this long so a thread waiting for it acquires it first
# (a Python lock is not fair: the releasing thread could otherwise take it straight back).
HAND_OVER_S = 0.002


def _module(model) -> torch.nn.Module:
    return getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model


@contextmanager
def forward_pass(model, cancel: threading.Event | None = None, what: str = "The job") -> Iterator[None]:
    """Hold ``model`` (a module or a ``LoadedModel``) for the passes inside; check ``cancel`` before
    and at every decoder layer (``limits.Cancelled`` propagates out of the forward pass)."""
    module = _module(model)
    check_cancel(cancel, what)
    try:
        with exclusive(module):
            if cancel is None:
                yield
            else:

                def checkpoint(hidden: torch.Tensor) -> torch.Tensor:
                    check_cancel(cancel, what)
                    return hidden

                with hooks.patch_outputs({block: checkpoint for block in decoder_layers(module)}, model=module):
                    yield
    finally:
        time.sleep(HAND_OVER_S)
