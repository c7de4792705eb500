"""Concept maps: what the model's hidden states look like, per layer, and where steering moves them.

The data behind the dashboard's maps, with no UI:

* :func:`collect_map_inputs` runs the model once over a few texts of each set (contrast examples,
  held-out behaviour prompts, helpfulness questions, the user's own inputs) and keeps the
  last-token state after every decoder layer, so switching layers never re-runs the model.
* :func:`build_map` fits a 2-D PCA or UMAP (``projection``) on the states at one layer.
* :func:`frames_on_grid` gives the map positions of steered points for every coefficient of a grid,
  so a slider can move them without any computation.

How a steered point moves depends on where the map's layer sits relative to the steered layers
(``steering_effect``). Steering adds ``r·v_l`` to the output of each steered layer ``l``:

* before the first steered layer ``F`` nothing changes;
* at ``F`` itself the steered state is exactly ``x + r·v_F`` (the layers below saw no steering), so
  on a PCA map a point moves by exactly ``r·P·v_F`` (``PCAMap.shift``); every layer, the last one
  included, is read at its block's output, before the final norm, where the vector is added;
* after ``F`` the later layers process the already-steered stream: the steered state is *not*
  ``x + r·v`` and has to be measured with the model (:func:`steered_states`). The translation can
  still be drawn as a first-order preview, and is labelled as such.

Encoder embeddings (CLIP / CLAP joint space, :func:`collect_encoder_inputs`) form their own map:
they live in a different space from the language model's hidden states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import hooks, prompts, runner
from .extract import extract_vector, hidden_states
from .models import LoadedModel, decoder_layers, resolve_layers
from .projection import PCAMap, UMAPMap, fit_pca, fit_umap, project_frames
from .steering import steer
from .vectors import SteeringVector

SETS = ("contrast", "eval", "helpfulness", "user")
SET_TITLES = {
    "contrast": "contrast examples",
    "eval": "held-out behaviour prompts",
    "helpfulness": "helpfulness questions",
    "user": "your inputs",
}
POSITIVE, NEGATIVE, NO_SIDE = "positive", "negative", ""
METHODS = ("pca", "umap")
DEFAULT_PER_SET = 24
MAX_PER_SET = 200
MAX_USER_TEXTS = 16
MAX_USER_CHARS = 1000
# Frames measured with the model cost one partial forward pass per (point, r_e): keep them few.
MAX_MEASURED_FRAMES = 11
MAX_STEERED_POINTS = 256
HOVER_CHARS = 90

# steering_effect() answers
UNCHANGED, EXACT, MEASURED = "unchanged", "exact", "measured"


class MapInputError(ValueError):
    """The inputs of a concept map are unusable; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# Inputs: texts -> per-layer hidden states with labels
# ---------------------------------------------------------------------------------------------


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
        index = _layer_index(layer, self.n_layers)
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


def _layer_index(layer, n_layers: int) -> int:
    try:
        value = int(layer)
    except (TypeError, ValueError) as error:
        raise MapInputError(f"layer must be an integer; got {layer!r}.") from error
    index = value + n_layers if value < 0 else value
    if not 0 <= index < n_layers:
        raise MapInputError(f"Layer {value} is out of range: the map has layers 0 to {n_layers - 1}.")
    return index


def _count(n_per_set) -> int:
    if isinstance(n_per_set, bool) or not isinstance(n_per_set, (int, np.integer)):
        raise MapInputError(f"n_per_set must be an integer; got {n_per_set!r}.")
    if not 1 <= int(n_per_set) <= MAX_PER_SET:
        raise MapInputError(f"n_per_set must be between 1 and {MAX_PER_SET}; got {n_per_set}.")
    return int(n_per_set)


def clean_user_texts(user_texts: str | Sequence[str] | None) -> list[str]:
    """The user's inputs, one per line (or list item), blank lines dropped, sizes checked."""
    if user_texts is None:
        return []
    if isinstance(user_texts, str):
        items = user_texts.splitlines()
    else:
        items = list(user_texts)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise MapInputError(f"Inputs must be text; got {type(item).__name__}.")
        text = item.strip()
        if not text:
            continue
        if len(text) > MAX_USER_CHARS:
            raise MapInputError(f"An input has {len(text)} characters; the limit is {MAX_USER_CHARS} per line.")
        out.append(text)
    if len(out) > MAX_USER_TEXTS:
        raise MapInputError(f"{len(out)} inputs given; the map takes at most {MAX_USER_TEXTS} (one per line).")
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
) -> MapInputs:
    """Last-token states after every layer for up to ``n_per_set`` points of each set.

    Contrast examples take ``ceil(n_per_set / 2)`` pairs, both sides (already rendered texts);
    held-out behaviour prompts are rendered with the chat template, helpfulness questions in the
    sweep's format (taking subjects in turn), the user's inputs as chat turns.
    """
    n = _count(n_per_set)
    users = clean_user_texts(user_texts)
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
    states = hidden_states(loaded, texts, batch_size=batch_size)
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

    users = clean_user_texts(user_texts)
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


