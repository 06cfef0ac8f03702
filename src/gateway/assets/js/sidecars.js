// The Sidecars view: the session manager's circuit breaker (with Reset, operator), its retry
// queue (depth, in flight, dead letters with their last error), the agents of both paths
// (/api/agents: the session manager's and the daemon's CLI fallback agents, with their usage;
// Watch: a session-manager agent's event stream, or a fallback agent's events from the agent
// feed), the chat rooms (Watch: their messages, live) and the whole agent feed
// (/ws/agents/events: every agent event, chat message, queued outcome and budget stop).

import { api, may, describe, readSse, socket, HttpError } from './api.js';
import { h, clear, kvList, toast, stateWords, clock } from './dom.js';

const KEEP = 300;

export class SidecarsTab {
  constructor(root) {
    this.root = root;
    this.content = h('div', { class: 'sidecars' });
    this.watchPanel = h('section', { class: 'card watch', 'aria-label': 'Agent events', hidden: true });
    this.controller = null;
    this.ws = null;
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
    // Both paths' agents; a daemon without /api/agents shows the session manager's.
    let agents = data.agents;
    let why = null;
    try {
      const all = await api('/api/agents');
      agents = all.agents;
      if (all.sidecar && all.sidecar !== 'ok') why = all.sidecar;
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
    }
    const agentCard = listCard('Agents', 'sc-agents', agents, (a) => {
      const id = a.id || a.agent_id || a.name;
      const fallback = a.path === 'fallback';
      const usage = a.usage || {};
      const spent = typeof usage.cost_usd === 'number' && usage.cost_usd > 0 ? ` $${usage.cost_usd.toFixed(4)}` : '';
      return h('li', null, h('code', null, id), ` ${a.name && a.name !== id ? a.name : ''} `,
        h('span', { class: 'what' }, [a.backend, fallback ? 'CLI fallback' : null].filter(Boolean).join(', ')),
        ` ${a.status || a.state || ''}${spent} `,
        id ? h('button', { type: 'button', onclick: () => (fallback ? this.follow(id) : this.watch(id)) }, 'Watch') : null);
    });
    if (why && sm.enabled) agentCard.append(h('p', { class: 'note' }, `Session manager: ${why}`));
    cards.push(agentCard);
    if (sm.enabled) {
      cards.push(listCard('Chat rooms', 'sc-rooms', data.rooms, (r) => h('li', null, h('code', null, r.id || r.name || '?'), ` ${r.name && r.id ? r.name : ''} `,
        r.id ? h('button', { type: 'button', onclick: () => this.watch(r.id, 'room') }, 'Watch') : null)));
    }
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-feed' },
      h('h3', { id: 'sc-feed' }, 'Agent feed'),
      h('p', null, 'Every agent event and chat message of both paths, queued operations\' outcomes and budget stops, live.'),
      h('button', { type: 'button', id: 'feed-follow', onclick: () => this.follow() }, 'Follow all')));
    clear(this.content).append(...cards);
  }

  /** The agent feed (/ws/agents/events), all of it or one agent's items. */
  follow(agentId) {
    this.stopWatching();
    const title = agentId ? `Agent ${agentId}` : 'Agent feed';
    const list = h('ol', { class: 'event-log', 'aria-label': agentId ? `Events of agent ${agentId}` : 'Agent feed' });
    const note = h('p', { class: 'note', role: 'status' }, 'Connecting…');
    this.watchPanel.hidden = false;
    this.watchPanel.setAttribute('aria-label', title);
    clear(this.watchPanel).append(h('h3', null, title), note, list);
    const ws = socket('/ws/agents/events', 'revka');
    this.ws = ws;
    ws.onopen = () => { note.textContent = 'Live.'; };
    ws.onclose = (e) => { if (this.ws === ws) note.textContent = `The feed closed (${e.code}${e.reason ? `: ${e.reason}` : ''}).`; };
    ws.onmessage = (m) => {
      let item;
      try { item = JSON.parse(m.data); } catch { return; }
      if (agentId && !(item.agent && item.agent.id === agentId)) return;
      const ev = item.event || {};
      const what = item.kind === 'agent_event' ? `${item.agent.name || item.agent.id} ${ev.type}` : item.kind;
      const text = item.kind === 'agent_event'
        ? (ev.text !== undefined ? ev.text : JSON.stringify(ev.data || {}))
        : item.kind === 'chat_message' ? `${item.room.name || item.room.id}: ${(item.message || {}).text || ''}`
          : JSON.stringify(item);
      list.prepend(h('li', null, h('span', { class: 'what' }, `${item.source} · ${what}`), h('code', null, text)));
      while (list.childElementCount > KEEP) list.lastElementChild.remove();
    };
  }

  stopWatching() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
  }

  /** An agent's events or a chat room's messages, live (SSE relayed from the session manager). */
  async watch(id, what = 'agent') {
    this.stopWatching();
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
    this.stopWatching();
  }
}

function listCard(title, id, items, item) {
  const card = h('section', { class: 'card', 'aria-labelledby': id }, h('h3', { id }, title));
  if (items && !Array.isArray(items) && items.error) card.append(h('p', { class: 'note' }, items.error));
  else if (!items || !items.length) card.append(h('p', { class: 'note' }, 'None.'));
  else card.append(h('ul', null, items.map(item)));
  return card;
}
