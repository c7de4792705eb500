"""Can a Hugging Face id be loaded here, now? Answered in about a second, never in a minute.

Without network, huggingface_hub retries its requests for tens of seconds before failing, and a
server that waits holds its model queue for every visitor. So before loading a hub id: a copy in
the local cache is used as it is; ``HF_HUB_OFFLINE`` means no download; otherwise one short TCP
probe of the hub decides (its answer is remembered for a minute).
"""

from __future__ import annotations

import os
import socket
import threading
import time

HUB_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 1.5
_REMEMBER_S = 60.0
_last: tuple[float, bool] | None = None
_lock = threading.Lock()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no")


def cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``repo_id`` has ``filename`` in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # malformed ids raise validation errors: not cached
        return False
    return isinstance(found, str)


def reachable() -> bool:
    """One TCP connection to the hub within ``PROBE_TIMEOUT_S`` (remembered for a minute)."""
    global _last
    with _lock:
        if _last is not None and time.monotonic() - _last[0] < _REMEMBER_S:
            return _last[1]
        endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}")
        host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or HUB_HOST
        try:
            with socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S):
                ok = True
        except OSError:
            ok = False
        _last = (time.monotonic(), ok)
        return ok


def unavailable_reason(repo_id: str, filename: str = "config.json") -> str | None:
    """None when ``repo_id`` can be loaded now (cached, or the hub answers); else why not, in words."""
    if cached(repo_id, filename):
        return None
    if offline():
        return (
            f"{repo_id} is not in this machine's Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot "
            "be downloaded. Use a model that is cached here, or a local folder."
        )
    if not reachable():
        return (
            f"The Hugging Face hub cannot be reached from this server, so {repo_id} cannot be downloaded. "
            "Use the embedded default model or a local folder."
        )
    return None
