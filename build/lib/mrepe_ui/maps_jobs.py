"""Cancel switches of the maps tab's long jobs (map drawing, "measure now", layer scan).

Each (browser session, kind of job) has at most one running job with its own ``CancelSwitch``
(a ``threading.Event`` the engine checks between batches). The switch is set by the Cancel
button, by a newer job of the same kind in the same session, and when the session ends
(``demo.unload``: the visitor closed or reloaded the tab). It remembers when it was set, so a job
can say how long it took to stop.
"""

from __future__ import annotations

import threading
import time

import gradio as gr

MAP, CHECKS, SCAN = "map", "checks", "scan"
KINDS = (MAP, CHECKS, SCAN)


class CancelSwitch(threading.Event):
    """A cancel event that records when it was first set (``time.perf_counter()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.requested_at: float | None = None

    def set(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.perf_counter()
        super().set()

    def seconds_since_request(self) -> float | None:
        return None if self.requested_at is None else time.perf_counter() - self.requested_at


class Jobs:
    """Running jobs by session and kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, dict[str, CancelSwitch]] = {}

    def start(self, session: str, kind: str) -> CancelSwitch:
        """A fresh switch for a new job; the session's previous job of this kind is cancelled."""
        switch = CancelSwitch()
        with self._lock:
            previous = self._live.setdefault(session, {}).get(kind)
            self._live[session][kind] = switch
        if previous is not None:
            previous.set()
        return switch

    def finish(self, session: str, kind: str, switch: CancelSwitch) -> None:
        """Forget ``switch`` (if it is still the session's current job of this kind)."""
        with self._lock:
            jobs = self._live.get(session, {})
            if jobs.get(kind) is switch:
                del jobs[kind]
            if not jobs:
                self._live.pop(session, None)

    def cancel(self, session: str, kind: str | None = None) -> int:
        """Set the switches of the session's running jobs (of ``kind``, or all); how many were running."""
        with self._lock:
            jobs = dict(self._live.get(session, {}))
        hit = [s for k, s in jobs.items() if (kind is None or k == kind) and not s.is_set()]
        for switch in hit:
            switch.set()
        return len(hit)

    def running_count(self, kind: str | None = None) -> int:
        """Jobs (of ``kind``, or all) whose switch is not set, over every session."""
        with self._lock:
            switches = [s for jobs in self._live.values() for k, s in jobs.items() if kind is None or k == kind]
        return sum(1 for s in switches if not s.is_set())

    def running(self, session: str, kind: str) -> bool:
        with self._lock:
            switch = self._live.get(session, {}).get(kind)
        return switch is not None and not switch.is_set()


JOBS = Jobs()


def session_key(request: gr.Request | None, state: object) -> str:
    """The browser session's id (Gradio's session hash); the state's identity when called without one."""
    session_hash = getattr(request, "session_hash", None) if request is not None else None
    return str(session_hash) if session_hash else f"state-{id(state)}"


def end_session(request: gr.Request) -> None:
    """``demo.unload``: the visitor left; stop every job of theirs."""
    key = getattr(request, "session_hash", None)
    if key:
        JOBS.cancel(str(key))
