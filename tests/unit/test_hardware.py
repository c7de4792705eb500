"""Hardware detection: /proc/cpuinfo parsing, the native-bf16 decision table, choose_dtype("auto"),
and the matmul-rate probe on tiny shapes."""

import math

import pytest
import torch

from mrepe_core import hardware, models

XEON_SPR = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16
"""

EPYC_GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""

XEON_SKYLAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl avx512dq
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_reads_the_first_processor():
    name, flags = hardware.parse_cpuinfo(XEON_SPR)
    assert name == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"} <= flags
    assert "processor" not in flags

    name, flags = hardware.parse_cpuinfo(EPYC_GENOA)
    assert name == "AMD EPYC 9R14 96-Core Processor" and "avx512_bf16" in flags and "amx_bf16" not in flags

    name, flags = hardware.parse_cpuinfo(XEON_SKYLAKE)
    assert name == "Intel(R) Xeon(R) CPU @ 2.00GHz" and not flags & set(hardware.BF16_FLAGS)

    name, flags = hardware.parse_cpuinfo(ARM)  # arm64: 'Features', often no model name
    assert name is None and "bf16" in flags and "asimd" in flags

    assert hardware.parse_cpuinfo("") == (None, frozenset())


@pytest.mark.parametrize(
    "text, report, expected",
    [
        # /proc/cpuinfo and torch agree
        (XEON_SPR, {"avx512_bf16": True, "amx_bf16": True}, True),
        (EPYC_GENOA, {"avx512_bf16": True, "amx_bf16": False}, True),
        (XEON_SKYLAKE, {"avx512_bf16": False, "amx_bf16": False}, False),
        # one source only: it decides
        (XEON_SPR, None, True),
        (EPYC_GENOA, {}, True),
        ("", {"avx512_bf16": True, "amx_bf16": False}, True),
        ("", {"avx512_bf16": False, "amx_bf16": False}, False),
        # the sources disagree: no (never assume)
        (EPYC_GENOA, {"avx512_bf16": False, "amx_bf16": False}, False),
        (XEON_SKYLAKE, {"avx512_bf16": True, "amx_bf16": True}, False),
        # AMX present but withheld (torch says no), AVX512-BF16 still there: yes
        (XEON_SPR, {"avx512_bf16": True, "amx_bf16": False}, True),
        # nothing readable: no
        ("", None, False),
        ("", {"avx512_bf16": None, "amx_bf16": None}, False),
        # arm64 'bf16' is not one of the x86 features this decides on
        (ARM, None, False),
    ],
)
def test_decide_cpu_bf16_table(text, report, expected):
    _, flags = hardware.parse_cpuinfo(text)
    assert hardware.decide_cpu_bf16(flags, report) is expected


@pytest.mark.parametrize(
    "text, report, expected",
    [
        (XEON_SPR, {"avx512_bf16": True, "amx_bf16": True}, True),
        (EPYC_GENOA, {"avx512_bf16": True, "amx_bf16": None}, True),
        (XEON_SKYLAKE, {"avx512_bf16": None, "amx_bf16": None}, False),
        (EPYC_GENOA, {"avx512_bf16": False, "amx_bf16": False}, False),
    ],
)
def test_native_bf16_on_cpu_uses_both_sources(monkeypatch, text, report, expected):
    _, flags = hardware.parse_cpuinfo(text)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.setattr(hardware, "_torch_cpu_bf16", lambda: dict(report))
    assert hardware.native_bf16("cpu") is expected
    assert hardware.native_bf16(torch.device("cpu")) is expected


def test_native_bf16_on_cuda_and_others(monkeypatch):
    monkeypatch.setattr(hardware, "_cuda_bf16", lambda device: True)
    assert hardware.native_bf16("cuda") is True
    monkeypatch.setattr(hardware, "_cuda_bf16", lambda device: False)
    assert hardware.native_bf16("cuda:0") is False
    assert hardware.native_bf16("mps") is False
    if not torch.cuda.is_available():
        monkeypatch.undo()
        assert hardware.native_bf16("cuda") is False  # the real check: no GPU, no bf16


def test_cuda_bf16_asks_torch_without_emulation(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    class NoDevice:
        def __init__(self, index):
            calls.append(("device", index))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "device", NoDevice)

    def supported(including_emulation=True):
        calls.append(("emulation", including_emulation))
        return not including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert hardware.native_bf16("cuda:1") is True
    assert ("device", 1) in calls and ("emulation", False) in calls


@pytest.mark.parametrize(
    "device_type, native, expected",
    [
        ("cpu", True, torch.bfloat16),
        ("cpu", False, torch.float32),
        ("cuda", True, torch.bfloat16),
        ("cuda", False, torch.float32),
        ("mps", False, torch.float32),
    ],
)
def test_choose_dtype_auto_follows_native_bf16(monkeypatch, device_type, native, expected):
    seen = []

    def fake(device):
        seen.append(torch.device(device).type)
        return native

    monkeypatch.setattr(hardware, "native_bf16", fake)
    assert models.choose_dtype("auto", torch.device(device_type)) == expected
    assert seen == [device_type]
    # Explicit dtypes are never second-guessed.
    assert models.choose_dtype("fp32", torch.device(device_type)) == torch.float32
    assert models.choose_dtype("bf16", torch.device(device_type)) == torch.bfloat16
    assert models.choose_dtype(torch.float16, torch.device(device_type)) == torch.float16


def test_choose_dtype_auto_on_this_machine_matches_detection():
    expected = torch.bfloat16 if hardware.native_bf16("cpu") else torch.float32
    assert models.choose_dtype("auto", torch.device("cpu")) == expected


def test_names_and_flags_of_this_machine():
    assert isinstance(hardware.cpu_name(), str) and hardware.cpu_name()
    assert isinstance(hardware.cpu_flags(), frozenset)
    assert hardware.device_name("cpu") == hardware.cpu_name()
    decision = hardware.bf16_decision("cpu")
    assert decision["native_bf16"] is hardware.native_bf16("cpu")


def test_cpu_name_falls_back_without_cpuinfo(monkeypatch):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: None)
    monkeypatch.setattr(hardware, "torch_cpu_capability", lambda: None)
    assert hardware.cpu_name()  # platform's answer, or "unknown CPU"
    assert hardware.cpu_flags() == frozenset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_flops_is_positive_and_finite_on_tiny_shapes(dtype):
    rate = hardware.matmul_flops(dtype, "cpu", [(8, 16, 32), (8, 32, 16)], seconds=0.02)
    assert isinstance(rate, float) and math.isfinite(rate) and rate > 0


def test_matmul_flops_rejects_empty_shapes():
    with pytest.raises(ValueError):
        hardware.matmul_flops(torch.float32, "cpu", [], seconds=0.01)


def test_cpuinfo_readers_do_not_import_torch():
    """The result cache's environment key may read the bf16 flags without paying for torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from mrepe_core import hardware; hardware.cpu_flags(); hardware.parse_cpuinfo('');"
        "print('torch' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
