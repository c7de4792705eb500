"""One torch intra-op thread for small matrix work, shared by every module that needs it.

On a busy 2-core CPU (the app shares its cores with generation and sweeps) multithreaded MKL
spin-waits: a 576 x 576 ``eigh`` measured 5 s on two threads and 0.05 s on one, and tiny-layer
training ran 10x slower. ``torch.set_num_threads`` is process-wide, hence one lock and the restore.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_lock = threading.Lock()


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block on one intra-op thread; the previous count is restored on exit."""
    with _lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
