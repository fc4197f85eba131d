// The Runs page: every run under the root, a run's live curves (loss with eval loss, learning rate, tokens/s)
// fed by polling metrics.jsonl from the last offset read, its ETA, checkpoints, eval results, report and log,
// and a second run's loss curve drawn over the first for comparison.
import uPlot from '/vendor/uplot.esm.js';
import { api, duration, fmt, h, routeParams, showError } from './lib.js';

const POLL_MS = 1000;

/** A run's metrics as read so far, and the arrival times of its steps (for the ETA). */
class RunMetrics {
  constructor(id) {
    this.id = id;
    this.offset = 0;
    this.train = [];
    this.eval = [];
    this.seen = []; // [wall ms, step] of live arrivals
  }
  /** Reads what was appended since the last poll; concurrent calls share one request (no point read twice). */
  poll() {
    this.pending ??= this.read().finally(() => (this.pending = null));
    return this.pending;
  }
  async read() {
    const chunk = await api(`/api/runs/metrics?run=${encodeURIComponent(this.id)}&offset=${this.offset}`);
    if (chunk.reset) {
      this.train = [];
      this.eval = [];
    }
    const first = this.offset === 0 && !chunk.reset;
    this.offset = chunk.offset;
    for (const p of chunk.points) {
      if (p.type === 'eval') this.eval.push(p);
      else if (typeof p.step === 'number' && typeof p.loss === 'number') this.train.push(p);
    }
    const last = this.train.at(-1);
    if (chunk.points.length > 0 && last && !first) this.seen.push([Date.now(), last.step]);
    return chunk.points.length;
  }
  /** Seconds left: steps still to go at the pace the page has watched (or null before two observations). */
  eta() {
    const last = this.train.at(-1);
    if (!last || typeof last.total_steps !== 'number' || this.seen.length < 2) return null;
    const [t0, s0] = this.seen[Math.max(0, this.seen.length - 10)];
    const [t1, s1] = this.seen.at(-1);
    if (s1 <= s0) return null;
    return ((t1 - t0) / 1000 / (s1 - s0)) * (last.total_steps - last.step);
  }
}

/** Axis tick labels that stay distinct for small values (learning rates). */
const ticks = (u, values) => values.map((v) => (v === 0 ? '0' : Math.abs(v) < 0.01 ? v.toExponential(1) : String(+v.toPrecision(4))));

function chart(el, title, series, width) {
  return new uPlot(
    {
      title,
      width,
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, { values: ticks, size: 60 }],
      series: [{ label: 'step' }, ...series.map((s) => ({ spanGaps: true, width: 1.5, points: { show: false }, ...s }))],
    },
    [[], ...series.map(() => [])],
    el,
  );
}

