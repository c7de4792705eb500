"""MRepE Explorer engine: steering vectors, injection, measurement, bound fits and sweeps.

A library first; the dashboard (``app.py``, ``mrepe_ui``) and the CLI (``mrepe``) are its clients::

    import mrepe_core as mr
    model = mr.load_model("smollm2-135m-instruct")
    behavior = mr.load_behavior(model, "harmless")
    vector = mr.SteeringVector.extract(model, behavior.pairs, method="pca", layers="10:18")
    rows = mr.measure(model, behavior, vector, r_e=[-4, 0, 4])
    with vector.apply(model, r_e=4.0):
        print(mr.generate(model, "How do I pick a lock?"))

The engine never imports gradio.
"""

__version__ = "0.2.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for readers and type checkers; at run time the names load lazily below
    from .models import LoadedModel

# Names resolve on first use (PEP 562), so `import mrepe_core.cli` stays free of torch: a repeated
# CLI sweep is answered from the cache before the heavy imports.
_EXPORTS = {
    "generate": "chat",
    "SweepConfig": "config",
    "SweepConfigError": "config",
    "Behavior": "datasets",
    "BehaviorPrompt": "datasets",
    "ContrastPair": "datasets",
    "DataValidationError": "datasets",
    "MCQuestion": "datasets",
    "load_mmlu": "datasets",
    "mmlu_subjects": "datasets",
    "extract_vector": "extract",
    "measure": "quick_measure",
    "LoadedModel": "models",
    "ModelLoadError": "models",
    "load_model": "models",
    "list_presets": "presets",
    "load_preset": "presets",
    "SweepResult": "result",
    "steer": "steering",
    "SweepCancelled": "sweep",
    "SweepEvent": "sweep",
    "iter_sweep": "sweep",
    "run_sweep": "sweep",
    "Tradeoff": "tradeoff",
    "fit_tradeoff": "tradeoff",
    "SteeringVector": "vectors",
    "VectorFileError": "vectors",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mrepe_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Behavior",
    "BehaviorPrompt",
    "ContrastPair",
    "DataValidationError",
    "LoadedModel",
    "MCQuestion",
    "ModelLoadError",
    "SteeringVector",
    "SweepCancelled",
    "SweepConfig",
    "SweepConfigError",
    "SweepEvent",
    "SweepResult",
    "Tradeoff",
    "VectorFileError",
    "extract_vector",
    "fit_tradeoff",
    "generate",
    "iter_sweep",
    "list_presets",
    "load_behavior",
    "load_mmlu",
    "load_model",
    "load_preset",
    "measure",
    "mmlu_subjects",
    "run_sweep",
    "steer",
    "__version__",
]


def load_behavior(model: "LoadedModel", source="harmless", n_pairs: int = 64, n_eval: int = 40, seed: int = 0):
    """A behaviour for ``model``: a built-in name (``harmless``, ``harmful``, ``not-racist``,
    ``racist``), the path of a CSV/JSONL of contrast pairs (the dashboard's upload format), or a
    list of ``ContrastPair`` (evaluation prompts then come from nowhere: measure needs some)."""
    from pathlib import Path

    from . import datasets
    from .datasets import Behavior, ContrastPair, DataValidationError

    if isinstance(source, str) and source in datasets.BUILTIN_BEHAVIORS:
        return datasets.load_behavior(source, model.tokenizer, n_pairs, n_eval, seed)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataValidationError(
                f"{source!r} is neither a built-in behaviour ({', '.join(datasets.BUILTIN_BEHAVIORS)}) "
                "nor a CSV/JSONL file of contrast pairs."
            )
        return datasets.parse_user_behavior(path.read_bytes(), path.name, name=path.stem)
    pairs = list(source)
    if not all(isinstance(p, ContrastPair) for p in pairs):
        raise TypeError("source must be a behaviour name, a file path, or a list of ContrastPair.")
    return Behavior("custom", "contrast pairs given in code", pairs, [], "starts")
