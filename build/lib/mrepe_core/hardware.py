"""What this machine is and what it runs fast: CPU model and flags, native bf16, matmul throughput.

``native_bf16`` decides ``models.choose_dtype("auto")``: bf16 is only worth it where the hardware
computes in bf16 (a CUDA card of compute capability 8 or later, a CPU with AVX512-BF16 or AMX-BF16);
elsewhere bf16 is emulated through fp32 and is slower than fp32 itself, and less exact. Nothing is
assumed: the CPU's flags are read at run time from ``/proc/cpuinfo`` and cross-checked with what
torch's own CPU detection reports (``torch._C._cpu._get_cpu_capability()`` where this torch
exposes it); where neither can be read the answer is no.

``matmul_flops`` measures the rate a dense matmul of given shapes reaches here (GFLOP/s), the
denominator of the benchmarks' FLOP-fraction figures.

The /proc/cpuinfo readers (``parse_cpuinfo``, ``cpu_flags``, ``cpu_name`` on Linux) do not import
torch, so code that must stay light (the result cache's environment key) can use them; torch is
imported inside the functions that need it.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CPUINFO = Path("/proc/cpuinfo")
# x86 flags (as Linux names them in /proc/cpuinfo) that mean the CPU computes in bf16 natively:
# AVX512-BF16 (dot products and conversions; Cooper Lake, Sapphire Rapids and later, AMD Zen 4 and
# later) and AMX-BF16 (tile matmuls; Sapphire Rapids and later).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

__all__ = [
    "BF16_FLAGS",
    "bf16_decision",
    "cpu_flags",
    "cpu_name",
    "decide_cpu_bf16",
    "device_name",
    "matmul_flops",
    "native_bf16",
    "parse_cpuinfo",
    "torch_cpu_capability",
]


# ---------------------------------------------------------------------------------------------
# CPU identity and flags
# ---------------------------------------------------------------------------------------------


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """Model name and feature flags of the first processor in ``/proc/cpuinfo`` text.

    x86 lists ``model name`` (``model`` is a number there) and ``flags``; arm64 lists ``Features``
    and, on some kernels, ``model name``, ``Model`` or ``Hardware``. Flags are lower-cased; missing
    fields give None / an empty set.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if "flags" in fields or "features" in fields:
                break  # the first processor block is enough: all cores of a machine share them
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    name = None
    for key in ("model name", "cpu model", "hardware", "model"):
        value = " ".join(fields.get(key, "").split())
        if value and not value.isdigit():
            name = value
            break
    flags = fields.get("flags") or fields.get("features") or ""
    return name, frozenset(f.lower() for f in flags.split())


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str | None, frozenset[str]] | None:
    try:
        return parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        return None  # not Linux, or /proc unreadable


def torch_cpu_capability() -> dict | None:
    """torch's own CPU feature detection (cpuinfo library) as a dict, where this torch exposes it.

    Keys include ``cpu_name``, ``avx512_bf16``, ``amx_bf16`` and ``amx_tile``; None on builds
    without it (it is a private API: its absence or failure is not an error).
    """
    import torch

    fn = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if fn is None:
        return None
    try:
        caps = fn()
    except Exception:
        return None
    return dict(caps) if isinstance(caps, Mapping) else None


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo, else torch's detection, else ``platform``."""
    info = _cpuinfo()
    if info is not None and info[0]:
        return info[0]
    caps = torch_cpu_capability() or {}
    if caps.get("cpu_name"):
        return str(caps["cpu_name"])
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """Feature flags of the CPU as /proc/cpuinfo lists them (empty where it cannot be read)."""
    info = _cpuinfo()
    return info[1] if info is not None else frozenset()


# ---------------------------------------------------------------------------------------------
# Native bf16
# ---------------------------------------------------------------------------------------------


def _torch_amx_usable() -> bool | None:
    """Whether torch can use AMX tiles here (the OS must grant the tile state); None if not exposed."""
    import torch

    cpu = getattr(torch._C, "_cpu", None)
    for name in ("_is_amx_tile_supported", "_init_amx"):
        fn = getattr(cpu, name, None)
        if fn is not None:
            try:
                return bool(fn())
            except Exception:
                return None
    return None


def _torch_cpu_bf16() -> dict:
    """What torch reports about bf16 on this CPU: ``{"avx512_bf16": bool|None, "amx_bf16": bool|None}``
    (None: this torch does not say)."""
    caps = torch_cpu_capability()
    out: dict[str, bool | None] = {flag: None for flag in BF16_FLAGS}
    if caps is not None:
        for flag in BF16_FLAGS:
            if flag in caps:
                out[flag] = bool(caps[flag])
    if out["amx_bf16"]:
        usable = _torch_amx_usable()
        if usable is False:
            out["amx_bf16"] = False  # the CPU has AMX but the kernel does not let this process use it
    return out


