"""Hugging Face hub ids that fail fast: from the local cache when there, refused at once when the hub
is switched off (``HF_HUB_OFFLINE``), and otherwise only after the hub answers within 1.2 s.

The probe is the metadata request the download needs anyway (``model_info``, for the size cap),
run with a hard wall-clock limit: without it an unreachable hub holds the request (and the model
queue behind it) for as long as huggingface_hub keeps retrying, 47 s measured for one CLIP id.
A hub id always becomes an absolute snapshot folder before anything is loaded, so a relative path
that happens to look like ``owner/name`` is never read from the server's disk.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from pathlib import Path

PROBE_TIMEOUT_S = 1.2  # first contact; once the hub has answered, 10 s
_REACHABLE_TTL_S = 300.0
# What a transformers checkpoint needs; never pickles, TensorFlow or Flax weights.
WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja")
_OFF = ("", "0", "false", "no", "off")


class HubError(ValueError):
    """A hub id cannot be served; the message says why and what to do instead."""


def is_hub_id(spec: str) -> bool:
    """``owner/name`` as the hub spells repository ids (no path syntax)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if spec.count("/") != 1 or spec.startswith((".", "~", "/")) or "\\" in spec:
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (read now, and as huggingface_hub read it at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in _OFF or bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


_probe_lock = threading.Lock()
_reachable_until: dict[str, float] = {}


class _Unreachable(Exception):
    pass


def _ask(repo_id: str, timeout: float, answer: list) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        answer.append(HfApi(endpoint=endpoint()).model_info(repo_id, files_metadata=True, timeout=timeout))
    except (RepositoryNotFoundError, GatedRepoError) as exc:  # the hub itself said so (its error headers)
        answer.append(exc)
    except Exception:  # DNS failure, refused, timed out, a proxy or anything that is not the hub
        answer.append(_Unreachable())


def describe(repo_id: str, timeout: float = PROBE_TIMEOUT_S):
    """The hub's ``ModelInfo`` (with file sizes) for ``repo_id``, asked with a hard wall-clock limit.

    The request runs in a daemon thread joined with ``timeout`` (name resolution has no timeout of
    its own). Once the hub has answered, later requests get 10 s for 5 minutes. Raises ``HubError``."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    url = endpoint()
    with _probe_lock:
        if time.monotonic() < _reachable_until.get(url, 0.0):
            timeout = max(timeout, 10.0)
    answer: list = []
    thread = threading.Thread(target=_ask, args=(repo_id, timeout, answer), name="mrepe-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    result = answer[0] if answer else _Unreachable()
    if isinstance(result, _Unreachable):
        with _probe_lock:
            _reachable_until.pop(url, None)
        raise HubError(
            f"This server cannot reach the Hugging Face hub (no answer within {timeout:g} s) and {repo_id!r} "
            "is not in its cache."
        )
    with _probe_lock:
        _reachable_until[url] = time.monotonic() + _REACHABLE_TTL_S
    if isinstance(result, (RepositoryNotFoundError, GatedRepoError)):
        raise HubError(f"{repo_id!r} is not a public model on the Hugging Face hub; check the id.")
    return result


def forget_probe() -> None:
    with _probe_lock:
        _reachable_until.clear()


def cached_snapshot(repo_id: str, patterns=WEIGHT_PATTERNS) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (no network), or None when it is not cached."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=list(patterns), local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and friends: not (completely) in the cache
        return None
    return folder if (folder / "config.json").is_file() else None


def max_download_bytes() -> int:
    try:
        return max(1, int(os.environ.get("MREPE_MAX_DOWNLOAD_MB", "4096"))) * 2**20
    except ValueError:
        return 4096 * 2**20


def _check_size(info, patterns, what: str) -> None:
    """Refuse a repository without safetensors, or whose matching files exceed the download cap."""
    files = [f for f in info.siblings or () if any(fnmatch.fnmatch(f.rfilename, p) for p in patterns)]
    if not any(f.rfilename.endswith(".safetensors") for f in files):
        raise HubError(f"{info.id!r} has no .safetensors weights; only safetensors are loaded (no pickles).")
    total = sum(int(f.size or 0) for f in files)
    cap = max_download_bytes()
    if total > cap:
        raise HubError(
            f"{info.id!r} is {total / 2**30:.1f} GB; this server downloads at most {cap / 2**30:.1f} GB for "
            f"{what} (MREPE_MAX_DOWNLOAD_MB). Choose a smaller model."
        )


def fetch_snapshot(repo_id: str, what: str, patterns=WEIGHT_PATTERNS, probe_timeout: float = PROBE_TIMEOUT_S) -> Path:
    """A local folder holding ``repo_id``: the cached snapshot, or a fresh download once the hub has
    answered a probe. Unreachable or switched-off hub: ``HubError`` within ``probe_timeout``."""
    folder = cached_snapshot(repo_id, patterns)
    if folder is not None:
        return folder
    if hub_offline():
        raise HubError(
            f"{repo_id!r} is not in this server's Hugging Face cache and the hub is switched off "
            f"(HF_HUB_OFFLINE=1). Give a local folder saved with save_pretrained for {what} instead."
        )
    try:
        info = describe(repo_id, probe_timeout)
    except HubError as exc:
        raise HubError(f"{exc} Give a local folder saved with save_pretrained for {what} instead.") from None
    _check_size(info, patterns, what)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(patterns), etag_timeout=10))
    except Exception as exc:
        raise HubError(f"Downloading {repo_id!r} failed ({type(exc).__name__}); try again later.") from None
