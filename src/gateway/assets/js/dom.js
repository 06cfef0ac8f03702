// Small DOM helpers shared by the views: element creation (text only, never HTML strings),
// time formatting, the toast.

/**
 * `h('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child)`: an element with
 * attributes, properties (`on*` listeners, `hidden`, `value`, `disabled`, `checked`) and
 * children (strings become text nodes; null and false are skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'hidden' || key === 'value' || key === 'disabled' || key === 'checked') el[key] = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** An SVG element (for the sparklines). */
export function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Sets `el.textContent` only when it changes (no layout work otherwise). */
export function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** `95` → `1m 35s`, `90061` → `1d 1h`. */
export function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return '';
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** Seconds since an RFC 3339 time. */
export function since(at) {
  const t = Date.parse(at);
  return Number.isNaN(t) ? null : (Date.now() - t) / 1000;
}

/** An RFC 3339 time as local `HH:MM:SS` (with the date when not today). */
export function clock(at) {
  const t = new Date(at);
  if (Number.isNaN(t.getTime())) return String(at || '');
  const today = new Date().toDateString() === t.toDateString();
  const time = t.toLocaleTimeString([], { hour12: false });
  return today ? time : `${t.toLocaleDateString()} ${time}`;
}

/** The words of a state (`backing_off` → `backing off`). */
export function stateWords(state) {
  return String(state || 'unknown').replace(/_/g, ' ');
}

let toastTimer = null;

/** A short message at the bottom of the page (an aria-live region). */
export function toast(message) {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}

/** A key/value list of a JSON object (unknown details shown readably). */
export function kvList(obj, skip = []) {
  const dl = h('dl', { class: 'kv' });
  for (const [key, value] of Object.entries(obj || {})) {
    if (skip.includes(key)) continue;
    dl.append(h('dt', null, key.replace(/_/g, ' ')), h('dd', null, valueNode(value)));
  }
  return dl;
}

function valueNode(value) {
  if (value === null || value === undefined) return '—';
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object' || v === null)) return value.join(', ') || '—';
    return h('pre', null, JSON.stringify(value, null, 2));
  }
  if (typeof value === 'object') return h('pre', null, JSON.stringify(value, null, 2));
  return String(value);
}
