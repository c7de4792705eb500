"""Where the shipped data and presets are: beside the package in a checkout, inside it in a wheel.

In the repository (and on a Space) ``assets/`` and ``presets/`` sit at the top level; a wheel maps
them into ``mrepe_core/assets`` and ``mrepe_core/presets`` (pyproject.toml's package-dir).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    return _PACKAGE.parent / name  # missing: callers report which file they could not find


ASSETS = _first_existing("assets")
PRESETS = _first_existing("presets")
