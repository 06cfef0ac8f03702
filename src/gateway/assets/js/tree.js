// The Tree view: every actor of /api/actors, kept live by the supervision event feed (each
// event updates its row; `added`, `removed`, `reloaded`, a start (whose children may be new),
// a gap or a reconnect refetch the tree, debounced), and the details panel of the selected
// actor: its details, a Restart button (operator) and its event timeline.

import { api, may, describe, HttpError } from './api.js';
import { h, clear, clock, duration, since, stateWords, toast, kvList } from './dom.js';
import { TreeView } from './treeview.js';
import { eventItem } from './events.js';

const REFETCH_DEBOUNCE_MS = 250;
const POLL_MS = 3000;

export class TreeTab {
  constructor(root, feed) {
    this.root = root;
    this.feed = feed;
    this.selected = null;
    this.timer = null;
    this.poller = null;
    this.status = h('p', { class: 'note', role: 'status' });
    const tree = h('div', { class: 'tree', id: 'tree' });
    this.panel = h('aside', { class: 'details', id: 'actor-details', 'aria-label': 'Actor details', 'aria-live': 'polite' },
      h('p', { class: 'hint' }, 'Select an actor to see its details, its events and a Restart button.'));
    clear(root).append(h('div', { class: 'tree-wrap' }, this.status, tree), this.panel);
    this.view = new TreeView(tree, { onSelect: (path) => this.showDetails(path) });
    feed.on((item) => this.onFeed(item));
    feed.onStatus((status) => {
      if (status === 'unavailable') this.startPolling();
    });
    setInterval(() => {
      if (!root.hidden) this.view.tick();
    }, 1000);
  }

  async load() {
    try {
      const snapshot = await api('/api/actors');
      this.view.render(snapshot);
      this.status.textContent = '';
      this.root.dataset.loaded = 'true';
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      this.status.textContent = describe(e, 'The supervision tree');
    }
  }

  startPolling() {
    if (this.poller) return;
    this.status.textContent = 'Live updates are not available on this daemon (GET /api/events answered 404); the tree is refreshed every 3 s.';
    this.poller = setInterval(() => {
      if (!this.root.hidden) this.load();
    }, POLL_MS);
  }

  refetchSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), REFETCH_DEBOUNCE_MS);
  }

  onFeed(item) {
    if (item.gap || item.reconnected || item.loaded) {
      this.refetchSoon();
      return;
    }
    if (!item.path) return;
    const applied = this.view.apply(item);
    // A (re)start may bring new details and children (a new process): refetch, debounced; the
    // diff then writes only the rows that changed.
    if (!applied || ['added', 'removed', 'reloaded', 'started'].includes(item.kind)) this.refetchSoon();
    if (this.selected && item.path === this.selected) {
      if (this.timeline) {
        this.timeline.querySelector('.empty')?.remove();
        this.timeline.prepend(eventItem(item, false));
      }
      clearTimeout(this.detailsTimer);
      this.detailsTimer = setTimeout(() => this.showDetails(this.selected, true), 300);
    }
  }

  async showDetails(path, quiet = false) {
    this.selected = path;
    let node;
    try {
      node = await api(`/api/actors/${path.split('/').map(encodeURIComponent).join('/')}`);
    } catch (e) {
      if (!quiet) clear(this.panel).append(h('p', { class: 'error' }, describe(e, path)));
      return;
    }
    if (this.selected !== path) return;
    const restart = may('operator') && node.restart_type
      ? h('button', { type: 'button', id: 'restart-actor', onclick: () => this.restart(path) }, 'Restart')
      : null;
    const facts = {
      kind: node.kind,
      state: stateWords(node.state),
      restarts: node.restarts,
      'in state since': `${clock(node.state_since)} (${duration(since(node.state_since))})`,
    };
    if (node.started_at) facts.started = clock(node.started_at);
    if (node.uptime_secs !== undefined) facts.uptime = duration(node.uptime_secs);
    if (node.next_restart_in_ms !== undefined) facts['next restart in'] = `${node.next_restart_in_ms} ms`;
    if (node.restart_type) facts['restart type'] = node.restart_type;
    if (node.last_failure) facts['last failure'] = `${node.last_failure.reason} (${clock(node.last_failure.at)})`;
    if (node.children && node.children.length) facts.children = node.children.length;
    this.timeline = h('ol', { class: 'event-log timeline', 'aria-label': `Events of ${path}` },
      h('li', { class: 'empty' }, 'Loading events…'));
    clear(this.panel).append(
      h('h2', null, node.id),
      h('p', { class: 'path' }, node.path),
      h('div', { class: 'actions' }, restart),
      kvList(facts),
      detailsBlock(node.details || {}),
      h('h3', null, 'Events'),
      this.timeline,
    );
    this.loadTimeline(path);
  }

  async loadTimeline(path) {
    const list = this.timeline;
    try {
      const page = await api(`/api/events?path=${encodeURIComponent(path)}&limit=200`);
      const events = (page.events || []).slice().reverse();
      list.replaceChildren(...events.map((e) => eventItem(e, false)));
      if (!events.length) list.append(h('li', { class: 'empty' }, 'No events kept for this actor.'));
    } catch (e) {
      list.replaceChildren(h('li', { class: 'empty' }, describe(e, 'The event timeline')));
    }
  }

  async restart(path) {
    const button = this.panel.querySelector('#restart-actor');
    if (button) button.disabled = true;
    try {
      await api(`/api/actors/${path.split('/').map(encodeURIComponent).join('/')}/restart`, { method: 'POST' });
      toast(`Restart of ${path} requested.`);
    } catch (e) {
      toast(describe(e, `Restart of ${path}`));
    } finally {
      if (button) button.disabled = false;
    }
  }
}

