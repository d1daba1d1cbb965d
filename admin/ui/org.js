// One organization: name, settings, pool overrides, flags (saved together
// with If-Match), status and its history, and members.
import { api, h, field, errorBox, say, badge, fmtTime, problem, statusActions } from './lib.js';

const SETTINGS = [
  ['statement_timeout', 'Statement timeout', 'duration'],
  ['idle_in_transaction_timeout', 'Idle-in-transaction timeout', 'duration'],
  ['max_connections', 'Max connections (0: no limit)', 'int'],
  ['read_only', 'Read-only', 'bool'],
  ['require_membership', 'Require membership', 'bool'],
];
const POOL = [
  ['size', 'Pool size', 'int'],
  ['min_idle', 'Min idle', 'int'],
  ['wait_timeout', 'Wait timeout', 'duration'],
  ['idle_timeout', 'Idle timeout', 'duration'],
  ['max_lifetime', 'Max lifetime', 'duration'],
  ['mode', 'Mode', 'mode'],
];

export async function orgPage(main, me, id) {
  const path = '/orgs/' + encodeURIComponent(id);
  let org, version;
  try {
    const { data, res } = await api(path);
    org = data;
    version = (res.headers.get('ETag') || '').replace(/"/g, '') || String(data.version);
  } catch (e) {
    main.replaceChildren(problem(e));
    return;
  }
  const platform = me.platform_admin;
  const reload = () => orgPage(main, me, id);

  // The form: every input keeps the user's edits until a save succeeds.
  const inputs = {};
  const mkInput = (key, kind, value, disabled) => {
    let el;
    if (kind === 'bool') el = h('input', { type: 'checkbox', name: key, checked: !!value, disabled });
    else if (kind === 'mode') {
      el = h('select', { name: key, disabled }, ['', 'transaction', 'session'].map((m) => h('option', { value: m, text: m || 'inherit' })));
      el.value = value || '';
    } else el = h('input', { type: kind === 'int' ? 'number' : 'text', min: kind === 'int' ? 0 : null, name: key,
      value: value ?? '', disabled, placeholder: kind === 'duration' ? 'e.g. 30s; empty: default' : 'empty: default' });
    return el;
  };
  const name = h('input', { type: 'text', name: 'name', value: org.name, maxlength: 200 });
  const settingRows = SETTINGS.map(([key, label, kind]) => {
    const f = field(label, inputs['settings.' + key] = mkInput(key, kind, org.settings?.[key], key === 'max_connections' && !platform),
      key === 'max_connections' && !platform ? 'Set by platform admins' : null);
    f.row.classList.toggle('check', kind === 'bool');
    inputs['settings.' + key].errEl = f.err;
    return f.row;
  });
  const poolRows = POOL.map(([key, label, kind]) => {
    const f = field(label, inputs['pool.' + key] = mkInput('pool_' + key, kind, org.pool?.[key], !platform));
    inputs['pool.' + key].errEl = f.err;
    return f.row;
  });
  const flags = flagEditor(org.flags || {});
  const box = errorBox();

  function collect() {
    const read = (prefix, defs) => {
      const out = {};
      for (const [key, , kind] of defs) {
        const el = inputs[prefix + key];
        if (kind === 'bool') { if (el.checked) out[key] = true; continue; }
        const v = el.value.trim();
        if (v === '') continue;
        // A bare number of a duration is milliseconds, as the API reads it.
        out[key] = kind === 'int' || (kind === 'duration' && /^\d+(\.\d+)?$/.test(v)) ? Number(v) : v;
      }
      return out;
    };
    const patch = { name: name.value.trim(), settings: read('settings.', SETTINGS), flags: flags.value() };
    if (!platform) patch.settings.max_connections = org.settings?.max_connections || 0;
    if (!patch.settings.max_connections) delete patch.settings.max_connections;
    if (platform) patch.pool = read('pool.', POOL);
    return patch;
  }

  async function save(ev) {
    ev.preventDefault();
    box.clear();
    for (const el of Object.values(inputs)) el.errEl.textContent = '';
    let patch;
    try { patch = collect(); } catch (e) { box.show(e.message); return; }
    try {
      const { data, res } = await api(path, { method: 'PATCH', body: patch, headers: { 'If-Match': '"' + version + '"' } });
      org = data;
      version = (res.headers.get('ETag') || '').replace(/"/g, '') || String(data.version);
      versionEl.textContent = version;
      box.show('Saved: version ' + version + '.', 'ok');
      say('Saved ' + id + ' (version ' + version + ').');
      loadHistory();
    } catch (e) {
      if (e.status === 412) {
        box.show('Another admin saved first; reload to see their change — your edits are kept in the form. (' + e.message + ')', 'conflict');
        return;
      }
      box.show(e.message);
      // Put the API's message next to the field it names ("pool.size is 0: ..."), too.
      for (const [key, el] of Object.entries(inputs)) {
        if (new RegExp('\\b' + key.replace('.', '\\.') + '\\b').test(e.message)) el.errEl.textContent = e.message;
      }
    }
  }

  const versionEl = h('span', { text: version });
  const historyBox = h('div', { class: 'table-wrap' });
  async function loadHistory() {
    try {
      const { data } = await api(path + '/history?limit=50');
      historyBox.replaceChildren(h('table', {},
        h('caption', { class: 'sr-only', text: 'Status history' }),
        h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Status', 'Reason'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, data.entries.map((e) => h('tr', {},
          h('td', { text: fmtTime(e.at) }), h('td', { text: e.actor }), h('td', { text: e.action }),
          h('td', {}, e.from_status ? [badge(e.from_status), ' → '] : null, e.to_status ? badge(e.to_status) : null),
          h('td', { text: e.reason || '' }))))));
    } catch (e) {
      historyBox.replaceChildren(h('p', { class: 'msg error', text: 'Could not read the history: ' + e.message }));
    }
  }

  main.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/orgs', text: 'Organizations' }), ' / ', id),
    h('h1', {}, org.name || org.id, ' ', badge(org.status)),
    h('p', { class: 'meta' }, 'Id ', h('code', { text: org.id }), ' · slug ', h('code', { text: org.slug }), ' · version ', versionEl,
      ' · updated ', fmtTime(org.updated_at), ' by ', org.updated_by || '–'),
    platform ? h('div', { class: 'row-actions' }, statusActions(org, reload)) : null,
    h('form', { class: 'panel settings', onsubmit: save, novalidate: true },
      h('h2', { text: 'Settings' }),
      field('Name', name).row,
      h('fieldset', {}, h('legend', { text: 'Tenant settings' }), h('div', { class: 'grid' }, settingRows)),
      h('fieldset', {}, h('legend', { text: 'Pool overrides' + (platform ? '' : ' (set by platform admins)') }), h('div', { class: 'grid' }, poolRows)),
      h('fieldset', {}, h('legend', { text: 'Feature flags' }), flags.el),
      box,
      h('div', { class: 'actions' },
        h('button', { type: 'button', text: 'Reload', onclick: reload }),
        h('button', { type: 'submit', class: 'primary', text: 'Save changes' }))),
    h('section', { class: 'panel' }, h('h2', { text: 'Members' }), membersEditor(path)),
    h('section', { class: 'panel' }, h('h2', { text: 'Status history' }), historyBox));
  loadHistory();
}

