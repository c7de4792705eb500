"""Cancel switches of the Multimodal tab's long jobs, one per (browser session, job).

A job handler runs inside ``JOBS.running(request, name)``, which hands it a fresh
``threading.Event`` (and sets the one of a job of the same name the session started before). The
Cancel button sets it through ``cancel_handler(name)``; when the browser session ends, Gradio's
unload event sets every switch of that session (``end_session``). The engine checks the switch
between batches and at every layer of a forward pass, so a job stops within about a second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

# Jobs with a Cancel button; each name is one panel of the tab.
JOB_NAMES = ("analysis", "alignment", "robustness", "attention", "patching", "scr")


def session_key(request) -> str | None:
    return getattr(request, "session_hash", None) or None


class SessionJobs:
    """The running jobs' cancel switches, keyed by (session, job name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], threading.Event] = {}

    @contextmanager
    def running(self, request, name: str) -> Iterator[threading.Event]:
        event = threading.Event()
        key = session_key(request)
        if key is None:  # a direct Python call: nothing can cancel it but the caller
            yield event
            return
        with self._lock:
            previous = self._events.get((key, name))
            if previous is not None:
                previous.set()  # the same panel started again: the older run stops
            self._events[(key, name)] = event
        try:
            yield event
        finally:
            with self._lock:
                if self._events.get((key, name)) is event:
                    del self._events[(key, name)]

    def cancel(self, request, name: str) -> bool:
        key = session_key(request)
        with self._lock:
            event = self._events.get((key, name)) if key else None
        if event is None or event.is_set():
            return False
        event.set()
        return True

    def end_session(self, request) -> int:
        """Set every switch of the session (the browser tab was closed); returns how many."""
        key = session_key(request)
        with self._lock:
            events = [e for (k, _), e in self._events.items() if k == key] if key else []
        for event in events:
            event.set()
        return len(events)

    def running_count(self) -> int:
        with self._lock:
            return len(self._events)


JOBS = SessionJobs()


def cancel_handler(name: str):
    """The Cancel button's handler for one panel (queue=False: it runs while the job runs)."""

    def cancel(request: gr.Request = None) -> str:
        if JOBS.cancel(request, name):
            return "⏹ Cancelling…"
        return "Nothing is running in this panel."

    cancel.__name__ = f"cancel_{name}"
    return cancel


def end_session(request: gr.Request = None) -> None:
    """Gradio's unload event: the visitor left, so their running jobs stop."""
    JOBS.end_session(request)


def register_unload() -> None:
    """Attach ``end_session`` to the enclosing Blocks' unload event (once per Blocks)."""
    from gradio.context import Context

    root = Context.root_block
    if root is None or getattr(root, "_mrepe_mm_unload", False):
        return
    root.unload(end_session)
    root._mrepe_mm_unload = True
