"""A replayable set of hostile inputs against the whole dashboard, as a stranger on a public Space
would send them: raw HTTP to every event of every tab (``queue/join`` or ``run/predict`` with its
``fn_index``, whatever its API visibility), hostile uploads, model paths, presets, numbers, texts
and request bodies.

The app runs as a separate process (``python app.py``, as on a Space, with ``MREPE_PUBLIC=1`` and
one allowed model folder), so its memory can be measured and a crash cannot hide. Every case
asserts: a clear message (never a bare "Error", a traceback, a Python internal or an echo of a
long input), a live server, server RSS under 4 GB, and, across the whole set, another visitor's
``/load_preset`` answering throughout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import dashboard_bench as bench  # noqa: E402
from tradeoff_synthetic import synthetic_result, write_preset  # noqa: E402

RSS_LIMIT = 4 * 2**30
BIG = "A" * 100_000
INTERNAL = re.compile(
    r"Traceback|File \"|object has no attribute|is not subscriptable|unsupported operand|NoneType|"
    r"KeyError|TypeError|AttributeError|IndexError|site-packages|invalid literal|could not convert|"
    r"validation error|Input should be|\[Errno"
)


# ---------------------------------------------------------------------------------------------
# The server and a raw HTTP client
# ---------------------------------------------------------------------------------------------


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path, models: Path):
        self.proc, self.url, self.log, self.models = proc, url, log, models
        self.config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
        self.components = {c["id"]: c for c in self.config["components"]}
        self.deps = {d["id"]: d for d in self.config["dependencies"] if d.get("backend_fn")}
        self.peak_rss = 0

    def rss(self) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
        self.peak_rss = max(self.peak_rss, kb * 1024)
        return kb * 1024

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url + "gradio_api/info", timeout=30) as r:
                return r.status == 200
        except OSError:
            return False

    def fn(self, api_name: str) -> int:
        return next(i for i, d in self.deps.items() if d.get("api_name") == api_name)

    def inputs(self, fn_index: int) -> list[dict]:
        return [self.components[i] for i in self.deps[fn_index]["inputs"]]


def post(url: str, body: bytes, content_type: str = "application/json", timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Reply:
    """What the server answered to one event: ``ok`` with data, or a message for the visitor."""

    def __init__(self, ok: bool, message: str | None, data=None, status: int = 200, raw: bytes = b""):
        self.ok, self.message, self.data, self.status, self.raw = ok, message, data, status, raw

    def __repr__(self) -> str:
        return f"Reply(ok={self.ok}, status={self.status}, message={str(self.message)[:200]!r})"


def call(server: Server, fn_index, data, session: str | None = None, timeout: float = 240) -> Reply:
    """Run one event as the browser does (queued or not), over raw HTTP."""
    session = session or uuid.uuid4().hex[:12]
    dep = server.deps.get(fn_index) if isinstance(fn_index, int) else None
    body = json.dumps(
        {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    ).encode()
    if dep is not None and not dep.get("queue", True):
        status, raw = post(server.url + "gradio_api/run/predict", body, timeout=timeout)
        return _reply(status, raw)
    status, raw = post(server.url + "gradio_api/queue/join", body, timeout=timeout)
    if status != 200:
        return _reply(status, raw)
    event_id = json.loads(raw)["event_id"]
    req = urllib.request.Request(server.url + f"gradio_api/queue/data?session_hash={session}")
    deadline = time.time() + timeout
    with urllib.request.urlopen(req, timeout=timeout) as stream:
        for line in stream:
            if time.time() > deadline:
                break
            if not line.startswith(b"data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                if msg.get("success"):
                    return Reply(True, None, out.get("data"), 200, line)
                return Reply(False, out.get("error"), None, 200, line)
    return Reply(False, "timeout", None, 0)


def _reply(status: int, raw: bytes) -> Reply:
    try:
        doc = json.loads(raw)
    except ValueError:
        return Reply(False, raw.decode(errors="replace")[:500], None, status, raw)
    if status == 200 and isinstance(doc, dict) and "data" in doc and not doc.get("error"):
        return Reply(True, None, doc["data"], status, raw)
    message = doc.get("error") or doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(message, list):
        message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
    return Reply(False, message, None, status, raw)


def assert_clear(reply: Reply, sent: str = "") -> None:
    """A refusal says something a person can act on; nothing internal, nothing long echoed."""
    if reply.ok:
        return
    message = reply.message
    assert isinstance(message, str) and message.strip(), f"bare error: {reply!r}"
    assert message.strip() not in ("Error", "error", "None", "timeout"), f"bare error: {reply!r}"
    assert not INTERNAL.search(message), f"Python internals in the message: {message[:400]!r}"
    assert len(message) < 2000, f"message of {len(message)} characters"
    if len(sent) >= 1000:
        assert sent[:1000] not in message, "the long input is echoed back"
    assert reply.status != 500 or message, reply


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    models = base / "models"
    models.mkdir()
    from conftest import build_tokenizer, make_llama

    tok = build_tokenizer()
    make_llama(tok, seed=1).save_pretrained(models / "tiny")
    tok.save_pretrained(models / "tiny")
    (models / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(200))  # truncated
    presets = base / "presets"
    presets.mkdir()
    for p in (ROOT / "presets").glob("*.yaml"):
        shutil.copy(p, presets / p.name)
        shutil.copytree(ROOT / "presets" / p.stem, presets / p.stem)
    from mrepe_core.datasets import ContrastPair
    from mrepe_core.extract import extract_vector
    from mrepe_core.models import wrap_model

    loaded = wrap_model(make_llama(tok, seed=1), tok, name="tiny")
    vector = extract_vector(loaded, [ContrastPair(f"No {k}.", f"Yes {k}.") for k in range(4)], "mean_diff", [0, 1])
    write_preset(presets, synthetic_result(model=str(models / "tiny"), vector=vector, name="demo-tiny"), "demo-tiny")
    port = bench.free_port()
    log = base / "app.log"
    env = {
        "MREPE_PUBLIC": "1",
        "MREPE_MODEL_DIRS": str(models),
        "MREPE_PRESETS_DIR": str(presets),
        "MREPE_CACHE_DIR": str(base / "cache"),
        "MREPE_WARM_MODEL": "0",
        "MREPE_WARM_UMAP": "0",
        "MREPE_MAX_JOBS_PER_ADDRESS": "0",  # every test client shares 127.0.0.1
        "TMPDIR": str(base),
    }
    proc, _ = bench.start_app(port, env=env, log_path=log)
    srv = Server(proc, f"http://127.0.0.1:{port}/", log, models)
    yield srv
    bench.stop_app(proc)


@pytest.fixture(scope="module")
def bystander(server):
    """Another visitor opening presets the whole time; collects failures and latencies."""
    stop, failures, latencies = threading.Event(), [], []

    def visit():
        client = Client(server.url, verbose=False)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.predict("harmless-smollm2", api_name="/load_preset")
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                failures.append(repr(exc)[:300])
            stop.wait(0.5)

    thread = threading.Thread(target=visit, daemon=True)
    thread.start()
    yield failures, latencies
    stop.set()
    thread.join(timeout=60)


@pytest.fixture(autouse=True)
def checked(request, server):
    """After every case: the server lives and its memory is bounded."""
    yield
    assert server.alive(), f"the server died; log tail:\n{server.log.read_text()[-3000:]}"
    assert server.rss() < RSS_LIMIT, f"server RSS {server.rss() / 2**30:.2f} GB"


# ---------------------------------------------------------------------------------------------
# Every event of every tab, raw HTTP, hostile values for all inputs
# ---------------------------------------------------------------------------------------------


def hostile_value(component: dict, variant: str):
    kind = component["type"]
    if kind == "state":
        return None
    if variant == "huge":
        return BIG if kind in ("textbox", "dropdown", "radio") else ([BIG] if kind == "checkboxgroup" else BIG)
    if variant == "surrogate":
        return "abc \ud800 def"
    if variant == "nan":
        return float("nan")
    if variant == "infinite":
        return float("inf") if kind in ("number", "slider") else -1e308
    if variant == "huge_number":
        return 1e308 if kind in ("number", "slider") else 10**30
    if variant == "wrong_type":
        return {"not": ["what", "it", "expects"]}
    if variant == "deep":
        value: list = []
        for _ in range(36):
            value = [value]
        return value
    if variant == "none":
        return None
    raise ValueError(variant)


VARIANTS = ("huge", "surrogate", "nan", "infinite", "huge_number", "wrong_type", "deep", "none")


def _all_events() -> list[int]:
    import app

    demo = app.build_demo()
    return sorted(i for i, fn in demo.fns.items() if fn.fn is not None)


EVENTS = _all_events()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fn_index", EVENTS)
def test_every_event_refuses_hostile_input_clearly(server, fn_index, variant):
    if fn_index not in server.deps:
        pytest.skip("no server function")
    components = server.inputs(fn_index)
    data = [hostile_value(c, variant) for c in components]
    if variant == "nan" and json.dumps(data).count("NaN") == 0 and data:
        data = [float("nan") if c["type"] != "state" else None for c in components]
    payload = json.dumps(data, allow_nan=True)
    reply = call(server, fn_index, data)
    assert reply.message != "timeout", f"event {fn_index} did not answer"
    assert_clear(reply, BIG if variant == "huge" else payload)
    if variant in ("surrogate", "nan", "infinite", "deep", "wrong_type") and any(
        c["type"] != "state" for c in components
    ):
        assert not reply.ok, f"event {fn_index} ({server.deps[fn_index].get('api_name')}) accepted {variant}"


# ---------------------------------------------------------------------------------------------
# The Trade-off tab's endpoints, one bad field at a time
# ---------------------------------------------------------------------------------------------

GOOD_SWEEP = [
    "tiny", "harmless", None, "pca", 0, 3, -2.0, 2.0, 1.0, ["marketing"], "cloze", 4, 2, 2, "first_token", None,
]  # fmt: skip
SWEEP_FIELDS = {
    "model": 0, "behavior": 1, "method": 3, "first_layer": 4, "last_layer": 5, "r_min": 6, "r_max": 7,
    "r_step": 8, "subjects": 9, "help_format": 10, "n_pairs": 11, "n_eval": 12, "n_questions": 13,
    "behavior_mode": 14,
}  # fmt: skip
BAD_VALUES = {
    "nan": float("nan"),
    "inf": float("-inf"),
    "1e308": 1e308,
    "-1e308": -1e308,
    "negative": -5,
    "string": "12abc",
    "bool": True,
    "list": [1, 2],
    "surrogate": "\udfff",
    "huge": BIG,
}


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("field", list(SWEEP_FIELDS))
def test_run_sweep_refuses_each_bad_field(server, field, bad):
    data = list(GOOD_SWEEP)
    data[0] = str(server.models / "tiny")
    data[SWEEP_FIELDS[field]] = BAD_VALUES[bad]
    reply = call(server, server.fn("run_sweep"), data)
    assert_clear(reply, BIG if bad == "huge" else "")
    if bad in ("nan", "inf", "surrogate", "list", "huge") or (bad == "string" and field not in ("model",)):
        assert not reply.ok, f"{field}={bad!r} accepted"


@pytest.mark.parametrize(
    "name",
    ["", "../presets/harmless-smollm2", "/etc/passwd", "harmless-smollm2\x00", BIG, "HARMLESS-SMOLLM2", "\ud800"],
    ids=["empty", "traversal", "abs-path", "nul", "100kb", "case", "surrogate"],
)
def test_load_preset_refuses_names_not_listed(server, name):
    reply = call(server, server.fn("load_preset"), [name, None])
    assert not reply.ok
    assert_clear(reply, name)
    assert "choose one of" in reply.message or "Unicode" in reply.message or "NUL" in reply.message


@pytest.mark.parametrize("r_e", [float("nan"), float("inf"), 1e308, -1e308, "x", None, True, [1.0]])
def test_set_coefficient_bounds_r_e(server, r_e):
    session = uuid.uuid4().hex[:12]
    call(server, server.fn("load_preset"), ["harmless-smollm2", None], session)
    reply = call(server, server.fn("set_coefficient"), [r_e, None], session)
    assert_clear(reply)
    if isinstance(r_e, float) and abs(r_e) == 1e308:
        assert reply.ok and "r_e = " in reply.data[-1]  # clamped to the slider's range, as the page does
    elif r_e is not None:
        assert not reply.ok


@pytest.mark.parametrize(
    "prompt",
    [" ".join(["lock"] * 500), "x" * 50_000, "\ud800", "", "   ", "a\x00b", BIG],
    ids=["500-words", "50k-chars", "surrogate", "empty", "blank", "nul", "100kb"],
)
def test_generate_refuses_bad_prompts(server, prompt):
    session = uuid.uuid4().hex[:12]
    call(server, server.fn("load_preset"), ["demo-tiny", None], session)
    reply = call(server, server.fn("generate"), [prompt, 1.0, 8, None], session)
    assert not reply.ok
    assert_clear(reply, prompt)


# ---------------------------------------------------------------------------------------------
# Model paths: nothing reveals whether a server path exists
# ---------------------------------------------------------------------------------------------

PATHS = [
    "~/.ssh", "/etc/shadow", "/etc/passwd", "/etc/definitely-not-here", "../../../../etc/passwd",
    "/proc/self/environ", "/root", "C:\\Windows\\System32", "file:///etc/passwd", "http://127.0.0.1:1/model",
    "tiny/../../etc", "a" * 5000,
]  # fmt: skip


@pytest.mark.parametrize("spec", PATHS, ids=[f"path{k}" for k in range(len(PATHS))])
def test_model_paths_outside_the_allowed_folders_get_one_message(server, spec):
    data = list(GOOD_SWEEP)
    data[0] = spec
    reply = call(server, server.fn("run_sweep"), data)
    assert not reply.ok
    assert_clear(reply, spec)
    assert "/etc" not in reply.message and ".ssh" not in reply.message


def test_existing_and_missing_paths_are_refused_alike(server):
    messages = set()
    for spec in ("/etc/passwd", "/etc/definitely-not-here", "/root", "/nonexistent/dir", "~/.ssh", "~/.nothing"):
        data = list(GOOD_SWEEP)
        data[0] = spec
        messages.add(call(server, server.fn("run_sweep"), data).message)
    assert len(messages) == 1, messages


def test_four_spellings_of_the_allowed_folder_all_load(server):
    d = server.models / "tiny"
    inspect = next(i for i, dep in server.deps.items() if any(t[1] == "submit" for t in dep.get("targets", []))
                   and len(dep["inputs"]) == 3)  # fmt: skip
    rss = []
    for spec in (str(d), f"{d}/../tiny", f"{d}/.", f"{d}//"):
        reply = call(server, inspect, [spec, 0, 3])
        assert reply.ok and "4 decoder layers" in str(reply.data), reply
        rss.append(server.rss())
    assert rss[-1] - rss[0] < 200 * 2**20  # one copy, not four


def test_a_truncated_gguf_is_refused_clearly(server):
    data = list(GOOD_SWEEP)
    data[0] = str(server.models / "broken.gguf")
    reply = call(server, server.fn("run_sweep"), data)
    assert not reply.ok
    assert_clear(reply)
    assert "Could not load this model" in reply.message or "server" in reply.message


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------


def upload(server: Server, name: str, content: bytes) -> tuple[int, object]:
    boundary = "mrepe" + uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, raw = post(server.url + "gradio_api/upload", body, f"multipart/form-data; boundary={boundary}")
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def file_data(path: str, name: str) -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def deep_jsonl() -> bytes:
    return b"[" * 100_000 + b"]" * 100_000 + b"\n"


UPLOADS = {
    "identical-pairs.csv": (b"positive,negative,prompt,aligned,misaligned\nsame,same,,,\nx,y,,,\n", "are the same"),
    "identical-normalised.csv": (b"positive,negative\nHello  World,hello world\na,b\n", "are the same"),
    "deep.jsonl": (deep_jsonl(), "nests JSON too deeply"),
    "not-objects.jsonl": (b"[1, 2]\n", "must be a JSON object"),
    "bad-json.jsonl": (b'{"positive": "a"\n', "not valid JSON"),
    "binary.csv": (b"\x00\x01\x02" * 100, "looks binary"),
    "latin1.csv": ("positive,negative\ncaf\xe9,b\n".encode("latin-1"), "not UTF-8"),
    "empty.csv": (b"", "is empty"),
    "rows.csv": (b"positive,negative\n" + b"a,b\n" * 5001, "the limit is 5000"),
    "long-cell.csv": (b"positive,negative\n" + b"a" * 5000 + b",b\nc,d\n", "longer than 4000 characters"),
    "no-header.csv": (b"foo,bar\n1,2\n", "header must include"),
    "only-pairs.csv": (b"positive,negative\na,b\nc,d\n", "no evaluation rows"),
    "script.html": (b"<script>alert(1)</script>", "formats: ['.csv', '.jsonl']"),
}


@pytest.mark.parametrize("name", list(UPLOADS))
def test_hostile_uploads_are_refused_with_what_to_fix(server, name):
    content, expected = UPLOADS[name]
    status, paths = upload(server, name, content)
    assert status == 200, paths
    check = next(i for i, dep in server.deps.items() if any(t[1] == "upload" for t in dep.get("targets", [])))
    reply = call(server, check, [file_data(paths[0], name)])
    assert not reply.ok
    assert_clear(reply)
    assert expected in reply.message, reply.message
    # The same file given to a custom sweep is refused the same way (the form cannot be bypassed).
    data = list(GOOD_SWEEP)
    data[0], data[1], data[2] = str(server.models / "tiny"), "custom", file_data(paths[0], name)
    sweep = call(server, server.fn("run_sweep"), data)
    assert not sweep.ok
    assert_clear(sweep)


def test_an_upload_over_the_size_limit_is_refused_by_the_server(server):
    status, reply = upload(server, "big.csv", b"a,b\n" * (6 * 2**20 // 4))
    assert status == 413


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "/etc/definitely-not-here", "../../etc/passwd", "http://127.0.0.1:1/x.csv"],
    ids=["existing", "missing", "relative", "url"],
)
def test_file_data_pointing_outside_the_uploads_is_refused_alike(server, path):
    check = next(i for i, dep in server.deps.items() if any(t[1] == "upload" for t in dep.get("targets", [])))
    reply = call(server, check, [file_data(path, "x.csv")])
    assert not reply.ok
    assert_clear(reply)
    assert "passwd" not in reply.message and "/etc" not in reply.message


def dep_for(server: Server, elem_id: str, event: str) -> int:
    """fn_index of the event ``event`` of the component with ``elem_id``."""
    comp = next(c["id"] for c in server.components.values() if c.get("props", {}).get("elem_id") == elem_id)
    return next(i for i, d in server.deps.items() if [comp, event] in [list(t) for t in d.get("targets", [])])


def defaults(server: Server, fn_index: int) -> list:
    """An event's inputs at the values the page starts with."""
    return [None if c["type"] == "state" else c.get("props", {}).get("value") for c in server.inputs(fn_index)]