// flagEditor edits a JSON object: booleans as switches, other values as
// text (JSON when it parses, else a string).
function flagEditor(initial) {
  const list = h('ul', { class: 'flags' });
  const rows = new Map();
  const addRow = (key, value) => {
    let input, read;
    if (typeof value === 'boolean') {
      input = h('input', { type: 'checkbox', role: 'switch', name: 'flag-' + key, checked: value });
      read = () => input.checked;
    } else {
      input = h('input', { type: 'text', name: 'flag-' + key, value: typeof value === 'string' ? value : JSON.stringify(value) });
      read = () => { try { return JSON.parse(input.value); } catch { return input.value; } };
    }
    const f = field(key, input);
    const li = h('li', { class: typeof value === 'boolean' ? 'check' : '' }, f.row,
      h('button', { type: 'button', class: 'small', 'aria-label': 'Remove flag ' + key, text: 'Remove',
        onclick: () => { rows.delete(key); li.remove(); } }));
    rows.set(key, read);
    list.append(li);
  };
  for (const [k, v] of Object.entries(initial)) addRow(k, v);

  const key = h('input', { type: 'text', name: 'new-flag', autocomplete: 'off' });
  const kind = h('select', { name: 'new-flag-kind' }, h('option', { value: 'bool', text: 'on/off' }), h('option', { value: 'text', text: 'text' }));
  const err = h('span', { class: 'field-error', 'aria-live': 'polite' });
  const add = () => {
    const k = key.value.trim();
    err.textContent = !k ? 'Name the flag.' : rows.has(k) ? 'Flag ' + k + ' exists.' : '';
    if (err.textContent) return;
    addRow(k, kind.value === 'bool' ? true : '');
    key.value = '';
  };
  key.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); add(); } });
  const el = h('div', {}, list,
    h('div', { class: 'row' }, field('New flag', key).row, field('Type', kind).row,
      h('button', { type: 'button', name: 'add-flag', text: 'Add flag', onclick: add }), err));
  return { el, value: () => Object.fromEntries([...rows].map(([k, read]) => [k, read()])) };
}