# ---------------------------------------------------------------------------------------------
# The steering vector for a map
# ---------------------------------------------------------------------------------------------


def vector_for_model(
    loaded: LoadedModel,
    behavior,
    layers,
    stored: SteeringVector | None = None,
    method: str = "pca",
    n_pairs: int | None = None,
) -> tuple[SteeringVector, str]:
    """The stored vector when it was extracted from this very model, else one extracted now.

    Returns the vector and a sentence saying which it is (for the dashboard's status line).
    """
    chosen = resolve_layers(layers, loaded.n_layers)
    if (
        stored is not None
        and stored.metadata.get("model_fingerprint") == loaded.fingerprint
        and stored.n_layers == loaded.n_layers
        and stored.hidden_size == loaded.hidden_size
    ):
        vector = SteeringVector(stored.directions, chosen, dict(stored.metadata))
        return vector, f"the sweep's stored {stored.metadata.get('method', '')} vector".replace("  ", " ")
    if behavior is None or not behavior.pairs:
        raise MapInputError("No steering vector for this model and no contrast pairs to extract one from.")
    pairs = list(behavior.pairs)[: n_pairs or len(behavior.pairs)]
    vector = extract_vector(loaded, pairs, method, chosen, behavior=behavior.name, template=behavior.template)
    return vector, f"a {method} vector extracted now from {len(pairs)} contrast pairs"


# ---------------------------------------------------------------------------------------------
# Steered states, measured
# ---------------------------------------------------------------------------------------------


def steering_effect(layer: int, steer_layers: Sequence[int], n_layers: int) -> str:
    """How steering reaches the output of ``layer``: ``UNCHANGED``, ``EXACT`` (``x + r·v``) or
    ``MEASURED`` (later layers transform the steered stream; only a forward pass knows)."""
    index = _layer_index(layer, n_layers)
    chosen = resolve_layers(list(steer_layers), n_layers)
    first = min(chosen)
    if index < first:
        return UNCHANGED
    # Every layer, the last included, is read at its block's output (before the final norm), where
    # the vector is added: at the first steered layer the steered state is exactly x + r·v.
    if index == first:
        return EXACT
    return MEASURED


