"""Interventions (section 3.2.3): direct (eq. 5), attention-based (eq. 7) and both combined.

In an encoder's joint space the direct intervention is ``normalise(r + alpha * Delta_c)``. Its
trade-off is measured like the text engine's steering sweep, with alpha in the role of r_e:

* behaviour: the concept score ``P(c+) - P(c-)`` of zero-shot classification between the two side
  labels, averaged over the concept's examples (each with its leave-one-out direction);
* helpfulness: zero-shot P(correct) and accuracy on the concept's off-target task.

On a language model the attention intervention biases attention toward (or away from) a marked
span of the prompt, PASTA-style, optionally combined with additive steering.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .attention import AttentionBiasError, attention_bias, eager_attention, span_token_mask
from .concepts import ConceptSpec, EmbeddingBank, leave_one_out_directions
from .encoder_base import ConceptAttention
from .jobs import forward_pass

MODES = ("direct", "attention", "combined")
MAX_ABS_ALPHA = 100.0


class InterventionError(ValueError):
    """Parameters of an intervention are unusable; the message says which and why."""


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not np.isfinite(alpha) or abs(alpha) > MAX_ABS_ALPHA:
        raise InterventionError(f"alpha must be a finite number with |alpha| <= {MAX_ABS_ALPHA:g}; got {alpha}.")
    return alpha


def direct_intervention(
    r: torch.Tensor, delta: torch.Tensor, alpha: float | torch.Tensor, renormalize: bool = True
) -> torch.Tensor:
    """Eq. 5: ``r + alpha * Delta_c``, projected back to the unit sphere the encoder's outputs live on.

    ``delta`` may be one direction ``[d]`` or one per row ``[n, d]``; ``alpha`` a scalar or one per row.
    """
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32)
    if alpha_t.ndim == 0:
        _check_alpha(float(alpha_t))
    elif not torch.isfinite(alpha_t).all():
        raise InterventionError("alpha must be finite.")
    shifted = r.float() + (alpha_t.view(-1, 1) if alpha_t.ndim == 1 else alpha_t) * delta.float()
    return torch.nn.functional.normalize(shifted, dim=-1) if renormalize else shifted


def zero_shot_probs(embeddings: torch.Tensor, label_embeddings: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP/CLAP zero-shot classification: softmax over ``logit_scale * cos(embedding, label)``."""
    emb = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    labels = torch.nn.functional.normalize(label_embeddings.float(), dim=-1)
    return torch.softmax(logit_scale * emb @ labels.T, dim=-1)


