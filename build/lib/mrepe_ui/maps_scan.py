"""The layer scan in the maps tab: its plan and time estimate before it starts, then the scan itself,
streamed (progress, time left, heat maps after every window) and stoppable (Cancel, or the visitor
leaving) within one batch."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Iterator

import gradio as gr

from mrepe_core import throughput
from mrepe_core.layer_scan import ScanEvent, check_scan, iter_scan, plan_scan
from mrepe_core.limits import Cancelled, limits
from mrepe_core.plots import layer_map_figure

from .common import chart_value, fmt, gpu
from .maps_handlers import MAX_LAYERS, cancelled_note, config_for, load_model_for, same_model
from .maps_inputs import maps_errors, whole_number
from .maps_jobs import JOBS, SCAN, session_key
from .maps_views import MapsSession, as_session, or_message
from .presets import preset_layer_count

# A coarse scan by default: 5 windows of the 30-layer default model, 5 coefficients, a few items.
DEFAULTS = dict(width=6, stride=6, r_steps=5, n_eval=8, n_questions=1)
RANGES = dict(width=(1, MAX_LAYERS), stride=(0, MAX_LAYERS), r_steps=(2, 21), n_eval=(1, 200), n_questions=(0, 100))
LABELS = dict(
    width="Window width",
    stride="Stride",
    r_steps="r_e steps",
    n_eval="Behaviour prompts",
    n_questions="Questions per subject",
)


def scan_settings(width, stride, r_steps, n_eval, n_questions) -> dict[str, int]:
    """The scan form, checked (a stride of 0 or blank means half the width)."""
    values = dict(width=width, stride=stride if stride not in (None, "") else 0, r_steps=r_steps, n_eval=n_eval)
    values["n_questions"] = n_questions
    return {k: whole_number(v, LABELS[k], *RANGES[k]) for k, v in values.items()}


def _rate(spec: str, result) -> throughput.Rate | None:
    return throughput.measured(spec) or (throughput.rate_from_summary(result.summary) if result is not None else None)


def _estimate(rows: int, rate: throughput.Rate | None) -> str:
    if rate is None:
        return "not known yet: the scan times its first batches and shows it before the rest runs"
    return f"about {throughput.describe_seconds(rate.seconds(rows))} ({rate.seconds_per_row:.3g} s/row, {rate.source})"


def known_depth(preset, spec: str, result, session=None) -> int | None:
    """The model's decoder layers when known without loading it: from the preset's stored results,
    or from the model this session's map already loaded."""
    if result is not None and same_model(preset, spec):
        return preset_layer_count(result)
    loaded = session.explorer.loaded if isinstance(session, MapsSession) else None
    if loaded is not None and session.model_spec == spec:
        return loaded.n_layers
    return None


def scan_plan_view(preset_name, model_text, width, stride, r_steps, n_eval, n_questions, session=None) -> str:
    """Before the scan: its rows against this server's cap, and how long it will take (no model)."""
    with maps_errors("Layer scan"):
        preset, config, result, spec = config_for(preset_name, model_text)
        s = scan_settings(width, stride, r_steps, n_eval, n_questions)
    n_layers = known_depth(preset, spec, result, session)
    depth = n_layers or preset_layer_count(None)
    try:
        plan = plan_scan(depth, s["width"], s["stride"] or None, s["r_steps"], s["n_eval"], 0)
    except ValueError as exc:
        return f"⚠ {exc}"
    n_q = s["n_questions"] * len(config.helpfulness_subjects)
    plan = dataclasses.replace(plan, n_questions=n_q)
    cap = limits().scan_rows
    rate = _rate(spec, result)
    model_note = "" if n_layers else f" (for a {depth}-layer model; rechecked once `{spec}` is loaded)"
    lines = [f"**Plan:** {plan.describe()}{model_note}; this server allows {cap:,} rows per scan."]
    if plan.rows > cap:
        lines.append(
            "⚠ **Over the cap**: use a larger stride or width (fewer windows), fewer r_e steps, "
            "fewer behaviour prompts or fewer questions per subject."
        )
    lines.append(f"**Estimated time:** {_estimate(plan.rows, rate)}. Cancel stops it within one batch.")
    return "\n\n".join(lines)


def _charts(table) -> tuple[str | None, str | None]:
    b = or_message(lambda: layer_map_figure(table, "behavior_expectation"), "No behaviour rows.")
    h = or_message(lambda: layer_map_figure(table, "helpfulness"), "No helpfulness rows (the preset has no subjects).")
    return chart_value(b), chart_value(h)


