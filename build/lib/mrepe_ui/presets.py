"""Presets for every tab: where they live, which exist, their stored results (read once, shared).

One cache for the whole app: every tab asks ``preset_result`` and gets the same ``SweepResult``
object, read once per file version (the YAML's and results.csv's modification times) and shared
read-only by all sessions. Nothing here imports a model.

The names are the ones the trade-off tab used for its own copies (``presets_dir``,
``available_presets``, ``preset_result``, ``default_preset_name``), so a tab switches with one
import line.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mrepe_core.presets import PRESETS_DIR, Preset, list_presets
from mrepe_core.result import SweepResult

# What the dashboard opens on, in order of preference.
PREFERRED_PRESETS = ("harmless-smollm2", "harmless")
DEFAULT_LAYER_COUNT = 30  # SmolLM2-135M, when a preset has no stored results to say
NAME_CHARS = 100  # a preset name longer than this is refused without looking it up

_RESULTS: dict[tuple, SweepResult | None] = {}
_RESULTS_LOCK = threading.Lock()
_MAX_CACHED = 32  # file versions kept; an edited preset's older versions are dropped first


class UnknownPreset(ValueError):
    """A preset name that is not in the presets folder; the message lists the ones there are."""


def presets_dir() -> Path:
    """The presets folder: ``MREPE_PRESETS_DIR`` when set, else the shipped ``presets/``."""
    return Path(os.environ.get("MREPE_PRESETS_DIR") or PRESETS_DIR)


def available_presets() -> dict[str, Preset]:
    """Valid presets by name (invalid files are skipped; ``mrepe_core.presets.load_preset`` says why)."""
    return {p.name: p for p in list_presets(presets_dir())}


def default_preset_name(names: list[str]) -> str | None:
    """The preset the dashboard opens on: a preferred one when present, else the first."""
    for preferred in PREFERRED_PRESETS:
        if preferred in names:
            return preferred
    return names[0] if names else None


def get_preset(name) -> Preset:
    """The preset called ``name``, or ``UnknownPreset`` naming the ones available (never echoing a
    long or non-text name back)."""
    presets = available_presets()
    if isinstance(name, str) and len(name) <= NAME_CHARS and name in presets:
        return presets[name]
    shown = repr(name) if isinstance(name, str) and len(name) <= 40 else "that name"
    raise UnknownPreset(
        f"Unknown preset {shown}. Available: {', '.join(presets) or 'none (the presets folder is empty)'}."
    )


def preset_result(preset: Preset) -> SweepResult | None:
    """A preset's stored results (None when it ships none), read once per file version and shared
    by all sessions and tabs."""
    marker = preset.results_dir / "results.csv" if preset.results_dir else None
    key = (
        str(preset.path),
        preset.path.stat().st_mtime,
        marker.stat().st_mtime if marker is not None and marker.is_file() else None,
    )
    with _RESULTS_LOCK:
        if key not in _RESULTS:
            if len(_RESULTS) >= _MAX_CACHED:
                _RESULTS.pop(next(iter(_RESULTS)))
            _RESULTS[key] = preset.load_results()
        return _RESULTS[key]


def preset_layer_count(result: SweepResult | None) -> int:
    """Decoder layers of the model a preset's results were computed on (a default without results)."""
    model = ((result.summary or {}).get("model") or {}) if result is not None else {}
    try:
        return max(1, int(model.get("n_layers") or DEFAULT_LAYER_COUNT))
    except (TypeError, ValueError):
        return DEFAULT_LAYER_COUNT


def clear_cache() -> None:
    """Forget every stored result read so far (tests; an operator replacing presets in place)."""
    with _RESULTS_LOCK:
        _RESULTS.clear()
