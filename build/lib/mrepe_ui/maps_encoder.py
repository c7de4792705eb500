"""The maps tab's encoder space: a CLIP / CLAP joint embedding map of the shipped examples, the
visitor's uploads and texts (checked as a public endpoint needs)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from mrepe_core.concept_map_inputs import clean_user_texts
from mrepe_core.concept_maps import build_map, builtin_encoder_items, collect_encoder_inputs
from mrepe_core.limits import InputError, public_deployment
from mrepe_core.map_explorer import MAP_METHODS
from mrepe_core.plots import concept_map_figure

from .common import chart_value, gpu, upload_path
from .maps_handlers import check_projection
from .maps_inputs import choice, encoder_spec, log, maps_errors

MAX_UPLOADS = 8
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


def _uploads(files) -> list[Path]:
    if files is None:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    files = [f for f in files if f is not None]
    if len(files) > MAX_UPLOADS:
        raise InputError(f"{len(files)} files uploaded; the map takes at most {MAX_UPLOADS}.")
    paths = []
    for f in files:
        path = upload_path(f)
        if path is None or not _in_upload_folder(path) or not path.is_file():
            raise InputError("An upload could not be read; upload it again.")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise InputError(f"{path.name[:60]} is larger than {MAX_UPLOAD_BYTES >> 20} MB.")
        paths.append(path)
    return paths


def _in_upload_folder(path: Path) -> bool:
    """On a public deployment only files Gradio received as uploads are read."""
    if not public_deployment():
        return True
    from gradio.utils import get_upload_folder, is_in_or_equal

    return is_in_or_equal(path, get_upload_folder())


@gpu
def _encoder_inputs(kind, spec, paths, user_texts):
    from mrepe_core.multimodal.concepts import upload_items
    from mrepe_core.multimodal.encoders import load_encoder

    try:
        encoder = load_encoder(kind, spec)
    except (ValueError, OSError) as exc:
        if not public_deployment():
            raise
        log.info("maps: %s encoder did not load: %s", kind, str(exc)[:300])
        raise InputError(f"The {kind.upper()} encoder could not be loaded on this server.") from None
    modality = "image" if kind == "clip" else "audio"
    uploads = upload_items(modality, [str(p) for p in paths], "user") if paths else ()
    return encoder.describe(), collect_encoder_inputs(encoder, builtin_encoder_items(kind), user_texts, uploads)


def encoder_map_view(kind, encoder_weights, files, user_texts, method):
    """Map of a CLIP / CLAP joint space: shipped examples by theme, the visitor's uploads and texts."""
    with maps_errors("Encoder map"):
        kind = choice(kind, "Encoder", ("clip", "clap"))
        method = choice(method, "Projection", MAP_METHODS)
        spec = encoder_spec(encoder_weights, kind)
        users = clean_user_texts(user_texts)
        paths = _uploads(files)
    waiting = check_projection(method)
    if waiting is not None:
        gr.Warning(waiting)
        method = "pca"
    with maps_errors(f"{kind.upper()} map"):
        description, inputs = _encoder_inputs(kind, spec, paths, users)
        concept_map = build_map(inputs.at_layer(0), method, layer=0)
        names = ["your inputs" if s == "user" else s for s in inputs.sets]
        fig = concept_map_figure(
            concept_map.points_2d,
            names,
            inputs.sides,
            hover_text=inputs.hover,
            title=f"{inputs.space} · {method.upper()} · colour = theme, marker = modality",
            axis_titles=concept_map.axis_titles,
        )
    status = (
        f"{description} · {inputs.n_points} points ({len(paths)} uploads, "
        f"{sum(1 for s in inputs.sets if s == 'user') - len(paths)} texts of yours)."
    )
    return chart_value(fig), status
