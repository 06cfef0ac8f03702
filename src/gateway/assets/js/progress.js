// A session's tool progress, live: /ws/mcp/events?session_id=<id> (the gateway relays the MCP
// server's per-session progress stream), rendered as a list, newest first, bounded.

import { socket } from './api.js';
import { h, clock } from './dom.js';

const KEEP = 300;

export class ProgressPanel {
  constructor(title) {
    this.list = h('ol', { class: 'progress-log', 'aria-label': title });
    this.state = h('p', { class: 'note', role: 'status' });
    this.el = h('div', { class: 'progress' }, h('h3', null, title), this.state, this.list);
    this.ws = null;
    this.session = null;
  }

  /** Watches `sessionId` (closes any previous stream). */
  watch(sessionId) {
    this.close();
    this.session = sessionId;
    this.list.replaceChildren();
    this.state.textContent = `Connecting to the progress of session ${sessionId}…`;
    const ws = socket(`/ws/mcp/events?session_id=${encodeURIComponent(sessionId)}`, 'revka');
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws === ws) this.state.textContent = `Watching session ${sessionId}: tool progress appears here as it happens.`;
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws || typeof m.data !== 'string') return;
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      this.add(frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.state.textContent = `The progress stream closed (${e.code}${e.reason ? `: ${e.reason}` : ''}).`;
    };
    ws.onerror = () => {
      if (this.ws === ws) this.state.textContent = 'The progress stream could not be opened (refused or unreachable).';
    };
  }

  add(frame) {
    let item;
    if (frame.error) {
      item = h('li', { class: 'error' }, `${frame.error}${frame.detail ? `: ${frame.detail}` : ''}`);
    } else if (frame.event === 'lagged') {
      item = h('li', { class: 'gap' }, `… ${frame.dropped} events dropped (too slow)`);
    } else if (frame.event === 'reset') {
      item = h('li', { class: 'gap' }, `… progress stream restarted (${frame.missed} missed)`);
    } else if (frame.method) {
      item = h('li', { class: 'gap' }, `${frame.method.replace(/^notifications\//, '').replace(/_/g, ' ').replace('/', ' ')}`);
    } else {
      const pct = frame.total ? ` ${frame.progress}/${frame.total}` : frame.progress !== undefined ? ` ${frame.progress}` : '';
      item = h('li', { class: 'progress-event' },
        frame.timestamp ? h('time', { datetime: frame.timestamp }, clock(frame.timestamp)) : null,
        frame.tool ? h('code', { class: 'tool' }, frame.tool) : null,
        h('span', null, `${pct}${frame.message ? ` ${frame.message}` : ''}`.trim() || JSON.stringify(frame)));
    }
    this.list.prepend(item);
    while (this.list.childElementCount > KEEP) this.list.lastElementChild.remove();
  }

  close() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
  }
}
