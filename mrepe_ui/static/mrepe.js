/* MRepE Explorer: the dashboard's browser-side code, loaded once per page through launch(head=...).
 *
 * Charts. Each chart is a gr.HTML whose value is a plotly figure as JSON; mountChart() draws it
 * with plotly's basic bundle (static/plotly-basic.min.js). A figure built with a slider grid
 * carries layout.meta.marker_frames, its current-r_e marker at every slider position (format:
 * the docstring of mrepe_core/plots/markers.py); the behaviour chart also carries
 * layout.meta.readouts, the readout Markdown at every position.
 *
 * Answers. The gr.HTML #answer-table holds, as JSON, the answers precomputed by the sweep for the
 * prompt on screen: {"mode": "table", "r": [r_e...], "text": [answer at each r_e], "label": "Steered"}.
 * mode "generated" means the answers on screen were generated for the visitor's own prompt (the
 * slider then asks the server again through the Generate button); "empty" means there is none.
 *
 * Slider. slide(value, chartIds, final) runs on the slider's release and input events without the server:
 * it clamps the value to the slider's range, moves every chart's marker from its table, and
 * returns [readout, steered-answer update, slider update] for those events' outputs. The server's
 * /set_coefficient answer to the same release arrives later and only confirms.
 */
(function () {
  'use strict';
  if (window.mrepe && window.mrepe.version) return;

  const fmt = (v) => String(Number(Number(v).toPrecision(3)) + 0);  // 3 significant digits, "-0" -> "0"

  function nearestIndex(grid, v, exact) {
    let k = -1, best = Infinity;
    for (let i = 0; i < grid.length; i++) {
      const d = Math.abs(grid[i] - v);
      if (d < best) { best = d; k = i; }
    }
    if (!exact) return k;
    const span = Math.abs(grid[grid.length - 1] - grid[0]) || 1;
    return best <= 1e-6 * span + 1e-9 ? k : -1;
  }

  const frameTable = (fig) => (fig && fig.layout && fig.layout.meta && fig.layout.meta.marker_frames) || null;
  const round6 = (a) => (a || []).map((v) => (typeof v === 'number' ? Number(v.toPrecision(6)) : v));
  const markerKey = (traces) => JSON.stringify(traces.map((t) => [round6(t.x), round6(t.y)]));

  const plotlyReady = () => new Promise((resolve) => {
    const check = () => (window.Plotly ? resolve(window.Plotly) : setTimeout(check, 10));
    check();
  });

  // Set the marker traces' painted geometry to new x/y: points ('path.point' translate) and lines
  // ('path.js-line' d) of scatter traces, in the pixel frame plotly drew them in. False (nothing
  // changed) unless every trace has exactly the elements the new data needs.
  function moveInPlace(gd, traceIdx, frame) {
    const fl = gd._fullLayout;
    if (!fl || !gd._fullData) return false;
    const groups = new Map();
    gd.querySelectorAll('.scatterlayer .trace').forEach((g) => {
      const cd = g.__data__ && g.__data__[0];
      if (cd && cd.trace) groups.set(cd.trace.index, g);
    });
    const updates = [];
    for (let j = 0; j < traceIdx.length; j++) {
      const tr = gd._fullData[traceIdx[j]], g = groups.get(traceIdx[j]), f = frame[j];
      if (!tr || !g || tr.type !== 'scatter' || !f.x || !f.y || f.x.length !== f.y.length) return false;
      const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
      if (!xa || !ya) return false;
      const px = f.x.map((x) => xa.c2p(x)), py = f.y.map((y) => ya.c2p(y));
      if (!px.concat(py).every(Number.isFinite)) return false;
      if (tr.mode === 'lines') {
        const lines = g.querySelectorAll('path.js-line');
        if (lines.length !== 1 || px.length < 2) return false;
        updates.push(() => lines[0].setAttribute('d', 'M' + px.map((x, i) => x + ',' + py[i]).join('L')));
      } else if (tr.mode === 'markers') {
        const pts = g.querySelectorAll('path.point');
        if (pts.length !== px.length) return false;
        updates.push(() => pts.forEach((p, i) => p.setAttribute('transform', `translate(${px[i]},${py[i]})`)));
      } else {
        return false;
      }
    }
    updates.forEach((u) => u());
    return true;
  }

  // One chart: draw the component's value and redraw when it changes. A server update that only
  // confirms a marker the browser already moved is not redrawn.
  function mountChart(element, props, watch) {
    const host = element.querySelector('.mrepe-chart');
    if (!host || host.__mrepeMounted) return;
    host.__mrepeMounted = true;
    let chain = Promise.resolve();
    let shownBase = null, shownMarker = null;
    const keys = (fig) => {
      const mf = frameTable(fig);
      const n = mf ? mf.traces[0] : (fig.data || []).length;
      return [JSON.stringify([(fig.data || []).slice(0, n), fig.layout || {}]),
              mf ? markerKey((fig.data || []).slice(n)) : null];
    };
    async function draw() {
      const Plotly = await plotlyReady();
      const text = props.value;
      if (!text) { Plotly.purge(host); shownBase = shownMarker = null; return; }
      const fig = JSON.parse(text);
      const [base, marker] = keys(fig);
      if (marker !== null && base === shownBase && marker === shownMarker) return;
      const name = (element.closest('[id$="-plot"]') || {}).id || 'chart';
      await Plotly.react(host, fig.data || [], fig.layout || {}, {responsive: true, displaylogo: false,
        toImageButtonOptions: {format: 'png', filename: name, scale: 2}});
      shownBase = base;
      shownMarker = marker;
    }
    const redraw = () => { chain = chain.then(draw).catch((e) => console.error('chart', e)); };
    // Slider fast path: move the marker to r_e from the figure's own table. Returns the table's
    // index, or -1 when there is no table or r_e is not one of its positions (the server's update
    // then draws it). The marker's SVG is moved in place (~1 ms; a plotly redraw costs 30-45 ms
    // per chart on a 2-core CPU), then, after that frame is painted, Plotly.react brings plotly's
    // own state (hover, zoom) to the same figure. Only the latest move is reconciled.
    let moveSeq = 0;
    host.__mrepeMove = (v) => {
      const mf = frameTable(host);
      if (!window.Plotly || !mf || !host.data) return -1;
      const k = nearestIndex(mf.r, v, true);
      if (k < 0) return -1;
      const data = host.data.slice();
      mf.traces.forEach((idx, j) => { data[idx] = Object.assign({}, data[idx], mf.frames[k][j]); });
      const react = () => window.Plotly.react(host, data, host.layout)
        .then(() => { shownMarker = markerKey(mf.frames[k]); });
      const seq = ++moveSeq;
      const moved = moveInPlace(host, mf.traces, mf.frames[k]);
      chain = chain.then(() => (moved ? new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))) : null))
        .then(() => (seq === moveSeq ? react() : null)).catch((e) => console.error('marker', e));
      return k;
    };
    redraw();
    watch('value', redraw);
  }

  // The answer table of the prompt on screen (see the header).
  let answers = {mode: 'empty'};
  function mountAnswerTable(element, props, watch) {
    const read = () => {
      try { answers = props.value ? JSON.parse(props.value) : {mode: 'empty'}; } catch (e) { answers = {mode: 'empty'}; }
    };
    read();
    watch('value', read);
  }

  // The steered answer at slider value v: the precomputed answer at the nearest computed r_e, its
  // label naming that r_e. Undefined (leave the box as it is) when there is no table.
  function steeredAt(v) {
    if (answers.mode !== 'table' || !answers.r || !answers.r.length) return undefined;
    const k = nearestIndex(answers.r, v, false);
    const used = answers.r[k];
    const near = Math.abs(used - v) > 1e-9 * (1 + Math.abs(v)) ? ` · nearest computed to ${fmt(v)}` : '';
    return {__type__: 'update', value: answers.text[k], label: `${answers.label || 'Steered'} (r_e = ${fmt(used)}${near})`};
  }

  function slide(value, chartIds, final) {
    const input = document.querySelector('#re-slider input[type=range]');
    let v = Number(value);
    let clamped;
    if (input && Number.isFinite(v)) {
      const lo = Number(input.min), hi = Number(input.max);
      if (Number.isFinite(lo) && Number.isFinite(hi) && (v < lo || v > hi)) {
        v = Math.min(Math.max(v, lo), hi);
        clamped = v;
      }
    }
    if (!Number.isFinite(v)) return [undefined, undefined, undefined];
    const hosts = chartIds.map((id) => document.querySelector('#' + id + ' .mrepe-chart'));
    const ks = hosts.map((h) => (h && h.__mrepeMove ? h.__mrepeMove(v) : -1));
    const meta = hosts[0] && hosts[0].layout && hosts[0].layout.meta;
    const readout = ks[0] >= 0 && meta && meta.readouts ? meta.readouts[ks[0]] : '**r_e = ' + fmt(v) + '** · …';
    let steered = steeredAt(v);
    if (final && answers.mode === 'generated' && Math.abs((answers.r_e ?? 0) - v) > 1e-9) {
      // The visitor's own prompt: only the model can answer at a new r_e. Ask it (the Generate
      // button's event is queued per visitor and coalesced to the latest release).
      const button = document.querySelector('#generate');
      if (button) setTimeout(() => button.click(), 0);
      steered = {__type__: 'update', label: `Steered (r_e = ${fmt(answers.r_e ?? 0)}) · generating for r_e = ${fmt(v)}…`};
    }
    return [readout, steered, clamped === undefined ? undefined : clamped];
  }

  window.mrepe = {version: 1, fmt, nearestIndex, moveInPlace, mountChart, mountAnswerTable, steeredAt, slide,
                  get answers() { return answers; }};
})();
