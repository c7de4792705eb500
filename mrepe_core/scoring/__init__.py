"""Text scorers for generated answers: did the model refuse or comply, agree or disagree?

A scorer gives each answer a label of its family (refusal/compliance/other or agree/disagree/other,
defined in ``assets/scoring/RULE.md``), then maps labels to +1 (aligned side) / -1 / 0 for the
behaviour's ``kind``. Labels stay visible so that a scorer can be measured against the hand-labelled
set with a 3x3 confusion matrix (``bench/scorer_accuracy.py``), not just a sign.

``load_scorer`` specs: ``keyword`` (rules developed on the dev and test splits; default),
``hf-classifier:<hub id or folder>[#LABEL=label,...]`` (a text-classification model), ``hf-judge:<hub
id or folder>`` (an instruction model asked a yes/no rubric). Models load lazily and never fall back
to keywords: a silent fallback would report keyword numbers under a judge's name.

Modules: ``base`` (families, kinds, the base class, accuracy and confusion matrices), ``text`` (loops
and relevance), ``keyword`` (the rules), ``judges`` (model scorers).
"""

from __future__ import annotations

from .base import (
    FAMILIES,
    KINDS,
    ScorerLoadError,
    TextScorer,
    accuracy,
    behavior_expectation,
    confusion_matrix,
    family_of,
    starts_score,
)
from .judges import RUBRICS, HFClassifierScorer, HFJudgeScorer
from .keyword import KeywordScorer, keyword_agreement_label, keyword_refusal_label
from .text import is_degenerate, loop_free_prefix, relevance, topic_words

__all__ = [
    "FAMILIES",
    "KINDS",
    "RUBRICS",
    "HFClassifierScorer",
    "HFJudgeScorer",
    "KeywordScorer",
    "ScorerLoadError",
    "TextScorer",
    "accuracy",
    "behavior_expectation",
    "confusion_matrix",
    "family_of",
    "is_degenerate",
    "keyword_agreement_label",
    "keyword_refusal_label",
    "load_scorer",
    "loop_free_prefix",
    "relevance",
    "starts_score",
    "topic_words",
]


def load_scorer(spec: str | None, kind: str) -> TextScorer:
    """Build a scorer from a user's spec: ``keyword`` (default), ``hf-classifier:<id>[#A=label,...]``,
    ``hf-judge:<id>[#batch=N,margin=X]``. Models load on first use."""
    spec = (spec or "keyword").strip()
    family_of(kind)
    if spec == "keyword":
        return KeywordScorer(kind)
    prefix, _, rest = spec.partition(":")
    location, _, opts = rest.partition("#")
    options = {}
    for part in filter(None, (p.strip() for p in opts.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ScorerLoadError(f"Option {part!r} in {spec!r} needs the form name=value.")
        options[key.strip()] = value.strip()
    if prefix == "hf-classifier":
        batch = int(options.pop("batch", 16))
        return HFClassifierScorer(location.strip(), kind, label_map=options, batch_size=batch)
    if prefix == "hf-judge":
        unknown = set(options) - {"batch", "margin"}
        if unknown:
            raise ScorerLoadError(f"Unknown hf-judge option(s) {sorted(unknown)}; use batch= and margin=.")
        return HFJudgeScorer(location.strip(), kind, int(options.get("batch", 8)), float(options.get("margin", 0)))
    raise ScorerLoadError(
        f"Unknown scorer {spec!r}. Use 'keyword', 'hf-classifier:<id or folder>' or 'hf-judge:<id or folder>'."
    )
