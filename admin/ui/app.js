// The admin UI shell: sign-in, who is signed in, and hash routing to pages.
import { api, token, h, field, errorBox, say, setUnauthorizedHandler } from './lib.js';
import { orgsPage } from './orgs.js';
import { orgPage } from './org.js';
import { policiesPage } from './policies.js';
import { auditPage } from './audit.js';
import { poolsPage } from './pools.js';

const main = document.getElementById('main');
let me = null;        // GET /me of the signed-in token
let cleanup = null;   // stops the current page's timers

// A login URL returns the token in the fragment: move it to sessionStorage
// and out of the address bar (and the history) before anything else runs.
function takeTokenFromFragment() {
  if (location.hash.startsWith('#/')) return; // a route, not a login reply
  const got = new URLSearchParams(location.hash.slice(1)).get('token');
  if (!got) return;
  token.set(got);
  me = null;
  history.replaceState(null, '', location.pathname + location.search + '#/orgs');
}

async function loadConfig() {
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    return res.ok ? await res.json() : {};
  } catch { return {}; }
}

function signOut(message) {
  token.clear();
  me = null;
  showSession();
  location.hash = '#/signin';
  if (message) say(message, 'error');
}

function showSession() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.hidden = who.hidden = !me;
  if (!me) return;
  for (const a of nav.querySelectorAll('[data-platform]')) a.hidden = !me.platform_admin;
  const role = me.platform_admin ? 'platform admin' : me.org_admin ? 'admin of ' + me.org : (me.roles.join(', ') || 'no role');
  document.getElementById('who-text').textContent = 'Signed in as ' + me.subject + ' (' + role + ')';
}

async function signInPage(config) {
  const box = errorBox();
  const input = h('textarea', { name: 'token', rows: 4, spellcheck: 'false', autocomplete: 'off', required: true });
  const form = h('form', { class: 'panel signin', onsubmit: async (ev) => {
    ev.preventDefault();
    box.clear();
    token.set(input.value.trim());
    try {
      await loadMe();
      // Go where the user was headed; the same hash fires no hashchange.
      const want = location.hash && location.hash !== '#/signin' ? location.hash : '#/orgs';
      if (location.hash === want) route(config);
      else location.hash = want;
    } catch (e) {
      token.clear();
      box.show(e.status === 401 ? 'The token was refused: ' + e.message : e.message);
    }
  } },
  h('h1', { text: 'Sign in' }),
  config.login_url ? h('p', {}, h('a', { class: 'button primary', href: config.login_url, text: 'Sign in with your identity provider' })) : null,
  config.login_url ? h('p', { class: 'hint', text: 'or paste an admin token:' }) : null,
  field('Admin token (JWT)', input, 'Kept in this browser tab only (sessionStorage); signing out forgets it.').row,
  box,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Sign in' })));
  main.replaceChildren(form);
  input.focus();
}

async function loadMe() {
  me = (await api('/me')).data;
  showSession();
}

const routes = [
  [/^#\/orgs\/([^/]+)$/, (m) => orgPage(main, me, decodeURIComponent(m[1]))],
  [/^#\/orgs$/, () => orgsPage(main, me)],
  [/^#\/policies$/, () => policiesPage(main, me)],
  [/^#\/audit$/, () => auditPage(main, me)],
  [/^#\/pools$/, () => poolsPage(main, me)],
];

async function route(config) {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || '#/orgs';
  if (!token.get() || hash === '#/signin') {
    if (token.get() && hash === '#/signin') { location.hash = '#/orgs'; return; }
    return signInPage(config);
  }
  if (!me) {
    try { await loadMe(); } catch (e) { return signOut('Sign-in failed: ' + e.message); }
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      main.replaceChildren(h('p', { class: 'loading', text: 'Loading…' }));
      cleanup = (await page(m)) || null;
      return;
    }
  }
  location.hash = '#/orgs';
}

async function start() {
  takeTokenFromFragment();
  const config = await loadConfig();
  // A refused token ends a session; on the sign-in page the form says why.
  setUnauthorizedHandler((err) => { if (me) signOut('You were signed out: ' + err.message); });
  document.getElementById('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => {
    takeTokenFromFragment();
    route(config);
    main.focus({ preventScroll: true });
  });
  route(config);
}

start();
