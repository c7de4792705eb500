"""The shared preset helpers of the dashboard (mrepe_ui/presets.py): one folder, one result cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mrepe_ui import presets

SHIPPED = Path(__file__).resolve().parents[2] / "presets"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A presets folder holding a copy of the shipped default preset (YAML + stored results)."""
    shutil.copy(SHIPPED / "harmless-smollm2.yaml", tmp_path / "harmless-smollm2.yaml")
    shutil.copytree(SHIPPED / "harmless-smollm2", tmp_path / "harmless-smollm2")
    (tmp_path / "broken.yaml").write_text("r_steps: [not, a, number]\n")
    monkeypatch.setenv("MREPE_PRESETS_DIR", str(tmp_path))
    presets.clear_cache()
    yield tmp_path
    presets.clear_cache()


def test_folder_listing_default_and_lookup(folder):
    assert presets.presets_dir() == folder
    names = list(presets.available_presets())
    assert names == ["harmless-smollm2"]  # the invalid YAML is skipped
    assert presets.default_preset_name(names) == "harmless-smollm2"
    assert presets.default_preset_name(["b", "a"]) == "b" and presets.default_preset_name([]) is None
    assert presets.get_preset("harmless-smollm2").config.layers == "10:18"
    with pytest.raises(presets.UnknownPreset, match="Unknown preset 'nope'. Available: harmless-smollm2"):
        presets.get_preset("nope")


def test_unknown_names_are_never_echoed_back(folder):
    for name in ("x" * 100_000, None, 3, ["harmless-smollm2"]):
        with pytest.raises(presets.UnknownPreset) as info:
            presets.get_preset(name)
        assert len(str(info.value)) < 200 and "that name" in str(info.value)


def test_one_cache_shared_and_refreshed_when_the_files_change(folder):
    preset = presets.get_preset("harmless-smollm2")
    first = presets.preset_result(preset)
    assert first is not None and presets.preset_result(presets.get_preset("harmless-smollm2")) is first
    assert presets.preset_layer_count(first) == 30 and presets.preset_layer_count(None) == presets.DEFAULT_LAYER_COUNT
    # A newer results file is a new version: read again.
    marker = folder / "harmless-smollm2" / "results.csv"
    stat = marker.stat()
    os.utime(marker, (stat.st_atime, stat.st_mtime + 10))
    assert presets.preset_result(presets.get_preset("harmless-smollm2")) is not first


def test_tabs_share_the_cache():
    """The maps tab reads presets through this module (the trade-off tab switches with one import)."""
    from mrepe_ui import maps_handlers, maps_tab

    assert maps_handlers.preset_result is presets.preset_result
    assert maps_tab.available_presets is presets.available_presets
