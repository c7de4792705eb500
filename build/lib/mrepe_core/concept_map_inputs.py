"""Inputs of a concept map: texts of each set, run through the model once, with every layer's state kept.

:func:`collect_map_inputs` runs the model over a few texts of each set (contrast examples, held-out
behaviour prompts, helpfulness questions, the visitor's own inputs) and keeps the last-token state
after every decoder layer, so switching layers never re-runs the model. Encoder embeddings (CLIP /
CLAP joint space, :func:`collect_encoder_inputs`) form maps of their own: they live in a different
space from the language model's hidden states.

The visitor's texts are bounded as ``limits`` says: at most ``texts_per_request`` of them, each
within ``prompt_tokens`` tokens of the model's tokenizer.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import prompts
from .extract import hidden_states
from .limits import check_text, limits
from .models import LoadedModel

SETS = ("contrast", "eval", "helpfulness", "user")
SET_TITLES = {
    "contrast": "contrast examples",
    "eval": "held-out behaviour prompts",
    "helpfulness": "helpfulness questions",
    "user": "your inputs",
}
POSITIVE, NEGATIVE, NO_SIDE = "positive", "negative", ""
DEFAULT_PER_SET = 24
MAX_PER_SET = 200
HOVER_CHARS = 90
USER_FIELD = "Your inputs"


class MapInputError(ValueError):
    """The inputs of a concept map are unusable; the message says what to change."""


@dataclass
class MapInputs:
    """Points of a map: last-token states after every layer, and what each point is.

    ``states`` is float32 ``[n, n_layers, d]`` (``n_layers`` = 1 for an encoder's joint space);
    ``sets`` names the set of each point (see ``SETS``), ``sides`` its side (``"positive"``,
    ``"negative"`` or ``""`` for none), ``texts`` what the model read and ``hover`` a short
    readable label.
    """

    states: torch.Tensor
    texts: list[str]
    sets: list[str]
    sides: list[str]
    hover: list[str]
    space: str = "hidden states"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = int(self.states.shape[0])
        if self.states.ndim != 3:
            raise MapInputError(f"states must be [points, layers, features]; got {tuple(self.states.shape)}.")
        if not (len(self.texts) == len(self.sets) == len(self.sides) == len(self.hover) == n):
            raise MapInputError("texts, sets, sides and hover must each label every point.")

    @property
    def n_points(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.states.shape[1])

    def at_layer(self, layer: int) -> np.ndarray:
        """States ``[n, d]`` after decoder layer ``layer`` (negative counts from the end)."""
        index = layer_index(layer, self.n_layers)
        return self.states[:, index, :].numpy()

    def rows(self, sets: Sequence[str]) -> np.ndarray:
        """Indices of the points that belong to any of ``sets``."""
        wanted = set(sets)
        return np.asarray([i for i, s in enumerate(self.sets) if s in wanted], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sets:
            out[s] = out.get(s, 0) + 1
        return out


def layer_index(layer, n_layers: int) -> int:
    """``layer`` as an index into ``n_layers`` layers (negative counts from the end), checked."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer, float, str)):
        raise MapInputError(f"The layer must be a whole number; got {type(layer).__name__}.")
    try:
        number = float(layer)
    except (TypeError, ValueError):
        raise MapInputError("The layer must be a whole number.") from None
    if not math.isfinite(number) or number != int(number):
        raise MapInputError("The layer must be a whole number.")
    value = int(number)
    index = value + n_layers if value < 0 else value
    if not 0 <= index < n_layers:
        shown = value if abs(value) < 10**6 else "that far"
        raise MapInputError(f"Layer {shown} is out of range: the map has layers 0 to {n_layers - 1}.")
    return index


def _count(n_per_set) -> int:
    if isinstance(n_per_set, bool) or not isinstance(n_per_set, (int, np.integer)):
        raise MapInputError(f"n_per_set must be an integer; got {n_per_set!r}.")
    if not 1 <= int(n_per_set) <= MAX_PER_SET:
        raise MapInputError(f"n_per_set must be between 1 and {MAX_PER_SET}; got {n_per_set}.")
    return int(n_per_set)


def max_user_texts() -> int:
    """How many texts of their own a visitor may put on a map (``limits().texts_per_request``)."""
    return limits().texts_per_request


def clean_user_texts(user_texts: str | Sequence[str] | None, tokenizer=None) -> list[str]:
    """The visitor's inputs, one per line (or list item), blank lines dropped, each within the
    token cap (of ``tokenizer``; without one only the character pre-check applies) and at most
    ``max_user_texts()`` of them. Errors never repeat the text back."""
    if user_texts is None:
        return []
    cap = limits()
    if isinstance(user_texts, str):
        # The whole field first: splitting a 100 MB paste into lines is not free.
        check_text(user_texts, USER_FIELD, None, max_tokens=cap.texts_per_request * cap.prompt_tokens)
        items: list = user_texts.splitlines()
    elif isinstance(user_texts, (list, tuple)):
        items = list(user_texts)
    else:
        raise MapInputError(f"{USER_FIELD} must be text, one input per line.")
    if len(items) > 4 * cap.texts_per_request + 1000:  # mostly blank lines would still be a lot of lines
        raise MapInputError(f"{USER_FIELD} has {len(items):,} lines; give at most {cap.texts_per_request}.")
    out = []
    for k, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise MapInputError(f"{USER_FIELD}: line {k} is not text.")
        text = check_text(item, f"{USER_FIELD}, line {k}", tokenizer).strip()
        if text:
            out.append(text)
    if len(out) > cap.texts_per_request:
        raise MapInputError(
            f"{len(out)} inputs given; the map takes at most {cap.texts_per_request} (one per line). Remove some lines."
        )
    return out


def _short(text: str, tail: bool = False) -> str:
    text = " ".join(text.split())
    if len(text) <= HOVER_CHARS:
        return text
    return "…" + text[-HOVER_CHARS:] if tail else text[:HOVER_CHARS] + "…"


def _round_robin_by_subject(questions: Sequence, n: int) -> list:
    """Up to ``n`` questions taking subjects in turn, so a few points still cover every subject."""
    by_subject: dict[str, list] = {}
    for q in questions:
        by_subject.setdefault(q.subject, []).append(q)
    queues = list(by_subject.values())
    out: list = []
    depth = 0
    while len(out) < n and any(depth < len(queue) for queue in queues):
        for queue in queues:
            if depth < len(queue) and len(out) < n:
                out.append(queue[depth])
        depth += 1
    return out


def question_text(question, question_format: str = "cloze") -> str:
    """The helpfulness question as the sweep shows it to the model."""
    if question_format == "letter":
        return prompts.mmlu_letter_prompt(question.question, list(question.choices), question.subject)
    if question_format == "cloze":
        return prompts.mmlu_cloze_prompt(question.question, question.subject)
    raise MapInputError(f"question_format must be 'cloze' or 'letter'; got {question_format!r}.")


def collect_map_inputs(
    loaded: LoadedModel,
    behavior=None,
    questions: Sequence = (),
    user_texts: str | Sequence[str] | None = None,
    n_per_set: int = DEFAULT_PER_SET,
    question_format: str = "cloze",
    batch_size: int = 16,
    cancel: threading.Event | None = None,
) -> MapInputs:
    """Last-token states after every layer for up to ``n_per_set`` points of each set.

    Contrast examples take ``ceil(n_per_set / 2)`` pairs, both sides (already rendered texts);
    held-out behaviour prompts are rendered with the chat template, helpfulness questions in the
    sweep's format (taking subjects in turn), the user's inputs as chat turns. The model is held
    one forward pass at a time; ``cancel`` is checked between them (``limits.Cancelled``).
    """
    n = _count(n_per_set)
    users = clean_user_texts(user_texts, loaded.tokenizer)
    texts: list[str] = []
    sets: list[str] = []
    sides: list[str] = []
    hover: list[str] = []

    def add(text: str, set_name: str, side: str, label: str) -> None:
        texts.append(text)
        sets.append(set_name)
        sides.append(side)
        hover.append(label)

    if behavior is not None:
        for pair in list(behavior.pairs)[: math.ceil(n / 2)]:
            add(pair.positive, "contrast", POSITIVE, _short(pair.positive, tail=True))
            add(pair.negative, "contrast", NEGATIVE, _short(pair.negative, tail=True))
        for item in list(behavior.eval_prompts)[:n]:
            add(prompts.render_chat(loaded.tokenizer, item.user), "eval", NO_SIDE, _short(item.user))
    for question in _round_robin_by_subject(list(questions), n):
        add(
            question_text(question, question_format),
            "helpfulness",
            NO_SIDE,
            f"[{question.subject}] {_short(question.question)}",
        )
    for text in users:
        add(prompts.render_chat(loaded.tokenizer, text), "user", NO_SIDE, _short(text))
    if not texts:
        raise MapInputError("Nothing to map: give a behaviour, questions or at least one input of your own.")
    states = hidden_states(loaded, texts, batch_size=batch_size, cancel=cancel)
    return MapInputs(states=states, texts=texts, sets=sets, sides=sides, hover=hover)


def builtin_encoder_items(kind: str) -> list:
    """Shipped examples for an encoder's map: CLIP gets the 24 COCO images and one caption each,
    CLAP the sound clips and their descriptions (labels = themes / categories)."""
    from .multimodal import concepts

    if kind == "clip":
        captions = [it for it in concepts.builtin_items("text") if it.key.endswith("#0")]
        return list(concepts.builtin_items("image")) + captions
    if kind == "clap":
        return list(concepts.builtin_items("audio")) + [text for text, _ in concepts.paired_items("text", "audio")]
    raise MapInputError(f"Encoder maps exist for 'clip' and 'clap'; got {kind!r}.")


def encoder_tokenizer(encoder):
    """The text tokenizer of a CLIP / CLAP encoder (to count a visitor's tokens), or None."""
    tokenizer = getattr(getattr(encoder, "processor", None), "tokenizer", None)
    return tokenizer if callable(tokenizer) else None


def collect_encoder_inputs(
    encoder, items: Sequence, user_texts: str | Sequence[str] | None = None, user_items: Sequence = ()
) -> MapInputs:
    """Joint-space embeddings of media items (``multimodal.concepts.MediaItem``), the user's own
    uploads (``user_items``) and texts, for a map of the encoder's space.

    Here the colour (``sets``) is the item's label (theme / category; ``"user"`` for the user's
    inputs) and the marker (``sides``) its modality, so images and their captions of one theme
    share a colour. The space has one "layer": the encoder's output.
    """
    from .multimodal.concepts import EmbeddingBank

    users = clean_user_texts(user_texts, encoder_tokenizer(encoder))
    items, user_items = list(items), list(user_items)
    if not items and not users and not user_items:
        raise MapInputError("Nothing to map: give media items, uploads or at least one text.")
    bank = EmbeddingBank(encoder)
    blocks = []
    texts, sets, sides, hover = [], [], [], []
    for group, set_of in ((items, lambda it: it.label), (user_items, lambda it: "user")):
        if not group:
            continue
        blocks.append(bank.items(group))
        for item in group:
            texts.append(item.text or (item.path.name if item.path else item.key))
            sets.append(set_of(item))
            sides.append(item.modality)
            hover.append(_short(item.description or item.key))
    if users:
        blocks.append(bank.texts(users))
        for text in users:
            texts.append(text)
            sets.append("user")
            sides.append("text")
            hover.append(_short(text))
    states = torch.cat(blocks).float().unsqueeze(1)
    return MapInputs(
        states=states,
        texts=texts,
        sets=sets,
        sides=sides,
        hover=hover,
        space=f"{getattr(encoder, 'kind', 'encoder').upper()} joint embedding",
    )
