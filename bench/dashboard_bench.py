"""Dashboard latency benchmark: app start-up, preset charts on page load, slider release -> charts.

Starts ``app.py`` as a subprocess (as ``make run`` does), drives Debian's chromium through
Playwright and prints the measurements. The last line is ``slider_ms_median: <value>``.

    .venv/bin/python bench/dashboard_bench.py [--moves 10] [--out out/dashboard-bench]

Targets (issue): charts visible within 3 s of page load; slider release -> updated charts within
150 ms (median of 10 moves); process start -> ready within 30 s with warm caches.
The browser-test (tests/test_browser.py) uses the helpers below, so both measure the same way.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The Trade-off tab's charts: mrepe_ui.tradeoff_view.CHART_IDS, spelled out so that this script does not
# import gradio and torch (tests/unit/test_bench_charts.py keeps the two equal).
CHART_IDS = ("behavior-plot", "helpfulness-plot", "coherence-plot", "tradeoff-plot")
MALFORMED_CSV = "kind,positive,negative\npair,only one side,\n"

# In-page timer: from the slider's pointerup to the frame after every chart shows its marker at a
# new place (the painted SVG of the marker traces changed) and the readout changed. A chart without
# a marker table (one that says why it is empty, e.g. coherence in a result that measured none) has
# no marker to move and is not waited for. Measured in the page so that Playwright's round trips
# are not counted.
_ARM_MEASUREMENT_JS = """
() => {
  const charts = %s.map((id) => document.querySelector('#' + id + ' .js-plotly-plot'));
  const hasMarker = charts.map((gd) => !!(gd && gd.layout && gd.layout.meta && gd.layout.meta.marker_frames));
  // The painted geometry of a chart's marker traces (layout.meta.marker_frames.traces): line paths
  // and point transforms. Cheap enough to read every frame (a few attributes, no layout).
  const markerSvg = (gd) => {
    const mf = gd.layout && gd.layout.meta && gd.layout.meta.marker_frames;
    const want = new Set(mf ? mf.traces : []);
    const parts = [];
    gd.querySelectorAll('.scatterlayer .trace').forEach((g) => {
      const cd = g.__data__ && g.__data__[0];
      if (cd && cd.trace && want.has(cd.trace.index)) {
        g.querySelectorAll('path.js-line').forEach((p) => parts.push(p.getAttribute('d')));
        g.querySelectorAll('path.point').forEach((p) => parts.push(p.getAttribute('transform')));
      }
    });
    return parts.join('|');
  };
  const before = charts.map(markerSvg);
  const readoutEl = document.querySelector('#re-readout');
  const readout = () => (readoutEl ? readoutEl.textContent : '');
  const readoutBefore = readout();
  const input = document.querySelector('#re-slider input[type=range]');
  window.__mrepeSlider = new Promise((resolve) => {
    let t0 = null;
    input.addEventListener('pointerup', () => { t0 = performance.now(); }, {once: true, capture: true});
    const started = performance.now();
    // The update must be for this release: the readout names the slider's value (3 significant digits).
    const forThisValue = () => {
      const m = readout().match(/r_e = (-?[0-9.]+(?:e[-+]?[0-9]+)?)/);
      const v = parseFloat(input.value);
      return m !== null && Math.abs(parseFloat(m[1]) - v) <= 0.006 * Math.abs(v) + 1e-9;
    };
    const tick = () => {
      if (t0 !== null && charts.every((gd, i) => !hasMarker[i] || markerSvg(gd) !== before[i])
          && readout() !== readoutBefore
          && forThisValue()) {
        // one more frame: the charts are painted, not just updated in memory
        requestAnimationFrame(() => resolve({ms: performance.now() - t0, readout: readout().trim()}));
      } else if (performance.now() - started > 20000) {
        resolve({ms: null, readout: readout().trim()});
      } else {
        requestAnimationFrame(tick);
      }
    };
    requestAnimationFrame(tick);
  });
}
""" % (list(CHART_IDS),)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> float:
    """Poll until the page answers HTTP 200; returns the time waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"app exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def start_app(port: int, env: dict | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, float]:
    """Start ``python app.py`` on ``port``; return the process and seconds from spawn to HTTP 200."""
    full_env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/", proc=proc)
    except BaseException:
        stop_app(proc)
        raise
    return proc, time.perf_counter() - t0


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_log(path: Path, needles: tuple[str, ...], timeout: float = 180.0) -> str:
    """Wait until the app log contains one of ``needles``; return that line."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        for line in path.read_text(errors="replace").splitlines():
            if any(n in line for n in needles):
                return line
        time.sleep(0.2)
    raise TimeoutError(f"none of {needles} in {path} after {timeout:.0f} s")


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def charts_rendered_js() -> str:
    """A page function, true once every chart has drawn its figure: traces where the figure has data;
    a chart without data (one that says why it is empty) counts once another chart has drawn traces,
    all of them being filled by one server response."""
    return (
        "() => { const gds = %s.map((id) => document.querySelector('#' + id + ' .js-plotly-plot'));"
        " const drawn = (gd) => !!gd.querySelector('.trace');"
        " return gds.every((gd) => gd && (drawn(gd) || !(gd.data && gd.data.length)))"
        " && gds.some((gd) => drawn(gd)); }" % (list(CHART_IDS),)
    )


def measure_page_load(page, url: str, timeout_ms: int = 30000) -> float:
    """Seconds from navigation start until every chart has drawn its figure (``charts_rendered_js``)."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(charts_rendered_js(), timeout=timeout_ms, polling="raf")
    return time.perf_counter() - t0


