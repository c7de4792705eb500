"""Cold and repeated runs of the default preset through the command line, as a user runs it.

Each run is a fresh ``mrepe sweep`` process with an empty sweep cache (the de-quantised GGUF
weights stay cached, as after a first ``make run``): B from the sequence proxy alone
(``--behavior-mode proxy``) and B from generated answers (the default, with the proxy first), in
the preset's dtype and, where this CPU runs bf16 natively, in bf16; then the same command again,
served from the cache. Prints wall times and the machine.

    python bench/cold.py [--preset presets/harmless-smollm2.yaml] [--modes proxy,generate] [--dtypes preset,bf16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrepe_core import hardware  # noqa: E402


def run(args: list[str], cache: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mrepe_core", "sweep", *args, "--cache-dir", cache, "--quiet"],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "harmless-smollm2.yaml"))
    ap.add_argument("--modes", default="proxy,generate")
    ap.add_argument("--dtypes", default="preset,bf16")
    args = ap.parse_args()
    print(f"# {hardware.cpu_name()}; native bf16: {hardware.native_bf16('cpu')}; command: python {' '.join(sys.argv)}")
    for dtype in args.dtypes.split(","):
        if dtype == "bf16" and not hardware.native_bf16("cpu"):
            print("bf16: skipped (this CPU has no native bf16)")
            continue
        for mode in args.modes.split(","):
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                cli = ["--preset", args.preset, "--behavior-mode", mode, "--out", out]
                cli += [] if dtype == "preset" else ["--dtype", dtype]
                cold = run(cli, cache)
                repeat = run(cli, cache)
                print(f"{mode:9s} {dtype:6s} cold {cold:7.1f} s   repeat (cache) {repeat:5.2f} s")


if __name__ == "__main__":
    main()
