"""The paper's assumption checks measured now on a model, in cancellable steps.

``diagnostics.run_diagnostics`` computes the answer-position states it lacks in one go; here they
are computed one coefficient at a time (the same ``runner.next_token_states_grid`` passes, the model
held per batch), with ``cancel`` checked in between, and then handed to ``run_diagnostics``, which
computes the checks from them. Used by the dashboard's "Measure the checks now".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch

from . import prompts, runner
from .diagnostics import DiagnosticsResult, answer_prompts, run_diagnostics
from .limits import check_cancel
from .models import LoadedModel
from .vectors import SteeringVector

# Questions and behaviour prompts for a measurement on the spot (each costs a pass per coefficient).
MEASURE_NOW_ITEMS = 8

ProgressFn = Callable[[int, int], None]


def _states(loaded, texts, vector, layers, grid, cancel, step: Callable[[], None]) -> dict[float, torch.Tensor]:
    out: dict[float, torch.Tensor] = {}
    for r in grid:
        check_cancel(cancel, "The assumption checks")
        states, _ = runner.next_token_states_grid(loaded, texts, vector, layers, [r])
        out[r] = states[0]
        step()
    return out


def measure_checks(
    loaded: LoadedModel,
    vector: SteeringVector,
    layers,
    questions: Sequence,
    behavior,
    r_grid: Sequence[float],
    helpfulness_format: str = "letter",
    cancel: threading.Event | None = None,
    progress: ProgressFn | None = None,
) -> DiagnosticsResult:
    """``run_diagnostics`` on ``questions`` and ``behavior.eval_prompts`` at ``r_grid`` (and r_e = 0),
    measuring their states one coefficient at a time; raises ``limits.Cancelled`` when ``cancel``
    is set. ``progress(done, total)`` after every coefficient."""
    grid = [0.0, *[float(r) for r in r_grid if float(r) != 0.0]]
    has_questions = bool(questions)
    has_prompts = behavior is not None and bool(behavior.eval_prompts)
    total = len(grid) * (int(has_questions) + int(has_prompts))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    question_states = behavior_states = None
    if has_questions:
        texts, _ = answer_prompts(loaded.tokenizer, list(questions), helpfulness_format)
        question_states = _states(loaded, texts, vector, layers, grid, cancel, step)
    if has_prompts:
        texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
        behavior_states = _states(loaded, texts, vector, layers, grid, cancel, step)
    return run_diagnostics(
        loaded,
        vector,
        layers,
        list(questions),
        behavior,
        r_grid,
        helpfulness_format=helpfulness_format,
        question_states=question_states,
        behavior_states=behavior_states,
    )
