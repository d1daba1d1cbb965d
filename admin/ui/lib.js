// Shared helpers: the token, API calls, DOM building, messages, pagination.

const TOKEN_KEY = 'pgtenant.admin_token';

// The token lives in sessionStorage only: never a cookie, never a URL query.
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// ApiError is an answer other than 2xx: status, the API's code and message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

// api calls the admin API with the bearer token. It returns {data, res}, or
// throws ApiError. opts: method, body (JSON), headers, raw (data is a Blob).
export async function api(path, opts = {}) {
  const headers = { Authorization: 'Bearer ' + token.get(), ...(opts.headers || {}) };
  const init = { method: opts.method || 'GET', headers, cache: 'no-store' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch('/api/v1' + path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'pgtenant did not answer (' + e.message + '); check that it is running');
  }
  if (!res.ok) {
    let code = 'http_' + res.status, message = res.status + ' ' + res.statusText;
    try {
      const body = await res.json();
      if (body && body.error) ({ code, message } = body.error);
    } catch { /* not JSON */ }
    const err = new ApiError(res.status, code, message);
    if (res.status === 401) onUnauthorized(err);
    throw err;
  }
  if (opts.raw) return { data: await res.blob(), res };
  if (res.status === 204) return { data: null, res };
  return { data: await res.json(), res };
}

// qs builds a query string from the non-empty values of params.
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// h builds an element. attrs: class, text, on<event> handlers, booleans,
// other attributes. Children are nodes or strings (never parsed as HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let uid = 0;
// field is a labelled input: returns {row, input}.
export function field(label, input, hint) {
  if (!input.id) input.id = 'f' + (++uid);
  const err = h('span', { class: 'field-error', id: input.id + '-err', 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', err.id);
  const row = h('div', { class: 'field' },
    h('label', { for: input.id, text: label }), input,
    hint ? h('span', { class: 'hint', text: hint }) : null, err);
  return { row, input, err };
}

// say announces a message in the status region (aria-live).
export function say(message, kind = 'ok') {
  const s = document.getElementById('status');
  s.className = 'status ' + kind;
  s.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  s.textContent = message;
  clearTimeout(say.timer);
  if (kind === 'ok') say.timer = setTimeout(() => { s.textContent = ''; s.className = 'status'; }, 8000);
}

// errorBox is an inline message block, shown next to a form.
export function errorBox() {
  const el = h('div', { class: 'msg', role: 'alert', hidden: true });
  el.show = (text, kind = 'error') => { el.className = 'msg ' + kind; el.textContent = text; el.hidden = !text; };
  el.clear = () => el.show('');
  return el;
}

// problem renders an error of a whole page; 403 gets a "not allowed" panel.
export function problem(err) {
  if (err.status === 403) {
    return h('section', { class: 'panel denied', role: 'alert' },
      h('h2', { text: 'Not allowed' }),
      h('p', { text: 'Your token may not see this. The API said: ' + err.message }),
      h('p', {}, h('a', { href: '#/orgs', text: 'Back to your organizations' })));
  }
  if (err.status === 404) {
    return h('section', { class: 'panel', role: 'alert' },
      h('h2', { text: 'Not found' }), h('p', { text: err.message }));
  }
  return h('section', { class: 'panel', role: 'alert' },
    h('h2', { text: 'Something went wrong' }), h('p', { text: err.message }));
}

export function badge(status) {
  return h('span', { class: 'badge badge-' + status, text: status });
}

export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString(undefined, { hour12: false });
}

// pager renders previous/next controls. onGo(delta) is called with -1 or 1.
export function pager({ label, hasPrev, hasNext, onGo }) {
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', disabled: !hasPrev, onclick: () => onGo(-1), text: '← Previous' }),
    h('span', { class: 'pager-label', text: label }),
    h('button', { type: 'button', disabled: !hasNext, onclick: () => onGo(1), text: 'Next →' }));
}

// download saves a Blob as a file.
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// confirmDialog asks to confirm an action on an org with a modal dialog.
// With typeToConfirm the user must type the org id. Resolves to
// {reason} or null when cancelled.
export function confirmDialog({ title, body, org, action, danger, typeToConfirm }) {
  return new Promise((resolve) => {
    const reason = h('input', { type: 'text', name: 'reason', autocomplete: 'off' });
    const typed = h('input', { type: 'text', name: 'confirm-id', autocomplete: 'off', spellcheck: 'false' });
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', text: action, disabled: !!typeToConfirm });
    typed.addEventListener('input', () => { ok.disabled = typed.value !== org; });
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'dlg-title', text: title }),
      h('p', {}, 'Organization: ', h('code', { class: 'org-id', text: org })),
      ...body.map((t) => h('p', { text: t })),
      field('Reason (kept in the history, optional)', reason).row,
      typeToConfirm ? field('Type the organization id (' + org + ') to confirm', typed).row : null,
      h('div', { class: 'actions' },
        h('button', { type: 'button', value: 'cancel', text: 'Cancel', onclick: () => dlg.close('cancel') }), ok));
    const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'dlg-title' }, form);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); if (!ok.disabled) dlg.close('ok'); });
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue === 'ok' ? { reason: reason.value.trim() } : null);
    });
    document.body.append(dlg);
    dlg.showModal();
    (typeToConfirm ? typed : reason).focus();
  });
}

// statusActions returns the buttons that change an org's status (for
// platform admins); onDone runs after a change.
export function statusActions(org, onDone) {
  const act = async (verb, opts) => {
    const ans = await confirmDialog({ org: org.id, ...opts });
    if (!ans) return;
    try {
      await api('/orgs/' + encodeURIComponent(org.id) + '/' + verb, { method: 'POST', body: ans.reason ? { reason: ans.reason } : {} });
      say('Organization ' + org.id + ': ' + verb + ' done.');
      onDone();
    } catch (e) {
      say('Could not ' + verb + ' ' + org.id + ': ' + e.message, 'error');
    }
  };
  const out = [];
  if (org.status === 'active') {
    out.push(h('button', { type: 'button', class: 'small', 'aria-label': 'Suspend ' + org.id, text: 'Suspend',
      onclick: () => act('suspend', { title: 'Suspend ' + org.id + '?', action: 'Suspend',
        body: ['Its live sessions are ended at once and its clients are refused until it is resumed.'] }) }));
  }
  if (org.status === 'suspended') {
    out.push(h('button', { type: 'button', class: 'small', 'aria-label': 'Resume ' + org.id, text: 'Resume',
      onclick: () => act('resume', { title: 'Resume ' + org.id + '?', action: 'Resume',
        body: ['Its clients may log in again.'] }) }));
  }
  if (org.status !== 'deprovisioned') {
    out.push(h('button', { type: 'button', class: 'small danger', 'aria-label': 'Deprovision ' + org.id, text: 'Deprovision',
      onclick: () => act('deprovision', { title: 'Deprovision ' + org.id + '?', action: 'Deprovision for good', danger: true, typeToConfirm: true,
        body: ['This is irreversible: a deprovisioned organization can never be resumed.',
          'Its sessions are ended and its clients refused. Its data stays until it is purged.'] }) }));
  }
  return out;
}
