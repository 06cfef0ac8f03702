// The Servers view: per-server calls/s, error rate and p50/p99 with a sparkline
// (/api/servers/stats), and the MCP editor: a form for one [[mcp.servers]] entry with Test
// (POST /api/mcp/servers/test), Save (PUT /api/config/servers/{name} with If-Match) and
// Delete. Test needs the operator role (the owner for a stdio command); Save and Delete the
// owner.

import { api, may, describe, HttpError } from './api.js';
import { h, svg, clear, setText, toast } from './dom.js';

const TRANSPORTS = ['stdio', 'http', 'sse'];

export class ServersTab {
  constructor(root) {
    this.root = root;
    this.stats = h('div', { class: 'stats', id: 'server-stats' });
    this.statsNote = h('p', { class: 'note', role: 'status' });
    this.config = null;
    this.statsTimer = null;
    clear(root).append(
      h('h2', null, 'Servers'),
      this.statsNote,
      this.stats,
    );
    if (may('operator')) {
      this.editorRoot = h('section', { class: 'editor-wrap', 'aria-labelledby': 'editor-title' });
      root.append(this.editorRoot);
      this.buildEditor();
    }
  }

  async show() {
    await this.loadStats();
    clearTimeout(this.statsTimer);
    const again = () => {
      this.statsTimer = setTimeout(async () => {
        if (!this.root.hidden) await this.loadStats();
        again();
      }, (this.interval || 5) * 1000);
    };
    again();
    if (may('owner') && !this.config) this.loadConfig();
  }

  async loadStats() {
    let data;
    try {
      data = await api('/api/servers/stats');
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      this.statsNote.textContent = e instanceof HttpError && e.status === 404
        ? 'Per-server statistics are not available on this daemon (GET /api/servers/stats answered 404).'
        : describe(e, 'Server statistics');
      return;
    }
    this.interval = data.interval_secs || 5;
    this.statsNote.textContent = `Over the last ${Math.round((data.window_secs || 0) / 60) || '?'} min, sampled every ${this.interval} s.`;
    const names = Object.keys(data.servers || {}).sort();
    const table = this.table || (this.table = this.makeTable());
    const seen = new Set();
    for (const name of names) {
      seen.add(name);
      const s = data.servers[name];
      let row = this.rowsByName?.get(name);
      if (!row) {
        row = {
          el: h('tr', { dataset: { server: name } }),
          cells: Array.from({ length: 7 }, () => h('td')),
        };
        row.cells[0] = h('th', { scope: 'row' }, name);
        row.el.append(...row.cells);
        this.rowsByName.set(name, row);
        table.tBodies[0].append(row.el);
      }
      const last = s.last_minute || (s.points && s.points[s.points.length - 1]) || {};
      setText(row.cells[1], fmt(last.calls_per_sec, 2));
      setText(row.cells[2], last.error_rate === undefined ? '' : `${fmt(last.error_rate * 100, 1)} %`);
      setText(row.cells[3], last.p50_ms === undefined || last.p50_ms === null ? '' : `${fmt(last.p50_ms, 0)} ms`);
      setText(row.cells[4], last.p99_ms === undefined || last.p99_ms === null ? '' : `${fmt(last.p99_ms, 0)} ms`);
      setText(row.cells[5], s.total_calls ?? '');
      row.cells[6].replaceChildren(sparkline((s.points || []).map((p) => p.calls_per_sec || 0), `calls per second of ${name}`));
    }
    for (const [name, row] of this.rowsByName) {
      if (!seen.has(name)) {
        row.el.remove();
        this.rowsByName.delete(name);
      }
    }
    if (!table.isConnected) this.stats.append(table);
  }

