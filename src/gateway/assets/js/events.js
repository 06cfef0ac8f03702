// The supervision event feed (`GET /api/events`, then `?follow=true` as SSE read with fetch),
// shared by the views, and the Events view: the global log, newest first, filterable by path.

import { api, readSse, HttpError, session } from './api.js';
import { h, clear, clock, stateWords } from './dom.js';

const KEEP = 1000;
const PAGE = 500;

/** One line describing an event. */
export function describeEvent(e) {
  const parts = [];
  switch (e.kind) {
    case 'exited': parts.push(e.abnormal ? 'exited abnormally' : 'exited'); break;
    case 'restart_scheduled': parts.push(`restart in ${e.delay_ms ?? '?'} ms`); break;
    case 'restart_requested': parts.push('restart requested'); break;
    case 'gave_up': parts.push('gave up (restart limit reached)'); break;
    default: parts.push(stateWords(e.kind));
  }
  if (e.attempt) parts.push(`attempt ${e.attempt}`);
  if (e.after_ms !== undefined && e.after_ms !== null) parts.push(`after ${e.after_ms} ms`);
  if (e.reason) parts.push(`— ${e.reason}`);
  if (e.detail) parts.push(`(${typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail)})`);
  return parts.join(' ');
}

export class EventFeed {
  constructor() {
    this.last = 0;
    this.log = []; // oldest first, at most KEEP
    this.handlers = new Set();
    this.statusHandlers = new Set();
    this.status = 'connecting';
    this.available = true;
    this.controller = null;
    this.stopped = false;
  }

  /** `fn(event)` for each event, `fn({gap})` for a gap notice, `fn({reconnected: true})`. */
  on(fn) { this.handlers.add(fn); }
  onStatus(fn) { this.statusHandlers.add(fn); fn(this.status); }

  setStatus(status) {
    this.status = status;
    for (const fn of this.statusHandlers) fn(status);
  }

  emit(item) {
    for (const fn of this.handlers) {
      try { fn(item); } catch (e) { console.error(e); }
    }
  }

  record(event) {
    if (typeof event.seq === 'number') {
      if (event.seq <= this.last) return false;
      this.last = event.seq;
    }
    this.log.push(event);
    if (this.log.length > KEEP) this.log.splice(0, this.log.length - KEEP);
    return true;
  }

  async start() {
    this.stopped = false;
    // What the ring holds now (oldest first, page by page), then the live stream from there.
    try {
      for (let pages = 0; pages < 40; pages += 1) {
        const page = await api(`/api/events?since=${this.last}&limit=${PAGE}`);
        for (const e of page.events || []) this.record(e);
        if (typeof page.next === 'number' && page.next > this.last) this.last = page.next;
        if ((page.events || []).length < PAGE) break;
      }
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) {
        this.available = false;
        this.setStatus('unavailable');
        return;
      }
    }
    this.emit({ loaded: true });
    this.follow();
  }

  async follow() {
    let backoff = 500;
    while (!this.stopped && session.token) {
      this.controller = new AbortController();
      try {
        this.setStatus(this.status === 'live' ? 'live' : 'connecting');
        await readSse(`/api/events?follow=true&since=${this.last}`, (msg) => {
          if (msg.event === 'gap') {
            let gap = {};
            try { gap = JSON.parse(msg.data); } catch { /* keep {} */ }
            this.emit({ gap });
            return;
          }
          if (msg.event !== 'supervision' && msg.event !== 'message') return;
          let event;
          try { event = JSON.parse(msg.data); } catch { return; }
          if (this.record(event)) this.emit(event);
        }, this.controller.signal, () => {
          backoff = 500;
          this.setStatus('live');
        });
      } catch (e) {
        if (this.stopped || (e && e.name === 'AbortError')) return;
        if (e instanceof HttpError && e.status === 404) {
          this.available = false;
          this.setStatus('unavailable');
          return;
        }
        if (e instanceof HttpError && e.status === 401) return;
      }
      if (this.stopped) return;
      this.setStatus('reconnecting');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
      this.emit({ reconnected: true });
    }
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }
}

/** The Events view. */
export class EventsView {
  constructor(root, feed) {
    this.root = root;
    this.feed = feed;
    this.filter = '';
    this.items = h('ol', { class: 'event-log', 'aria-label': 'Supervision events, newest first' });
    this.note = h('p', { class: 'note' });
    const input = h('input', {
      id: 'events-filter', type: 'search', placeholder: 'root/mcp_servers/mcp:name', autocomplete: 'off',
      oninput: (e) => { this.filter = e.target.value.trim(); this.renderAll(); },
    });
    clear(root).append(
      h('div', { class: 'toolbar' }, h('label', { for: 'events-filter' }, 'Filter by path'), input),
      this.note,
      this.items,
    );
    feed.on((item) => {
      if (item.loaded) this.renderAll();
      else if (item.gap) this.items.prepend(h('li', { class: 'gap' }, `… ${gapText(item.gap)}`));
      else if (item.path && this.matches(item)) {
        this.items.prepend(eventItem(item, true));
        while (this.items.childElementCount > KEEP) this.items.lastElementChild.remove();
      }
    });
    feed.onStatus((status) => {
      this.note.textContent = status === 'unavailable'
        ? 'The supervision event log is not available on this daemon (GET /api/events answered 404).'
        : '';
    });
  }

  matches(e) {
    return !this.filter || e.path.includes(this.filter);
  }

  renderAll() {
    const list = this.feed.log.filter((e) => this.matches(e)).reverse();
    this.items.replaceChildren(...list.map((e) => eventItem(e, true)));
    if (!list.length) this.items.append(h('li', { class: 'empty' }, 'No events.'));
  }
}

export function gapText(gap) {
  if (gap.missed_from !== undefined) return `events from #${gap.missed_from}${gap.missed_to ? ` to #${gap.missed_to}` : ''} were dropped from the ring`;
  return 'some events were dropped from the ring';
}

/** One event as a list item; `withPath` names its actor. */
export function eventItem(e, withPath) {
  return h('li', { class: `event ev-${e.kind}`, dataset: { seq: e.seq, path: e.path } },
    h('time', { datetime: e.at }, clock(e.at)),
    withPath ? h('span', { class: 'path' }, e.path) : null,
    h('span', { class: `state state-${e.state}` }, stateWords(e.state)),
    h('span', { class: 'what' }, describeEvent(e)),
    e.restarts !== undefined ? h('span', { class: 'restarts-note' }, `restarts ${e.restarts}`) : null,
  );
}