def slider_box(page):
    slider = page.locator("#re-slider input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    if box is None:
        raise RuntimeError("the r_e slider is not visible")
    return box


def drag_slider(page, fraction: float) -> None:
    """Drag the r_e slider thumb to ``fraction`` of its track (mouse down, move, release)."""
    box = slider_box(page)
    value = page.locator("#re-slider input[type=range]")
    lo, hi, cur = (float(value.get_attribute(a) or 0) for a in ("min", "max", "value"))
    y = box["y"] + box["height"] / 2
    start = box["x"] + box["width"] * ((cur - lo) / (hi - lo) if hi > lo else 0.5)
    page.mouse.move(start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * fraction, y, steps=4)
    page.mouse.up()


def measure_slider_move(page, fraction: float) -> tuple[float | None, str]:
    """Milliseconds from releasing the slider at ``fraction`` to every chart's marker moved, and the readout."""
    page.evaluate(_ARM_MEASUREMENT_JS)
    drag_slider(page, fraction)
    res = page.evaluate("() => window.__mrepeSlider")
    return res["ms"], res["readout"]


def slider_fractions(n: int) -> list[float]:
    """Alternating positions so every move changes the value."""
    return [0.15 + 0.7 * ((k * 7) % (n + 1)) / n for k in range(1, n + 1)]


_GENERATING = (
    "() => !!document.querySelector('#steered-text .meta-text, #steered-text .progress-text, #steered-text .timer')"
)


def wait_generation_idle(page, appear_ms: int = 1500, timeout_ms: int = 180000) -> None:
    """Wait for the steered/unsteered answers of the last release to finish (if one started)."""
    try:
        page.wait_for_function(_GENERATING, timeout=appear_ms, polling=50)
    except Exception:  # no generation started (e.g. empty prompt)
        return
    page.wait_for_function(f"() => !({_GENERATING})()", timeout=timeout_ms, polling=100)


def measure_slider(page, moves: int = 10, between=None) -> tuple[list[float], list[str]]:
    """Slider moves; ``between(page)`` runs after each measured move (e.g. wait for generation)."""
    times, readouts = [], []
    prev = page.locator("#re-slider input[type=range]").input_value()
    for fraction in slider_fractions(moves):
        ms, readout = measure_slider_move(page, fraction)
        if between is not None:
            between(page)
        now = page.locator("#re-slider input[type=range]").input_value()
        if now == prev or ms is None:
            raise RuntimeError(f"slider move to {fraction:.2f} did not update the charts (value {prev} -> {now})")
        prev = now
        times.append(ms)
        readouts.append(readout)
    return times, readouts


def upload_malformed(page, path: Path, timeout_ms: int = 15000) -> str:
    """Upload a malformed behaviour file; return the text of the error toast it raises."""
    page.locator("#experiment").get_by_text("Build an experiment").first.click()
    page.locator("#behavior-upload input[type=file]").set_input_files(str(path))
    toast = page.locator('[data-testid="toast-body"].error').first
    toast.wait_for(state="visible", timeout=timeout_ms)
    return toast.inner_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--page-loads", type=int, default=5, help="fresh page loads after the warm-ups")
    parser.add_argument("--out", default=str(ROOT / "out" / "dashboard-bench"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # First start warms the OS file cache and compiled bytecode; the second is the measured one.
    proc, cold = start_app(port, log_path=out / "app-cold.log")
    stop_app(proc)
    proc, startup = start_app(port, log_path=out / "app.log")
    try:
        url = f"http://127.0.0.1:{port}/"
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            # A visitor arriving right at start-up shares the 2 cores with the app's warm-ups
            # (default model ~5 s, umap-learn's numba compilation ~15-20 s)...
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page_load_warming = measure_page_load(page, url)
            page.close()
            # ...later visitors do not: the target figure is the median of fresh page loads
            # (new browser context each, so nothing is cached) once both warm-ups are done.
            warm = wait_for_log(out / "app.log", ("default model ready", "default model not available"))
            umap = wait_for_log(out / "app.log", ("umap-learn ready", "umap-learn warm-up failed"))
            page_loads = []
            for _ in range(args.page_loads):
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page_loads.append(measure_page_load(page, url))
                page.close()
            page_load = statistics.median(page_loads)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.wait_for_function(charts_rendered_js(), timeout=30000)
            # Default UI: the prompt box is filled, so every release also regenerates both answers
            # (model queue, after the marker redraw). A reader waits for the answers between moves...
            times, readouts = measure_slider(page, args.moves, between=wait_generation_idle)
            steered = page.locator("#steered-text textarea").input_value()
            # ...and a fast dragger does not: each move then competes with the previous generation.
            rushed, _ = measure_slider(page, args.moves)
            wait_generation_idle(page)
            malformed = out / "malformed.csv"
            malformed.write_text(MALFORMED_CSV)
            error = upload_malformed(page, malformed)
            shot = out / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        stop_app(proc)
    median = statistics.median(times)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes slow every figure)")
    print(f"startup_cold_s: {cold:.2f}")
    print(f"startup_warm_s: {startup:.2f}  (target < 30; process start -> HTTP 200)")
    print(f"model warm-up: {warm.strip()[-80:]}")
    print(f"umap warm-up: {umap.strip()[-80:]}")
    print(f"page_load_during_warmup_s: {page_load_warming:.2f}  (right after start, while the app warms up)")
    print(
        f"page_load_charts_s: {page_load:.2f}  (median of {', '.join(f'{t:.2f}' for t in page_loads)}; "
        f"target < 3; navigation -> all {len(CHART_IDS)} charts drawn, fresh browser context, app idle)"
    )
    print("slider_ms (answers regenerated between moves): " + ", ".join(f"{t:.0f}" for t in times))
    print(
        f"slider_ms_back_to_back: {', '.join(f'{t:.0f}' for t in rushed)} "
        f"(median {statistics.median(rushed):.1f}; each move overlaps the previous generation)"
    )
    print(f"last readout: {readouts[-1]}")
    print(f"last steered answer: {steered[:80]!r}")
    print(f"malformed upload error: {error.strip().splitlines()[-1] if error.strip() else error!r}")
    print(f"screenshot: {shot}")
    print(f"slider_ms_median: {median:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