class ScanStatus:
    """The scan's status line: the estimate (kept once known) above the latest progress."""

    def __init__(self, known: throughput.Rate | None) -> None:
        self.started = time.perf_counter()
        self.known = known
        self.estimate = ""

    def progress(self, event: ScanEvent) -> str:
        share = 100 * event.done / max(event.total, 1)
        text = f"Running: {event.done:,} / {event.total:,} rows ({share:.0f}%)"
        if event.seconds_left is not None and event.rate is not None:
            left = throughput.describe_seconds(event.seconds_left)
            text += f" · about {left} left ({event.rate.seconds_per_row:.3g} s/row)"
        text += f" · {time.perf_counter() - self.started:.0f} s so far · Cancel stops it within one batch."
        return "\n\n".join(t for t in (self.estimate, text) if t)

    def update(self, event: ScanEvent) -> tuple[str | None, str | None, str | None]:
        """(B chart, H chart, status) for one scan event; None where nothing changes."""
        if event.kind == "stage":
            if event.plan is not None:
                rows = event.plan.rows
                self.estimate = f"**Plan:** {event.plan.describe()}. **Estimated time:** {_estimate(rows, self.known)}."
            return None, None, "\n\n".join(t for t in (self.estimate, f"Running: {event.message}…") if t)
        if event.kind == "estimate" and event.rate is not None and event.plan is not None:
            total = throughput.describe_seconds(event.rate.seconds(event.plan.rows))
            self.estimate = (
                f"**Plan:** {event.plan.describe()}. **Estimated time:** about {total} "
                f"({event.rate.seconds_per_row:.3g} s/row, {event.rate.source})."
            )
            return None, None, self.progress(event)
        if event.kind == "progress":
            return None, None, self.progress(event)
        if event.kind == "window" and event.table is not None:
            b, h = _charts(event.table)
            return b, h, self.progress(event) + f" {event.message}."
        return None, None, None


@gpu(duration=900)
def scan_layers_view(
    preset_name,
    model_text,
    width,
    stride,
    r_steps,
    n_eval,
    n_questions,
    session=None,
    request: gr.Request | None = None,
) -> Iterator[tuple]:
    """API ``/maps_scan_layers``: heat maps of B and helpfulness over layer window x r_e, from one
    coarse sweep per window (cached like any sweep), plus a status line; streamed, cancellable."""
    session = as_session(session)
    with maps_errors("Layer scan"):
        preset, config, result, spec = config_for(preset_name, model_text)
        s = scan_settings(width, stride, r_steps, n_eval, n_questions)
        config = dataclasses.replace(config, n_eval=s["n_eval"], n_questions_per_subject=s["n_questions"])
        known = throughput.measured(spec)
        depth = known_depth(preset, spec, result, session)
        if depth is not None:  # refuse an oversized scan before loading anything
            n_q = s["n_questions"] * len(config.helpfulness_subjects)
            check_scan(plan_scan(depth, s["width"], s["stride"] or None, s["r_steps"], s["n_eval"], n_q), None, known)
    key = session_key(request, session)
    switch = JOBS.start(key, SCAN)
    status = ScanStatus(known)
    yield (gr.skip(), gr.skip(), "Running: loading the model…")
    events: Generator[ScanEvent, None, None] | None = None
    try:
        with maps_errors("Layer scan"):
            loaded = load_model_for(config)
            stored = result.vector if result is not None else None
            scan = iter_scan(config, s["width"], s["stride"] or None, s["r_steps"], loaded, stored, switch)
            events = scan
            for event in scan:
                if event.kind == "done":
                    b, h = _charts(event.table)
                    yield (b, h, _done_note(spec, config, s, event, time.perf_counter() - status.started))
                    return
                b, h, text = status.update(event)
                yield (gr.skip() if b is None else b, gr.skip() if h is None else h, text or gr.skip())
    except Cancelled:
        note = cancelled_note(switch, "The layer scan")
        yield (
            gr.skip(),
            gr.skip(),
            note + " Finished windows stay on the charts; a rerun with the same settings reuses every "
            "finished batch from the cache.",
        )
    finally:
        if events is not None:
            events.close()
        JOBS.finish(key, SCAN, switch)


def _done_note(spec, config, s, event: ScanEvent, took: float) -> str:
    rate = f", {event.rate.seconds_per_row:.3g} s/row" if event.rate is not None else ""
    plan = event.plan
    windows = len(plan.windows) if plan is not None else "?"
    return (
        f"✓ `{spec}`: {windows} windows of {s['width']} layers × {s['r_steps']} coefficients in "
        f"[{fmt(config.r_min)}, {fmt(config.r_max)}]; {s['n_eval']} behaviour prompts, {s['n_questions']} "
        f"questions per subject · {throughput.describe_seconds(took)}{rate}."
    )


__all__ = ["DEFAULTS", "scan_layers_view", "scan_plan_view", "scan_settings"]
