"""Measurements against r_e: behaviour B, helpfulness P(correct), and the coherence of what is written.

Each measurement is prepared once (``FirstTokenBehavior``, ``GeneratedBehavior``, ``Helpfulness``)
and then run on batches of ``(unit, r_e)`` rows, returning tidy rows; the sweep only schedules them.
``quick_measure.measure()`` is the one-call form for scripts: a few coefficients, tidy rows back.

B is ``P(aligned) − P(misaligned)`` as the model behaves: ``GeneratedBehavior`` decodes every
(prompt, r_e) row and scores the answer with a text scorer. ``FirstTokenBehavior`` is the cheap
next-token proxy (it reads a few percent of the probability mass; kept as an option and as the
coarse curve while generation runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import metrics, prompts, runner, scoring
from .datasets import Behavior, MCQuestion
from .models import LoadedModel

# The packed runner budgets a forward pass in tokens; ``batch_size`` counts prompts of about this
# many tokens, so one knob sizes both paths (4096 tokens at the default 32 gave the best
# throughput measured on a 2-core CPU; a GPU wants a larger batch_size).
TOKENS_PER_BATCH_ROW = 128

Batch = list[tuple[int, float]]  # (unit, r_e) rows
# score(answers, their items) -> +1 aligned / -1 misaligned / 0 neither, per answer
ItemScorer = Callable[[list[str], list[int]], list[int]]


class AnswerStates:
    """Final-normed states at the answer positions that the assumption checks need, kept from the
    sweep's own passes (the first ``n_items`` items at r_e = 0 and the checks' coefficients), so
    the checks cost no forward pass of their own."""

    def __init__(self, n_items: int, coefficients) -> None:
        self.n_items, self.coefficients = n_items, {0.0, *(float(r) for r in coefficients)}
        self._states: dict[tuple[int, float], torch.Tensor] = {}

    def keep(self, out_rows, states: torch.Tensor) -> None:
        for k, (i, r) in enumerate(out_rows):
            if i < self.n_items and r in self.coefficients:
                self._states[(i, r)] = states[k].float().cpu()

    def by_coefficient(self) -> dict[float, torch.Tensor] | None:
        """r -> [n_items, d], or None when some state was not computed (e.g. r_e = 0 off the grid)."""
        if len(self._states) != self.n_items * len(self.coefficients):
            return None
        return {r: torch.stack([self._states[(i, r)] for i in range(self.n_items)]) for r in self.coefficients}


def _run_keeping(scorer, batch: Batch, keep: AnswerStates | None) -> tuple:
    """``scorer.run(batch)``; with ``keep``, the answer-position states also go to it."""
    if keep is None:
        return scorer.run(batch)
    *out, states = scorer.run(batch, return_states=True)
    keep.keep(out[0], states)
    return tuple(out)


@dataclass
class Measurement:
    """Prepared work: ``units`` (items measured together), how many fit a batch, and ``rows``."""

    task: str
    units: list[list[int]]
    units_per_batch: int

    def n_rows(self, batch: Batch) -> int:
        return sum(len(self.units[u]) for u, _ in batch)


class FirstTokenBehavior(Measurement):
    """Next-token proxy: ``(P+ − P−)/(P+ + P−)`` over the first tokens of the answer starts, and the
    covered mass ``P+ + P−`` it actually reads."""

    def __init__(
        self,
        loaded: LoadedModel,
        behavior: Behavior,
        vector,
        layers,
        batch_size: int = 32,
        keep: AnswerStates | None = None,
    ) -> None:
        self.loaded, self.behavior, self.keep = loaded, behavior, keep
        texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
        self.scorer = runner.NextTokenScorer(
            loaded, texts, vector, layers, plain_batch_rows=batch_size, batch_tokens=batch_size * TOKENS_PER_BATCH_ROW
        )
        super().__init__("behavior", self.scorer.units, self.scorer.units_per_batch)

    def rows(self, batch: Batch) -> list[dict]:
        out_rows, logits = _run_keeping(self.scorer, batch, self.keep)
        # Token sets depend on the prompt's answer starts; built-ins share one set per behaviour.
        groups: dict[tuple, list[int]] = {}
        for k, (i, _) in enumerate(out_rows):
            p = self.behavior.eval_prompts[i]
            groups.setdefault((p.aligned, p.misaligned), []).append(k)
        rows = []
        name = self.behavior.name
        for (aligned, misaligned), ks in groups.items():
            pos, neg = metrics.answer_token_sets(self.loaded.tokenizer, aligned, misaligned)
            b, mass = metrics.behavior_expectation_from_logits(logits[ks], pos, neg)
            for j, k in enumerate(ks):
                i, r = out_rows[k]
                rows.append(
                    dict(r_e=r, task="behavior", metric="behavior_expectation", subject=name, item=i, value=b[j])
                )
                rows.append(dict(r_e=r, task="behavior", metric="covered_mass", subject=name, item=i, value=mass[j]))
        return rows


class GeneratedBehavior(Measurement):
    """B as the model behaves: every (prompt, r_e) row decoded (greedy) and scored by ``score``
    (+1 aligned, −1 misaligned, 0 neither, per item). The answers are kept in ``texts`` and, with
    their scores, in ``answers`` (the sequence proxy's openings and the coherence scoring read them).
    ``system`` asks for the behaviour in a system prompt (the prompting baseline, task ``baseline``)."""

    def __init__(
        self,
        loaded: LoadedModel,
        behavior: Behavior,
        vector,
        layers,
        score: ItemScorer,
        max_new_tokens: int = 32,
        batch_size: int = 32,
        system: str | None = None,
        task: str = "behavior",
        cancel=None,
    ) -> None:
        self.loaded, self.behavior, self.vector, self.layers = loaded, behavior, vector, layers
        self.score, self.max_new_tokens, self.task, self.cancel = score, max_new_tokens, task, cancel
        self.prompts = [prompts.render_chat(loaded.tokenizer, p.user, system=system) for p in behavior.eval_prompts]
        self.texts: list[dict] = []
        self.answers: dict[tuple[int, float], tuple[str, int]] = {}  # (item, r_e) -> (text, score)
        super().__init__(task, [[i] for i in range(len(self.prompts))], batch_size)

    def rows(self, batch: Batch) -> list[dict]:
        outs = runner.generate(
            self.loaded,
            [self.prompts[u] for u, _ in batch],
            self.vector,
            self.layers,
            [r for _, r in batch],
            max_new_tokens=self.max_new_tokens,
            cancel=self.cancel,
        )
        scores = self.score(outs, [i for i, _ in batch])
        rows = []
        for (i, r), text, s in zip(batch, outs, scores):
            rows.append(
                dict(
                    r_e=r,
                    task=self.task,
                    metric="behavior_expectation",
                    subject=self.behavior.name,
                    item=i,
                    value=float(s),
                )
            )
            self.texts.append(dict(r_e=r, task=self.task, item=i, prompt=self.behavior.eval_prompts[i].user, text=text))
            self.answers[(i, float(r))] = (text, int(s))
        return rows


class Helpfulness(Measurement):
    """P(correct) on multiple-choice questions: letter logits or choice log-likelihoods (cloze)."""

    def __init__(
        self,
        loaded: LoadedModel,
        questions: Sequence[MCQuestion],
        vector,
        layers,
        fmt: str = "cloze",
        batch_size: int = 32,
        keep: AnswerStates | None = None,
        system: str | None = None,
        task: str = "helpfulness",
    ) -> None:
        self.questions, self.fmt, self.keep, self.task = list(questions), fmt, keep, task
        budget = batch_size * TOKENS_PER_BATCH_ROW
        # The prompting baseline asks in the same format the curve reads, with the instruction before it.
        head = f"{system}\n\n" if system else ""
        self.scorer: runner.NextTokenScorer | runner.ChoiceScorer
        if fmt == "letter":
            texts = [head + prompts.mmlu_letter_prompt(q.question, list(q.choices), q.subject) for q in questions]
            self.letter_ids = metrics.letter_token_ids(loaded.tokenizer)
            self.scorer = runner.NextTokenScorer(
                loaded, texts, vector, layers, plain_batch_rows=batch_size, batch_tokens=budget
            )
        else:
            texts = [head + prompts.mmlu_cloze_prompt(q.question, q.subject) for q in questions]
            self.scorer = runner.ChoiceScorer(
                loaded,
                texts,
                [list(q.choices) for q in questions],
                vector,
                layers,
                plain_batch_rows=max(1, batch_size // 4),
                batch_tokens=budget,
            )
        if keep is not None and not self.scorer.provides_states:
            self.keep = None
        super().__init__(task, self.scorer.units, self.scorer.units_per_batch)

    def rows(self, batch: Batch) -> list[dict]:
        if self.fmt == "letter":
            out_rows, logits = _run_keeping(self.scorer, batch, self.keep)
            answers = [self.questions[i].answer for i, _ in out_rows]
            p, correct = metrics.helpfulness_from_letter_logits(logits, self.letter_ids, answers)
        else:
            out_rows, ll, n = _run_keeping(self.scorer, batch, self.keep)
            answers = [self.questions[i].answer for i, _ in out_rows]
            p, correct = metrics.helpfulness_from_choice_loglik(ll, n, answers)
        rows = []
        for k, (i, r) in enumerate(out_rows):
            subject = self.questions[i].subject
            rows.append(dict(r_e=r, task=self.task, metric="helpfulness", subject=subject, item=i, value=p[k]))
            rows.append(dict(r_e=r, task=self.task, metric="accuracy", subject=subject, item=i, value=correct[k]))
        return rows


def text_scorer(behavior: Behavior, spec: str | None = None) -> ItemScorer:
    """``score(texts, items)`` for a behaviour: the named scorer (``scoring.load_scorer``: keyword
    by default, or a judge model) of the behaviour's kind; a custom behaviour's answers count by
    which of its given answer starts they open with."""
    if behavior.scorer == "starts" and not spec:

        def by_starts(texts: list[str], items: list[int]) -> list[int]:
            return [
                scoring.starts_score(t, behavior.eval_prompts[i].aligned, behavior.eval_prompts[i].misaligned)
                for t, i in zip(texts, items)
            ]

        return by_starts
    scorer = scoring.load_scorer(spec, behavior.scorer if behavior.scorer != "starts" else "refusal")
    return lambda texts, items: scorer.score(texts, [behavior.eval_prompts[i].user for i in items])