def stream_until_done(server: Server, session: str, event_id: str, timeout: float = 240, on_message=None) -> dict:
    req = urllib.request.Request(server.url + f"gradio_api/queue/data?session_hash={session}")
    deadline = time.time() + timeout
    with urllib.request.urlopen(req, timeout=timeout) as stream:
        for line in stream:
            if time.time() > deadline:
                break
            if line.startswith(b"data:"):
                msg = json.loads(line[5:])
                if msg.get("event_id") != event_id:
                    continue
                if on_message is not None:
                    on_message(msg)
                if msg.get("msg") == "process_completed":
                    return msg
    return {}


def test_a_cancelled_custom_upload_sweep_stops_and_says_so(server):
    content = (
        b"kind,positive,negative,prompt,aligned,misaligned\n"
        + b"".join(f"pair,yes {k} indeed,no {k} never,,,\n".encode() for k in range(60))
        + b'eval,,,"Is it?","Yes","No"\n'
    )
    status, paths = upload(server, "many.csv", content)
    session = uuid.uuid4().hex[:12]
    data = list(GOOD_SWEEP)
    data[0], data[1], data[2] = str(server.models / "tiny"), "custom", file_data(paths[0], "many.csv")
    data[6], data[7], data[8], data[13] = -4.0, 4.0, 0.1, 40  # a sweep long enough to be cancelled
    body = json.dumps({"data": data, "fn_index": server.fn("run_sweep"), "session_hash": session}).encode()
    status, raw = post(server.url + "gradio_api/queue/join", body)
    assert status == 200
    cancel = dep_for(server, "cancel-sweep", "click")
    sent = []

    def on_message(msg):
        if msg.get("msg") == "process_generating" and not sent:
            sent.append(call(server, cancel, [None], session))

    done = stream_until_done(server, session, json.loads(raw)["event_id"], on_message=on_message)
    statuses = [str(x) for x in (done.get("output") or {}).get("data") or []]
    assert any("Cancelled" in x for x in statuses), statuses
    assert server.alive()


