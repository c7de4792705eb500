"""How fast the maps tab's long jobs stop, and how long another visitor waits for the model meanwhile.

On the embedded SmolLM2-135M and the default preset, with the tab's default scan settings:

* a layer scan runs; after it has timed its first batches, another thread generates 8 tokens
  (another visitor's Generate) and we time how long that takes against the same generation idle;
* then the scan is cancelled and we time how long it takes to stop;
* a vector extraction (the map's, 32 pairs) is cancelled after 2 s and timed the same way.

Run from the repository root (about a minute on a 2-core CPU)::

    .venv/bin/python bench/maps_cancel_bench.py [scan batch size, default SCAN_BATCH_SIZE]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrepe_core import runner  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_core.layer_scan import SCAN_BATCH_SIZE, iter_scan  # noqa: E402
from mrepe_core.limits import Cancelled  # noqa: E402
from mrepe_core.map_explorer import EXTRACT_PAIRS  # noqa: E402
from mrepe_core.models import load_model  # noqa: E402
from mrepe_core.presets import PRESETS_DIR, load_preset  # noqa: E402
from mrepe_core.sweep import prepare  # noqa: E402
from mrepe_ui.maps_scan import DEFAULTS  # noqa: E402


def generation_seconds(loaded) -> float:
    t0 = time.perf_counter()
    runner.generate(loaded, ["How do rivers form?"], None, [], 0.0, max_new_tokens=8)
    return time.perf_counter() - t0


def scan_cancel(loaded, config, stored, batch_size: int) -> dict:
    cancel = threading.Event()
    events, outcome = [], {}

    def scan():
        try:
            for event in iter_scan(
                config,
                DEFAULTS["width"],
                DEFAULTS["stride"],
                DEFAULTS["r_steps"],
                loaded,
                stored,
                cancel,
                use_cache=False,
                batch_size=batch_size,
            ):
                events.append((time.perf_counter(), event))
        except Cancelled:
            outcome["stopped"] = time.perf_counter()

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    while sum(e.kind == "progress" for _, e in events) < 4:
        time.sleep(0.05)
    estimate = next(e for _, e in events if e.kind == "estimate")
    during = generation_seconds(loaded)
    progress = [(t, e.done) for t, e in events if e.kind == "progress"]
    batch_s = [b[0] - a[0] for a, b in zip(progress, progress[1:])]
    cancel.set()
    asked = time.perf_counter()
    thread.join(60)
    return {
        "plan": estimate.plan.describe(),
        "estimated_total_s": round(estimate.rate.seconds(estimate.plan.rows), 1),
        "seconds_per_row": round(estimate.rate.seconds_per_row, 4),
        "batch_seconds": [round(b, 2) for b in batch_s],
        "generation_during_scan_s": round(during, 2),
        "stop_after_cancel_s": round(outcome["stopped"] - asked, 2),
        "rows_done": progress[-1][1] if progress else 0,
    }


def extraction_cancel(loaded, behavior) -> dict:
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    t0 = time.perf_counter()
    try:
        extract_vector(loaded, behavior.pairs[:EXTRACT_PAIRS], "pca", cancel=cancel)
        return {"extraction": "finished before the cancel", "seconds": round(time.perf_counter() - t0, 2)}
    except Cancelled:
        return {"extraction_stop_after_cancel_s": round(time.perf_counter() - t0 - 2.0, 2)}


def main() -> int:
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else SCAN_BATCH_SIZE
    preset = load_preset(Path(PRESETS_DIR) / "harmless-smollm2.yaml")
    config = preset.config
    config = config.__class__(**{**config.to_dict(), "n_eval": DEFAULTS["n_eval"]})
    config = config.__class__(**{**config.to_dict(), "n_questions_per_subject": DEFAULTS["n_questions"]})
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    _, behavior, _ = prepare(config, loaded)
    stored = preset.load_results().vector
    generation_seconds(loaded)  # warm
    idle = generation_seconds(loaded)
    report = {"scan_batch_size": batch_size, "generation_idle_s": round(idle, 2)}
    report.update(scan_cancel(loaded, config, stored, batch_size))
    report.update(extraction_cancel(loaded, behavior))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
