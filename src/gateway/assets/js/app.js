// The dashboard's entry point: sign-in or the app, the tabs, the header badges and the
// supervision event feed shared by the views. The Code tab's module (and xterm.js) is loaded
// only when that tab opens.

import { api, session, forget, onSignedOut, may, HttpError } from './api.js';
import { setText, toast } from './dom.js';
import { showSignIn } from './signin.js';
import { EventFeed, EventsView } from './events.js';
import { TreeTab } from './tree.js';
import { ServersTab } from './servers.js';
import { SessionsTab } from './sessions.js';
import { SidecarsTab } from './sidecars.js';

let feed = null;
let tabs = {};
let badgeTimer = null;

async function boot() {
  if (!session.token) {
    showSignIn('', boot);
    return;
  }
  try {
    session.me = await api('/api/whoami');
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) return; // forget() showed the sign-in
    if (e instanceof HttpError && e.status === 404) {
      // An older daemon without /api/whoami: take the viewer role until proven otherwise.
      session.me = { role: 'viewer', label: 'unknown', id: '' };
    } else {
      showSignIn(`Cannot reach the daemon: ${e.message}`, boot);
      return;
    }
  }
  startApp();
}

function startApp() {
  document.getElementById('signin').hidden = true;
  const app = document.getElementById('app');
  app.hidden = false;
  const me = session.me;
  setText(document.getElementById('whoami'), `${me.label} (${me.role})`);
  document.getElementById('whoami').dataset.role = me.role;
  for (const el of document.querySelectorAll('[role=tab], #pair-device')) {
    el.hidden = Boolean(el.dataset.role) && !may(el.dataset.role);
  }
  feed = new EventFeed();
  const badge = document.getElementById('stream-badge');
  feed.onStatus((status) => {
    badge.className = `badge stream-${status}`;
    setText(badge, {
      live: 'live', connecting: 'live: connecting…', reconnecting: 'live: reconnecting…', unavailable: 'live: unavailable (polling)',
    }[status] || status);
  });
  tabs = {
    tree: new TreeTab(document.getElementById('view-tree'), feed),
    events: new EventsView(document.getElementById('view-events'), feed),
    servers: new ServersTab(document.getElementById('view-servers')),
    sidecars: new SidecarsTab(document.getElementById('view-sidecars')),
  };
  if (may('owner')) tabs.sessions = new SessionsTab(document.getElementById('view-sessions'));
  tabs.tree.load();
  feed.start();
  badges();
  clearInterval(badgeTimer);
  badgeTimer = setInterval(badges, 10000);
  const wanted = location.hash.slice(1);
  select(document.getElementById(`tab-${wanted}`) && !document.getElementById(`tab-${wanted}`).hidden ? wanted : 'tree', false);
}

async function badges() {
  if (!session.token) return;
  const health = document.getElementById('health-badge');
  try {
    const r = await api('/api/health');
    health.className = `badge health-${r.status}`;
    setText(health, `health: ${r.status}`);
  } catch (e) {
    const status = e.body && e.body.status;
    health.className = `badge health-${status || 'unknown'}`;
    setText(health, status ? `health: ${status}` : `health: ${e.status === 404 ? 'n/a' : 'unreachable'}`);
  }
  const disc = document.getElementById('discovery-badge');
  try {
    const r = await api('/api/mcp/discovery');
    disc.className = `badge discovery-${r.available ? 'up' : 'down'}`;
    setText(disc, r.available ? `MCP: up${r.health && r.health.protocol_version ? ` (${r.health.protocol_version})` : ''}` : `MCP: down (${r.reason || 'unavailable'})`);
    disc.title = r.available ? r.url : r.reason || '';
  } catch (e) {
    disc.className = 'badge discovery-down';
    setText(disc, `MCP: ${e.status === 404 ? 'n/a' : 'unknown'}`);
  }
}

async function select(view, focus = true) {
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.dataset.view === view;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  for (const panel of document.querySelectorAll('[role=tabpanel]')) panel.hidden = panel.id !== `view-${view}`;
  if (location.hash !== `#${view}`) history.replaceState(null, '', `#${view}`);
  if (view === 'code' && !tabs.code) {
    const { CodeTab } = await import('./code.js');
    tabs.code = new CodeTab(document.getElementById('view-code'));
  }
  const tab = tabs[view];
  if (tab && tab.show) tab.show();
}

function setupTabs() {
  const list = document.getElementById('tabs');
  list.addEventListener('click', (e) => {
    const tab = e.target.closest('[role=tab]');
    if (tab) select(tab.dataset.view);
  });
  list.addEventListener('keydown', (e) => {
    const all = [...list.querySelectorAll('[role=tab]')].filter((t) => !t.hidden);
    const i = all.indexOf(document.activeElement);
    if (i < 0) return;
    let next = null;
    if (e.key === 'ArrowRight') next = all[(i + 1) % all.length];
    else if (e.key === 'ArrowLeft') next = all[(i - 1 + all.length) % all.length];
    else if (e.key === 'Home') next = all[0];
    else if (e.key === 'End') next = all[all.length - 1];
    if (next) {
      e.preventDefault();
      select(next.dataset.view);
    }
  });
}

async function signOut() {
  try {
    await api('/api/logout', { method: 'POST' });
  } catch (e) {
    // 409 for the owner token of gateway.token: it is only forgotten here.
    if (!(e instanceof HttpError) || e.status !== 409) toast(`Sign-out: ${e.message}`);
  }
  forget('Signed out.');
}

onSignedOut((reason) => {
  if (feed) feed.stop();
  clearInterval(badgeTimer);
  for (const tab of Object.values(tabs)) if (tab.end) tab.end();
  tabs = {};
  for (const id of ['view-tree', 'view-servers', 'view-sessions', 'view-sidecars', 'view-events', 'view-code']) {
    document.getElementById(id).replaceChildren();
  }
  showSignIn(reason, boot);
});

/** The owner's "Pair a device": a one-time code for a role (POST /api/pair/code). */
function setupPairing() {
  const dialog = document.getElementById('pair-dialog');
  const out = document.getElementById('pair-code');
  document.getElementById('pair-device').addEventListener('click', () => {
    out.textContent = '';
    dialog.showModal();
  });
  document.getElementById('pair-close').addEventListener('click', () => dialog.close());
  document.getElementById('pair-create').addEventListener('click', async () => {
    const role = document.getElementById('pair-role').value;
    try {
      const r = await api('/api/pair/code', { method: 'POST', body: { role } });
      out.textContent = `${r.code} — for a ${r.role} token, valid ${Math.round(r.expires_in_secs / 60)} min.`;
    } catch (e) {
      out.textContent = `Cannot create a code: ${e.message}`;
    }
  });
}

setupTabs();
setupPairing();
document.getElementById('signout').addEventListener('click', signOut);
boot();