def test_a_visitor_who_leaves_stops_their_sweep(server):
    """Closing the connection mid-sweep: Gradio drops the visitor's jobs and the sweep's cancel
    switch is set (the log says so); the server goes on serving."""
    session = uuid.uuid4().hex[:12]
    data = list(GOOD_SWEEP)
    data[0] = str(server.models / "tiny")
    data[6], data[7], data[8], data[12], data[13] = -4.0, 4.0, 0.05, 60, 20  # 12,880 rows: under the cap
    body = json.dumps({"data": data, "fn_index": server.fn("run_sweep"), "session_hash": session}).encode()
    status, raw = post(server.url + "gradio_api/queue/join", body)
    assert status == 200
    req = urllib.request.Request(server.url + f"gradio_api/queue/data?session_hash={session}")
    with urllib.request.urlopen(req, timeout=120) as stream:
        for line in stream:
            if b"process_generating" in line:
                break  # the sweep is running: leave
    deadline = time.time() + 60
    while "a visitor left" not in server.log.read_text(errors="replace") and time.time() < deadline:
        time.sleep(0.5)
    assert "a visitor left" in server.log.read_text(errors="replace")
    assert server.alive()


MEDIA = {
    "truncated.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    "not-an-image.png": b"<html><body>hello</body></html>",
    "truncated.wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "huge-dimensions.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x7f\xff\xff\xff\x7f\xff\xff\xff\x08\x06\x00\x00\x00",
}


