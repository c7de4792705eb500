"""Sweep planning, caching and the CLI end to end on a tiny model saved as a local folder."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mrepe_core import cli
from mrepe_core.config import SweepConfig, SweepConfigError
from mrepe_core.presets import list_presets, load_preset
from mrepe_core.result import SweepResult, aggregate
from mrepe_core.sweep import SweepCancelled, coarse_first, plan_batches, run_sweep


def tiny_config(model_dir, **kw):
    base = dict(
        model=str(model_dir),
        behavior="harmless",
        layers="1:3",
        r_min=-4,
        r_max=4,
        r_steps=5,
        n_pairs=4,
        n_eval=3,
        helpfulness_subjects=["marketing"],
        n_questions_per_subject=3,
        batch_size=8,
        dtype="fp32",
    )
    base.update(kw)
    return SweepConfig(**base)


def test_repeat_is_served_without_loading_the_model(tiny_model_dir, tmp_path, monkeypatch):
    """A local-file model's repeated sweep is found by file identity before any model load; a
    touched model file changes that identity, and the full (loaded) lookup takes over."""
    import os

    from mrepe_core import cache
    from mrepe_core import sweep as sweep_mod

    config = tiny_config(tiny_model_dir, r_steps=3, n_diagnostics=0)
    first = run_sweep(config, cache_dir=tmp_path)
    assert not first.from_cache and cache.file_cache_key(config) is not None

    def no_load(*a, **k):
        raise AssertionError("the model was loaded for a cached sweep")

    monkeypatch.setattr(sweep_mod, "load_model", no_load)
    again = run_sweep(config, cache_dir=tmp_path)
    assert again.from_cache
    pd.testing.assert_frame_equal(again.aggregates, first.aggregates, check_dtype=False)
    weights = next(p for p in tiny_model_dir.iterdir() if p.suffix == ".safetensors")
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="was loaded"):
        run_sweep(config, cache_dir=tmp_path)


def test_cli_repeat_is_a_copy_without_torch(tiny_model_dir, tmp_path):
    """The CLI finds a repeated sweep by file identity and copies it, in a process that never
    imports torch (its import alone takes 2-3 s on the 2-core CPU)."""
    import subprocess
    import sys

    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(tiny_config(tiny_model_dir, r_steps=3, n_diagnostics=0).to_dict()))
    args = ["sweep", "--preset", str(preset), "--quiet", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main([*args, "--out", str(tmp_path / "first")]) == 0
    script = (
        "import sys; from mrepe_core.cli import main; rc = main(sys.argv[1:]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *args, "--out", str(tmp_path / "again")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr
    assert "(from cache)" in run.stdout and "served from cache in" in run.stdout
    assert "torch imported: False" in run.stdout
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "again" / "results.csv"), pd.read_csv(tmp_path / "first" / "results.csv")
    )
    assert (tmp_path / "again" / "vector.safetensors").read_bytes() == (
        tmp_path / "first" / "vector.safetensors"
    ).read_bytes()


def test_hub_ids_have_no_file_key():
    from mrepe_core.cache import file_cache_key

    assert file_cache_key(SweepConfig(model="someone/some-model")) is None


def test_coarse_first_order_and_plan():
    grid = [float(x) for x in range(-4, 5)]
    order = coarse_first(grid)
    assert sorted(order) == grid
    assert order[:3] == [-4.0, 0.0, 4.0]
    batches = plan_batches(3, grid, 4)
    rows = [row for b in batches for row in b]
    assert len(rows) == 27 and len(set(rows)) == 27 and all(len(b) <= 4 for b in batches)


@pytest.mark.parametrize(
    "bad",
    [
        dict(r_min=1, r_max=0),
        dict(r_steps=1),
        dict(method="ica"),
        dict(helpfulness_subjects=["nope"]),
        dict(r_max=float("inf")),
        dict(n_pairs=1),
        dict(helpfulness_format="essay"),
    ],
)
def test_config_validation(bad, tiny_model_dir):
    with pytest.raises(SweepConfigError):
        tiny_config(tiny_model_dir, **bad)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SweepConfigError, match="Unknown config fields: colour"):
        SweepConfig.from_dict({"colour": "red"})


def test_aggregate_mean_over_subjects():
    items = pd.DataFrame(
        [
            dict(r_e=0.0, task="helpfulness", metric="helpfulness", subject="a", item=0, value=0.2),
            dict(r_e=0.0, task="helpfulness", metric="helpfulness", subject="a", item=1, value=0.4),
            dict(r_e=0.0, task="helpfulness", metric="helpfulness", subject="b", item=0, value=0.9),
        ]
    )
    agg = aggregate(items)
    mean = agg[agg.subject == "mean"].value.iloc[0]
    assert mean == pytest.approx((0.3 + 0.9) / 2)  # subjects weigh equally


def test_sweep_runs_caches_and_reports(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir)
    seen = []
    res = run_sweep(config, progress=lambda d, t, p: seen.append((d, t, p)), cache_dir=tmp_path)
    assert not res.from_cache and res.complete
    # answers, sequence proxy, helpfulness and the answers' coherence on 5 coefficients x 3 items,
    # then the prompting baseline (3 answers, their coherence, 3 questions) at r_e = 0
    assert seen[-1][0] == seen[-1][1] == 4 * (5 * 3) + 2 * 3 + 3
    assert any(p is not None and not p.complete for _, _, p in seen)  # partial curves arrive
    agg = res.aggregates
    assert set(agg.r_e) == set(config.r_grid())
    assert {"behavior_expectation", "behavior_proxy", "covered_mass", "helpfulness", "accuracy"} <= set(agg.metric)
    assert {"coherent", "logprob", "repetition"} <= set(agg[agg.task == "coherence"].metric)
    assert set(agg[agg.task == "baseline"].r_e) == {0.0}
    assert len(res.texts) == 5 * 3 + 3 and "prompting_baseline" in res.summary
    b = agg[agg.metric == "behavior_expectation"].value
    assert ((b >= -1) & (b <= 1)).all()
    assert res.summary["layers"] == [1, 2]
    assert res.summary["alignment_fit"] is not None and "r2" in res.summary["alignment_fit"]
    again = run_sweep(config, cache_dir=tmp_path)
    assert again.from_cache
    pd.testing.assert_frame_equal(
        again.aggregates.reset_index(drop=True), agg.reset_index(drop=True), check_dtype=False
    )
    # A corrupt cache entry is recomputed, not trusted.
    entry = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name != "index")
    (entry / "results.csv").write_text("garbage")
    third = run_sweep(config, cache_dir=tmp_path)
    assert not third.from_cache


def test_progress_without_partial_results(tiny_model_dir, tmp_path):
    seen = []
    run_sweep(
        tiny_config(tiny_model_dir, r_steps=3),
        progress=lambda d, t, p: seen.append(p),
        cache_dir=tmp_path,
        partial_every=0,
    )
    assert len(seen) > 1 and all(p is None for p in seen)


def test_sweep_cancel(tiny_model_dir, tmp_path):
    import threading

    cancel = threading.Event()

    def progress(done, total, partial):
        cancel.set()

    with pytest.raises(SweepCancelled):
        run_sweep(tiny_config(tiny_model_dir), progress=progress, cancel=cancel, cache_dir=tmp_path)


def test_letter_format_and_generation_mode(tiny_model_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir, helpfulness_format="letter", behavior_mode="generate", max_new_tokens=4, r_steps=3
    )
    res = run_sweep(config, cache_dir=tmp_path)
    b = res.aggregates[res.aggregates.metric == "behavior_expectation"].value
    assert set(b.round(6)) <= {-1.0, -1 / 3, 1 / 3, 1.0, 0.0} | set(b.round(6))  # per-item scores are +-1
    assert set(res.items[res.items.metric == "behavior_expectation"].value) <= {-1.0, 0.0, 1.0}


def test_cli_sweep_extract_export(tiny_model_dir, tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(tiny_config(tiny_model_dir).to_dict()))
    out = tmp_path / "out"
    assert (
        cli.main(
            ["sweep", "--preset", str(preset), "--out", str(out), "--quiet", "--cache-dir", str(tmp_path / "cache")]
        )
        == 0
    )
    df = pd.read_csv(out / "results.csv")
    assert {"r_e", "task", "metric", "value", "subject", "stderr", "n"} <= set(df.columns)
    assert {"behavior_expectation", "helpfulness"} <= set(df.metric)
    items = pd.read_csv(out / "items.csv")
    assert "item" in items.columns
    summary = json.loads((out / "summary.json").read_text())
    assert {"alignment_fit", "helpfulness_fit", "efficient_regime", "timings"} <= set(summary)
    assert (out / "vector.safetensors").is_file() and (out / "vector.json").is_file()
    loaded = SweepResult.load(out)
    assert loaded.vector is not None and loaded.vector.layers == [1, 2]

    assert cli.main(["extract", "--preset", str(preset), "--out", str(tmp_path / "vec")]) == 0
    assert (tmp_path / "vec.safetensors").is_file()
    assert cli.main(["export", str(out), "--format", "json", "--out", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["results"] and doc["summary"]["alignment_fit"]


def test_cli_reports_bad_preset(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("r_min: [unclosed")
    assert cli.main(["sweep", "--preset", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_shipped_presets_are_valid():
    presets = {p.name: p for p in list_presets()}
    assert {"harmless-smollm2", "harmful-smollm2"} <= set(presets)
    default = presets["harmless-smollm2"].config  # the size floor for the default preset
    assert default.r_steps >= 21 and default.n_eval >= 40
    assert default.n_questions_per_subject * len(default.helpfulness_subjects) >= 100


def test_malformed_preset_messages(tmp_path):
    cases = {"a.yaml": "- just\n- a list\n", "b.yaml": "r_steps: many\n", "c.yaml": "results: ../../etc\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SweepConfigError):
            load_preset(tmp_path / name)


def test_shipped_preset_results_load():
    for p in list_presets():
        res = p.load_results()
        if res is None:
            pytest.fail(f"preset {p.name} ships no precomputed results")
        assert res.config.to_dict() == p.config.to_dict()
        assert res.summary["alignment_fit"] is not None


def test_result_load_rejects_missing_columns(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(SweepConfig().to_dict()))
    (d / "results.csv").write_text("a,b\n1,2\n")
    (d / "summary.json").write_text("{}")
    with pytest.raises(SweepConfigError, match="lacks columns"):
        SweepResult.load(d)
    shutil.rmtree(d)
    with pytest.raises(SweepConfigError, match="incomplete or corrupt"):
        SweepResult.load(d)
