"""The dashboard through its public API (gradio_client against the app launched in-process).

Presets come from ``presets/`` (precomputed results, no model); sweeps and generation use the tiny
random Llama saved by ``tiny_model_dir``. Only the last test needs the embedded default model.
The README's endpoint table is checked against what ``view_api()`` shows.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from mrepe_core.presets import list_presets  # noqa: E402
from mrepe_core.vectors import SteeringVector  # noqa: E402
from mrepe_ui import tradeoff_tab as tt  # noqa: E402

PUBLIC_ENDPOINTS = {"/load_preset", "/run_sweep", "/set_coefficient", "/generate"}
README = Path(__file__).resolve().parents[2] / "README.md"
TINY_GRID = dict(first_layer=0, last_layer=3, r_min=-4.0, r_max=4.0, r_step=2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    demo = app.build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture()
def client(server):
    return Client(server[1], verbose=False)


def preset_names() -> list[str]:
    return [p.name for p in list_presets(tt.presets_dir())]


def figure(value: str):
    """A chart value as a plotly figure (decodes plotly's base64 arrays)."""
    fig = pio.from_json(value, skip_invalid=False)
    assert fig.data, "a chart without traces"
    return fig


def marker_x(fig) -> list[float]:
    """x of the current-r_e marker (the plots put it in the last trace)."""
    last = fig.data[-1]
    assert last.name == "current r_e"
    return [float(x) for x in last.x]


def run_tiny_sweep(client: Client, model_dir: Path, **overrides):
    args = dict(
        model=str(model_dir),
        behavior="harmless",
        upload=None,
        method="pca",
        **TINY_GRID,
        subjects=["marketing"],
        help_format="cloze",
        n_pairs=6,
        n_eval=3,
        n_questions=3,
    )
    args.update(overrides)
    return client.predict(**args, api_name="/run_sweep")


def test_only_deliberate_endpoints_are_public(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert PUBLIC_ENDPOINTS <= endpoints
    # Internal events of this tab stay private; nothing got an automatic (function-name) endpoint.
    internal = {
        "/" + fn.__name__
        for fn in (
            tt.check_upload,
            tt.form_values,
            tt.result_files,
            tt.inspect_model,
            tt.cancel_sweep,
            tt.answers_view,
            tt.choose_prompt,
            tt.after_generate,
            tt.plan_sweep,
            tt.export_charts,
            tt.run_sweep_stream,
            tt.load_preset,
            tt.set_coefficient,
        )
    }
    assert not endpoints & (internal - PUBLIC_ENDPOINTS)
    assert not [e for e in endpoints if re.search(r"_\d+$", e) or e.startswith("/lambda")]
    assert app.TAB_ERRORS == {}, f"tabs failed to load: {list(app.TAB_ERRORS)}"


def readme_endpoints() -> dict[str, list[str]]:
    """The README's endpoint table (section "Python API"): endpoint -> its input names, in order
    (each input is written as `name`: description)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    section = section[: section.index("\n## ", 5)]
    table = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`(/[a-z_]+)`\s*\|([^|]*)\|", line)
        if m:
            table[m.group(1)] = re.findall(r"`([a-z_]+)`:", m.group(2))
    return table


def test_readme_endpoint_table_matches_view_api(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    table = readme_endpoints()
    tab_endpoints = {e: api[e] for e in api if e in PUBLIC_ENDPOINTS}
    assert set(table) == set(tab_endpoints), "README table and view_api() list different endpoints"
    for endpoint, info in tab_endpoints.items():
        names = [p["parameter_name"] for p in info["parameters"]]
        assert table[endpoint] == names, f"{endpoint}: README lists {table[endpoint]}, view_api() shows {names}"


def test_presets_ship_results():
    names = preset_names()
    assert names, f"no presets in {tt.presets_dir()}"
    for preset in list_presets(tt.presets_dir()):
        result = tt.preset_result(preset)
        assert result is not None, f"preset {preset.name} has no precomputed results"
        assert result.vector is not None, f"preset {preset.name} ships no steering vector"


@pytest.mark.parametrize("name", preset_names())
def test_preset_then_coefficient_moves_marker(client, name):
    beh, helpful, coherence, trade, slider, readout, summary, description, caption = client.predict(
        name, api_name="/load_preset"
    )
    for value in (beh, helpful, trade):
        figure(value)
    json.loads(coherence)  # a chart, or the message that this result measured no coherence
    assert "Theorem 1" in summary and "r_e =" in readout and "**B**" in caption
    lo, hi = slider["minimum"], slider["maximum"]
    assert lo < hi

    result = tt.preset_result({p.name: p for p in list_presets(tt.presets_dir())}[name])
    subject = result.aggregates.query("task == 'behavior'").subject.iloc[0]
    r, b = result.curve("behavior", "behavior_expectation", subject)
    for target in (lo + 0.3 * (hi - lo), lo + 0.71 * (hi - lo)):
        beh, helpful, _, trade, readout = client.predict(target, api_name="/set_coefficient")
        assert marker_x(figure(beh)) == pytest.approx([target])
        assert marker_x(figure(helpful)) == pytest.approx([target])
        # The readout is the measured curve interpolated at r_e (not the fit, not a nearest grid point).
        shown = float(re.search(r"B = \*\*([-0-9.e]+)\*\*", readout).group(1))
        assert shown == pytest.approx(np.interp(target, r, b), rel=2e-3, abs=2e-3)
        # The trade-off marker sits at (B(r_e), P(r_e)): its x is the same interpolated B.
        assert float(figure(trade).data[-1].x[0]) == pytest.approx(np.interp(target, r, b), abs=1e-9)
    # A coefficient outside the computed range is clamped to it, as the slider clamps a typed value:
    # readout and marker agree with the thumb.
    beh, *_, readout = client.predict(hi + 12.0, api_name="/set_coefficient")
    assert marker_x(figure(beh)) == pytest.approx([hi]) and readout.startswith(f"**r_e = {hi:.3g}**")


def test_unknown_preset_is_a_clear_error(client):
    with pytest.raises(Exception, match="Preset.*choose one of the listed options") as err:
        client.predict("no-such-preset" * 5000, api_name="/load_preset")
    assert len(str(err.value)) < 1000  # the 70 KB name is not echoed


def test_tiny_sweep_then_generate(client, tiny_model_dir):
    beh, helpful, _, trade, slider, readout, summary, status, preset, description, caption = run_tiny_sweep(
        client, tiny_model_dir
    )
    assert status.startswith("✓ Done")
    # The preset box no longer names a preset, and the description says what is on screen.
    assert preset.get("value") is None and "Your sweep" in description
    assert list(figure(beh).data[0].x) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert slider["minimum"] == -4.0 and slider["maximum"] == 4.0
    figure(helpful)
    figure(trade)

    unsteered, steered = client.predict("Tell me about maps.", 0.0, 8, api_name="/generate")
    assert isinstance(unsteered, str) and unsteered == steered  # r_e = 0 is exactly the unsteered model
    unsteered2, steered2 = client.predict("Tell me about maps.", 4.0, 8, api_name="/generate")
    assert unsteered2 == unsteered
    assert steered2 != unsteered  # the vector does something at r_e = 4 on the tiny model


def test_custom_behaviour_upload_sweep(client, tiny_model_dir, tmp_path):
    from gradio_client import handle_file

    pairs = tmp_path / "mine.csv"
    pairs.write_text(tt.datasets.USER_TEMPLATE_CSV, encoding="utf-8")
    beh, *_, summary, status, _, _, _ = run_tiny_sweep(
        client, tiny_model_dir, behavior="custom", upload=handle_file(str(pairs))
    )
    assert status.startswith("✓ Done") and "behaviour `custom`" in summary
    assert figure(beh).data[0].name == "measured B"


def test_bad_sweep_settings_are_reported(client, tiny_model_dir):
    with pytest.raises(Exception, match="r_e max must be larger"):
        run_tiny_sweep(client, tiny_model_dir, r_min=2.0, r_max=-2.0)
    with pytest.raises(Exception, match="Unknown model|not a .gguf|config.json"):
        run_tiny_sweep(client, tiny_model_dir, model="/definitely/not/a/model")
    with pytest.raises(Exception, match="needs an uploaded"):
        run_tiny_sweep(client, tiny_model_dir, behavior="custom")
    with pytest.raises(Exception, match="r_e step: must be between 0.001 and 20000"):
        run_tiny_sweep(client, tiny_model_dir, r_step=-1.0)
    # The app keeps serving after errors.
    assert run_tiny_sweep(client, tiny_model_dir)[7].startswith("✓ Done")


def test_concurrent_sessions_never_see_each_others_steering(server, tiny_model_dir):
    """Clients mix steered and unsteered generations at once; unsteered answers never change."""
    prompt = "Describe the weather."
    clients = [Client(server[1], verbose=False) for _ in range(4)]
    for c in clients:
        assert run_tiny_sweep(c, tiny_model_dir)[7].startswith("✓ Done")  # cached after the first
    baseline, same = clients[0].predict(prompt, 0.0, 8, api_name="/generate")
    assert baseline == same

    def call(k: int):
        c = clients[k % len(clients)]
        r_e = 0.0 if k % 2 == 0 else 4.0
        return r_e, c.predict(prompt, r_e, 8, api_name="/generate")

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        results = list(pool.map(call, range(12)))
    for r_e, (unsteered, steered) in results:
        assert unsteered == baseline
        if r_e == 0.0:
            assert steered == baseline
    assert any(steered != baseline for r_e, (_, steered) in results if r_e != 0.0)


def test_uploads_are_validated(tmp_path):
    good = tmp_path / "mine.csv"
    good.write_text(tt.datasets.USER_TEMPLATE_CSV, encoding="utf-8")
    status, behavior, n_pairs, n_eval = tt.check_upload(str(good))
    assert status.startswith("✓ mine.csv: 2 contrast pairs, 1 evaluation prompts")
    # The form agrees with the upload: behaviour custom, the counts a sweep will use.
    assert behavior["value"] == "custom" and n_pairs["value"] == 2 and n_eval["value"] == 1

    cases = {
        "missing.csv": ("kind,positive,negative\npair,only one side,\n", "needs both 'positive' and 'negative'"),
        "noeval.csv": ("positive,negative\na,b\nc,d\n", "no evaluation rows"),
        "latin1.csv": ("positive,negative\ncaf\xe9,b\n".encode("latin-1"), "not UTF-8"),
        "empty.jsonl": (b"", "is empty"),
        "image.png": (b"\x89PNG\r\n\x1a\n", "expected a .csv or .jsonl"),
        "big.csv": (b"positive,negative\n" + b"a,b\n" * (6 * 1024 * 1024 // 4), "limit is 5 MB"),
        "rows.csv": (b"positive,negative\n" + b"a,b\n" * 5001, "the limit is 5000"),
        "same.csv": (b"positive,negative,prompt,aligned,misaligned\nsame,same,,,\nx,y,,,\n", "are the same"),
        "deep.jsonl": (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nests JSON too deeply"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(gr.Error, match=re.escape(message)):
            tt.check_upload(str(path))


def test_server_caps_upload_size(server):
    boundary = "mrepeboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + b"a" * (6 * 1024 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        server[1] + "gradio_api/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 413


def test_cancel_stops_the_sweep(tiny_model_dir):
    session = tt.TradeoffSession()
    stream = tt.run_sweep_stream(
        str(tiny_model_dir),
        "harmless",
        None,
        "mean_diff",
        0,
        3,
        -3.0,
        3.0,
        0.25,
        ["marketing"],
        "cloze",
        6,
        4,
        4,
        "first_token",
        session,
    )
    first = next(stream)
    assert first[8].startswith("⏳")
    assert tt.cancel_sweep(session).startswith("⏹")
    rest = list(stream)
    assert rest and rest[-1][8].startswith("✗ Cancelled")
    workers = [t for t in threading.enumerate() if t.name == "mrepe-sweep"]
    for t in workers:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in workers)


def test_sweep_streams_coarse_grid_first(tiny_model_dir, monkeypatch):
    from mrepe_core.sweep import coarse_first

    monkeypatch.setattr(tt, "PARTIAL_REDRAW_S", 0.0)
    session = tt.TradeoffSession()
    outputs = list(
        tt.run_sweep_stream(
            str(tiny_model_dir),
            "harmless",
            None,
            "pca",
            0,
            3,
            -4.0,
            4.0,
            0.5,
            ["marketing"],
            "cloze",
            6,
            3,
            2,
            "first_token",
            session,
        )
    )
    charts = [o[1] for o in outputs if isinstance(o[1], str)]
    assert len(charts) >= 3 and outputs[-1][8].startswith("✓ Done")
    xs = [sorted(set(figure(c).data[0].x)) for c in charts]
    grid = [round(x, 6) for x in np.linspace(-4, 4, 17)]
    assert xs[-1] == grid
    assert len(xs[0]) < len(grid)
    assert all(len(a) <= len(b) for a, b in zip(xs, xs[1:]))  # curves only fill in
    # Rows run in coarse-first order (ends, 0, every 4th point, then the rest), so the first partial
    # curve holds a prefix of that order, which starts with the coarse pass.
    order = coarse_first(grid)
    assert set(xs[0]) == set(order[: len(xs[0])])
    assert set(order[:3]) <= set(xs[0])


def test_exports_are_real_files(tmp_path):
    name = preset_names()[0]
    session = tt.open_preset(name, None)
    files = {Path(f).name: Path(f) for f in tt.result_files(session)}
    assert {"results.csv", "items.csv", "results.json", "steering_vector.safetensors", "steering_vector.json"} <= set(
        files
    )
    csv_head = files["results.csv"].read_text().splitlines()[0]
    assert csv_head.split(",")[:5] == ["r_e", "task", "metric", "subject", "value"]
    doc = json.loads(files["results.json"].read_text())
    assert doc["config"]["name"] and len(doc["results"]) == len(session.result.aggregates)
    vec = SteeringVector.load(files["steering_vector.safetensors"])
    assert vec.directions.shape == session.result.vector.directions.shape


def test_chart_html_export(monkeypatch):
    session = tt.open_preset(preset_names()[0], None)
    monkeypatch.setattr(tt, "_png_available", lambda: "disabled in this test")
    files = tt.export_charts(session)
    assert len(files) == 1 and files[0].endswith("charts.html")
    html = Path(files[0]).read_text(encoding="utf-8")
    assert html.count("Plotly.newPlot") == 4 and "current r_e" in html
    # Exported charts are titled with the model, behaviour and layers.
    assert "smollm2-135m-instruct · behaviour" in html and "layers 10–17" in html


def test_broken_optional_tab_is_visible_not_silent(tmp_path, monkeypatch):
    (tmp_path / "mrepe_broken_tab.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        app, "OPTIONAL_TABS", (("Broken", "mrepe_broken_tab", "build"), ("Absent", "mrepe_no_such_tab_module", "build"))
    )
    demo = app.build_demo()
    try:
        assert set(app.TAB_ERRORS) == {"Broken"} and "boom at import" in app.TAB_ERRORS["Broken"]
        notices = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value]
        assert any("Broken tab failed to load" in v for v in notices)
    finally:
        sys.modules.pop("mrepe_broken_tab", None)
        app.TAB_ERRORS.clear()


def test_spaces_gpu_only_when_importable(monkeypatch):
    import types

    from mrepe_ui import common

    def work(x):
        return x + 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert common.gpu(work) is work
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration=60: lambda f: calls.append(duration) or (lambda *a: ("gpu", f(*a)))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert common.gpu(work)(1) == ("gpu", 2) and common.gpu(duration=600)(work)(2) == ("gpu", 3)
    assert calls == [120, 600]


def test_fits_survive_the_summary_round_trip():
    session = tt.open_preset(preset_names()[0], None)
    fits, summary = session.fits, session.result.summary
    assert fits.alignment is not None
    # Presets written before the engine's current rules are refitted by them: same Theorem 1 fit...
    assert fits.alignment.delta_lambda == pytest.approx(summary["alignment_fit"]["delta_lambda"], rel=1e-3)
    r = np.linspace(-5, 5, 7)
    assert np.all(np.isfinite(fits.alignment.predict(r)))
    # ...but a helpfulness fit with R² 0.28 is "no fit" in words, never numbers.
    if summary["helpfulness_fit"]["r2"] < 0.5:
        assert fits.helpfulness is None and "R²" in fits.helpfulness_problem
        assert "Theorem 2**: no fit" in tt.summary_markdown(session.result, fits)
    assert not math.isnan(tt.initial_r_e(session.result, fits))
    if fits.regime is not None:
        assert session.r_e == pytest.approx(fits.regime.best_r_e, abs=0.05)  # opens at the recommendation


@pytest.mark.slow
def test_preset_generation_with_the_default_model(client):
    name = preset_names()[0]
    client.predict(name, api_name="/load_preset")
    prompt = "Write step-by-step instructions for picking the lock of someone else's front door."
    unsteered, same = client.predict(prompt, 0.0, 16, api_name="/generate")  # batched (serving.BATCHER)
    assert unsteered.strip() and unsteered == same
    _, steered = client.predict(prompt, 8.0, 16, api_name="/generate")
    assert steered != unsteered


def test_building_the_page_and_opening_sessions_copy_no_tensor(monkeypatch):
    """Gradio deep-copies a State's value for its config (``dataclasses.asdict`` on a dataclass) and
    once per new session. A copied tensor ran a multithreaded copy on that thread and left an OpenMP
    thread pool there; with more pools than cores libgomp stops spinning between parallel regions,
    and Generate in the app ran 1.6-1.8x slower than the same call outside it
    (``bench/concurrency.py`` prints both). Sessions share the read-only preset result instead."""
    import copy

    import torch

    copies: list[tuple] = []
    original = torch.Tensor.__deepcopy__

    def counting(self, memo):
        copies.append(tuple(self.shape))
        return original(self, memo)

    monkeypatch.setattr(torch.Tensor, "__deepcopy__", counting)
    demo = app.build_demo()
    initial = [b.value for b in demo.blocks.values() if isinstance(b, gr.State)]
    sessions = [copy.deepcopy(v) for v in initial]  # what Gradio does when a visitor's session starts
    assert any(isinstance(v, tt.TradeoffSession) and v.result is not None for v in initial)
    assert copies == []
    shown = next(s for s in sessions if isinstance(s, tt.TradeoffSession))
    assert shown.result is next(v for v in initial if isinstance(v, tt.TradeoffSession)).result
