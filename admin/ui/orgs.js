// Organizations: a server-side paginated, searchable list, and creation.
import { api, qs, h, field, errorBox, say, badge, pager, statusActions } from './lib.js';

const PAGE = 50;
// Kept across visits, so going back to the list keeps the filters.
const state = { search: '', status: '', offset: 0 };

export async function orgsPage(main, me) {
  const platform = me.platform_admin;
  const tableBox = h('div', { class: 'table-wrap' });
  const pagerBox = h('div');
  let seq = 0;

  async function load() {
    const mine = ++seq;
    tableBox.setAttribute('aria-busy', 'true');
    try {
      const { data } = await api('/orgs' + qs({ search: state.search, status: state.status, limit: PAGE, offset: state.offset }));
      if (mine !== seq) return; // a newer search answered first
      render(data);
    } catch (e) {
      tableBox.replaceChildren(h('p', { class: 'msg error', role: 'alert', text: 'Could not list organizations: ' + e.message }));
    } finally {
      tableBox.removeAttribute('aria-busy');
    }
  }

  function render(page) {
    const rows = page.orgs.map((o) => {
      const u = o.pool_usage || {};
      return h('tr', { 'data-org': o.id },
        h('td', {}, h('a', { href: '#/orgs/' + encodeURIComponent(o.id), text: o.id })),
        h('td', { text: o.name }),
        h('td', {}, badge(o.status)),
        h('td', { class: 'num', text: o.live_sessions ?? 0 }),
        h('td', { class: 'num', title: 'active / size · idle · waiting',
          text: `${u.active ?? 0}/${u.size ?? 0} · ${u.idle ?? 0} idle · ${u.waiting ?? 0} waiting` }),
        h('td', { class: 'num' + ((o.blocked_24h || 0) > 0 ? ' warn-text' : ''), text: o.blocked_24h ?? '–' }),
        platform ? h('td', { class: 'row-actions' }, statusActions(o, load)) : null);
    });
    tableBox.replaceChildren(h('table', {},
      h('caption', { class: 'sr-only', text: 'Organizations' }),
      h('thead', {}, h('tr', {},
        ['Id', 'Name', 'Status', 'Live sessions', 'Pool (active/size)', 'Blocked (24 h)', platform ? 'Actions' : null]
          .filter(Boolean).map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 7, class: 'empty', text: 'No organization matches.' })))));
    const last = Math.min(page.offset + page.orgs.length, page.total);
    pagerBox.replaceChildren(pager({
      label: page.total ? `${page.offset + 1}–${last} of ${page.total}` : '0 organizations',
      hasPrev: page.offset > 0,
      hasNext: page.offset + page.orgs.length < page.total,
      onGo: (d) => { state.offset = Math.max(0, state.offset + d * PAGE); load(); },
    }));
  }

  const search = h('input', { type: 'search', name: 'search', value: state.search, placeholder: 'id, slug or name' });
  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.search = search.value.trim(); state.offset = 0; load(); }, 300);
  });
  const status = h('select', { name: 'status', onchange: () => { state.status = status.value; state.offset = 0; load(); } },
    ['', 'active', 'suspended', 'deprovisioned'].map((s) => h('option', { value: s, text: s || 'any status' })));
  status.value = state.status;

  main.replaceChildren(
    h('h1', { text: 'Organizations' }),
    platform ? createForm(load) : h('p', { class: 'hint', text: 'Your token administers ' + (me.org || 'no organization') + '; only it is listed.' }),
    h('div', { class: 'toolbar', role: 'search' }, field('Search', search).row, field('Status', status).row),
    tableBox, pagerBox);
  await load();
  return () => clearTimeout(debounce);
}

function createForm(reload) {
  const box = errorBox();
  const id = h('input', { type: 'text', name: 'id', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9][A-Za-z0-9_.\\-]{0,62}' });
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', maxlength: 200 });
  const slug = h('input', { type: 'text', name: 'slug', autocomplete: 'off' });
  const form = h('form', { class: 'panel inline-form', onsubmit: async (ev) => {
    ev.preventDefault();
    box.clear();
    const body = { id: id.value.trim(), name: name.value.trim() };
    if (slug.value.trim()) body.slug = slug.value.trim();
    try {
      await api('/orgs', { method: 'POST', body });
      say('Organization ' + body.id + ' created.');
      form.reset();
      reload();
    } catch (e) {
      box.show(e.message);
    }
  } },
  h('h2', { text: 'Create an organization' }),
  h('div', { class: 'row' },
    field('Id (the org claim of its tokens)', id).row,
    field('Name', name).row,
    field('Slug (optional)', slug).row,
    h('button', { type: 'submit', class: 'primary', text: 'Create' })),
  box);
  return h('details', { class: 'create' }, h('summary', { text: 'Create an organization' }), form);
}
