"""Presets: a YAML sweep config plus, optionally, its precomputed results folder beside it.

``presets/<name>.yaml`` may name ``results: <folder>`` (relative to the YAML); the dashboard
opens such a preset instantly from those files instead of running the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import SweepConfig, SweepConfigError
from .paths import PRESETS
from .result import SweepResult

PRESETS_DIR = PRESETS
MAX_PRESET_BYTES = 256 * 1024


@dataclass
class Preset:
    name: str
    path: Path
    config: SweepConfig
    description: str = ""
    results_dir: Path | None = None

    def load_results(self) -> SweepResult | None:
        """Precomputed results, or None when the preset ships none (then run the sweep)."""
        if self.results_dir is None or not (self.results_dir / "results.csv").is_file():
            return None
        return SweepResult.load(self.results_dir)


def load_preset(path: str | Path) -> Preset:
    """Parse and validate one preset file; any problem raises SweepConfigError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"Preset {path} does not exist.")
    if path.stat().st_size > MAX_PRESET_BYTES:
        raise SweepConfigError(f"Preset {path.name} is larger than {MAX_PRESET_BYTES >> 10} KB.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SweepConfigError(f"Preset {path.name} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SweepConfigError(f"Preset {path.name} must be a mapping of config fields.")
    config = SweepConfig.from_dict(data)
    results = data.get("results")
    results_dir = None
    if results is not None:
        if not isinstance(results, str) or ".." in Path(results).parts or Path(results).is_absolute():
            raise SweepConfigError(f"Preset {path.name}: 'results' must be a folder name beside the preset.")
        results_dir = path.parent / results
    return Preset(config.name or path.stem, path, config, str(data.get("description", "")), results_dir)


def list_presets(directory: str | Path = PRESETS_DIR) -> list[Preset]:
    """All valid presets in a folder (invalid ones are skipped; load them directly to see why)."""
    out = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            out.append(load_preset(path))
        except SweepConfigError:
            continue
    return out
