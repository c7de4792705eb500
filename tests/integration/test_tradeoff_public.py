"""The Trade-off tab as strangers use it: the first screen's answers from the result's texts, batched
generation that answers as serial generation does, bounded work per visitor, sweeps priced and
refused above the cap, cancelled sweeps that continue, and state that agrees with itself.

Presets here are synthetic results with the full schema (``tests/tradeoff_synthetic.py``) whose
model is the tiny random Llama of ``tiny_model_dir`` and whose vector was extracted from it, so
Generate runs for real (on the tiny model) and nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradeoff_synthetic import synthetic_result, write_preset  # noqa: E402

import app  # noqa: E402
from mrepe_core import models, prompts, runner  # noqa: E402
from mrepe_core.datasets import ContrastPair  # noqa: E402
from mrepe_core.extract import extract_vector  # noqa: E402
from mrepe_ui import guard  # noqa: E402
from mrepe_ui import tradeoff_tab as tt  # noqa: E402
from mrepe_ui import tradeoff_view as tv  # noqa: E402

PROMPT = "Tell me about rivers."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_vector(tiny_model_dir):
    loaded = models.load_model(str(tiny_model_dir))
    pairs = [ContrastPair(f"I refuse, sorry {k}.", f"Sure, here it is {k}.") for k in range(6)]
    return extract_vector(loaded, pairs, "mean_diff", [0, 1])


@pytest.fixture(scope="module")
def presets(tmp_path_factory, tiny_model_dir, tiny_vector):
    d = tmp_path_factory.mktemp("presets")
    full = synthetic_result(model=str(tiny_model_dir), vector=tiny_vector, name="demo-tiny", n_prompts=6)
    write_preset(d, full, "demo-tiny")
    old = synthetic_result(texts=False, coherence=False, baseline=False, proxy=False, name="old-format")
    old.config.behavior_mode = "first_token"
    write_preset(d, old, "old-format")
    return d


@pytest.fixture(scope="module")
def server(presets):
    before = os.environ.get("MREPE_PRESETS_DIR")
    os.environ["MREPE_PRESETS_DIR"] = str(presets)
    demo = app.build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()
    if before is None:
        os.environ.pop("MREPE_PRESETS_DIR", None)
    else:
        os.environ["MREPE_PRESETS_DIR"] = before


@pytest.fixture(autouse=True)
def presets_env(presets, monkeypatch):
    """Every test sees the tiny presets, whether or not it uses the server (order-independent)."""
    monkeypatch.setenv("MREPE_PRESETS_DIR", str(presets))


@pytest.fixture()
def client(server):
    return Client(server[1], verbose=False)


def serial_answers(model_dir, vector, prompt: str, r_e: float, n: int) -> list[str]:
    loaded = models.load_model(str(model_dir))
    text = prompts.render_chat(loaded.tokenizer, prompt)
    return runner.generate(loaded, [text, text], vector, [0, 1], [0.0, r_e], max_new_tokens=n)


# ---------------------------------------------------------------------------------------------
# The first screen
# ---------------------------------------------------------------------------------------------


def test_opening_view_is_the_recommended_r_e_and_its_answer(server):
    session = tt.open_preset("demo-tiny", None)
    regime = session.fits.regime
    assert regime is not None
    assert session.r_e == pytest.approx(regime.best_r_e)
    picker, unsteered, steered, baseline, table, note, _ = tt.answers_view(session)
    table = json.loads(table)
    texts = session.result.texts
    rows = texts[(texts.task == "behavior") & (texts.item == session.item)]
    at = rows[np.isclose(rows.r_e, regime.best_r_e)].text.iloc[0]
    assert steered["value"] == at and steered["label"] == f"Steered (r_e = {tv.label_number(regime.best_r_e)})"
    assert unsteered["value"] == rows[np.isclose(rows.r_e, 0.0)].text.iloc[0]
    assert "[baseline]" in baseline["value"] and baseline["visible"]
    assert table["mode"] == "table" and len(table["r"]) == 21 and table["item"] == session.item
    # It opens on a prompt whose answer steering changes (by the sweep's own scores).
    assert at != unsteered["value"] and picker["value"] == session.item
    assert "no model call" in note
    # The page itself is built with the same view (baked into its config, no request needed).
    demo = server[0]
    boxes = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert boxes["steered-text"].value == at and boxes["steered-text"].label == steered["label"]
    assert boxes["re-slider"].value == pytest.approx(regime.best_r_e)


def test_prompt_picker_shows_precomputed_answers_without_a_model(monkeypatch):
    monkeypatch.setattr(tt, "_load", lambda *a, **k: pytest.fail("the picker must not load a model"))
    session = tt.open_preset("demo-tiny", None)
    _, unsteered, steered, *_ = tt.choose_prompt(0, -3.3, session)
    texts = session.result.texts
    rows = texts[(texts.task == "behavior") & (texts.item == 0)]
    assert steered["value"] == rows[np.isclose(rows.r_e, -3.2)].text.iloc[0]  # nearest computed r_e
    assert steered["label"] == "Steered (r_e = -3.2 · nearest computed to -3.3)"
    assert unsteered["value"] == rows[np.isclose(rows.r_e, 0.0)].text.iloc[0]
    out = tt.choose_prompt(tt.OWN_PROMPT, 1.0, session)
    assert out[2]["value"] == "" and json.loads(out[4])["mode"] == "empty"
    with pytest.raises(ValueError, match="choose one of the listed prompts"):
        tt.choose_prompt(999, 0.0, session)


def test_a_result_without_answers_or_coherence_degrades_gracefully():
    session = tt.open_preset("old-format", None)
    picker, unsteered, steered, baseline, table, note, prompt = tt.answers_view(session)
    assert picker["visible"] is False and json.loads(table) == {"mode": "empty"}
    assert "no precomputed answers" in note and not baseline["visible"]
    b, h, c, t, readout, summary, caption = tt.view(session)
    assert "Coherence was not measured" in c and "coherent" not in readout
    assert "next-token proxy" in caption
    assert "Prompting baseline" not in summary


def test_caption_says_what_b_measures():
    session = tt.open_preset("demo-tiny", None)
    assert "answers the model writes" in tv.b_caption(session.result)


# ---------------------------------------------------------------------------------------------
# Generation: batched, equal to serial
# ---------------------------------------------------------------------------------------------


def test_generate_equals_serial_generation(client, tiny_model_dir, tiny_vector):
    client.predict("demo-tiny", api_name="/load_preset")
    unsteered, steered = client.predict(PROMPT, 3.0, 8, api_name="/generate")
    assert [unsteered, steered] == serial_answers(tiny_model_dir, tiny_vector, PROMPT, 3.0, 8)


def test_concurrent_visitors_get_serial_answers_from_shared_batches(server, tiny_model_dir, tiny_vector):
    """Eight visitors, three calls each, all at once: every answer equals the serial one, and the
    batcher decoded them in fewer batches than calls."""
    clients = [Client(server[1], verbose=False) for _ in range(8)]
    for c in clients:
        c.predict("demo-tiny", api_name="/load_preset")
    cases = [(k, f"{PROMPT} ({k % 3})", float(k % 5) - 2.0) for k in range(24)]
    expected = {(p, r): serial_answers(tiny_model_dir, tiny_vector, p, r, 8) for _, p, r in cases}
    before = tt.BATCHER.batches_run
    start = threading.Barrier(len(clients))

    def visitor(j: int):
        start.wait()
        return [
            ((p, r), clients[j].predict(p, r, 8, api_name="/generate")) for k, p, r in cases if k % len(clients) == j
        ]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        results = [pair for part in pool.map(visitor, range(len(clients))) for pair in part]
    assert len(results) == len(cases)
    for key, answer in results:
        assert list(answer) == expected[key]
    assert tt.BATCHER.batches_run - before < len(cases)


def test_generation_caps_prompts_in_tokens(client):
    client.predict("demo-tiny", api_name="/load_preset")
    words = " ".join(["river"] * 500)
    with pytest.raises(Exception, match=r"Your prompt is [\d,]+ tokens; the limit is 512") as err:
        client.predict(words, 1.0, 8, api_name="/generate")
    assert len(str(err.value)) < 600
    with pytest.raises(Exception, match="Your own prompt: 50,000 characters; this server accepts at most"):
        client.predict("x" * 50_000, 1.0, 8, api_name="/generate")
    # Slider values out of range are clamped to the slider, as the page does; the handler bounds them too.
    assert len(client.predict(PROMPT, 1.0, 10_000, api_name="/generate")) == 2
    with pytest.raises(ValueError, match="Max new tokens must be between 1 and 256"):
        tt.generate(PROMPT, 1.0, 10_000, tt.open_preset("demo-tiny", None))


# ---------------------------------------------------------------------------------------------
# Bounded work per visitor
# ---------------------------------------------------------------------------------------------


class GatedBatcher:
    """Stands in for serving.BATCHER: every request waits until the test opens the gate."""

    max_rows = 48
    batches_run = 0

    def __init__(self):
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0

    def _count(self, k: int) -> None:
        with self.lock:
            self.waiting += k

    def generate(self, loaded, texts, vector, layers, coefficients, max_new_tokens, cancel=None):
        self._count(1)
        try:
            while not self.gate.wait(0.05):
                if cancel is not None and cancel.is_set():
                    raise tt.Cancelled("The request was cancelled before it ran.")
        finally:
            self._count(-1)
        return ["unsteered", "steered"]


def join(url: str, session_hash: str, fn_index: int, data: list) -> tuple[int, dict]:
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash}).encode()
    req = urllib.request.Request(
        url + "gradio_api/queue/join", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fn_index(demo, api_name: str) -> int:
    return next(i for i, fn in demo.fns.items() if fn.api_name == api_name)


def test_one_visitor_cannot_fill_the_queue(server, monkeypatch):
    """Twenty /generate calls at once from one client: the session's limit admits three, refuses the
    rest with a message, and another visitor's /load_preset keeps answering at once."""
    demo, url = server
    gated = GatedBatcher()
    monkeypatch.setattr(tt, "BATCHER", gated)
    monkeypatch.setattr(tt, "_ANSWERS", tt.OrderedDict())  # every call must reach the (gated) batcher
    greedy, other = Client(url, verbose=False), Client(url, verbose=False)
    greedy.predict("demo-tiny", api_name="/load_preset")
    jobs = [greedy.submit(PROMPT, 1.0, 8, api_name="/generate") for _ in range(20)]
    deadline = time.time() + 30
    while gated.waiting < guard.jobs_per_session() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert gated.waiting == guard.jobs_per_session()
    status, reply = join(url, greedy.session_hash, fn_index(demo, "generate"), [PROMPT, 1.0, 8, None])
    assert status == 400 and "You already have 3 jobs running or waiting" in reply["detail"]
    t0 = time.perf_counter()
    for _ in range(3):
        other.predict("demo-tiny", api_name="/load_preset")
    assert time.perf_counter() - t0 < 15
    gated.gate.set()
    done = refused = 0
    for job in jobs:
        try:
            assert job.result(timeout=60) == ("unsteered", "steered")
            done += 1
        except Exception:
            refused += 1
    assert done == guard.jobs_per_session() and refused == 20 - done


