// The Sessions view (owner): the live MCP sessions of the tree (root/sessions: label, cwd,
// client, age, in-flight calls); select one to watch its tool progress live.

import { api, describe, HttpError } from './api.js';
import { h, clear, duration, since, setText } from './dom.js';
import { ProgressPanel } from './progress.js';

export class SessionsTab {
  constructor(root) {
    this.root = root;
    this.note = h('p', { class: 'note', role: 'status' });
    this.body = h('tbody');
    this.rows = new Map();
    this.progress = new ProgressPanel('Tool progress');
    clear(root).append(
      h('div', { class: 'sessions' },
        h('h2', null, 'Sessions'),
        this.note,
        h('table', { class: 'grid', id: 'sessions-table' },
          h('caption', { class: 'visually-hidden' }, 'Live MCP sessions'),
          h('thead', null, h('tr', null, ['Session', 'Label', 'Working directory', 'Client', 'Age', 'In flight', ''].map((c) => h('th', { scope: 'col' }, c)))),
          this.body)),
      h('aside', { class: 'details', 'aria-label': 'Session progress' }, this.progress.el));
    this.timer = null;
  }

  async show() {
    await this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.root.hidden) {
        clearInterval(this.timer);
        this.timer = null;
      } else {
        this.load();
      }
    }, 3000);
  }

  async load() {
    let node;
    try {
      node = await api('/api/actors/root/sessions');
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      this.note.textContent = describe(e, 'The sessions');
      return;
    }
    const sessions = node.children || [];
    this.note.textContent = sessions.length ? `${sessions.length} live session${sessions.length === 1 ? '' : 's'}.` : 'No live sessions.';
    const seen = new Set();
    for (const s of sessions) {
      seen.add(s.id);
      const d = s.details || {};
      let row = this.rows.get(s.id);
      if (!row) {
        const watch = h('button', { type: 'button', onclick: () => this.watch(s.id) }, 'Watch');
        watch.setAttribute('aria-label', `Watch the progress of session ${s.id}`);
        row = { el: h('tr', { dataset: { session: s.id } }), cells: [h('th', { scope: 'row' }, h('code', null, s.id)), h('td'), h('td'), h('td'), h('td'), h('td'), h('td', null, watch)] };
        row.el.append(...row.cells);
        this.rows.set(s.id, row);
        this.body.append(row.el);
      }
      setText(row.cells[1], d.label || '');
      setText(row.cells[2], d.cwd || '');
      setText(row.cells[3], typeof d.client === 'object' && d.client ? [d.client.name, d.client.version].filter(Boolean).join(' ') : d.client || '');
      setText(row.cells[4], duration(since(d.created_at || s.started_at || s.state_since)));
      setText(row.cells[5], d.inflight_calls ?? d.pending_calls ?? '');
      row.el.classList.toggle('selected', this.progress.session === s.id);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
  }

  watch(id) {
    this.progress.watch(id);
    for (const [sid, row] of this.rows) row.el.classList.toggle('selected', sid === id);
  }
}