@torch.no_grad()
def steered_states(
    loaded: LoadedModel,
    texts: Sequence[str],
    vector: SteeringVector,
    layers,
    r_grid: Sequence[float],
    read_layer: int,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[float, np.ndarray]:
    """Last-token state after ``read_layer`` of every text, steered with each ``r`` of ``r_grid``.

    Measured with ``steer`` (per-row coefficients, several r_e per batch); the forward pass stops
    after ``read_layer``, since nothing above it changes that state. Every layer is read at its
    block's output (the last one before the final norm), as in extraction. Returns ``{r: [n, d]}``.
    """
    texts = list(texts)
    if not texts:
        raise MapInputError("No texts to steer.")
    if len(texts) > MAX_STEERED_POINTS:
        raise MapInputError(f"{len(texts)} points to steer; the limit is {MAX_STEERED_POINTS}.")
    grid = _grid(r_grid)
    read = _layer_index(read_layer, loaded.n_layers)
    block = decoder_layers(loaded.model)[read]
    rows = [(i, r) for r in grid for i in range(len(texts))]
    out = {r: np.zeros((len(texts), loaded.hidden_size), dtype=np.float32) for r in grid}
    for done, start in enumerate(range(0, len(rows), batch_size), start=1):
        batch = rows[start : start + batch_size]
        enc = runner.encode_left_padded(loaded, [texts[i] for i, _ in batch])
        coeff = torch.tensor([r for _, r in batch], dtype=torch.float32)
        # Entered inside steer (which prepends its hooks), so it reads the steered output.
        with steer(loaded.model, vector, layers, coeff):
            with hooks.read_and_stop(block, lambda h: h[:, -1, :].float().cpu()) as captured:
                loaded.model(**enc, use_cache=False, logits_to_keep=1)
        if len(captured) != 1:
            raise RuntimeError(f"Expected one read of layer {read}, got {len(captured)}.")
        for k, (i, r) in enumerate(batch):
            out[r][i] = captured[0][k].numpy()
        if progress is not None:
            progress(done, math.ceil(len(rows) / batch_size))
    return out


def _grid(r_grid: Sequence[float]) -> list[float]:
    try:
        values = [float(r) for r in r_grid]
    except (TypeError, ValueError) as error:
        raise MapInputError(f"r_grid must be numbers: {error}") from error
    if not values:
        raise MapInputError("r_grid is empty; give at least one steering coefficient.")
    if not all(math.isfinite(v) and abs(v) <= 1e4 for v in values):
        raise MapInputError("r_grid values must be finite with |r| <= 10000.")
    return sorted(set(values))


def frame_grid(sweep_grid: Sequence[float], max_frames: int = MAX_MEASURED_FRAMES) -> list[float]:
    """At most ``max_frames`` coefficients of the sweep grid for measured frames (each costs a
    forward pass per point): every k-th value with both ends, evenly spaced when some k divides
    the grid, and through r_e = 0 when the grid has it (the slider's unsteered position)."""
    grid = _grid(sweep_grid)
    if max_frames < 2:
        raise MapInputError("max_frames must be at least 2.")
    if len(grid) <= max_frames:
        return grid
    last = len(grid) - 1
    smallest = math.ceil(last / (max_frames - 1))
    # Strides that divide the grid evenly, unless they would keep far fewer frames than allowed.
    dividing = [k for k in range(smallest, 2 * smallest) if last % k == 0]
    zero = grid.index(0.0) if 0.0 in grid else None
    through_zero = [k for k in dividing if zero is not None and zero % k == 0]
    if through_zero or dividing:
        return grid[:: (through_zero or dividing)[0]]
    return grid[::smallest] + [grid[-1]]


# ---------------------------------------------------------------------------------------------
# Maps and frames
# ---------------------------------------------------------------------------------------------


@dataclass
class ConceptMap:
    """A fitted 2-D map of the states at one layer, with the fitted points' positions."""

    method: str
    layer: int
    fitted: PCAMap | UMAPMap
    points_2d: np.ndarray  # [n, 2]
    axis_titles: tuple[str, str]

    def place(self, states: np.ndarray | torch.Tensor) -> np.ndarray:
        """Positions ``[m, 2]`` of new states on this map (PCA: exact; UMAP: ``transform``)."""
        return self.fitted.transform(states)


def build_map(
    states_at_layer: np.ndarray | torch.Tensor,
    method: str = "pca",
    layer: int = -1,
    random_state: int | None = 0,
    n_neighbors: int = 15,
) -> ConceptMap:
    """Fit a 2-D PCA (exact, instant) or UMAP (``projection.fit_umap``) of ``[n, d]`` states."""
    if method not in METHODS:
        raise MapInputError(f"Projection must be one of {', '.join(METHODS)}; got {method!r}.")
    points = states_at_layer.numpy() if isinstance(states_at_layer, torch.Tensor) else np.asarray(states_at_layer)
    if points.ndim != 2:
        raise MapInputError(f"states must be [points, features]; got shape {points.shape}.")
    if method == "pca":
        if points.shape[0] < 3:
            raise MapInputError(f"A PCA map needs at least 3 points; got {points.shape[0]}.")
        fitted = fit_pca(points, n_components=2, device="cpu")
        coords = fitted.transform(points)
        if coords.shape[1] < 2:
            raise MapInputError("The states span a single direction; a 2-D map needs more varied inputs.")
        ratio = fitted.explained_variance_ratio
        titles = (f"PC1 ({100 * ratio[0]:.0f}% of variance)", f"PC2 ({100 * ratio[1]:.0f}% of variance)")
        return ConceptMap("pca", int(layer), fitted, coords, titles)
    if points.shape[0] < 6:
        raise MapInputError(f"A UMAP map needs at least 6 points; got {points.shape[0]}. Use PCA for fewer.")
    fitted = fit_umap(points, n_neighbors=int(min(n_neighbors, points.shape[0] - 1)), random_state=random_state)
    return ConceptMap("umap", int(layer), fitted, fitted.embedding.copy(), ("UMAP 1", "UMAP 2"))


@dataclass
class Frames:
    """Map positions of the steered points, ``{r: [m, 2]}``, and how they were obtained."""

    positions: dict[float, np.ndarray]
    index: np.ndarray  # row of the map's points each steered point starts from
    effect: str  # UNCHANGED / EXACT / MEASURED
    approximate: bool  # True when a translation stands in for states that should be measured
    note: str

    @property
    def r_values(self) -> list[float]:
        return sorted(self.positions)

    def nearest(self, r_e: float) -> float:
        """The precomputed coefficient closest to ``r_e``."""
        values = self.r_values
        return min(values, key=lambda r: (abs(r - float(r_e)), r))


def translation_frames(
    concept_map: ConceptMap,
    base_states: np.ndarray,
    direction: np.ndarray | torch.Tensor,
    r_grid: Sequence[float],
    fitted_positions: np.ndarray | None = None,
) -> dict[float, np.ndarray]:
    """Positions of ``x + r·v`` for every ``r``: on a PCA map ``transform(x) + r·P·v``, exactly.

    This is the true steered state only at the first steered layer (and before it, with ``v = 0``).
    At later layers the real state differs (the layers in between act on the steered stream):
    use :func:`steered_states` and :func:`measured_frames` for those.
    """
    return project_frames(
        concept_map.fitted,
        base_points=base_states,
        directions=direction,
        r_grid=_grid(r_grid),
        fitted_positions=fitted_positions,
    )


def measured_frames(
    concept_map: ConceptMap, steered: Mapping[float, np.ndarray], fitted_positions: np.ndarray | None = None
) -> dict[float, np.ndarray]:
    """Positions of measured steered states ``{r: [m, d]}`` (all moved ones placed in one call)."""
    return project_frames(concept_map.fitted, steered=dict(steered), fitted_positions=fitted_positions)


def frames_on_grid(
    concept_map: ConceptMap,
    inputs: MapInputs,
    steered_rows: Sequence[int],
    vector: SteeringVector,
    steer_layers: Sequence[int],
    r_grid: Sequence[float],
    measure: Callable[[list[str], list[float]], Mapping[float, np.ndarray]] | None = None,
) -> Frames:
    """Frames for the points ``steered_rows`` of ``inputs`` at the map's layer, on ``r_grid``.

    Before the first steered layer the points stay put; at it they move by the exact translation;
    after it they are measured with ``measure(texts, grid)`` (e.g. a partial of
    :func:`steered_states`) on at most ``MAX_MEASURED_FRAMES`` coefficients of the grid, or, when
    ``measure`` is None, drawn as the translation ``x + r·v_layer`` and flagged ``approximate``.
    """
    index = np.asarray(list(steered_rows), dtype=np.int64)
    if index.size == 0:
        raise MapInputError("Choose at least one set of points to steer.")
    if index.min() < 0 or index.max() >= inputs.n_points:
        raise MapInputError("steered_rows must be rows of the map's points.")
    layer = _layer_index(concept_map.layer, inputs.n_layers)
    chosen = resolve_layers(list(steer_layers), inputs.n_layers)
    effect = steering_effect(layer, chosen, inputs.n_layers)
    base = inputs.at_layer(layer)[index]
    grid = _grid(r_grid)
    first = min(chosen)
    # The steered points are points of the map: unsteered (r = 0, or a layer steering does not
    # reach) they sit exactly where the map was fitted.
    fitted = concept_map.points_2d[index]
    if effect == UNCHANGED:
        positions = {r: fitted.copy() for r in grid}
        note = (
            f"Layer {layer} comes before the first steered layer ({first}): steering does not reach it, "
            f"so the steered points stay where they are. Pick a layer from {first} on to see them move."
        )
        return Frames(positions, index, effect, False, note)
    if effect == EXACT:
        positions = translation_frames(concept_map, base, vector.directions[layer], grid, fitted)
        note = (
            f"Layer {layer} is the first steered layer: a steered state is exactly x + r_e·v there, "
            "so the points move along straight lines"
            + (" (exact on PCA)." if concept_map.method == "pca" else " (placed with UMAP's transform).")
        )
        return Frames(positions, index, effect, False, note)
    if measure is None:
        positions = translation_frames(concept_map, base, vector.directions[layer], grid, fitted)
        note = (
            f"Approximation: layer {layer} comes after the first steered layer ({first}), where the real "
            f"steered state is not x + r_e·v; the points show that translation only. Measure the steered "
            "states for the true positions."
        )
        return Frames(positions, index, effect, True, note)
    measured_grid = frame_grid(grid)
    steered = measure([inputs.texts[i] for i in index], measured_grid)
    positions = measured_frames(concept_map, steered, fitted)
    note = (
        f"Measured: steered states after layer {layer} from forward passes with steering on layers "
        f"{layer_span(chosen)}, at {len(measured_grid)} coefficients."
    )
    return Frames(positions, index, effect, False, note)


def layer_span(layers: Sequence[int]) -> str:
    """Layers for people: '8–19' for a run, '3, 5, 7' otherwise."""
    layers = sorted(layers)
    if not layers:
        return "none"
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 1:
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(str(x) for x in layers)
