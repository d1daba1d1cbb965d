// Live pools: sampled every few seconds, with a chart of the last minutes
// drawn as inline SVG.
import { api, h } from './lib.js';

const SAMPLE_MS = 3000;
const KEEP_MS = 5 * 60 * 1000;
const SERIES = [['active', 'Active'], ['idle', 'Idle'], ['waiting', 'Waiting']];
// Samples survive leaving the page, so the chart keeps its history.
const samples = []; // {t, pools}

export async function poolsPage(main) {
  let timer = null, stopped = false;
  const tenant = h('select', { name: 'chart-tenant', id: 'chart-tenant', onchange: () => draw() },
    h('option', { value: '', text: 'all tenants' }));
  const chart = h('div', { class: 'chart', role: 'img', 'aria-label': 'Pool connections over the last 5 minutes' });
  const tableBox = h('div', { class: 'table-wrap' });
  const note = h('p', { class: 'hint', 'aria-live': 'polite' });

  main.replaceChildren(h('h1', { text: 'Pools' }),
    h('section', { class: 'panel' },
      h('div', { class: 'toolbar' }, h('h2', { text: 'Last 5 minutes' }),
        h('div', { class: 'field' }, h('label', { for: 'chart-tenant', text: 'Tenant' }), tenant)),
      chart, note),
    tableBox);

  async function sample() {
    try {
      const { data } = await api('/pools');
      const now = Date.now();
      samples.push({ t: now, pools: data.pools });
      while (samples.length && samples[0].t < now - KEEP_MS) samples.shift();
      note.textContent = 'Sampled every ' + SAMPLE_MS / 1000 + ' s; last at ' + new Date(now).toLocaleTimeString(undefined, { hour12: false }) + '.';
      render(data.pools);
    } catch (e) {
      note.textContent = 'Could not read the pools: ' + e.message;
    }
    if (!stopped) timer = setTimeout(sample, SAMPLE_MS);
  }

  function render(pools) {
    const names = [...new Set(pools.map((p) => p.tenant))].sort();
    const cur = tenant.value;
    tenant.replaceChildren(h('option', { value: '', text: 'all tenants' }), ...names.map((n) => h('option', { value: n, text: n })));
    tenant.value = names.includes(cur) ? cur : '';
    const ms = (s) => (s === undefined || s === null ? '–' : (s * 1000).toFixed(1) + ' ms');
    tableBox.replaceChildren(h('table', {},
      h('caption', { class: 'sr-only', text: 'Live pools' }),
      h('thead', {}, h('tr', {}, ['Database', 'Tenant', 'Size', 'Min idle', 'Total', 'Active', 'Idle', 'Waiting', 'Wait p99', 'Wait timeouts', 'Dial errors']
        .map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, pools.length ? pools.map((p) => h('tr', { 'data-tenant': p.tenant },
        h('td', { text: p.database }), h('td', {}, h('a', { href: '#/orgs/' + encodeURIComponent(p.tenant), text: p.tenant })),
        ...[p.size, p.min_idle, p.total, p.active, p.idle, p.waiting].map((v) => h('td', { class: 'num', text: v })),
        h('td', { class: 'num', text: ms(p.wait_p99_seconds) }),
        h('td', { class: 'num', text: p.wait_timeouts }), h('td', { class: 'num', text: p.dial_errors })))
        : h('tr', {}, h('td', { colspan: 11, class: 'empty', text: 'No pool is open.' })))));
    draw();
  }

  function draw() {
    const only = tenant.value;
    const points = samples.map((s) => {
      const sum = { t: s.t, active: 0, idle: 0, waiting: 0 };
      for (const p of s.pools) if (!only || p.tenant === only) for (const [k] of SERIES) sum[k] += p[k] || 0;
      return sum;
    });
    chart.replaceChildren(lineChart(points, chart.clientWidth || 800));
  }

  await sample();
  return () => { stopped = true; clearTimeout(timer); };
}

const NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// lineChart draws one line per series over the last KEEP_MS.
function lineChart(points, W) {
  const H = 220, L = 40, B = 20, T = 28;
  const now = Date.now();
  // An even whole maximum keeps the middle grid line on a whole number.
  let max = Math.max(2, Math.ceil(Math.max(...points.flatMap((p) => SERIES.map(([k]) => p[k])))));
  if (max % 2) max++;
  const x = (t) => L + ((t - (now - KEEP_MS)) / KEEP_MS) * (W - L - 10);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const g = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'linechart', 'aria-hidden': 'true' });
  for (const v of [0, max / 2, max]) {
    g.append(svg('line', { x1: L, x2: W - 10, y1: y(v), y2: y(v), class: 'grid' }),
      svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
  }
  g.append(svg('text', { x: L, y: H - 4 }, '−5 min'), svg('text', { x: W - 10, y: H - 4, 'text-anchor': 'end' }, 'now'));
  for (const [k, label] of SERIES) {
    if (points.length) {
      g.append(svg('polyline', { class: 'series-' + k, fill: 'none',
        points: points.map((p) => `${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`).join(' ') }));
    }
    const i = SERIES.findIndex(([s]) => s === k);
    g.append(svg('rect', { x: L + i * 90, y: 6, width: 12, height: 4, class: 'series-' + k + ' key' }),
      svg('text', { x: L + 18 + i * 90, y: 12 }, label));
  }
  return g;
}
