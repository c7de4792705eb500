"""Where a number came from: the software stack, the device and the code that made a result.

Every saved result records this (``summary.json``'s ``provenance``), so a figure can be traced to
the versions, the dtype and the machine that produced it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from . import __version__, hardware

PACKAGES = ("torch", "transformers", "numpy")
_ROOT = Path(__file__).resolve().parent.parent


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = _ROOT) -> str | None:
    """The commit of the checkout the engine runs from (with ``-dirty`` when it has changes), or
    None outside a git checkout (an installed wheel, a Space without .git)."""
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def stack(device=None, dtype=None) -> dict:
    """mrepe, torch, transformers and numpy versions, device and its name, dtype, git commit."""
    out = {"mrepe": __version__, **{p: _version(p) for p in PACKAGES}}
    out["python"] = platform.python_version()
    if device is not None:
        out["device"] = str(device)
        out["device_name"] = hardware.device_name(device)
    if dtype is not None:
        out["dtype"] = str(dtype).replace("torch.", "")
    out["git_commit"] = git_commit()
    return out