  makeTable() {
    this.rowsByName = new Map();
    return h('table', { class: 'grid' },
      h('caption', { class: 'visually-hidden' }, 'Per-server traffic'),
      h('thead', null, h('tr', null, ['Server', 'Calls/s', 'Errors', 'p50', 'p99', 'Total calls', 'Calls/s, recent'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody'));
  }

  // ---- the editor ----

  buildEditor() {
    const f = (id, label, control, help) => h('div', { class: 'field' }, h('label', { for: id }, label), control, help ? h('small', { id: `${id}-help` }, help) : null);
    this.fields = {
      name: h('input', { id: 'ed-name', required: true, autocomplete: 'off', spellcheck: 'false' }),
      transport: h('select', { id: 'ed-transport', onchange: () => this.syncTransport() }, TRANSPORTS.map((t) => h('option', { value: t }, t))),
      command: h('input', { id: 'ed-command', autocomplete: 'off', spellcheck: 'false' }),
      args: h('textarea', { id: 'ed-args', rows: '3', spellcheck: 'false', 'aria-describedby': 'ed-args-help' }),
      env: h('textarea', { id: 'ed-env', rows: '2', spellcheck: 'false', 'aria-describedby': 'ed-env-help' }),
      url: h('input', { id: 'ed-url', type: 'url', autocomplete: 'off', spellcheck: 'false' }),
      headers: h('textarea', { id: 'ed-headers', rows: '2', spellcheck: 'false', 'aria-describedby': 'ed-headers-help' }),
      timeout: h('input', { id: 'ed-timeout', type: 'number', min: '1', max: '600', inputmode: 'numeric' }),
    };
    this.result = h('div', { id: 'editor-result', class: 'result', role: 'status', 'aria-live': 'polite' });
    this.picker = h('select', { id: 'ed-pick', onchange: (e) => this.pick(e.target.value) });
    const owner = may('owner');
    this.stdioFields = [f('ed-command', 'Command', this.fields.command), f('ed-args', 'Arguments', this.fields.args, 'One per line.'), f('ed-env', 'Environment', this.fields.env, 'KEY=value, one per line.')];
    this.remoteFields = [f('ed-url', 'URL', this.fields.url), f('ed-headers', 'Headers', this.fields.headers, 'Name: value, one per line.')];
    const form = h('form', { id: 'editor', class: 'editor', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.test(); } },
      owner ? h('div', { class: 'field' }, h('label', { for: 'ed-pick' }, 'Entry of config.toml'), this.picker) : null,
      f('ed-name', 'Name', this.fields.name),
      f('ed-transport', 'Transport', this.fields.transport),
      ...this.stdioFields,
      ...this.remoteFields,
      f('ed-timeout', 'Tool timeout (s)', this.fields.timeout),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', id: 'ed-test' }, 'Test'),
        owner ? h('button', { type: 'button', id: 'ed-save', onclick: () => this.save() }, 'Save') : null,
        owner ? h('button', { type: 'button', id: 'ed-delete', class: 'danger', onclick: () => this.remove() }, 'Delete') : null,
        owner ? h('button', { type: 'button', id: 'ed-reload', onclick: () => this.loadConfig(this.fields.name.value) }, 'Reload from file') : null),
      this.result);
    clear(this.editorRoot).append(
      h('h2', { id: 'editor-title' }, 'MCP server editor'),
      h('p', { class: 'hint' }, owner
        ? 'Test a server entry, then save it into config.toml (comments kept); the daemon reloads it.'
        : 'Test a server entry (http and sse as operator; a stdio command needs the owner).'),
      form);
    this.syncTransport();
  }

  syncTransport() {
    const stdio = this.fields.transport.value === 'stdio';
    for (const el of this.stdioFields) el.hidden = !stdio;
    for (const el of this.remoteFields) el.hidden = stdio;
  }

  async loadConfig(keep) {
    try {
      this.config = await api('/api/config/servers');
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      this.picker.replaceChildren(h('option', { value: '' }, 'unavailable'));
      this.picker.disabled = true;
      this.say('error', e instanceof HttpError && e.status === 404 && /^no route/.test(e.message)
        ? 'Editing config.toml is not available on this daemon (GET /api/config/servers answered 404); Test still works.'
        : describe(e, 'Reading config.toml'));
      return;
    }
    this.picker.disabled = false;
    const names = (this.config.servers || []).map((s) => s.name);
    this.picker.replaceChildren(h('option', { value: '' }, '(new server)'), ...names.map((n) => h('option', { value: n }, n)));
    const pick = keep && names.includes(keep) ? keep : '';
    this.picker.value = pick;
    this.pick(pick);
    if (keep !== undefined) this.say('ok', `Reloaded ${this.config.path || 'config.toml'} (version ${this.config.version}).`);
  }

  pick(name) {
    const entry = (this.config?.servers || []).find((s) => s.name === name) || { name: '', transport: 'stdio' };
    const F = this.fields;
    F.name.value = entry.name || '';
    F.transport.value = TRANSPORTS.includes(entry.transport) ? entry.transport : (entry.url ? 'http' : 'stdio');
    F.command.value = entry.command || '';
    F.args.value = (entry.args || []).join('\n');
    F.env.value = Object.entries(entry.env || {}).map(([k, v]) => `${k}=${v}`).join('\n');
    F.url.value = entry.url || '';
    F.headers.value = Object.entries(entry.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
    F.timeout.value = entry.tool_timeout_secs ?? '';
    this.syncTransport();
  }

  /** The entry the form describes (what Test and Save send). */
  entry() {
    const F = this.fields;
    const lines = (t) => t.value.split('\n').map((l) => l.trim()).filter(Boolean);
    const pairs = (t, sep) => Object.fromEntries(lines(t).map((l) => {
      const i = l.indexOf(sep);
      return i < 0 ? [l, ''] : [l.slice(0, i).trim(), l.slice(i + 1).trim()];
    }));
    const e = { name: F.name.value.trim(), transport: F.transport.value };
    // An empty list or table: removed (null) if the entry had it, else left out.
    const had = (this.config?.servers || []).find((s) => s.name === e.name) || {};
    const put = (key, value, empty) => {
      if (!empty) e[key] = value;
      else if (had[key] !== undefined) e[key] = null;
    };
    if (e.transport === 'stdio') {
      e.command = F.command.value.trim();
      const args = lines(F.args);
      put('args', args, !args.length);
      const env = pairs(F.env, '=');
      put('env', env, !Object.keys(env).length);
    } else {
      e.url = F.url.value.trim();
      const headers = pairs(F.headers, ':');
      put('headers', headers, !Object.keys(headers).length);
    }
    const t = parseInt(F.timeout.value, 10);
    if (Number.isFinite(t)) e.tool_timeout_secs = t;
    else if (had.tool_timeout_secs !== undefined) e.tool_timeout_secs = null;
    return e;
  }

  say(kind, ...content) {
    this.result.className = `result ${kind}`;
    this.result.replaceChildren(...content);
  }

  async test() {
    const e = this.entry();
    const body = { name: e.name, transport: e.transport, command: e.command ?? null, args: e.args || [], env: e.env || {}, url: e.url ?? null, headers: e.headers || {} };
    if (e.tool_timeout_secs) body.timeout_ms = e.tool_timeout_secs * 1000;
    this.say('busy', 'Testing…');
    const button = this.root.querySelector('#ed-test');
    button.disabled = true;
    try {
      const r = await api('/api/mcp/servers/test', { method: 'POST', body });
      if (r.ok) {
        this.say('ok', h('strong', null, 'OK'), ` — ${r.tool_count} tool${r.tool_count === 1 ? '' : 's'} in ${r.latency_ms} ms`,
          r.tools && r.tools.length ? h('ul', { class: 'tools' }, r.tools.slice(0, 50).map((t) => h('li', null, t))) : null);
      } else {
        this.say('error', h('strong', null, 'Failed'), ` after ${r.latency_ms} ms: ${r.error}`);
      }
    } catch (err) {
      this.say('error', h('strong', null, 'Failed'), `: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  conflict() {
    this.say('error', 'config.toml changed since this editor loaded it (another tab, the CLI, or an edit by hand). ',
      h('button', { type: 'button', id: 'ed-conflict-reload', onclick: () => this.loadConfig(this.fields.name.value.trim()) }, 'Reload the editor'),
      ' to see the file as it is now, then make your change again.');
  }

  async write(method, name, body) {
    if (!this.config) {
      this.say('error', 'The config file is not loaded; press Reload from file.');
      return null;
    }
    try {
      return await api(`/api/config/servers/${encodeURIComponent(name)}`, {
        method,
        body,
        headers: { 'If-Match': `"${this.config.version}"` },
      });
    } catch (e) {
      if (!(e instanceof HttpError)) {
        this.say('error', e.message);
      } else if (e.status === 409) {
        this.conflict();
      } else if (e.status === 422) {
        this.say('error', h('strong', null, 'Invalid: '), h('code', { class: 'reason' }, e.message), ' — config.toml was not changed.');
      } else if (e.status === 428) {
        this.say('error', 'The daemon wants the version of the file you edited; press Reload from file and try again.');
      } else {
        this.say('error', describe(e, `${method} ${name}`));
      }
      return null;
    }
  }

  async save() {
    const e = this.entry();
    if (!e.name) {
      this.say('error', 'A server needs a name.');
      this.fields.name.focus();
      return;
    }
    const r = await this.write('PUT', e.name, e);
    if (!r) return;
    this.config.version = r.version;
    this.say('ok', `Saved ${e.name}.`, r.reload ? ` Reload: ${typeof r.reload === 'string' ? r.reload : JSON.stringify(r.reload)}` : '');
    toast(`Saved ${e.name} into config.toml.`);
    await this.loadConfig(e.name);
  }

  async remove() {
    const name = this.fields.name.value.trim();
    if (!name) return;
    if (!confirm(`Remove the server ${name} from config.toml?`)) return;
    const r = await this.write('DELETE', name);
    if (!r) return;
    this.config.version = r.version;
    toast(`Removed ${name} from config.toml.`);
    await this.loadConfig('');
    this.say('ok', `Removed ${name}.`);
  }
}

function fmt(n, digits) {
  return n === undefined || n === null || Number.isNaN(n) ? '' : Number(n).toFixed(digits);
}

/** A small inline SVG line chart of `values`. */
export function sparkline(values, label) {
  const w = 120;
  const hgt = 24;
  const el = svg('svg', { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: 'img', 'aria-label': label, class: 'spark' });
  if (values.length < 2) return el;
  const max = Math.max(...values, 1e-9);
  const step = w / (values.length - 1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
  el.append(svg('polyline', { points: pts.join(' '), fill: 'none', 'stroke-width': '1.5' }));
  return el;
}