/** Columns for uPlot: the union of the steps, each series null where it has no point. */
function align(lists) {
  const steps = [...new Set(lists.flatMap((l) => l.map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(steps.map((s, i) => [s, i]));
  const cols = lists.map(() => new Array(steps.length).fill(null));
  lists.forEach((l, k) => l.forEach(([s, v]) => (cols[k][at.get(s)] = v)));
  return [steps, ...cols];
}

function ago(ms) {
  const s = (Date.now() - ms) / 1000;
  return s < 60 ? 'just now' : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${Math.round(s / 3600)} h ago` : new Date(ms).toLocaleDateString();
}

export async function runsPage(main) {
  const params = routeParams();
  let selected = params.get('run');
  let compare = params.get('compare');
  const list = h('tbody');
  const detail = h('div', { class: 'panel', 'data-testid': 'run-detail' }, h('p', { class: 'muted' }, 'Choose a run.'));
  main.append(
    h('div', { class: 'cols' },
      h('div', { class: 'panel' }, h('h2', {}, 'Runs'), h('table', { 'data-testid': 'runs-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'run'), h('th', {}, 'updated'), h('th', {}, 'ckpts'), h('th', {}, 'compare ', h('button', { title: 'compare with none', onclick: () => { for (const r of list.querySelectorAll('input[data-compare]')) r.checked = false; setCompare(null); } }, '×')))), list)),
      detail,
    ),
  );
  let runs = [];
  let metrics = null;
  let other = null;
  let charts = null;
  let info = null;
  let timer = null;
  let stopped = false;

  async function refreshList() {
    runs = (await api('/api/runs')).runs;
    list.replaceChildren(
      ...runs.map((r) =>
        h('tr', { class: `selectable${r.id === selected ? ' selected' : ''}`, 'data-run': r.id, onclick: () => select(r.id) },
          h('td', {}, r.id),
          h('td', { class: 'muted' }, r.started ? (r.started.status === 'running' ? 'running' : `exited ${r.started.exitCode ?? r.started.signal ?? ''}`) : r.updated ? ago(r.updated) : ''),
          h('td', {}, r.checkpoints),
          h('td', { onclick: (e) => e.stopPropagation() }, h('input', { type: 'radio', name: 'compare', 'data-compare': r.id, checked: r.id === compare, disabled: r.id === selected, onchange: () => setCompare(r.id) })),
        ),
      ),
    );
    if (runs.length === 0) list.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No runs under the root yet: start one from New run.')));
  }

  function setCompare(id) {
    compare = id === selected ? null : id;
    other = compare ? new RunMetrics(compare) : null;
    history.replaceState(null, '', `#/runs?run=${encodeURIComponent(selected)}${compare ? `&compare=${encodeURIComponent(compare)}` : ''}`);
    if (other) other.poll().then(draw, showError);
    else draw();
  }

  async function select(id) {
    selected = id;
    if (compare === id) compare = null;
    history.replaceState(null, '', `#/runs?run=${encodeURIComponent(id)}${compare ? `&compare=${encodeURIComponent(compare)}` : ''}`);
    metrics = new RunMetrics(id);
    other = compare ? new RunMetrics(compare) : null;
    for (const tr of list.querySelectorAll('tr[data-run]')) tr.classList.toggle('selected', tr.dataset.run === id);
    const width = Math.max(320, detail.clientWidth - 40);
    const stats = h('div', { class: 'stats', 'data-testid': 'run-stats' });
    const lossEl = h('div', { 'data-testid': 'loss-chart' });
    const lrEl = h('div');
    const tpsEl = h('div');
    info = h('div');
    detail.replaceChildren(h('h2', {}, id), stats, lossEl, h('div', { class: 'cols2' }, lrEl, tpsEl), info);
    charts = {
      stats,
      loss: chart(lossEl, 'loss', [
        { label: 'train loss', stroke: '#2563eb' },
        { label: 'eval loss', stroke: '#dc2626', points: { show: true, size: 6 } },
        { label: 'compare: train loss', stroke: '#9ca3af', dash: [6, 4] },
      ], width),
      lr: chart(lrEl, 'learning rate', [{ label: 'lr', stroke: '#059669' }], width / 2 - 10),
      tps: chart(tpsEl, 'tokens/s', [{ label: 'tokens/s', stroke: '#7c3aed' }], width / 2 - 10),
    };
    await Promise.all([showInfo(info, id), tick(true)]);
  }

  async function showInfo(el, id) {
    const d = await api(`/api/runs/detail?run=${encodeURIComponent(id)}`);
    const parts = [];
    if (d.status?.status === 'running') parts.push(h('div', { class: 'row-actions' }, h('button', { onclick: () => api('/api/runs/stop', { run: id }).catch(showError) }, 'Stop (saves a checkpoint)')));
    parts.push(h('h3', {}, 'Checkpoints'));
    parts.push(
      d.checkpoints.length === 0
        ? h('p', { class: 'muted' }, 'none yet')
        : h('table', { 'data-testid': 'checkpoints' }, d.checkpoints.map((c) => h('tr', {}, h('td', {}, c.name), h('td', {}, c.step === null ? '' : `step ${c.step}`), h('td', {}, c.latest ? 'latest' : ''), h('td', {}, h('a', { href: `#/chat?model=${encodeURIComponent(c.path)}` }, 'chat'))))),
    );
    if (d.evalResults) parts.push(h('h3', {}, 'Eval results'), h('pre', { 'data-testid': 'eval-results' }, JSON.stringify(d.evalResults, null, 2)));
    if (d.report) parts.push(h('h3', {}, 'Report'), h('pre', { 'data-testid': 'report' }, d.report));
    if (d.started) {
      const log = await api(`/api/runs/log?run=${encodeURIComponent(id)}`);
      parts.push(h('h3', {}, 'Log'), h('pre', { 'data-testid': 'run-log' }, log.log || '(empty)'));
    }
    el.replaceChildren(...parts);
  }

  function draw() {
    if (!charts || !metrics) return;
    const t = metrics.train;
    const last = t.at(-1);
    const lastEval = metrics.eval.at(-1);
    const eta = metrics.eta();
    charts.stats.replaceChildren(
      ...[
        ['step', last ? `${last.step}${last.total_steps ? ` / ${last.total_steps}` : ''}` : '–', 'stat-step'],
        ['train loss', fmt(last?.loss), 'stat-loss'],
        ['eval loss', fmt(lastEval?.loss), 'stat-eval'],
        ['lr', fmt(last?.lr), 'stat-lr'],
        ['tokens/s', fmt(last?.tokens_per_s, 0), 'stat-tps'],
        ['ETA', last && last.total_steps === last.step ? 'done' : eta === null ? '–' : duration(eta), 'stat-eta'],
      ].map(([k, v, id]) => h('div', { class: 'stat' }, h('span', { class: 'muted' }, k), h('b', { 'data-testid': id }, v))),
    );
    charts.loss.setData(align([t.map((p) => [p.step, p.loss]), metrics.eval.map((p) => [p.step, p.loss]), (other?.train ?? []).map((p) => [p.step, p.loss])]));
    charts.lr.setData(align([t.map((p) => [p.step, p.lr])]));
    charts.tps.setData(align([t.map((p) => [p.step, p.tokens_per_s])]));
    detail.dataset.points = String(t.length);
  }

  let polls = 0;
  async function tick(force = false) {
    try {
      let got = 0;
      if (metrics) got += await metrics.poll();
      if (other) got += await other.poll();
      if (got > 0 || force) draw();
      if (force || ++polls % 5 === 0) {
        await refreshList();
        // Checkpoints, eval results and the log change while a run trains.
        if (metrics && info && !force) await showInfo(info, metrics.id);
      }
    } catch (err) {
      showError(err);
    }
  }

  await refreshList();
  if (selected) await select(selected);
  let busy = false;
  timer = setInterval(async () => {
    if (busy || stopped) return;
    busy = true;
    await tick();
    busy = false;
  }, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
