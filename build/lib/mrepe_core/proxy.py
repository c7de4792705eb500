"""The sequence proxy of B: the probabilities of whole openings the model itself wrote.

A first-token proxy reads a few percent of the next-token mass and cannot tell "I'd be happy to"
from "I can't". Here each prompt's aligned and misaligned openings are the first tokens of the
answers the model generated at a few coefficients, classified by the text scorer; their sequence
probabilities are read at every r_e through the packed prefix tree (one pass per prompt tree and
coefficient, so the cost stays close to the first-token proxy's). ``covered_mass`` says how much
of the answer space the proxy reads.
"""

from __future__ import annotations

import numpy as np

from . import prompts, runner
from .datasets import Behavior
from .measurements import TOKENS_PER_BATCH_ROW, AnswerStates, Batch, Measurement, _run_keeping
from .models import LoadedModel

# Openings: the first tokens of the model's own answers (bench/proxy_vs_generation.py --dev chose it).
OPENING_TOKENS = 4


def openings(
    loaded: LoadedModel,
    behavior: Behavior,
    answers: dict[tuple[int, float], tuple[str, int]],
    n_tokens: int = OPENING_TOKENS,
    pool: int = 3,
) -> list[tuple[list[list[int]], list[list[int]]]]:
    """Per prompt, the openings the model itself wrote, split by how its answers were scored:
    (aligned, misaligned) lists of the first ``n_tokens`` tokens. A prompt without an answer of one
    side borrows that side's most frequent openings over all prompts (what this model says when it
    refuses, or complies, elsewhere); the behaviour's fixed answer starts are the last resort."""
    tok = loaded.tokenizer
    per_item: dict[int, tuple[list, list]] = {i: ([], []) for i in range(len(behavior.eval_prompts))}
    counts: tuple[dict, dict] = ({}, {})
    for (i, _), (text, score) in sorted(answers.items()):
        if score == 0 or not text.strip():
            continue
        ids = tuple(tok(text, add_special_tokens=False)["input_ids"][:n_tokens])
        if not ids:
            continue
        side = 0 if score > 0 else 1
        if ids not in per_item[i][side]:
            per_item[i][side].append(ids)
        counts[side][ids] = counts[side].get(ids, 0) + 1
    shared = [sorted(c, key=lambda k: (-c[k], k))[:pool] for c in counts]
    out = []
    for i, p in enumerate(behavior.eval_prompts):
        sides = []
        for side, starts in ((0, p.aligned), (1, p.misaligned)):
            own = per_item[i][side] or shared[side]
            if not own:
                own = [tuple(tok(s, add_special_tokens=False)["input_ids"][:n_tokens]) for s in starts]
            sides.append([list(o) for o in own if o])
        out.append((sides[0], sides[1]))
    return out


class SequenceProxy(Measurement):
    """B from the probabilities of whole openings: ``(P(A) − P(M)) / (P(A) + P(M))`` with ``A``/``M``
    the aligned/misaligned openings of each prompt (``openings``), scored at every r_e through the
    packed prefix tree. ``covered_mass`` is ``P(A) + P(M)``, the share of the answer space it reads."""

    def __init__(
        self,
        loaded: LoadedModel,
        behavior: Behavior,
        vector,
        layers,
        sides: list[tuple[list[list[int]], list[list[int]]]],
        batch_size: int = 32,
        keep: AnswerStates | None = None,
    ) -> None:
        self.behavior = behavior
        self.n_aligned = [len(a) for a, _ in sides]
        texts = [prompts.render_chat(loaded.tokenizer, p.user) for p in behavior.eval_prompts]
        self.scorer = runner.ChoiceScorer(
            loaded,
            texts,
            None,
            vector,
            layers,
            plain_batch_rows=max(1, batch_size // 4),
            batch_tokens=batch_size * TOKENS_PER_BATCH_ROW,
            choice_ids=[a + m for a, m in sides],
        )
        # The answer-position states for the assumption checks come with these passes (packed path).
        self.keep = keep if self.scorer.provides_states else None
        super().__init__("behavior", self.scorer.units, self.scorer.units_per_batch)

    def rows(self, batch: Batch) -> list[dict]:
        out_rows, sums, _ = _run_keeping(self.scorer, batch, self.keep)
        rows = []
        for k, (i, r) in enumerate(out_rows):
            a = self.n_aligned[i]
            log_a, log_m = np.logaddexp.reduce(sums[k, :a]), np.logaddexp.reduce(sums[k, a:])
            top = max(log_a, log_m)
            pa, pm = np.exp(log_a - top), np.exp(log_m - top)
            b = float((pa - pm) / (pa + pm)) if np.isfinite(top) else 0.0
            name = self.behavior.name
            rows.append(dict(r_e=r, task="behavior", metric="behavior_proxy", subject=name, item=i, value=b))
            rows.append(
                dict(
                    r_e=r,
                    task="behavior",
                    metric="covered_mass",
                    subject=name,
                    item=i,
                    value=float(np.exp(np.logaddexp(log_a, log_m))),
                )
            )
        return rows
