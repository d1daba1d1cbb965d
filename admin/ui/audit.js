// The cross-tenant audit log: filters, pages going back by before_id,
// auto-refresh of the first page, CSV and JSON export.
import { api, qs, h, field, errorBox, fmtTime, pager, download, say } from './lib.js';

const LIMIT = 50;
const REFRESH_MS = 5000;
const filters = { org: '', reason: '', subject: '', since: '', until: '' };

// datetime-local values are local times; the API wants RFC 3339.
const rfc3339 = (v) => (v ? new Date(v).toISOString() : '');

export async function auditPage(main, me) {
  const cursors = [null]; // before_id of each page visited; [0] is the newest
  let page = 0, next = null, paused = false, timer = null;
  const box = errorBox();
  const tableBox = h('div', { class: 'table-wrap' });
  const pagerBox = h('div');
  const refreshState = h('span', { class: 'hint', 'aria-live': 'polite' });

  const params = (extra) => qs({ org: filters.org, reason: filters.reason, subject: filters.subject,
    since: rfc3339(filters.since), until: rfc3339(filters.until), ...extra });

  async function load() {
    try {
      const { data } = await api('/audit/events' + params({ limit: LIMIT, before_id: cursors[page] }));
      box.clear();
      next = data.next_before_id;
      render(data.events);
    } catch (e) {
      box.show('Could not read the audit log: ' + e.message);
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    const live = page === 0 && !paused;
    refreshState.textContent = live ? 'Refreshing every 5 s.' : page === 0 ? 'Auto-refresh paused.' : 'Auto-refresh is on the newest page only.';
    if (live) timer = setTimeout(load, REFRESH_MS);
  }

  function render(events) {
    tableBox.replaceChildren(h('table', { class: 'audit' },
      h('caption', { class: 'sr-only', text: 'Audit events, newest first' }),
      h('thead', {}, h('tr', {}, ['Time', 'Org', 'Subject', 'Reason', 'Rule', 'SQLSTATE', 'Statement fingerprint', 'Detail']
        .map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, events.length ? events.map((e) => h('tr', { 'data-id': e.id },
        h('td', { text: fmtTime(e.time) }), h('td', { text: e.org || '' }), h('td', { text: e.subject || '' }),
        h('td', { text: e.reason }), h('td', { text: e.rule || '' }), h('td', {}, h('code', { text: e.sqlstate || '' })),
        h('td', {}, h('code', { class: 'fingerprint', text: e.fingerprint || '' })), h('td', { text: e.detail || '' })))
        : h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'No event matches.' })))));
    pagerBox.replaceChildren(pager({
      label: 'Page ' + (page + 1) + (page === 0 ? ' (newest)' : ''),
      hasPrev: page > 0, hasNext: next !== null && next !== undefined,
      onGo: (d) => {
        if (d > 0) { cursors[page + 1] = next; page++; } else page--;
        load();
      },
    }));
  }

  async function exportAs(format) {
    try {
      const { data } = await api('/audit/events' + params({ limit: 1000, before_id: cursors[page], format }), { raw: true });
      download(data, 'pgtenant-audit.' + format);
      say('Exported ' + format.toUpperCase() + '.');
    } catch (e) { box.show('Export failed: ' + e.message); }
  }

  const inputs = {
    org: h('input', { type: 'text', name: 'org', value: me.platform_admin ? filters.org : (me.org || '') , disabled: !me.platform_admin }),
    reason: h('input', { type: 'text', name: 'reason', value: filters.reason, list: 'reasons', placeholder: 'e.g. blocked_statement' }),
    subject: h('input', { type: 'text', name: 'subject', value: filters.subject }),
    since: h('input', { type: 'datetime-local', name: 'since', value: filters.since, step: 1 }),
    until: h('input', { type: 'datetime-local', name: 'until', value: filters.until, step: 1 }),
  };
  const form = h('form', { class: 'toolbar', role: 'search', onsubmit: (ev) => {
    ev.preventDefault();
    for (const [k, el] of Object.entries(inputs)) filters[k] = el.disabled ? '' : el.value.trim();
    cursors.length = 1; page = 0;
    load();
  } },
  field('Org', inputs.org).row, field('Reason', inputs.reason).row, field('Subject', inputs.subject).row,
  field('Since', inputs.since).row, field('Until', inputs.until).row,
  h('datalist', { id: 'reasons' }, ['blocked_statement', 'forged_context', 'rls_violation', 'auth_failed', 'tenant_refused', 'tenant_lifecycle', 'other'].map((r) => h('option', { value: r }))),
  h('button', { type: 'submit', class: 'primary', text: 'Apply filters' }));
  const pause = h('button', { type: 'button', 'aria-pressed': 'false', text: 'Pause auto-refresh', onclick: () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume auto-refresh' : 'Pause auto-refresh';
    paused ? schedule() : load();
  } });

  main.replaceChildren(h('h1', { text: 'Audit log' }),
    h('p', { class: 'hint', text: 'Refused attempts across tenants, newest first.' }),
    form,
    h('div', { class: 'toolbar' }, pause, refreshState,
      h('button', { type: 'button', 'data-export': 'csv', text: 'Export CSV', onclick: () => exportAs('csv') }),
      h('button', { type: 'button', 'data-export': 'json', text: 'Export JSON', onclick: () => exportAs('json') })),
    box, tableBox, pagerBox);
  await load();
  return () => { clearTimeout(timer); timer = null; paused = true; };
}
