"""Talking to a (steered) model: one call from a prompt to the model's answer.

``generate(model, prompt, vector=..., r_e=...)`` renders the prompt with the model's chat template
(as extraction and evaluation do), decodes greedily, and steers with ``vector`` at ``r_e``; inside
``with vector.apply(model, r_e): ...`` a plain ``generate(model, prompt)`` is steered as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import prompts, runner
from .models import LoadedModel
from .vectors import SteeringVector


def generate(
    model: LoadedModel,
    prompt: str | Sequence[str],
    vector: SteeringVector | None = None,
    r_e: float | Sequence[float] = 0.0,
    max_new_tokens: int = 64,
    layers=None,
    system: str | None = None,
    chat: bool = True,
) -> str | list[str]:
    """The model's answer to ``prompt`` (a list of prompts gives a list of answers, one batch).

    ``r_e`` is one coefficient for all prompts or one per prompt; ``layers`` defaults to the
    vector's. ``chat=False`` continues the raw text instead of a chat turn."""
    single = isinstance(prompt, str)
    texts: list[str] = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts or any(not isinstance(t, str) for t in texts):
        raise ValueError("prompt must be a string or a list of strings.")
    rendered = [prompts.render_chat(model.tokenizer, t, system=system) if chat else t for t in texts]
    answers = runner.generate(model, rendered, vector, layers, r_e, max_new_tokens=max_new_tokens)
    return answers[0] if single else answers
