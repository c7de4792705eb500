"""Coherence of the answers steering produces: does the text still read as language?

Steering breaks fluency before it flips behaviour (loops like "1. 1. 1." at large |r_e|). Each
answer gets the mean log-probability of its tokens under the UNSTEERED model, a repetition rate,
and ``coherent`` = neither below ``LOGPROB_FLOOR`` nor a loop (``scoring.is_degenerate``).
"""

from __future__ import annotations

from . import prompts, runner, scoring
from .datasets import Behavior
from .measurements import TOKENS_PER_BATCH_ROW
from .models import LoadedModel

# Mean log-probability per token (nats) under the unsteered model below which an answer has
# stopped being language: chosen on the dev split of the hand-labelled answers (assets/scoring/),
# where it separated "other" from the rest best among -2.5 ... -5.
LOGPROB_FLOOR = -4.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0: no loop, towards 1: "1. 1. 1. ...")."""
    words = text.lower().split()
    grams = [tuple(words[k : k + n]) for k in range(len(words) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


class Coherence:
    """How well the answers read, per answer: the mean log-probability of its tokens under the
    UNSTEERED model (steering that breaks the language gives text the model itself finds unlikely),
    the repetition rate, and ``coherent`` = neither below ``LOGPROB_FLOOR`` nor a loop
    (``scoring.is_degenerate``). One unsteered pass scores every answer of a prompt together."""

    def __init__(
        self,
        loaded: LoadedModel,
        behavior: Behavior,
        answers: dict[tuple[int, float], tuple[str, int]],
        task: str = "coherence",
        system: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.loaded, self.behavior, self.task = loaded, behavior, task
        tok = loaded.tokenizer
        self.keys = sorted(answers)
        self.items = sorted({i for i, _ in self.keys})
        self.texts = {key: answers[key][0] for key in self.keys}
        conts: dict[int, list[list[int]]] = {i: [] for i in self.items}
        self.slot: dict[tuple[int, float], int] = {}
        for key in self.keys:
            ids = tok(self.texts[key], add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
            self.slot[key] = len(conts[key[0]])
            conts[key[0]].append(ids)
        prefixes = [prompts.render_chat(tok, behavior.eval_prompts[i].user, system=system) for i in self.items]
        self.scorer = runner.ChoiceScorer(
            loaded,
            prefixes,
            None,
            None,
            None,
            plain_batch_rows=max(1, batch_size // 4),
            batch_tokens=batch_size * TOKENS_PER_BATCH_ROW,
            choice_ids=[conts[i] for i in self.items],
        )

    def rows(self) -> list[dict]:
        sums, lengths = {}, {}
        for k in range(0, len(self.scorer.units), self.scorer.units_per_batch):
            out_rows, s, n = self.scorer.run(
                [(u, 0.0) for u in range(k, min(k + self.scorer.units_per_batch, len(self.scorer.units)))]
            )
            for j, (pos, _) in enumerate(out_rows):
                sums[self.items[pos]], lengths[self.items[pos]] = s[j], n[j]
        rows = []
        name = self.behavior.name
        for i, r in self.keys:
            text = self.texts[(i, r)]
            lp = float(sums[i][self.slot[(i, r)]] / max(lengths[i][self.slot[(i, r)]], 1))
            coherent = float(lp >= LOGPROB_FLOOR and not scoring.is_degenerate(text))
            for metric, value in (("logprob", lp), ("repetition", repetition_rate(text)), ("coherent", coherent)):
                rows.append(dict(r_e=r, task=self.task, metric=metric, subject=name, item=i, value=value))
        return rows
