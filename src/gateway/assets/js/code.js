// The Code tab (owner), loaded only when the tab opens: a launcher picker
// (/api/terminal/launchers), a working directory, and Start, which attaches xterm.js to
// /ws/terminal; the side panel shows the injected MCP session's tool progress live.

import { Terminal } from '../vendor/xterm-6.0.0/xterm.mjs';
import { FitAddon } from '../vendor/xterm-6.0.0/addon-fit.mjs';
import { api, socket, describe, HttpError } from './api.js';
import { h, clear, toast } from './dom.js';
import { ProgressPanel } from './progress.js';

/** The largest input frame sent (the server takes up to 64 KiB). */
const CHUNK = 60 * 1024;

let cssLoaded = false;

/** xterm's stylesheet, and its runtime `<style>` elements mirrored into a constructed sheet. */
function installStyles(container) {
  if (!cssLoaded) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/assets/vendor/xterm-6.0.0/xterm.css' }));
    cssLoaded = true;
  }
  // The CSP (style-src 'self') refuses the <style> elements xterm.js writes at run time; their
  // text goes into one constructed stylesheet instead, which the CSP does not govern.
  const sheets = new Map();
  const sync = () => {
    for (const el of container.querySelectorAll('style')) {
      let sheet = sheets.get(el);
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheets.set(el, sheet);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
      }
      if (sheet.text !== el.textContent) {
        sheet.text = el.textContent;
        sheet.replaceSync(el.textContent);
      }
    }
  };
  const observer = new MutationObserver(sync);
  observer.observe(container, { subtree: true, childList: true, characterData: true });
  return () => {
    observer.disconnect();
    const drop = new Set(sheets.values());
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !drop.has(s));
  };
}

export class CodeTab {
  constructor(root) {
    this.root = root;
    this.launcher = h('select', { id: 'code-launcher' });
    this.cwd = h('input', { id: 'code-cwd', autocomplete: 'off', spellcheck: 'false', placeholder: '(the daemon\'s default)' });
    this.start = h('button', { type: 'submit', id: 'code-start' }, 'Start');
    this.stop = h('button', { type: 'button', id: 'code-stop', disabled: true, onclick: () => this.end() }, 'Stop');
    this.info = h('p', { class: 'note', id: 'code-info', role: 'status' });
    this.screen = h('div', { class: 'terminal', id: 'terminal', 'aria-label': 'Terminal' });
    this.progress = new ProgressPanel('Tool progress of this session');
    clear(root).append(
      h('form', { class: 'toolbar', id: 'code-form', onsubmit: (e) => { e.preventDefault(); this.begin(); } },
        h('label', { for: 'code-launcher' }, 'Launcher'), this.launcher,
        h('label', { for: 'code-cwd' }, 'Working directory'), this.cwd,
        this.start, this.stop),
      this.info,
      h('div', { class: 'code-split' }, this.screen, h('aside', { class: 'details', 'aria-label': 'Session progress' }, this.progress.el)));
    this.ws = null;
    this.term = null;
    window.addEventListener('resize', () => this.fitSoon());
  }

  async show() {
    if (this.loaded) return;
    try {
      const launchers = await api('/api/terminal/launchers');
      this.launcher.replaceChildren(...launchers.map((l) => h('option', { value: l.name, disabled: !l.available },
        `${l.name}${l.available ? '' : ' (not installed)'} — ${l.command}`)));
      const first = launchers.find((l) => l.available);
      if (first) this.launcher.value = first.name;
      this.loaded = true;
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      this.start.disabled = true;
      this.info.textContent = e instanceof HttpError && e.status === 404
        ? 'The browser terminal is not available on this daemon (GET /api/terminal/launchers answered 404).'
        : describe(e, 'The launchers');
    }
  }

  begin() {
    this.end();
    if (!this.term) {
      this.unstyle = installStyles(this.screen);
      this.term = new Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000, fontFamily: 'ui-monospace, monospace' });
      this.fit = new FitAddon();
      this.term.loadAddon(this.fit);
      this.term.open(this.screen);
      this.term.onData((data) => this.send(data));
      this.term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
      this.term.onResize(({ cols, rows }) => this.sendJson({ type: 'resize', cols, rows }));
    }
    this.fit.fit();
    this.term.reset();
    const q = new URLSearchParams({ launcher: this.launcher.value, cols: this.term.cols, rows: this.term.rows });
    if (this.cwd.value.trim()) q.set('cwd', this.cwd.value.trim());
    const ws = socket(`/ws/terminal?${q}`, 'revka.terminal.v1');
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    this.info.textContent = 'Starting…';
    this.start.disabled = true;
    this.stop.disabled = false;
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      if (typeof m.data !== 'string') {
        this.term.write(new Uint8Array(m.data));
        return;
      }
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      if (frame.type === 'ready') {
        this.ready = frame;
        const command = Array.isArray(frame.command) ? frame.command.join(' ') : frame.command;
        this.info.textContent = `Running ${command} in ${frame.cwd} (${frame.path})${frame.session_id ? `; MCP session ${frame.session_id}` : ''}.`;
        if (frame.session_id) this.progress.watch(frame.session_id);
        this.term.focus();
      } else if (frame.type === 'exit') {
        const how = frame.code !== undefined && frame.code !== null ? `exit status ${frame.code}` : frame.signal ? `signal ${frame.signal}` : 'exited';
        this.info.textContent = `The process ended (${how}).`;
      } else if (frame.type === 'error') {
        this.info.textContent = `Error: ${frame.message}`;
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.start.disabled = false;
      this.stop.disabled = true;
      if (!opened) this.info.textContent = 'The terminal could not be opened: the daemon refused the connection (see its log), or it is unreachable.';
      else if (!/ended|Error/.test(this.info.textContent)) this.info.textContent = `The terminal closed (${e.code}${e.reason ? `: ${e.reason}` : ''}).`;
    };
    ws.onerror = () => {
      if (this.ws === ws) this.info.textContent = 'The terminal could not be opened (refused or unreachable).';
    };
  }

  /** Input to the terminal, in frames of at most 60 KiB (a large paste is split). */
  send(data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    for (let i = 0; i < bytes.length; i += CHUNK) this.ws.send(bytes.subarray(i, i + CHUNK));
    if (this.ws.bufferedAmount > 16 * 1024 * 1024) toast('The terminal is not keeping up with the input.');
  }

  sendJson(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  fitSoon() {
    if (!this.term || this.root.hidden) return;
    clearTimeout(this.fitTimer);
    this.fitTimer = setTimeout(() => this.fit.fit(), 100);
  }

  end() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'closed by the user');
    }
    this.progress.close();
    this.start.disabled = false;
    this.stop.disabled = true;
  }
}
