// The supervision tree as an indented list of rows, one per actor, keyed by path. A new
// snapshot is applied by diffing row by row (only changed cells are written, rows are moved
// only when out of place), and a supervision event updates its one row: no full re-render.
// Pure DOM: no fetch here, so a test can drive it with any snapshot.

import { h, setText, duration, since, stateWords } from './dom.js';

const COLUMNS = ['Actor', 'State', 'Restarts', 'Uptime', 'Last failure'];

export class TreeView {
  /** `onSelect(path)` is called when a row is chosen (click, Enter, Space). */
  constructor(container, { onSelect } = {}) {
    this.onSelect = onSelect || (() => {});
    this.rows = new Map(); // path -> row
    this.collapsed = new Set();
    this.selected = null;
    this.snapshot = null;
    this.body = h('div', { class: 'tree-body', role: 'tree', 'aria-label': 'Supervision tree' });
    this.body.addEventListener('keydown', (e) => this.onKey(e));
    this.body.addEventListener('click', (e) => this.onClick(e));
    const head = h('div', { class: 'tree-head', 'aria-hidden': 'true' }, COLUMNS.map((c) => h('span', null, c)));
    container.append(head, this.body);
  }

  /** Applies a whole snapshot (`/api/actors`). Returns the number of rows written. */
  render(snapshot) {
    this.snapshot = snapshot;
    const seen = new Set();
    let cursor = this.body.firstChild;
    let touched = 0;
    const visit = (node, depth) => {
      seen.add(node.path);
      let row = this.rows.get(node.path);
      if (!row) {
        row = this.createRow(node.path);
        this.rows.set(node.path, row);
      }
      if (this.update(row, node, depth)) touched += 1;
      if (row.el !== cursor) this.body.insertBefore(row.el, cursor);
      else cursor = cursor.nextSibling;
      if (!this.collapsed.has(node.path)) for (const child of node.children || []) visit(child, depth + 1);
    };
    if (snapshot) visit(snapshot, 0);
    for (const [path, row] of this.rows) {
      if (!seen.has(path)) {
        row.el.remove();
        this.rows.delete(path);
      }
    }
    if (this.selected && !this.rows.has(this.selected)) this.selected = null;
    this.focusable();
    return touched;
  }

  createRow(path) {
    const toggle = h('button', { class: 'toggle', type: 'button', tabindex: '-1' });
    const name = h('span', { class: 'name' });
    const kind = h('span', { class: 'kind' });
    const state = h('span', { class: 'state' });
    const restarts = h('span', { class: 'restarts' });
    const uptime = h('span', { class: 'uptime' });
    const failure = h('span', { class: 'failure' });
    const el = h('div', { class: 'row', role: 'treeitem', tabindex: '-1', 'aria-selected': 'false', dataset: { path } },
      h('span', { class: 'cell-actor' }, toggle, name, kind), state, restarts, uptime, failure);
    return { el, toggle, name, kind, state, restarts, uptime, failure, data: {}, depth: -1 };
  }

  /** Writes what changed of `node` into `row`; true if anything did. */
  update(row, node, depth) {
    const d = row.data;
    let changed = false;
    if (row.depth !== depth) {
      row.depth = depth;
      row.el.style.setProperty('--depth', depth);
      row.el.setAttribute('aria-level', String(depth + 1));
      changed = true;
    }
    const count = (node.children || []).length;
    const hasKids = count > 0 || (node.details && node.details.sessions > 0);
    const expanded = hasKids ? String(!this.collapsed.has(node.path)) : null;
    if (d.expanded !== expanded) {
      d.expanded = expanded;
      if (expanded === null) {
        row.el.removeAttribute('aria-expanded');
        row.toggle.hidden = true;
      } else {
        row.el.setAttribute('aria-expanded', expanded);
        row.toggle.hidden = false;
        row.toggle.setAttribute('aria-label', `${expanded === 'true' ? 'Collapse' : 'Expand'} ${node.id}`);
        setText(row.toggle, expanded === 'true' ? '▾' : '▸');
      }
      changed = true;
    }
    const label = node.details && node.details.label ? `${node.id} — ${node.details.label}` : node.id;
    if (d.label !== label) {
      d.label = label;
      setText(row.name, label);
      changed = true;
    }
    const kindText = node.kind + (this.collapsed.has(node.path) && count ? ` (${count})` : '');
    if (d.kind !== kindText) {
      d.kind = kindText;
      setText(row.kind, kindText);
    }
    d.id = node.id;
    d.started_at = node.started_at || null;
    changed = this.setState(row, node.state, node.restarts, node.last_failure) || changed;
    this.setUptime(row);
    return changed;
  }