/** The `details` of an actor: the well-known keys readably, the rest as a key/value list. */
function detailsBlock(details) {
  const out = h('div', { class: 'actor-details' });
  const known = new Set();
  const take = (key) => {
    known.add(key);
    return details[key];
  };
  const facts = {};
  for (const key of ['pid', 'protocol_version', 'transport', 'url', 'pending_calls', 'inflight_calls', 'label', 'cwd', 'client', 'created_at']) {
    if (details[key] !== undefined) facts[key] = take(key);
  }
  let command = take('command');
  let args = take('args');
  const target = details.target;
  if (command === undefined && target && typeof target === 'object' && (target.command || target.url)) {
    take('target');
    command = target.command || target.url;
    args = target.args;
  }
  if (command !== undefined) facts.command = [command, ...(Array.isArray(args) ? args : [])].join(' ');
  if (Object.keys(facts).length) out.append(kvList(facts));
  const tools = take('tools');
  if (Array.isArray(tools)) {
    out.append(h('h3', null, `Tools (${tools.length})`),
      h('ul', { class: 'tools' }, tools.map((t) => h('li', null, typeof t === 'string' ? t : t.name || JSON.stringify(t)))));
  }
  const filtered = take('filtered_tools');
  if (filtered && (Array.isArray(filtered) ? filtered.length : Object.keys(filtered).length)) {
    const items = Array.isArray(filtered)
      ? filtered.map((t) => (typeof t === 'string' ? [t, ''] : [t.name || t.tool || '?', t.reason || '']))
      : Object.entries(filtered).map(([name, reason]) => [name, typeof reason === 'string' ? reason : JSON.stringify(reason)]);
    out.append(h('h3', null, `Filtered tools (${items.length})`),
      h('ul', { class: 'tools filtered' }, items.map(([name, reason]) => h('li', null, h('code', null, name), reason ? ` — ${reason}` : ''))));
  }
  for (const key of ['stderr_tail', 'stderr']) {
    const tail = take(key);
    if (tail !== undefined && tail !== null && String(tail).trim() !== '' && !(Array.isArray(tail) && !tail.length)) {
      out.append(h('h3', null, 'stderr (last lines)'), h('pre', { class: 'stderr' }, Array.isArray(tail) ? tail.join('\n') : String(tail)));
    }
  }
  const rest = Object.fromEntries(Object.entries(details).filter(([k]) => !known.has(k)));
  if (Object.keys(rest).length) out.append(h('h3', null, 'More'), kvList(rest));
  return out;
}
