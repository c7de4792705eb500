"""What a sweep measures, and in which order.

With ``behavior_mode = generate`` (the default) a sweep runs in stages, each built from the rows of
the one before:

1. ``coarse``: answers generated at a coarse subset of the grid (both ends and 0 included), with
   the helpfulness batches of the same coefficients interleaved;
2. ``proxy``: the sequence proxy over the whole grid, from the openings those answers gave (it draws
   the whole B curve quickly, before generation has covered the grid);
3. ``fine``: answers at the remaining coefficients, with the rest of helpfulness;
4. ``coherence``: every answer scored by the unsteered model (log-probability, loops);
5. ``baseline``: the unsteered model asked with the behaviour's system prompt (B, helpfulness,
   coherence at r_e = 0): does steering beat asking?

``proxy`` mode stops generating after ``coarse``; ``first_token`` is the next-token proxy alone.
Batches are numbered in one sequence so a cancelled sweep's finished batches are found again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import coherence, proxy
from . import measurements as m
from .config import SweepConfig


@dataclass
class Stage:
    name: str
    message: str
    work: dict  # task -> Measurement (or a callable giving rows, for coherence)
    batches: list  # (task, batch) in order


def coarse_first(grid: list[float], stride: int = 4) -> list[float]:
    """Order a grid so a coarse, evenly spread subset (always with both ends and 0) comes first."""
    n = len(grid)
    if n == 0:
        return []
    zero = min(range(n), key=lambda i: abs(grid[i]))
    first = sorted(set(range(0, n, stride)) | {n - 1, zero})
    rest = [i for i in range(n) if i not in first]
    return [grid[i] for i in first] + [grid[i] for i in rest]


def coarse_grid(grid: list[float], stride: int = 4) -> list[float]:
    """The coarse subset itself: every ``stride``-th coefficient, both ends and the one nearest 0."""
    n = len(grid)
    if n == 0:
        return []
    zero = min(range(n), key=lambda i: abs(grid[i]))
    return [grid[i] for i in sorted(set(range(0, n, stride)) | {n - 1, zero})]


def plan_batches(n_units: int, grid: list[float], units_per_batch: int) -> list[list[tuple[int, float]]]:
    """(unit, r_e) rows in coarse-first order, chunked into batches of ``units_per_batch`` units."""
    rows = [(i, r) for r in coarse_first(grid) for i in range(n_units)]
    return [rows[k : k + units_per_batch] for k in range(0, len(rows), units_per_batch)]


def interleave(*plans: list) -> list:
    """Batches of several measurements in proportion, so every curve fills in together."""
    plans = tuple(p for p in plans if p)
    out, pos = [], [0] * len(plans)
    while any(p < len(plan) for p, plan in zip(pos, plans)):
        k = min((i for i, plan in enumerate(plans) if pos[i] < len(plan)), key=lambda i: pos[i] / len(plans[i]))
        out.append(plans[k][pos[k]])
        pos[k] += 1
    return out


def _batches(task: str, measurement, grid: list[float]) -> list:
    return [(task, b) for b in plan_batches(len(measurement.units), grid, measurement.units_per_batch)]


class SweepPlan:
    """The stages of one sweep (module docstring); ``stages()`` builds each when it starts."""

    def __init__(
        self,
        config: SweepConfig,
        loaded,
        behavior,
        questions,
        vector,
        layers,
        keep_beh=None,
        keep_hel=None,
        cancel=None,
    ) -> None:
        self.config, self.loaded, self.behavior, self.questions = config, loaded, behavior, questions
        self.vector, self.layers, self.cancel = vector, layers, cancel
        self.grid = config.r_grid()
        self.coarse = coarse_grid(self.grid) if config.behavior_mode != "first_token" else self.grid
        self.fine = [r for r in self.grid if r not in self.coarse]
        self.hel = (
            m.Helpfulness(loaded, questions, vector, layers, config.helpfulness_format, config.batch_size, keep_hel)
            if questions
            else None
        )
        self.keep_beh = keep_beh
        # Built for every mode (first_token never runs them): the stages below read their answers.
        self.generated = self._generation()
        self.baseline = self._generation(system=behavior.system_prompt or None, task="baseline")

    @property
    def behavior_metric(self) -> str:
        """The metric the summary fits: B from answers, or from the proxy in ``proxy`` mode."""
        return "behavior_proxy" if self.config.behavior_mode == "proxy" else "behavior_expectation"

    def n_rows(self) -> int:
        """Rows the whole sweep will produce (for progress bars and the row cap)."""
        n_eval, n_q, n_grid = len(self.behavior.eval_prompts), len(self.questions), len(self.grid)
        if self.config.behavior_mode == "first_token":
            return n_eval * n_grid + n_q * n_grid
        generated = n_eval * (n_grid if self.config.behavior_mode == "generate" else len(self.coarse))
        # answers + proxy + helpfulness + their coherence + the baseline (answers, questions, coherence)
        baseline = 2 * n_eval + (n_q if self.behavior.system_prompt else 0) if self.config.baseline else 0
        return generated + n_eval * n_grid + n_q * n_grid + generated + baseline

    def _generation(self, system: str | None = None, task: str = "behavior") -> m.GeneratedBehavior:
        c = self.config
        return m.GeneratedBehavior(
            self.loaded,
            self.behavior,
            self.vector if system is None else None,
            self.layers,
            m.text_scorer(self.behavior, c.scorer or None),
            c.max_new_tokens,
            c.batch_size,
            system=system,
            task=task,
            cancel=self.cancel,
        )

    def restore(self, texts: list[dict], rows: list[dict]) -> None:
        """Answers of batches finished before a cancel (the proxy's openings and coherence need them)."""
        scores = {
            (r["task"], r["item"], float(r["r_e"])): r["value"] for r in rows if r["metric"] == "behavior_expectation"
        }
        for t in texts:
            target = self.generated if t["task"] == "behavior" else self.baseline
            key = (t["task"], t["item"], float(t["r_e"]))
            if target is not None and key in scores:
                target.answers[(t["item"], float(t["r_e"]))] = (t["text"], int(scores[key]))
                target.texts.append(t)

    def stages(self) -> Iterator[Stage]:
        """The stages in order, each built when the one before has run (it reads that one's answers)."""
        if self.config.behavior_mode == "first_token":
            yield self._first_token_stage()
            return
        yield self._coarse_stage()
        yield self._proxy_stage()
        fine = self._fine_stage()
        if fine is not None:
            yield fine
        yield self._coherence_stage()
        if not self.config.baseline:
            return
        yield self._baseline_stage()
        yield self._baseline_coherence_stage()

    def _helpfulness_work(self) -> dict:
        return {"helpfulness": self.hel} if self.hel else {}

    def _first_token_stage(self) -> Stage:
        c = self.config
        beh = m.FirstTokenBehavior(self.loaded, self.behavior, self.vector, self.layers, c.batch_size, self.keep_beh)
        return Stage(
            "measure",
            "measuring B (next-token proxy) and helpfulness over r_e",
            {"behavior": beh, **self._helpfulness_work()},
            interleave(
                _batches("behavior", beh, self.grid),
                *([_batches("helpfulness", self.hel, self.grid)] if self.hel else []),
            ),
        )

    def _coarse_stage(self) -> Stage:
        return Stage(
            "coarse",
            "generating answers at a coarse grid of r_e",
            {"behavior": self.generated, **self._helpfulness_work()},
            interleave(
                _batches("behavior", self.generated, self.coarse),
                *([_batches("helpfulness", self.hel, self.coarse)] if self.hel else []),
            ),
        )

    def _proxy_stage(self) -> Stage:
        """The sequence proxy over the whole grid, from the openings of the answers generated before it runs."""
        c = self.config
        sides = proxy.openings(self.loaded, self.behavior, self.generated.answers, n_tokens=c.opening_tokens)
        seq = proxy.SequenceProxy(
            self.loaded, self.behavior, self.vector, self.layers, sides, c.batch_size, self.keep_beh
        )
        return Stage(
            "proxy",
            "sequence proxy over the whole grid (from the model's own openings)",
            {"proxy": seq},
            _batches("proxy", seq, self.grid),
        )

    def _fine_stage(self) -> Stage | None:
        """Answers (``generate`` mode) and helpfulness at the coefficients off the coarse grid (None: none left)."""
        fine_gen = _batches("behavior", self.generated, self.fine) if self.config.behavior_mode == "generate" else []
        fine_hel = _batches("helpfulness", self.hel, self.fine) if self.hel else []
        if not (fine_gen or fine_hel):
            return None
        return Stage(
            "fine",
            "generating answers at the remaining coefficients",
            {"behavior": self.generated, **self._helpfulness_work()},
            interleave(fine_gen, fine_hel),
        )

    def _coherence_stage(self) -> Stage:
        answers_coherence = coherence.Coherence(
            self.loaded, self.behavior, self.generated.answers, batch_size=self.config.batch_size
        )
        return Stage(
            "coherence",
            "scoring the answers' coherence under the unsteered model",
            {"coherence": _Once(answers_coherence.rows, len(self.generated.answers))},
            [("coherence", [(0, 0.0)])],
        )

    def _baseline_stage(self) -> Stage:
        c = self.config
        base_hel = (
            m.Helpfulness(
                self.loaded,
                self.questions,
                None,
                None,
                c.helpfulness_format,
                c.batch_size,
                system=self.behavior.system_prompt or None,
                task="baseline",
            )
            if self.questions and self.behavior.system_prompt
            else None
        )
        work = {"baseline": self.baseline, **({"baseline_helpfulness": base_hel} if base_hel else {})}
        return Stage(
            "baseline",
            "the prompting baseline: the unsteered model asked in a system prompt",
            work,
            _batches("baseline", self.baseline, [0.0])
            + (_batches("baseline_helpfulness", base_hel, [0.0]) if base_hel else []),
        )

    def _baseline_coherence_stage(self) -> Stage:
        base_coherence = coherence.Coherence(
            self.loaded,
            self.behavior,
            self.baseline.answers,
            task="baseline",
            system=self.behavior.system_prompt or None,
            batch_size=self.config.batch_size,
        )
        return Stage(
            "baseline_coherence",
            "coherence of the baseline's answers",
            {"baseline_coherence": _Once(base_coherence.rows, len(self.baseline.answers))},
            [("baseline_coherence", [(0, 0.0)])],
        )


class _Once:
    """A measurement that runs as one step (coherence scores every answer in one pass)."""

    units = [[0]]
    units_per_batch = 1

    def __init__(self, fn, n: int) -> None:
        self.fn, self.n = fn, n

    def rows(self, batch) -> list[dict]:
        return self.fn()

    def n_rows(self, batch) -> int:
        return self.n
