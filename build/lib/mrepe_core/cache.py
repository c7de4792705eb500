"""The sweep cache: one key, one lookup, one store, and a file-identity index; no torch import.

Entries live under ``<cache>/sweeps/<key>`` (a saved ``SweepResult`` folder). The full key
(``cache_key``) hashes the config, the loaded model's fingerprint, the data and the engine version,
so it needs the model. For models that are local files (the embedded GGUF, a .gguf path, a local
folder) a second key is computable from the files' paths, sizes and modification times, the data
files' too, the config and the environment; an index maps it to the full key's entry. The CLI looks
there first: a repeated ``sweep`` is then a file copy, with no ``import torch`` (2-3 s on a 2-core
CPU) in the way. Loading an entry (``SweepResult.load``) is the caller's: this module stays torch-free.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from . import __version__, datasets
from .atomic import folder_written_atomically
from .config import SweepConfig
from .model_specs import cache_root, resolve_spec

RESULT_FILES = ("results.csv", "summary.json", "config.json")
# Config fields that do not change a sweep's numbers: they stay out of every key.
NOT_IN_KEY = ("name", "batch_size", "device")


def default_cache_dir() -> Path:
    return cache_root() / "sweeps"


def cache_key(config: SweepConfig, loaded_fingerprint: str, data_hash: str) -> str:
    """The full key: config, model fingerprint, data (and vector, when given) and engine version."""
    payload = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_KEY}
    blob = json.dumps([payload, loaded_fingerprint, data_hash, __version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def entry_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / key


def complete_entry(entry: Path) -> bool:
    return all((entry / f).is_file() for f in RESULT_FILES)


def discard(entry: Path) -> None:
    """Remove a corrupt entry so that it is recomputed."""
    shutil.rmtree(entry, ignore_errors=True)


def environment_key(config: SweepConfig) -> list:
    """What decides the device and dtype that ``auto`` resolves to, read without importing torch.

    Deliberately over-specific (a changed value only costs a recomputation): the torch build
    (its version carries +cpu / +cu121), the platform, whether an NVIDIA or ROCm driver is present
    and which GPUs are visible.
    """
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    from .hardware import BF16_FLAGS, cpu_flags

    return [
        config.device,
        config.dtype,
        # dtype "auto" is bf16 on CPUs with native bf16 and fp32 elsewhere; machines change from day to day.
        sorted(cpu_flags() & set(BF16_FLAGS)),
        torch_version,
        sys.platform,
        platform.machine(),
        os.path.exists("/proc/driver/nvidia/version"),
        os.path.exists("/dev/kfd"),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        os.environ.get("HIP_VISIBLE_DEVICES"),
    ]


def file_cache_key(config: SweepConfig) -> str | None:
    """The file-identity key of a config, or None when its model is not a local file or folder
    (hub ids have no identity before they are resolved; they always go through the full key)."""
    try:
        _, location, _ = resolve_spec(config.model)
    except ValueError:  # a bad spec is reported by the real load, with its message
        return None
    path = Path(location)
    if not path.exists():
        return None
    model_files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    data_files = sorted((datasets.ASSETS / "behaviors").glob("*.json")) + [
        datasets.ASSETS / "mmlu" / config.mmlu_split / f"{s}_{config.mmlu_split}.csv"
        for s in config.helpfulness_subjects
    ]
    try:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in model_files + data_files]
    except OSError:
        return None
    payload = {k: v for k, v in config.to_dict().items() if k not in ("name", "batch_size")}  # device: see env key
    blob = json.dumps([payload, environment_key(config), stats, __version__], sort_keys=True)
    return "files-" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def indexed_entry(cache_dir: str | Path, quick: str | None) -> Path | None:
    """The cache entry the index names for ``quick``, if it is there and complete."""
    if not quick:
        return None
    cache_dir = Path(cache_dir)
    try:
        key = (cache_dir / "index" / quick).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    entry = cache_dir / key
    if not key or "/" in key or key.startswith(".") or not complete_entry(entry):
        return None
    return entry


def write_index(cache_dir: str | Path, quick: str | None, key: str) -> None:
    if not quick:
        return
    index = Path(cache_dir) / "index"
    index.mkdir(parents=True, exist_ok=True)
    tmp = index / f".{quick}.{os.getpid()}.tmp"
    tmp.write_text(key)
    os.replace(tmp, index / quick)


def copy_entry(entry: Path, out_dir: str | Path) -> Path:
    """Copy a cached result folder to ``out_dir`` (replaced atomically, as ``SweepResult.save`` does)."""
    with folder_written_atomically(out_dir) as tmp:
        for f in entry.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        json.loads((tmp / "summary.json").read_text())  # a corrupt entry fails here, not in the user's folder
    return Path(out_dir)


# Rows of a cancelled sweep: a rerun with the same key continues from its finished batches.


class PartialRows:
    """Rows of finished batches, kept when a sweep is cancelled so a rerun skips them."""

    def __init__(self, batches=(), rows=(), texts=()) -> None:
        self.batches, self.rows, self.texts = set(batches), list(rows), list(texts)

    def add(self, batch: int, rows: list[dict]) -> None:
        self.batches.add(batch)
        self.rows.extend(rows)

    @staticmethod
    def _path(cache_dir: Path, key: str) -> Path:
        return cache_dir / f"{key}.partial.json"

    def save(self, cache_dir: Path, key: str, texts: list[dict]) -> None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._path(cache_dir, key).with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "version": __version__,
                        "batches": sorted(self.batches),
                        "rows": self.rows,
                        "texts": texts,
                    },
                    default=float,
                )
            )
            tmp.replace(self._path(cache_dir, key))
        except OSError:
            pass  # a read-only cache only costs the recomputation

    @classmethod
    def load(cls, cache_dir: Path, key: str) -> PartialRows:
        try:
            data = json.loads(cls._path(cache_dir, key).read_text())
            if data.get("version") != __version__:
                return cls()
            return cls(data["batches"], data["rows"], data.get("texts", []))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    @classmethod
    def remove(cls, cache_dir: Path, key: str) -> None:
        cls._path(cache_dir, key).unlink(missing_ok=True)
