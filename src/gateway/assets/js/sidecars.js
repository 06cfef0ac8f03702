// The Sidecars view: the session manager's circuit breaker (with Reset, operator), its retry
// queue (depth, in flight, dead letters with their last error), and when it runs its agents
// (Watch: the agent's event stream, live) and chat rooms (Watch: their messages, live)
// (/api/sidecars and its sub-routes).

import { api, may, describe, readSse, HttpError } from './api.js';
import { h, clear, kvList, toast, stateWords, clock } from './dom.js';

const KEEP = 300;

export class SidecarsTab {
  constructor(root) {
    this.root = root;
    this.content = h('div', { class: 'sidecars' });
    this.watchPanel = h('section', { class: 'card watch', 'aria-label': 'Agent events', hidden: true });
    this.controller = null;
    clear(root).append(h('h2', null, 'Sidecars'), this.content, this.watchPanel);
  }

  async show() {
    let data;
    try {
      data = await api('/api/sidecars');
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      clear(this.content).append(h('p', { class: 'note' }, e instanceof HttpError && e.status === 404 && /^no route/.test(e.message)
        ? 'Sidecar status is not available on this daemon (GET /api/sidecars answered 404).'
        : describe(e, 'Sidecar status')));
      return;
    }
    const sm = data.session_manager || {};
    const proc = sm.process || {};
    const cards = [];
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-sm' },
      h('h3', { id: 'sc-sm' }, 'Session manager'),
      kvList({
        enabled: sm.enabled ? 'yes' : 'no (enable it in [sidecars])',
        state: proc.state ? stateWords(proc.state) : undefined,
        restarts: proc.restarts,
        'last failure': proc.last_failure ? `${proc.last_failure.reason} (${clock(proc.last_failure.at)})` : undefined,
      })));
    const breaker = data.breaker || {};
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-breaker' },
      h('h3', { id: 'sc-breaker' }, 'Circuit breaker'),
      h('p', null, 'State: ', h('strong', { id: 'breaker-state', class: `breaker breaker-${breaker.state}` }, stateWords(breaker.state || 'unknown'))),
      kvList({
        'consecutive failures': breaker.consecutive_failures,
        'times opened': breaker.total_opens,
        'next probe in': breaker.next_probe_in_ms !== null && breaker.next_probe_in_ms !== undefined ? `${breaker.next_probe_in_ms} ms` : undefined,
      }),
      may('operator') ? h('button', { type: 'button', id: 'breaker-reset', onclick: () => this.reset() }, 'Reset') : null,
      h('details', null, h('summary', null, 'All fields'), kvList(breaker))));
    const queue = data.queue || {};
    const q = queue.last_known || queue;
    const dead = q.dead_letter_list || [];
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-queue' },
      h('h3', { id: 'sc-queue' }, 'Retry queue'),
      queue.unavailable ? h('p', { class: 'note' }, `${queue.unavailable}${queue.last_known ? ' (last known figures below)' : ''}`) : null,
      kvList({ depth: q.pending, 'in flight': q.in_flight, 'dead letters': q.dead_letters, succeeded: q.succeeded, failed: q.failed }),
      dead.length
        ? h('ul', { class: 'dead' }, dead.map((d) => h('li', null, h('code', null, d.id || d.operation || d.tool || '?'), ` — ${d.last_error || d.error || ''}`)))
        : null,
      h('details', null, h('summary', null, 'All fields'), kvList(q, ['dead_letter_list', 'operations']))));
    if (sm.enabled) {
      cards.push(listCard('Agents', 'sc-agents', data.agents, (a) => {
        const id = a.id || a.agent_id || a.name;
        return h('li', null, h('code', null, id), ` ${a.status || a.state || ''} `,
          id ? h('button', { type: 'button', onclick: () => this.watch(id) }, 'Watch') : null);
      }));
      cards.push(listCard('Chat rooms', 'sc-rooms', data.rooms, (r) => h('li', null, h('code', null, r.id || r.name || '?'), ` ${r.name && r.id ? r.name : ''} `,
        r.id ? h('button', { type: 'button', onclick: () => this.watch(r.id, 'room') }, 'Watch') : null)));
    }
    clear(this.content).append(...cards);
  }

  /** An agent's events or a chat room's messages, live (SSE relayed from the session manager). */
  async watch(id, what = 'agent') {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const title = what === 'room' ? `Room ${id}` : `Agent ${id}`;
    const list = h('ol', { class: 'event-log', 'aria-label': what === 'room' ? `Messages of room ${id}` : `Events of agent ${id}` });
    const note = h('p', { class: 'note', role: 'status' }, 'Connecting…');
    this.watchPanel.hidden = false;
    this.watchPanel.setAttribute('aria-label', what === 'room' ? 'Room messages' : 'Agent events');
    clear(this.watchPanel).append(h('h3', null, title), note, list);
    const path = what === 'room' ? 'rooms' : 'agents';
    try {
      await readSse(`/api/sidecars/${path}/${encodeURIComponent(id)}/stream`, (m) => {
        let text = m.data;
        try { text = JSON.stringify(JSON.parse(m.data)); } catch { /* as sent */ }
        list.prepend(h('li', null, h('span', { class: 'what' }, m.event), h('code', null, text)));
        while (list.childElementCount > KEEP) list.lastElementChild.remove();
      }, controller.signal, () => { note.textContent = 'Live.'; });
      note.textContent = 'The stream ended.';
    } catch (e) {
      if (e.name !== 'AbortError') note.textContent = describe(e, what === 'room' ? 'The room stream' : 'The agent stream');
    }
  }

  async reset() {
    try {
      await api('/api/sidecars/breaker/reset', { method: 'POST' });
      toast('Circuit breaker reset.');
    } catch (e) {
      toast(describe(e, 'Breaker reset'));
    }
    this.show();
  }

  end() {
    if (this.controller) this.controller.abort();
  }
}

function listCard(title, id, items, item) {
  const card = h('section', { class: 'card', 'aria-labelledby': id }, h('h3', { id }, title));
  if (items && !Array.isArray(items) && items.error) card.append(h('p', { class: 'note' }, items.error));
  else if (!items || !items.length) card.append(h('p', { class: 'note' }, 'None.'));
  else card.append(h('ul', null, items.map(item)));
  return card;
}