def test_a_visitor_who_leaves_cancels_their_running_generation(server):
    demo = server[0]

    class Request:
        session_hash = "visitor-who-leaves"

    with guard.session_cancel(Request()) as cancel:
        assert not cancel.is_set()
        asyncio.run(demo._queue.clean_events(session_hash="visitor-who-leaves"))
        assert cancel.is_set()
    assert guard.cancel_session("visitor-who-leaves") == 0  # unregistered once the request ended


def test_preset_and_coefficient_never_wait_behind_model_work(server):
    demo = server[0]
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    assert by_name["load_preset"].concurrency_limit is None
    assert by_name["set_coefficient"].queue is False
    assert by_name["generate"].concurrency_id == tt.GENERATE_QUEUE
    assert by_name["generate"].concurrency_limit == tt.generate_concurrency() > 1
    assert by_name["run_sweep"].concurrency_id == tt.MODEL_QUEUE


# ---------------------------------------------------------------------------------------------
# Sweeps: priced, refused above the cap, cancelled and continued
# ---------------------------------------------------------------------------------------------


def test_a_huge_sweep_is_refused_with_its_estimated_time(client):
    from mrepe_core.datasets import mmlu_subjects

    with pytest.raises(
        Exception, match=r"would evaluate [\d,]+ rows \(about [\d,]+ min here\); this server allows 20,000"
    ):
        client.predict(
            "smollm2-135m-instruct", "harmless", None, "pca", 10, 17, -8.0, 8.0, 0.1,
            mmlu_subjects(), "cloze", 64, 2000, 2000, "first_token", api_name="/run_sweep",
        )  # fmt: skip