  setState(row, state, restarts, failure) {
    const d = row.data;
    let changed = false;
    if (d.state !== state) {
      d.state = state;
      row.state.className = `state state-${state}`;
      setText(row.state, stateWords(state));
      row.el.dataset.state = state;
      changed = true;
    }
    if (restarts !== undefined && d.restarts !== restarts) {
      d.restarts = restarts;
      setText(row.restarts, restarts);
      changed = true;
    }
    const failText = failure ? failure.reason : '';
    if (failure !== undefined && d.failure !== failText) {
      d.failure = failText;
      setText(row.failure, failText);
      row.failure.title = failure ? `${failure.reason} (${failure.at})` : '';
      changed = true;
    }
    return changed;
  }

  setUptime(row) {
    const d = row.data;
    const text = d.state === 'running' && d.started_at ? duration(since(d.started_at)) : '';
    if (d.uptime !== text) {
      d.uptime = text;
      setText(row.uptime, text);
    }
  }

  /**
   * Applies one supervision event (`/api/events`) to its row: state, restarts, and the
   * reason of an abnormal exit. Returns false when no row has the event's path.
   */
  apply(event) {
    const row = this.rows.get(event.path);
    if (!row) return false;
    if (event.kind === 'started') row.data.started_at = event.at;
    const failure = event.abnormal && event.reason ? { reason: event.reason, at: event.at } : undefined;
    this.setState(row, event.state || row.data.state, event.restarts, failure);
    this.setUptime(row);
    return true;
  }

  /** Refreshes the uptime cells (once a second). */
  tick() {
    for (const row of this.rows.values()) if (row.data.state === 'running') this.setUptime(row);
  }

  select(path, focus = false) {
    const old = this.selected && this.rows.get(this.selected);
    if (old) old.el.setAttribute('aria-selected', 'false');
    this.selected = path;
    const row = path && this.rows.get(path);
    if (row) {
      row.el.setAttribute('aria-selected', 'true');
      if (focus) row.el.focus();
    }
    this.focusable();
  }

  /** One row is in the tab order: the selected one, else the first. */
  focusable() {
    const want = (this.selected && this.rows.get(this.selected)) || this.rows.values().next().value;
    if (this.tabbable && this.tabbable !== want) this.tabbable.el.tabIndex = -1;
    if (want) want.el.tabIndex = 0;
    this.tabbable = want;
  }

  toggle(path) {
    if (this.collapsed.has(path)) this.collapsed.delete(path);
    else this.collapsed.add(path);
    this.render(this.snapshot);
  }

  rowOf(target) {
    const el = target.closest && target.closest('.row');
    return el ? el.dataset.path : null;
  }

  onClick(e) {
    const path = this.rowOf(e.target);
    if (!path) return;
    if (e.target.closest('.toggle')) {
      this.toggle(path);
      return;
    }
    this.select(path);
    this.onSelect(path);
  }

  onKey(e) {
    const path = this.rowOf(e.target);
    if (!path) return;
    const row = this.rows.get(path);
    const move = (el) => {
      if (el && el.classList.contains('row')) {
        row.el.tabIndex = -1;
        el.tabIndex = 0;
        el.focus();
      }
    };
    switch (e.key) {
      case 'ArrowDown': move(row.el.nextElementSibling); break;
      case 'ArrowUp': move(row.el.previousElementSibling); break;
      case 'Home': move(this.body.firstElementChild); break;
      case 'End': move(this.body.lastElementChild); break;
      case 'ArrowRight': if (this.collapsed.has(path)) this.toggle(path); break;
      case 'ArrowLeft': if (row.data.expanded === 'true') this.toggle(path); break;
      case 'Enter':
      case ' ':
        this.select(path);
        this.onSelect(path);
        break;
      default: return;
    }
    e.preventDefault();
  }
}
