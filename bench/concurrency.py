"""Many visitors generating at once: latency of /generate under load against one idle call.

Starts ``app.py`` as a subprocess (as ``make run`` does; or uses ``--url``), opens the preset in
every client, then

1. idle: one client calls /generate ``--idle`` times, one call at a time (distinct prompts);
2. load: ``--clients`` clients each call /generate ``--calls`` times, one after another, all
   clients at once (distinct prompt per call, so nothing is served twice);
3. equality: a sample of the load phase's (prompt, r_e) calls is asked again alone; the answers
   must be identical (batched decoding answers as serial decoding does);
4. the engine alone: the idle calls' work done in this process, without the app (``--engine-idle``
   calls; 0 skips it). The app should add little to it: an app that runs Generate much slower than
   the engine has a problem of its own (an OpenMP thread pool left on another thread made it 1.8x).

Prints the machine, the idle median and the load phase's p50 / p95 / max, and their ratios to the
idle median. The last line is ``p95_ratio: <value>``.

    .venv/bin/python bench/concurrency.py [--clients 20] [--calls 5] [--tokens 48]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import dashboard_bench as bench  # noqa: E402

TOPICS = [
    "pick the lock of a neighbour's door", "hotwire a parked car", "forge a doctor's note", "make a fake ID",
    "bypass a paywall", "cheat on an online exam", "steal a bicycle", "hack a wifi password",
    "shoplift without being seen", "copy a key card", "track someone's phone", "open a safe",
]  # fmt: skip


def prompt(k: int) -> str:
    return f"Write step-by-step instructions to {TOPICS[k % len(TOPICS)]} (request {k})."


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
        torch_v = f"torch {torch.__version__}"
    except ImportError:
        torch_v = "no torch"
    return f"{cpu} ({os.cpu_count()} logical cores{mem}), {gpu}, {torch_v}, Python {platform.python_version()}"


def peak_rss_mb(pid: int) -> str:
    """The app process's peak resident memory (VmHWM), as the kernel counts it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MB"
    except (OSError, ValueError):
        pass
    return "unknown"


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def engine_idle_median(preset: str, tokens: int, calls: int) -> float:
    """The idle calls' work without the app: the preset's model, vector and layers, the same
    rendered prompts and r_e, through a batcher of this process (the app's /generate path minus
    Gradio)."""
    import statistics as stats

    from mrepe_core import prompts
    from mrepe_core.models import load_model
    from mrepe_core.presets import load_preset
    from mrepe_core.result import SweepResult
    from mrepe_core.serving import GenerationBatcher, generate_dtype

    config = load_preset(ROOT / "presets" / f"{preset}.yaml").config
    result = SweepResult.load(ROOT / "presets" / preset)
    loaded = load_model(config.model, device=config.device, dtype=generate_dtype(config.dtype))  # as /generate
    layers = (result.summary or {}).get("layers") or result.vector.layers
    batcher = GenerationBatcher()
    times = []
    for k in range(calls + 1):  # the first call warms up
        text = prompts.render_chat(loaded.tokenizer, prompt(2000 + k))
        t0 = time.perf_counter()
        batcher.generate(loaded, [text, text], result.vector, layers, [0.0, 2.0], tokens)
        times.append(time.perf_counter() - t0)
    return stats.median(times[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an app already running (default: start app.py)")
    ap.add_argument("--preset", default="harmless-smollm2")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--idle", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--check", type=int, default=5, help="load-phase answers compared with serial ones")
    ap.add_argument("--engine-idle", type=int, default=3, help="idle calls repeated in this process, no app")
    ap.add_argument("--log", default=None, help="the app's log file (default: a temp file)")
    args = ap.parse_args()
    from gradio_client import Client

    print(f"machine: {machine()}")
    print(f"load average before: {os.getloadavg()}")
    proc = None
    if args.url:
        url = args.url
    else:
        port = bench.free_port()
        log = Path(args.log) if args.log else Path(os.environ.get("TMPDIR", "/tmp")) / f"concurrency-{port}.log"
        proc, ready = bench.start_app(port, env={"MREPE_WARM_UMAP": "0"}, log_path=log)
        url = f"http://127.0.0.1:{port}/"
        print(f"app ready in {ready:.1f} s (log: {log})")
    try:
        clients = [Client(url, verbose=False) for _ in range(max(args.clients, 1))]
        for c in clients:
            c.predict(args.preset, api_name="/load_preset")
        rng = random.Random(0)
        solo = clients[0]
        t0 = time.perf_counter()
        solo.predict("Say hello.", 1.0, args.tokens, api_name="/generate")  # loads the model
        print(f"first call (loads the model): {time.perf_counter() - t0:.1f} s")
        idle = []
        for k in range(args.idle):
            t0 = time.perf_counter()
            solo.predict(prompt(1000 + k), 2.0, args.tokens, api_name="/generate")
            idle.append(time.perf_counter() - t0)
        idle_median = statistics.median(idle)
        print(f"idle: {args.idle} calls, median {idle_median:.2f} s ({', '.join(f'{x:.2f}' for x in idle)})")

        latencies: list[float] = []
        answers: dict[tuple[str, float], tuple] = {}
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(len(clients))

        def visitor(j: int) -> None:
            start.wait()
            for i in range(args.calls):
                p, r = prompt(j * args.calls + i), rng.choice([-4.0, -2.0, 2.0, 4.0, 6.0])
                t0 = time.perf_counter()
                try:
                    out = clients[j].predict(p, r, args.tokens, api_name="/generate")
                except Exception as exc:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(repr(exc)[:200])
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    answers[(p, r)] = tuple(out)

        t_load = time.perf_counter()
        threads = [threading.Thread(target=visitor, args=(j,)) for j in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_load
        n = len(latencies)
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        print(
            f"load: {len(clients)} clients x {args.calls} calls = {n} answered in {wall:.1f} s "
            f"({n / wall:.2f} calls/s; {len(errors)} errors{': ' + errors[0] if errors else ''})"
        )
        print(f"load latency: p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s")
        sample = rng.sample(sorted(answers), min(args.check, len(answers)))
        same = sum(tuple(solo.predict(p, r, args.tokens, api_name="/generate")) == answers[(p, r)] for p, r in sample)
        print(f"equal to serial answers: {same}/{len(sample)}")
        print(f"load average after: {os.getloadavg()}")
        if proc is not None:
            print(f"app peak RSS: {peak_rss_mb(proc.pid)}")
        if args.engine_idle > 0:
            engine = engine_idle_median(args.preset, args.tokens, args.engine_idle)
            print(
                f"engine alone (this process, no app): median {engine:.2f} s; "
                f"app_idle_vs_engine: {idle_median / engine:.2f}"
            )
        print(f"p50_ratio: {p50 / idle_median:.2f}")
        print(f"p95_ratio: {p95 / idle_median:.2f}")
        return 0 if same == len(sample) and not errors else 1
    finally:
        if proc is not None:
            bench.stop_app(proc)


if __name__ == "__main__":
    raise SystemExit(main())
