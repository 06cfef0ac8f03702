// The Sidecars view: the circuit breaker (with Reset, operator), the retry queue (depth, in
// flight, dead letters with their last error) and the session manager with what the tree
// shows of its agents and chat rooms (/api/sidecars and /api/actors).

import { api, may, describe, HttpError } from './api.js';
import { h, clear, kvList, toast, stateWords } from './dom.js';

export class SidecarsTab {
  constructor(root) {
    this.root = root;
    this.content = h('div', { class: 'sidecars' });
    clear(root).append(h('h2', null, 'Sidecars'), this.content);
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
    const cards = [];
    const breaker = data.breaker || {};
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-breaker' },
      h('h3', { id: 'sc-breaker' }, 'Circuit breaker'),
      breakerSummary(breaker),
      may('operator') ? h('button', { type: 'button', id: 'breaker-reset', onclick: () => this.reset() }, 'Reset') : null,
      h('details', null, h('summary', null, 'All fields'), kvList(typeof breaker === 'object' ? breaker : { status: breaker }))));
    const queue = data.queue || {};
    const dead = queue.dead_letters || queue.dead || [];
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'sc-queue' },
      h('h3', { id: 'sc-queue' }, 'Retry queue'),
      kvList({ depth: queue.depth ?? queue.pending ?? queue.queued, 'in flight': queue.in_flight ?? queue.inflight, 'dead letters': Array.isArray(dead) ? dead.length : dead }),
      Array.isArray(dead) && dead.length
        ? h('ul', { class: 'dead' }, dead.map((d) => h('li', null, h('code', null, d.id || d.tool || '?'), ` — ${d.last_error || d.error || ''}`)))
        : null,
      h('details', null, h('summary', null, 'All fields'), kvList(queue, ['dead_letters']))));
    const sm = data.session_manager || {};
    const smCard = h('section', { class: 'card', 'aria-labelledby': 'sc-sm' },
      h('h3', { id: 'sc-sm' }, 'Session manager'),
      kvList({ enabled: sm.enabled ? 'yes' : 'no', state: sm.state ? stateWords(sm.state) : undefined, path: sm.path }));
    cards.push(smCard);
    clear(this.content).append(...cards);
    if (sm.enabled && sm.path) this.agents(smCard, sm.path);
  }

  async agents(card, path) {
    try {
      const node = await api(`/api/actors/${path}`);
      const kids = node.children || [];
      card.append(h('h4', null, 'Agents and chat rooms'), kids.length
        ? h('ul', null, kids.map((k) => h('li', null, `${k.id} (${k.kind}) — `, h('span', { class: `state state-${k.state}` }, stateWords(k.state)))))
        : h('p', { class: 'note' }, 'None running.'));
      if (node.details) card.append(kvList(node.details));
    } catch (e) {
      card.append(h('p', { class: 'note' }, describe(e, path)));
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
}

function breakerSummary(b) {
  if (!b || typeof b !== 'object') return h('p', null, String(b ?? 'unknown'));
  const state = b.state || b.status || (b.open === true ? 'open' : b.open === false ? 'closed' : undefined);
  return h('p', null, 'State: ', h('strong', { class: `breaker breaker-${state}` }, state ?? 'unknown'));
}