def test_plan_shows_rows_and_time_before_a_sweep_starts():
    text = tt.plan_sweep("smollm2-135m-instruct", "harmless", None, -8, 8, 0.8, ["marketing"], 40, 10, "first_token")
    assert "This sweep: 1,050 rows" in text and "on this machine" in text and "cap 20,000 rows" in text
    over = tt.plan_sweep("smollm2-135m-instruct", "harmless", None, -8, 8, 0.1, ["marketing"], 600, 100, "generate")
    assert "over this server's cap" in over
    assert tt.plan_sweep("m", "harmless", None, -8, 8, 0, [], 1, 0, "first_token").startswith("✗ r_e step")


def sweep_args(model_dir, session, **kw):
    args = dict(
        model=str(model_dir), behavior="harmless", upload=None, method="pca", first_layer=0, last_layer=3,
        r_min=-3.0, r_max=3.0, r_step=0.5, subjects=["marketing"], help_format="cloze", n_pairs=6, n_eval=5,
        n_questions=5, behavior_mode="first_token", session=session,
    )  # fmt: skip
    args.update(kw)
    return args


def test_a_cancelled_sweep_continues_from_its_batches(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(tt, "PARTIAL_REDRAW_S", 0.0)
    session = tt.TradeoffSession()
    stream = tt.run_sweep_stream(**sweep_args(tiny_model_dir, session))
    for out in stream:
        if re.match(r"⏳ [1-9][\d,]*/", str(out[8])):  # at least one batch finished
            break
    tt.cancel_sweep(session)
    rest = list(stream)
    assert rest[-1][8].startswith("✗ Cancelled after") and "continue" in rest[-1][8]
    assert rest[-1][9] == {"__type__": "update", "value": None}
    outs = list(tt.run_sweep_stream(**sweep_args(tiny_model_dir, tt.TradeoffSession())))
    assert outs[-1][8].startswith("✓ Done") and "continuing from the" in outs[-1][8]
    # The engine skipped the finished batches: the first progress line already counts them.
    progress = [o[8] for o in outs if re.match(r"⏳ [1-9][\d,]*/", str(o[8]))]
    first_done = int(progress[0].split("/")[0].split()[-1].replace(",", ""))
    cancelled_at = int(rest[-1][8].split("after ")[1].split(" of")[0].replace(",", ""))
    assert first_done >= cancelled_at


def test_cancelling_a_custom_upload_stops_its_extraction(tiny_model_dir, tmp_path):
    pairs = tmp_path / "mine.csv"
    pairs.write_text(tt.datasets.USER_TEMPLATE_CSV, encoding="utf-8")
    session = tt.TradeoffSession()
    stream = tt.run_sweep_stream(**sweep_args(tiny_model_dir, session, behavior="custom", upload=str(pairs)))
    for out in stream:
        if "Extracting" in str(out[8]):
            break
    tt.cancel_sweep(session)
    rest = list(stream)
    assert rest[-1][8].startswith("✗ Cancelled")
    assert session.result is None  # nothing half-made on screen


def test_upload_texts_are_capped_in_tokens_once_the_tokenizer_is_known(tiny_model_dir, tmp_path):
    long_text = " ".join(["word"] * 700)
    pairs = tmp_path / "long.csv"
    pairs.write_text(
        f'kind,positive,negative,prompt,aligned,misaligned\npair,"{long_text} yes","{long_text} no",,,\n'
        'pair,a b,c d,,,\neval,,,"Is it?","Yes","No"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"Contrast pair 1 \(positive\) is [\d,]+ tokens; the limit is 512"):
        list(
            tt.run_sweep_stream(
                **sweep_args(tiny_model_dir, tt.TradeoffSession(), behavior="custom", upload=str(pairs))
            )
        )


def test_four_spellings_of_one_model_folder_load_one_copy(tiny_model_dir):
    d = Path(tiny_model_dir)
    spellings = [str(d), f"{d}/../{d.name}", f"{d}/.", f"{d}//"]
    loaded = {id(models.load_model(s)) for s in spellings}
    assert len(loaded) == 1
    for s in spellings:
        first, last, info = tt.inspect_model(s, 0, 3)
        assert "4 decoder layers" in info


def test_answers_written_before_are_not_decoded_again(monkeypatch, tiny_model_dir, tiny_vector):
    """Moving the slider over one's own prompt decodes only the steered row; repeating a request
    decodes nothing; the answers are those of serial generation."""
    rows: list[int] = []
    real = tt.BATCHER

    class Counting:
        max_rows = real.max_rows

        def generate(self, loaded, texts, *args, **kwargs):
            rows.append(len(texts))
            return real.generate(loaded, texts, *args, **kwargs)

    monkeypatch.setattr(tt, "BATCHER", Counting())
    monkeypatch.setattr(tt, "_ANSWERS", tt.OrderedDict())
    session = tt.open_preset("demo-tiny", None)
    first = tt.generate("A brand new prompt about lakes.", 2.0, 8, session)
    again = tt.generate("A brand new prompt about lakes.", 2.0, 8, session)
    moved = tt.generate("A brand new prompt about lakes.", -3.0, 8, session)
    zero = tt.generate("A brand new prompt about lakes.", 0.0, 8, session)
    assert rows == [2, 1]  # both rows, nothing, the steered row only, nothing (r_e = 0 is unsteered)
    assert first == again and moved[0] == first[0] and zero == (first[0], first[0])
    assert list(moved) == serial_answers(tiny_model_dir, tiny_vector, "A brand new prompt about lakes.", -3.0, 8)


def test_generate_writes_in_the_server_precision_and_says_so(monkeypatch):
    """Generate writes in ``MREPE_GENERATE_DTYPE`` (default auto: the machine's native precision);
    ``result`` keeps the result's recorded dtype; the note under the answers names the one used."""
    asked: list[str] = []
    real_load = tt._load

    def recording(spec, device="auto", dtype="auto"):
        asked.append(dtype)
        return real_load(spec, device, "fp32")  # the same numbers on any CPU

    monkeypatch.setattr(tt, "_load", recording)
    monkeypatch.setattr(tt, "_ANSWERS", tt.OrderedDict())
    session = tt.open_preset("demo-tiny", None)
    recorded = session.result.config.dtype
    for setting, expected in [(None, "auto"), ("result", recorded), ("BF16", "bf16"), ("fp64", "auto")]:
        if setting is None:
            monkeypatch.delenv("MREPE_GENERATE_DTYPE", raising=False)
        else:
            monkeypatch.setenv("MREPE_GENERATE_DTYPE", setting)
        tt.generate("A prompt about the sea.", 1.0, 4, session)
        assert asked[-1] == expected
    note = tt._answer_note(session, {"mode": "generated"})
    assert "Written in fp32" in note
    session.result.summary.setdefault("model", {})["dtype"] = "bfloat16"  # a result computed in bf16
    try:
        assert "the sweep's own answers were written in bf16" in tt._answer_note(session, {"mode": "generated"})
    finally:
        session.result.summary["model"].pop("dtype")


def test_after_generate_hides_the_baseline_answer_of_a_preset_prompt(monkeypatch):
    """The prompting baseline's box answered the preset prompt on screen; after Generate on the
    visitor's own prompt it would sit beside answers to another question, so it is hidden."""
    monkeypatch.setattr(tt, "_ANSWERS", tt.OrderedDict())
    session = tt.open_preset("demo-tiny", None)
    assert tt.answers_view(session)[3]["visible"]  # the preset prompt shows its baseline answer
    tt.generate("A prompt about mountains.", 1.0, 4, session)
    steered, baseline, picker, table, note = tt.after_generate(session)
    assert baseline == {"__type__": "update", "value": "", "visible": False}
    assert picker["value"] == tt.OWN_PROMPT and json.loads(table)["mode"] == "generated"