@pytest.mark.parametrize("name", list(MEDIA))
def test_hostile_media_get_a_clear_message(server, name):
    fn = server.fn("mm_analyse")
    status, paths = upload(server, name, MEDIA[name])
    assert status == 200, paths
    data = defaults(server, fn)
    for k, comp in enumerate(server.inputs(fn)):
        if comp["type"] == "file":
            data[k] = (
                file_data(paths[0], name)
                if comp.get("props", {}).get("file_count", "single") == "single"
                else [file_data(paths[0], name)]
            )
    reply = call(server, fn, data)
    assert_clear(reply)


# ---------------------------------------------------------------------------------------------
# Request bodies and queue
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"data": [' + b"[" * 5000 + b"]" * 5000 + b'], "fn_index": 0, "session_hash": "x"}',
        b"not json at all",
        b'{"data": "not a list", "fn_index": 0, "session_hash": "x"}',
        b'{"data": [], "fn_index": 99999, "session_hash": "x"}',
        b'{"data": [], "fn_index": -1, "session_hash": "x"}',
        b'{"data": [], "fn_index": "0", "session_hash": "x"}',
        b'{"data": [], "fn_index": 0}',
        b'{"data": [], "fn_index": 0, "session_hash": ' + b'"' + b"s" * 200_000 + b'"}',
        b'{"data": [' + b'"x",' * 200_000 + b'"x"], "fn_index": 0, "session_hash": "x"}',
    ],
    ids=[
        "deep-100k",
        "deep-5k-data",
        "not-json",
        "data-not-list",
        "fn-99999",
        "fn-negative",
        "fn-string",
        "no-session",
        "200k-session",
        "200k-items",
    ],  # fmt: skip
)
@pytest.mark.parametrize("route", ["gradio_api/queue/join", "gradio_api/run/predict"])
def test_malformed_requests_get_a_short_answer(server, body, route):
    status, raw = post(server.url + route, body)
    assert status in (400, 404, 413, 422, 200, 500), status
    if status == 500:  # Gradio's answer to a refused direct call: the refusal in "error"
        assert json.loads(raw).get("error"), raw[:300]
    reply = _reply(status, raw)
    assert len(raw) < 5000, f"{len(raw)} bytes answered"
    if status != 200:
        assert_clear(reply, body.decode(errors="replace"))