function membersEditor(path) {
  const box = errorBox();
  const table = h('div', { class: 'table-wrap' });
  const sel = (name, options, value, label) => {
    const s = h('select', { name, 'aria-label': label }, options.map((o) => h('option', { value: o, text: o })));
    s.value = value;
    return s;
  };
  const mpath = (sub) => path + '/members/' + encodeURIComponent(sub);
  async function load() {
    try {
      const { data } = await api(path + '/members');
      table.replaceChildren(h('table', {},
        h('caption', { class: 'sr-only', text: 'Members' }),
        h('thead', {}, h('tr', {}, ['Subject', 'Role', 'Status', ''].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, data.members.length ? data.members.map((m) => {
          const role = sel('role', ['member', 'admin'], m.role, 'Role of ' + m.subject);
          const status = sel('status', ['active', 'disabled'], m.status, 'Status of ' + m.subject);
          return h('tr', {}, h('td', { text: m.subject }), h('td', {}, role), h('td', {}, status),
            h('td', { class: 'row-actions' },
              h('button', { type: 'button', class: 'small', text: 'Save', 'aria-label': 'Save ' + m.subject,
                onclick: () => put(m.subject, role.value, status.value) }),
              h('button', { type: 'button', class: 'small danger', text: 'Remove', 'aria-label': 'Remove ' + m.subject,
                onclick: () => remove(m.subject) })));
        }) : h('tr', {}, h('td', { colspan: 4, class: 'empty', text: 'No members.' })))));
    } catch (e) {
      box.show('Could not list members: ' + e.message);
    }
  }
  async function put(subject, role, status) {
    box.clear();
    try {
      await api(mpath(subject), { method: 'PUT', body: { role, status } });
      say('Member ' + subject + ' saved.');
      load();
    } catch (e) { box.show(e.message); }
  }
  async function remove(subject) {
    if (!window.confirm('Remove member ' + subject + '?')) return;
    try {
      await api(mpath(subject), { method: 'DELETE' });
      say('Member ' + subject + ' removed.');
      load();
    } catch (e) { box.show(e.message); }
  }
  const subject = h('input', { type: 'text', name: 'member-subject', autocomplete: 'off', required: true });
  const role = sel('member-role', ['member', 'admin'], 'member');
  role.removeAttribute('aria-label');
  const form = h('form', { class: 'row', onsubmit: (ev) => {
    ev.preventDefault();
    if (subject.value.trim()) put(subject.value.trim(), role.value, 'active').then(() => { subject.value = ''; });
  } }, field('Subject (token sub)', subject).row, field('Role', role).row, h('button', { type: 'submit', text: 'Add member' }));
  load();
  return h('div', {}, table, box, h('h3', { text: 'Add a member' }), form);
}
