// The dashboard's only way to the daemon: fetch() with `Authorization: Bearer`, the SSE
// reader of the event feed, and WebSockets with the `bearer.<token>` subprotocol. The token
// lives in this origin's localStorage (never a cookie, never a URL).

const KEY = 'revka.gateway.token';

export const session = {
  token: null,
  me: null, // {id, label, role, kind, file_token}
};

try {
  session.token = localStorage.getItem(KEY);
} catch {
  session.token = null;
}

const listeners = new Set();

/** Calls `fn(reason)` when the page is signed out (a 401 anywhere, or Sign out). */
export function onSignedOut(fn) {
  listeners.add(fn);
}

export function saveToken(token) {
  session.token = token;
  localStorage.setItem(KEY, token);
}

/** Forgets the token (and tells the page), without asking the daemon. */
export function forget(reason) {
  const had = session.token !== null;
  session.token = null;
  session.me = null;
  try {
    localStorage.removeItem(KEY);
  } catch {
    // nothing to forget
  }
  if (had) for (const fn of listeners) fn(reason);
}

const RANK = { viewer: 0, operator: 1, owner: 2 };

/** Whether the signed-in token's role allows what `role` may do. */
export function may(role) {
  return session.me !== null && RANK[session.me.role] >= RANK[role];
}

export class HttpError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headersFor(extra) {
  const headers = new Headers(extra || {});
  if (session.token) headers.set('Authorization', `Bearer ${session.token}`);
  return headers;
}

/**
 * A JSON API call. Resolves with the parsed body; rejects with an HttpError carrying the
 * daemon's `error` message. A 401 signs the page out.
 */
export async function api(path, { method = 'GET', body, headers, signal } = {}) {
  const h = headersFor(headers);
  let payload;
  if (body !== undefined) {
    h.set('Content-Type', 'application/json');
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: h,
      body: payload,
      signal,
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new HttpError(0, `cannot reach the daemon (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401 && session.token) {
    forget('The daemon no longer accepts this token (revoked, or the daemon was reset). Sign in again.');
  }
  if (!response.ok) {
    const message = (data && data.error) || text || response.statusText;
    throw new HttpError(response.status, message, data);
  }
  return data;
}

/** The message of an API failure, with a plain word for a missing endpoint. */
export function describe(error, what) {
  if (error instanceof HttpError && error.status === 404 && /^no route/.test(error.message)) {
    return `${what} is not available on this daemon (${error.message}).`;
  }
  return `${what}: ${error.message}`;
}

/** Trades a pairing code for a token (`POST /pair`). */
export async function pair(code) {
  const browser = /Firefox\//.test(navigator.userAgent) ? 'Firefox'
    : /Edg\//.test(navigator.userAgent) ? 'Edge'
    : /Chrom(e|ium)\//.test(navigator.userAgent) ? 'Chromium'
    : /Safari\//.test(navigator.userAgent) ? 'Safari' : 'browser';
  const response = await fetch('/pair', {
    method: 'POST',
    headers: { 'X-Pairing-Code': code.trim(), 'X-Pairing-Label': `dashboard (${browser})` },
    cache: 'no-store',
    credentials: 'omit',
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new HttpError(response.status, (data && data.error) || response.statusText, data);
  return data;
}

/**
 * Reads a server-sent-event stream with fetch (EventSource cannot send the Authorization
 * header). Calls `onOpen()` once the answer is in, `onEvent({event, id, data})` per event;
 * resolves when the stream ends,
 * rejects on a network error or a non-2xx answer (an HttpError).
 */
export async function readSse(path, onEvent, signal, onOpen) {
  const response = await fetch(path, {
    headers: headersFor({ Accept: 'text/event-stream' }),
    cache: 'no-store',
    credentials: 'omit',
    signal,
  });
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    let message = text;
    try {
      message = JSON.parse(text).error || text;
    } catch {
      // not JSON
    }
    if (response.status === 401 && session.token) forget('The daemon no longer accepts this token. Sign in again.');
    throw new HttpError(response.status, message || response.statusText);
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { event: 'message', id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // Bounded: a line longer than 1 MiB is a broken stream.
    if (buffer.length > (1 << 20) && buffer.indexOf('\n') < 0) throw new Error('event line too long');
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      let line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (event.data.length) onEvent({ event: event.event, id: event.id, data: event.data.join('\n') });
        event = { event: 'message', id: null, data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'data') event.data.push(val);
      else if (field === 'event') event.event = val;
      else if (field === 'id') event.id = val;
    }
  }
}

/** A WebSocket to this origin, authenticated by the `bearer.<token>` subprotocol. */
export function socket(path, protocol) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return new WebSocket(`${scheme}//${location.host}${path}`, [protocol, `bearer.${session.token}`]);
}