def test_queued_events_cannot_be_called_around_the_queue(server):
    """POST /run/<name> would skip the queue and its per-visitor limits: refused for queued events."""
    body = json.dumps({"data": ["Hi", 1.0, 8, None], "fn_index": server.fn("generate"), "session_hash": "x"})
    status, raw = post(server.url + "gradio_api/run/predict", body.encode())
    assert status == 404 and b"join the queue" in raw
    status, raw = post(server.url + "gradio_api/run/generate", body.encode())
    assert status == 404


def test_an_oversized_body_is_refused_before_it_is_parsed(server):
    body = json.dumps({"data": ["x" * (3 * 2**20)], "fn_index": 0, "session_hash": "x"}).encode()
    status, raw = post(server.url + "gradio_api/queue/join", body)
    assert status == 413 and b"accepts" in raw


def test_eighty_queued_generates_from_one_client_leave_room_for_others(server, bystander):
    session = uuid.uuid4().hex[:12]
    call(server, server.fn("load_preset"), ["demo-tiny", None], session)
    fn = server.fn("generate")
    results: list = [None] * 80

    def join(k: int) -> None:
        body = json.dumps({"data": [f"Tell me a story {k}.", 1.0, 256, None], "fn_index": fn, "session_hash": session})
        results[k] = post(server.url + "gradio_api/queue/join", body.encode())

    threads = [threading.Thread(target=join, args=(k,)) for k in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    accepted = [r for r in results if r and r[0] == 200]
    refused = [r for r in results if r and r[0] == 400]
    assert len(accepted) + len(refused) == 80
    assert len(refused) >= 60, f"only {len(refused)} of 80 refused"
    assert all(b"You already have" in r[1] for r in refused)
    assert not any(b"Queue is full" in r[1] for r in results if r)
    other = Client(server.url, verbose=False)
    t0 = time.perf_counter()
    other.predict("harmless-smollm2", api_name="/load_preset")
    assert time.perf_counter() - t0 < 30


def test_the_bystander_was_served_throughout(server, bystander):
    failures, latencies = bystander
    deadline = time.time() + 30
    while not latencies and time.time() < deadline:
        time.sleep(0.5)
    assert not failures, failures[:3]
    assert latencies, "the bystander never got an answer"
    assert max(latencies) < 60, f"slowest /load_preset took {max(latencies):.1f} s"
    assert server.peak_rss < RSS_LIMIT


def test_the_log_has_one_line_per_refusal(server):
    text = server.log.read_text(errors="replace")
    assert "refused:" in text
    # Refusals are one line each: no traceback follows a refusal line.
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if " refused: " in line and k + 1 < len(lines):
            assert not lines[k + 1].startswith("Traceback"), "\n".join(lines[k : k + 5])
    assert "DeprecationWarning" not in text and "FutureWarning" not in text
    assert "it/s]" not in text  # no progress bars
