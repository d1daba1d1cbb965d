// The RLS policy viewer: per database, every tenant table's RLS state,
// policies, tenant-leading indexes and checks, with the SQL that fixes a
// failing check.
import { api, qs, h, field, problem, say } from './lib.js';

let database = ''; // kept across visits

export async function policiesPage(main) {
  const body = h('div');
  const select = h('select', { name: 'database', onchange: () => { database = select.value; load(); } });
  main.replaceChildren(h('h1', { text: 'RLS policies' }),
    h('div', { class: 'toolbar' }, field('Database', select).row,
      h('button', { type: 'button', text: 'Check again', onclick: () => load() })),
    body);

  async function load() {
    body.setAttribute('aria-busy', 'true');
    try {
      const { data } = await api('/policies' + qs({ database }));
      database = data.database;
      select.replaceChildren(...(data.databases || [data.database]).map((d) => h('option', { value: d, text: d })));
      select.value = data.database;
      render(data);
    } catch (e) {
      body.replaceChildren(problem(e));
    } finally {
      body.removeAttribute('aria-busy');
    }
  }

  function render(data) {
    const explain = data.explanations || {};
    const tables = data.tables || [];
    const failing = tables.filter((t) => worst(t.checks) === 'fail');
    const summary = h('p', { class: 'msg ' + (data.ok ? 'ok' : 'error'), role: 'status',
      text: data.ok ? `All ${tables.length} tenant tables of ${data.database} pass every check.`
        : `${failing.length} of ${tables.length} tenant tables of ${data.database} fail a check.` });
    const failingList = failing.length ? h('ul', { class: 'failing-list', 'aria-label': 'Failing tables' }, failing.map((t) =>
      h('li', {}, h('button', { type: 'button', text: t.table,
        onclick: () => { const el = body.querySelector(`[data-table="${CSS.escape(t.table)}"]`); el.scrollIntoView(); el.focus(); } })))) : null;
    const dbChecks = (data.database_checks || []).length
      ? h('section', { class: 'panel' }, h('h2', { text: 'Database checks' }), checkList(data.database_checks, explain)) : null;
    body.replaceChildren(summary, failingList, dbChecks,
      ...tables.map((t) => tableCard(t, explain)),
      tables.length ? null : h('p', { class: 'empty', text: 'No tenant table found in ' + data.database + '.' }));
  }

  await load();
}

const rank = { ok: 0, warn: 1, fail: 2 };
function worst(checks = []) {
  return checks.reduce((w, c) => (rank[c.status] > rank[w] ? c.status : w), 'ok');
}

function tableCard(t, explain) {
  const state = worst(t.checks);
  const yes = (b, label) => h('span', { class: 'badge ' + (b ? 'badge-active' : 'badge-deprovisioned'), text: label + (b ? ': yes' : ': no') });
  return h('section', { class: 'panel table-card state-' + state, 'data-table': t.table, 'aria-label': 'Table ' + t.table, tabindex: '-1' },
    h('h2', {}, h('code', { text: t.table }), ' ',
      state === 'ok' ? h('span', { class: 'badge badge-active', text: 'ok' })
        : h('span', { class: 'badge badge-' + (state === 'fail' ? 'fail' : 'warn'), text: state === 'fail' ? 'FAILING' : 'warning' })),
    h('p', {}, yes(t.rls_enabled, 'RLS enabled'), ' ', yes(t.rls_forced, 'RLS forced')),
    h('h3', { text: 'Policies' }),
    (t.policies || []).length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'Command', 'Roles', 'USING', 'WITH CHECK'].map((x) => h('th', { scope: 'col', text: x })))),
      h('tbody', {}, t.policies.map((p) => h('tr', {},
        h('td', { text: p.name }), h('td', { text: p.command }), h('td', { text: (p.roles || []).join(', ') }),
        h('td', {}, h('code', { text: p.using || '' })), h('td', {}, h('code', { text: p.with_check || '' })))))))
      : h('p', { class: 'warn-text', text: 'No policy.' }),
    h('h3', { text: 'Tenant-leading indexes' }),
    (t.tenant_indexes || []).length ? h('ul', {}, t.tenant_indexes.map((i) => h('li', {}, h('code', { text: i }))))
      : h('p', { class: 'hint', text: 'None.' }),
    h('h3', { text: 'Checks' }), checkList(t.checks || [], explain));
}

function checkList(checks, explain) {
  return h('ul', { class: 'checks' }, checks.map((c) => h('li', { class: 'check-' + c.status },
    h('span', { class: 'badge badge-' + c.status, text: c.status }), ' ', h('strong', { text: c.check }), ': ', c.message,
    explain[c.check] ? h('p', { class: 'hint', text: explain[c.check] }) : null,
    c.fix && c.status !== 'ok' ? fixBlock(c.fix) : null)));
}

function fixBlock(sql) {
  const code = h('code', { text: sql });
  return h('div', { class: 'fix' }, h('p', { text: 'SQL that fixes it:' }), h('pre', {}, code),
    h('button', { type: 'button', class: 'small', text: 'Copy SQL', onclick: async () => {
      try {
        await navigator.clipboard.writeText(sql);
        say('SQL copied.');
      } catch {
        getSelection().selectAllChildren(code); // select it for Ctrl+C
        say('Press Ctrl+C to copy the selected SQL.');
      }
    } }));
}