def decide_cpu_bf16(flags: Iterable[str] | None, torch_report: Mapping[str, bool | None] | None) -> bool:
    """The decision table for a CPU: native bf16 when some bf16 feature is present by every source
    that can be read, and at least one source can be read.

    ``flags``: /proc/cpuinfo flags (None or empty: not readable); ``torch_report``: per feature of
    ``BF16_FLAGS``, True / False / None (None: torch does not say). A feature counts when no
    readable source denies it; if /proc/cpuinfo says yes and torch says no (for instance torch was
    built without it, or the OS withholds AMX), the answer is no.
    """
    flags = frozenset(f.lower() for f in (flags or ()))
    report = dict(torch_report or {})
    for feature in BF16_FLAGS:
        sources = []
        if flags:
            sources.append(feature in flags)
        if report.get(feature) is not None:
            sources.append(bool(report[feature]))
        if sources and all(sources):
            return True
    return False


def _cuda_bf16(device: torch.device) -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(index):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch before 2.3 has no including_emulation (and no emulation either)
            return bool(torch.cuda.is_bf16_supported())


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` computes in bf16 natively (so bf16 is faster than fp32 there).

    CUDA: ``torch.cuda.is_bf16_supported()`` without emulation. CPU: AVX512-BF16 or AMX-BF16,
    present in /proc/cpuinfo and not denied by torch's own detection (``decide_cpu_bf16``).
    Other devices (MPS, XPU, ...): no.
    """
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return _cuda_bf16(device)
    if device.type == "cpu":
        return decide_cpu_bf16(cpu_flags(), _torch_cpu_bf16())
    return False


def bf16_decision(device: str | torch.device | None = None) -> dict:
    """``native_bf16`` with the evidence it used (for logs and benchmark headers)."""
    import torch

    device = torch.device(device if device is not None else "cpu")
    out: dict = {"device": str(device), "native_bf16": native_bf16(device)}
    if device.type == "cpu":
        flags = cpu_flags()
        out["cpuinfo_flags"] = sorted(f for f in BF16_FLAGS if f in flags) if flags else None
        out["torch_reports"] = _torch_cpu_bf16()
        caps = torch_cpu_capability()
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if caps is not None:
            out["torch_cpu_name"] = caps.get("cpu_name")
    return out


def device_name(device: str | torch.device | None = None) -> str:
    """A human name for the device: the GPU's name, or the CPU's model name."""
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    if device.type == "mps":
        return f"Apple MPS ({cpu_name()})"
    return cpu_name()


# ---------------------------------------------------------------------------------------------
# Matmul throughput
# ---------------------------------------------------------------------------------------------


def _synchronise(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_flops(
    dtype: torch.dtype,
    device: str | torch.device,
    shapes: Sequence[tuple[int, int, int]],
    seconds: float = 1.0,
    seed: int = 0,
) -> float:
    """GFLOP/s of dense matmuls of the given shapes in ``dtype`` on ``device``, measured here.

    ``shapes``: ``(m, k, n)`` per matmul, an ``[m, k]`` activation times a ``[k, n]`` weight, run
    as ``torch.nn.functional.linear`` as a model's linear layers run (2·m·k·n FLOPs each). The
    list is run round after round (after one warm-up round) for about ``seconds``; the rate is
    all FLOPs over all time, so each shape weighs by its FLOPs, as in a forward pass.
    """
    import torch

    with torch.inference_mode():
        return _matmul_flops(torch.device(device), dtype, shapes, seconds, seed)


def _matmul_flops(device, dtype, shapes, seconds: float, seed: int) -> float:
    import torch

    shapes = [(int(m), int(k), int(n)) for m, k, n in shapes]
    if not shapes or any(min(s) < 1 for s in shapes):
        raise ValueError("Give at least one (m, k, n) shape with positive sizes.")
    # Random operands made on the device itself (an 8B model's shapes are GBs in fp32 on the host).
    generator = torch.Generator(device=device).manual_seed(seed)

    def random(rows: int, cols: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn((rows, cols), generator=generator, device=device, dtype=dtype).mul_(scale)

    # One activation per distinct (m, k), one weight per distinct (k, n): bounded memory.
    xs = {(m, k): random(m, k) for m, k in sorted({s[:2] for s in shapes})}
    ws = {(k, n): random(n, k, 1 / math.sqrt(k)) for k, n in sorted({s[1:] for s in shapes})}
    flops_per_round = sum(2.0 * m * k * n for m, k, n in shapes)

    def one_round() -> None:
        for m, k, n in shapes:
            torch.nn.functional.linear(xs[(m, k)], ws[(k, n)])

    one_round()  # warm-up: kernel selection, allocator, oneDNN primitive caches
    _synchronise(device)
    rounds, start = 0, time.perf_counter()
    while True:
        one_round()
        rounds += 1
        _synchronise(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return flops_per_round * rounds / elapsed / 1e9