def concept_scores(embeddings: torch.Tensor, side_label_embeddings: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """``P(c+) - P(c-)`` per row, from the two side labels (rows of ``side_label_embeddings``: +, -)."""
    if side_label_embeddings.shape[0] != 2:
        raise InterventionError("The concept score needs exactly two label embeddings (+, -).")
    p = zero_shot_probs(embeddings, side_label_embeddings, logit_scale)
    return p[:, 0] - p[:, 1]


@dataclass
class ConceptEvalSet:
    """Everything the alpha sweep needs, as tensors in one encoder's space."""

    name: str
    modality: str
    pos: torch.Tensor
    neg: torch.Tensor
    side_label_embeddings: torch.Tensor
    off_target: torch.Tensor
    off_target_targets: torch.Tensor
    off_target_label_embeddings: torch.Tensor
    off_target_labels: tuple[str, ...]
    logit_scale: float
    notes: str = ""

    @property
    def delta(self) -> torch.Tensor:
        return self.pos.mean(0) - self.neg.mean(0)

    @property
    def n_choices(self) -> int:
        return int(self.off_target_label_embeddings.shape[0])


def build_eval_set(bank: EmbeddingBank, concept: ConceptSpec, cancel: threading.Event | None = None) -> ConceptEvalSet:
    """Embed a concept's examples, label prompts and off-target items with the bank's encoder
    (``cancel`` is checked between encoder batches)."""
    off_targets = torch.tensor(
        [concept.off_target_labels.index(it.label) for it in concept.off_target], dtype=torch.long
    )
    return ConceptEvalSet(
        name=concept.name,
        modality=concept.modality,
        pos=bank.items(concept.positives, cancel),
        neg=bank.items(concept.negatives, cancel),
        side_label_embeddings=bank.texts(list(concept.prompts), cancel),
        off_target=bank.items(concept.off_target, cancel),
        off_target_targets=off_targets,
        off_target_label_embeddings=bank.texts(list(concept.off_target_prompts), cancel),
        off_target_labels=concept.off_target_labels,
        logit_scale=bank.encoder.logit_scale,
        notes=concept.notes,
    )


def _mean_stderr(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    stderr = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), stderr


def alpha_sweep(eval_set: ConceptEvalSet, alphas: Sequence[float], leave_one_out: bool = True) -> pd.DataFrame:
    """Tidy trade-off frame over alpha, shaped like the text engine's aggregated sweep.

    Columns ``r_e, task, metric, subject, value, stderr, n``: task ``behavior`` / metric
    ``behavior_expectation`` (the concept score, subject = concept name), task ``helpfulness`` /
    metrics ``helpfulness`` (P(correct)) and ``accuracy`` on the off-target items, subject ``mean``.
    """
    alphas = [_check_alpha(a) for a in alphas]
    if not alphas:
        raise InterventionError("Give at least one alpha.")
    examples = torch.cat([eval_set.pos, eval_set.neg])
    directions = leave_one_out_directions(eval_set.pos, eval_set.neg) if leave_one_out else eval_set.delta
    rows = []
    for alpha in alphas:
        score = concept_scores(
            direct_intervention(examples, directions, alpha), eval_set.side_label_embeddings, eval_set.logit_scale
        ).numpy()
        mean, se = _mean_stderr(score)
        rows.append(
            dict(
                r_e=alpha,
                task="behavior",
                metric="behavior_expectation",
                subject=eval_set.name,
                value=mean,
                stderr=se,
                n=int(score.size),
            )
        )
        if eval_set.off_target.shape[0]:
            probs = zero_shot_probs(
                direct_intervention(eval_set.off_target, eval_set.delta, alpha),
                eval_set.off_target_label_embeddings,
                eval_set.logit_scale,
            )
            targets = eval_set.off_target_targets
            p_correct = probs.gather(1, targets.view(-1, 1)).squeeze(1).numpy()
            correct = (probs.argmax(-1) == targets).float().numpy()
            for metric, values in (("helpfulness", p_correct), ("accuracy", correct)):
                mean, se = _mean_stderr(values)
                rows.append(
                    dict(
                        r_e=alpha,
                        task="helpfulness",
                        metric=metric,
                        subject="mean",
                        value=mean,
                        stderr=se,
                        n=int(values.size),
                    )
                )
    return pd.DataFrame(rows, columns=["r_e", "task", "metric", "subject", "value", "stderr", "n"])


def intervene_embeddings(
    encoder,
    modality: str,
    inputs: Sequence,
    delta: torch.Tensor,
    mode: str = "direct",
    alpha: float = 0.0,
    attention_strength: float = 0.0,
    top_fraction: float = 0.25,
    layers=None,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Embed ``inputs`` under an intervention: ``direct`` (eq. 5 on the output embedding),
    ``attention`` (eq. 7 inside the encoder, toward the patches/tokens most aligned with
    ``Delta_c``) or ``combined`` (eq. 7 then eq. 5)."""
    if mode not in MODES:
        raise InterventionError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    alpha = _check_alpha(alpha)
    attention = None
    if mode in ("attention", "combined"):
        attention = ConceptAttention(
            direction=delta, strength=float(attention_strength), top_fraction=top_fraction, layers=layers
        )
    emb = encoder.embed(modality, list(inputs), attention=attention, cancel=cancel)
    if mode in ("direct", "combined"):
        emb = direct_intervention(emb, delta, alpha)
    return emb


def flip_rate(
    before: torch.Tensor, after: torch.Tensor, side_label_embeddings: torch.Tensor, logit_scale: float
) -> float:
    """Share of concept-negative examples whose zero-shot side prediction flips to c+ (success rate)."""
    was_neg = concept_scores(before, side_label_embeddings, logit_scale) < 0
    if not bool(was_neg.any()):
        return float("nan")
    now_pos = concept_scores(after, side_label_embeddings, logit_scale) > 0
    return float((now_pos & was_neg).sum() / was_neg.sum())


# ---------------------------------------------------------------------------------------------
# The attention intervention on a causal language model.


@dataclass
class LMAttentionResult:
    """Baseline vs intervened run of one prompt with a marked span."""

    prompt_text: str
    tokens: list[str]
    span_mask: np.ndarray
    strength: float
    layers: list[int]
    baseline_text: str
    intervened_text: str
    baseline_top: list[tuple[str, float]]
    intervened_top: list[tuple[str, float]]
    next_token_kl: float
    span_mass_baseline: np.ndarray = field(repr=False)
    span_mass_intervened: np.ndarray = field(repr=False)
    steering_coefficient: float = 0.0


def locate_span(prompt: str, span: str | tuple[int, int]) -> tuple[int, int]:
    """Character range of ``span`` in ``prompt`` (a substring, first occurrence, or explicit offsets)."""
    if isinstance(span, tuple):
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= len(prompt):
            raise InterventionError(f"Span offsets {span} are outside the {len(prompt)}-character prompt.")
        return start, end
    span = (span or "").strip()
    if not span:
        raise InterventionError("Mark a span: type a part of the prompt to amplify or suppress.")
    start = prompt.find(span)
    if start < 0:
        raise InterventionError(f"The span {span!r} does not occur in the prompt; copy it exactly from the prompt.")
    return start, start + len(span)


def encode_with_span(tokenizer, prompt: str, span: str | tuple[int, int], use_chat_template: bool = True):
    """Token ids of the (chat-rendered) prompt and the boolean mask of tokens inside the span."""
    from ..prompts import render_chat

    start, end = locate_span(prompt, span)
    text = render_chat(tokenizer, prompt) if use_chat_template else prompt
    offset = text.find(prompt)
    if offset < 0:
        raise InterventionError("The chat template changed the prompt text; switch the chat template off.")
    try:
        enc = tokenizer(
            text, return_offsets_mapping=True, add_special_tokens=not use_chat_template, return_tensors="pt"
        )
    except NotImplementedError as exc:
        raise InterventionError("This tokenizer gives no character offsets; use a fast tokenizer.") from exc
    offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"][0].tolist()]
    mask = span_token_mask(offsets, offset + start, offset + end)
    if not mask.any():
        raise InterventionError("The span covers no token; mark a longer part of the prompt.")
    return text, enc["input_ids"], enc["attention_mask"], mask


def _top_tokens(tokenizer, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    probs = torch.softmax(logits.float(), dim=-1)
    values, idx = probs.topk(k)
    return [(tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, idx)]


def _span_mass(attentions, keys: torch.Tensor) -> np.ndarray:
    if not attentions or attentions[0] is None:
        raise AttentionBiasError("The model returned no attention weights.")
    idx = torch.nonzero(keys, as_tuple=True)[0]
    return np.array([float(a[0, :, -1, :].float()[:, idx.to(a.device)].sum(-1).mean()) for a in attentions])


@torch.no_grad()
def span_attention_mass(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    span_mask: np.ndarray,
    strength: float = 0.0,
    layers=None,
) -> np.ndarray:
    """Per decoder layer: attention weight of the last position on the span, averaged over heads."""
    keys = torch.as_tensor(span_mask, dtype=torch.bool)
    with eager_attention(model), attention_bias(model, keys, strength, layers):
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, use_cache=False)
    return _span_mass(out.attentions, keys)


@torch.no_grad()
def lm_attention_intervention(
    loaded,
    prompt: str,
    span: str | tuple[int, int],
    strength: float,
    layers=None,
    max_new_tokens: int = 32,
    use_chat_template: bool = True,
    vector=None,
    steering_layers=None,
    steering_coefficient: float = 0.0,
    top_k: int = 5,
    cancel: threading.Event | None = None,
) -> LMAttentionResult:
    """Greedy continuation, next-token distribution and span attention mass, without and with the
    span bias (plus additive steering when ``vector`` and a coefficient are given: combined mode).
    Each of the two runs holds the model on its own; ``cancel`` is checked at every layer."""
    from ..models import resolve_layers
    from ..steering import steer

    if not 1 <= int(max_new_tokens) <= 256:
        raise InterventionError("max_new_tokens must be between 1 and 256.")
    model, tok = loaded.model, loaded.tokenizer
    text, ids, attn, mask = encode_with_span(tok, prompt, span, use_chat_template and loaded.has_chat_template)
    ids, attn = ids.to(loaded.device), attn.to(loaded.device)
    chosen = resolve_layers(layers, loaded.n_layers)
    keys = torch.as_tensor(mask)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def run(bias: float, coeff: float):
        with ExitStack() as stack:
            stack.enter_context(forward_pass(model, cancel, "The attention intervention"))
            stack.enter_context(attention_bias(model, keys, bias, chosen))
            if vector is not None and coeff != 0.0:
                stack.enter_context(steer(model, vector, steering_layers, coeff))
            gen = model.generate(
                input_ids=ids,
                attention_mask=attn,
                max_new_tokens=int(max_new_tokens),
                do_sample=False,
                pad_token_id=pad_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
            logits = gen.logits[0][0]  # raw (unprocessed) next-token logits of the prompt
            gen = gen.sequences
            with eager_attention(model):
                attentions = model(
                    input_ids=ids, attention_mask=attn, output_attentions=True, use_cache=False, logits_to_keep=1
                ).attentions
        return logits, tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True), _span_mass(attentions, keys)

    base_logits, base_text, base_mass = run(0.0, 0.0)
    new_logits, new_text, new_mass = run(float(strength), float(steering_coefficient))
    log_p, log_q = torch.log_softmax(base_logits.float(), -1), torch.log_softmax(new_logits.float(), -1)
    kl = float((log_p.exp() * (log_p - log_q)).sum())
    return LMAttentionResult(
        prompt_text=text,
        tokens=[tok.decode([int(t)]) for t in ids[0]],
        span_mask=mask,
        strength=float(strength),
        layers=chosen,
        baseline_text=base_text,
        intervened_text=new_text,
        baseline_top=_top_tokens(tok, base_logits, top_k),
        intervened_top=_top_tokens(tok, new_logits, top_k),
        next_token_kl=kl,
        span_mass_baseline=base_mass,
        span_mass_intervened=new_mass,
        steering_coefficient=float(steering_coefficient),
    )
