"""``measure()``: B, coherence and helpfulness at a few coefficients in one call, as tidy rows.

The sweep's measurements without the sweep (no grid plan, no cache, no fits): for scripts and
notebooks that want numbers at chosen r_e (``mrepe_core.measure``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .coherence import Coherence
from .datasets import Behavior, MCQuestion
from .measurements import FirstTokenBehavior, GeneratedBehavior, Helpfulness, ItemScorer, Measurement, text_scorer
from .models import LoadedModel, resolve_layers
from .vectors import SteeringVector


def measure(
    model: LoadedModel,
    behavior: Behavior,
    vector: SteeringVector,
    r_e: Sequence[float],
    questions: Sequence[MCQuestion] = (),
    mode: str = "generate",
    layers=None,
    helpfulness_format: str = "cloze",
    max_new_tokens: int = 32,
    scorer: str | ItemScorer | None = None,
) -> pd.DataFrame:
    """B, the answers' coherence and (when ``questions`` are given) helpfulness at each
    coefficient: tidy rows ``r_e, task, metric, subject, item, value``. ``mode`` is ``generate``
    (decode and score; coherence comes with it) or ``first_token`` (the next-token proxy)."""
    layers = resolve_layers(layers if layers is not None else vector.layers, model.n_layers)
    grid = [float(r) for r in r_e]
    if mode == "generate":
        score: ItemScorer = scorer if callable(scorer) else text_scorer(behavior, scorer)
        work: list[Measurement] = [GeneratedBehavior(model, behavior, vector, layers, score, max_new_tokens)]
    elif mode == "first_token":
        work = [FirstTokenBehavior(model, behavior, vector, layers)]
    else:
        raise ValueError(f"mode must be generate or first_token, not {mode!r}.")
    if questions:
        work.append(Helpfulness(model, questions, vector, layers, helpfulness_format))
    rows: list[dict] = []
    for m in work:
        assert isinstance(m, (GeneratedBehavior, FirstTokenBehavior, Helpfulness))
        todo = [(u, r) for r in grid for u in range(len(m.units))]
        for k in range(0, len(todo), m.units_per_batch):
            rows += m.rows(todo[k : k + m.units_per_batch])
        if isinstance(m, GeneratedBehavior):
            rows += Coherence(model, behavior, m.answers).rows()
    return pd.DataFrame(rows, columns=["r_e", "task", "metric", "subject", "item", "value"])
