"""bench/gpu.py --tiny on the CPU: every measurement line it prints, and the FLOP counting it uses
(bench/flops.py) against torch's own FLOP counter on the packed runner."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"bench": "gpu"')]
    return run.stdout, records


@pytest.mark.slow
def test_tiny_run_prints_every_measurement(tiny_run):
    stdout, records = tiny_run
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "machine" and kinds[-1] == "done"
    machine = records[0]
    assert machine["device"] == "cpu" and machine["dtype"] == "bfloat16" and machine["device_name"]
    assert isinstance(machine["native_bf16"], bool)

    (model,) = [r for r in records if r["kind"] == "model"]
    assert model["layers"] == 4 and model["params"] > 0 and model["coefficients"] == 3

    matmul = {r["rows"]: r for r in records if r["kind"] == "matmul"}
    assert set(matmul) == {256, 1024}
    assert all(math.isfinite(r["gflops"]) and r["gflops"] > 0 for r in matmul.values())

    engine = [r for r in records if r["kind"] == "engine"]
    assert {(r["batch_tokens"], r["task"]) for r in engine} == {
        (b, t) for b in (256, 1024) for t in ("behavior", "helpfulness", "total")
    }
    for r in engine:
        assert r["seconds"] > 0 and r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["nodes"] > 0
        assert r["flops"] > 0 and math.isfinite(r["flop_fraction"]) and r["flop_fraction"] > 0
        assert r["matmul_gflops"] == matmul[r["batch_tokens"]]["gflops"]
        assert r["peak_mem_gb"] is None  # CPU: no CUDA allocator to ask
        if r["task"] != "total":
            assert r["packed"] and r["finite"]
            assert r["values"] == (6 if r["task"] == "behavior" else 8) * 3  # items x coefficients
            # Prefix sharing: the trees hold fewer nodes than the sequences hold tokens.
            assert r["nodes"] < r["tokens"]
    for b in (256, 1024):
        parts = [r for r in engine if r["batch_tokens"] == b and r["task"] != "total"]
        (total,) = [r for r in engine if r["batch_tokens"] == b and r["task"] == "total"]
        assert total["flops"] == pytest.approx(sum(r["flops"] for r in parts))
        assert total["tokens"] == sum(r["tokens"] for r in parts)
    # The work's FLOPs do not depend on the batching.
    assert {r["flops"] for r in engine if r["task"] == "total"} == {engine[-1]["flops"]}

    (umap,) = [r for r in records if r["kind"] == "umap"]
    assert umap["points"] == 300 and umap["finite"] and umap["seconds"] > 0
    assert umap["backend"] in ("umap-learn", "cuml") and set(umap["stages_s"]) >= {"pca", "optimise"}
    assert "summary (" in stdout and "tiny-llama" in stdout.split("summary (")[1]


def _mm_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    counts = counter.get_flop_counts()["Global"]
    return float(sum(v for k, v in counts.items() if str(k) in ("aten.mm", "aten.addmm")))


def test_flops_count_matches_torch_flop_counter(tiny_llama):
    """bench/flops.py's count of the packed runner's work equals the matmul FLOPs torch counts,
    one unit per forward pass (no padding), the read-only last layer and the head at reads."""
    from bench.flops import packed_work, sequence_work
    from mrepe_core import runner
    from mrepe_core.vectors import SteeringVector

    vector = SteeringVector(torch.randn(tiny_llama.n_layers, tiny_llama.hidden_size), [1, 2])
    texts = ["Request: Can you write a poem?", "Request: Can you do it?", "Sure, here is how"]
    grid = [-1.0, 0.0, 2.0]
    scorers = [
        runner.NextTokenScorer(tiny_llama, texts, vector, [1, 2], batch_tokens=1, max_row_tokens=16),
        runner.ChoiceScorer(
            tiny_llama, texts, [["A b", "C"], ["D", "E f g"], ["x", "y"]], vector, [1, 2], batch_tokens=1
        ),
    ]
    for scorer in scorers:
        assert scorer.packed and scorer._runner._last_layer_mirrorable
        rows = [(u, r) for r in grid for u in range(len(scorer.units))]
        counted = packed_work(scorer, len(grid))
        assert counted.flops == _mm_flops(lambda s=scorer, todo=rows: s.run(todo))
        assert any("at reads" in part for part in counted.parts)

    # A plain full forward: every position's logits.
    ids = tiny_llama.tokenizer(texts[0], return_tensors="pt")["input_ids"]
    measured = _mm_flops(lambda: tiny_llama.model(input_ids=ids))
    assert sequence_work(tiny_llama.model, [ids.shape[1]]).flops == measured


def test_id_tokenizer_and_workload_shape():
    sys.path.insert(0, str(ROOT))
    from bench import gpu

    tok = gpu.IdTokenizer(100)
    assert tok(" 3 14 15", add_special_tokens=False)["input_ids"] == [3, 14, 15]
    assert tok(["1 2", "3"])["input_ids"] == [[1, 2], [3]]
    data = json.loads(gpu.WORKLOAD.read_text())
    assert len(data["behavior"]) == 40 and len(data["mmlu"]) == 105 and len(data["grid"]) == 21
    assert all(len(q["choices"]) == 4 for q in data["mmlu"])
    work = gpu.Workload(data, 128256)
    # Relabelling to random ids keeps which tokens are equal, so shared prefixes stay shared.
    assert work.behavior[0][:20] == work.behavior[1][:20]
    assert all(0 <= t < 128256 for seq in work.behavior for t in seq)
    assert gpu.steered_layers(30) == list(range(10, 18))
    assert gpu.steered_layers(32) == list(range(11, 19)) and gpu.steered_layers(16) == list(range(5, 10))
