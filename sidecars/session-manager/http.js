// Minimal HTTP plumbing: JSON responses, typed errors, a path router, a bounded JSON body reader
// and the top-level request handler that turns every failure into a JSON error response.

import { log, errorFields } from './log.js';

export class HttpError extends Error {
  // opts.headers: extra response headers; opts.close: close the connection after responding
  // (used when the request body was not read, so the connection cannot be reused).
  constructor(status, code, message, opts = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.headers = opts.headers;
    this.close = Boolean(opts.close);
  }
}

export const badRequest = (message, code = 'invalid_request') => new HttpError(400, code, message);

// The client went away while we were reading its request; there is nobody to answer.
class ClientGone extends Error {}

export function sendJson(res, status, body, headers) {
  if (res.headersSent || res.destroyed || res.writableEnded) {
    // A streaming handler already started the response; the best we can do is end it.
    if (!res.writableEnded && !res.destroyed) res.end();
    return;
  }
  let payload;
  try {
    payload = JSON.stringify(body);
  } catch (err) {
    log('error', 'response serialization failed', { err });
    status = 500;
    payload = JSON.stringify({ error: { code: 'internal_error', message: 'response serialization failed' } });
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(payload);
}

function hasBody(req) {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

// When an error is decided before the request body was (fully) received, the rest of the body
// is read and discarded first, within bounds, and only then is the error sent. Clients that send
// the whole body before reading the response (most do, e.g. Python's http.client) then see the
// 413/415/... instead of EPIPE/ECONNRESET. Past the bounds, or when the client waits for
// "100 Continue", the error is sent at once and the connection is closed.
const DISCARD_MAX_BYTES = 16 * 1024 * 1024;
const DISCARD_MAX_MS = 5000;

function discardBody(req, done) {
  let bytes = 0;
  let finished = false;
  const finish = (ok) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('aborted', onGone);
    req.off('error', onGone);
    req.off('close', onGone);
    done(ok);
  };
  const onData = (c) => {
    bytes += c.length;
    if (bytes > DISCARD_MAX_BYTES) finish(false);
  };
  const onEnd = () => finish(true);
  const onGone = () => finish(false);
  const timer = setTimeout(() => finish(false), DISCARD_MAX_MS);
  req.removeAllListeners('data');
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('aborted', onGone);
  req.on('error', onGone);
  req.on('close', onGone);
  req.resume();
}

// req (optional): lets an error response deal with a request body that was not (fully) read.
export function sendError(res, err, req) {
  const send = (close) => {
    if (res.destroyed) return;
    const headers = { ...err.headers };
    if (close) {
      headers.connection = 'close';
      res.once('finish', () => setImmediate(() => res.socket?.destroy()));
    }
    sendJson(res, err.status, { error: { code: err.code, message: err.message } }, headers);
  };
  if (req && !req.complete && hasBody(req)) {
    const declared = Number(req.headers['content-length']);
    const awaitingContinue = /100-continue/i.test(req.headers.expect || '') && !req.smContinued;
    if (awaitingContinue || (Number.isFinite(declared) && declared > DISCARD_MAX_BYTES)) {
      send(true);
    } else {
      discardBody(req, (ok) => send(!ok || err.close));
    }
    return;
  }
  send(err.close);
}

// ---------------------------------------------------------------------------------------------
// Router: patterns like "/agents/:id/query"; matches by path first, so a path that exists with
// another method yields 405 + the list of allowed methods.

export class Router {
  constructor() {
    this.routes = [];
  }

  add(method, pattern, handler) {
    const segs = pattern.split('/').filter(Boolean);
    this.routes.push({ method, segs, handler });
    return this;
  }

  // -> {handler, params} | {allowed: [methods]} | null
  match(method, pathname) {
    const parts = pathname.split('/').filter(Boolean);
    const allowed = [];
    for (const r of this.routes) {
      if (r.segs.length !== parts.length) continue;
      const params = {};
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const s = r.segs[i];
        if (s.startsWith(':')) params[s.slice(1)] = parts[i];
        else if (s !== parts[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.method === method) return { handler: r.handler, params };
      if (!allowed.includes(r.method)) allowed.push(r.method);
    }
    return allowed.length ? { allowed } : null;
  }
}

// ---------------------------------------------------------------------------------------------
// Body reading

function isJsonContentType(header) {
  if (!header) return false;
  const mime = String(header).split(';')[0].trim().toLowerCase();
  return mime === 'application/json' || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(mime);
}

// Reads the request body as a JSON object. An absent/empty body is {}.
// 415 if a body is present and not JSON, 413 if it exceeds maxBytes (reading stops), 400 if
// it is not valid JSON or not an object.
// `Expect: 100-continue` is only answered once the request passed these checks.
export function readJsonBody(req, res, maxBytes) {
  const cl = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const declared = cl === undefined ? null : Number(cl);
  if (!chunked && (declared === null || declared === 0)) {
    return Promise.resolve({});
  }
  if (!isJsonContentType(req.headers['content-type'])) {
    return Promise.reject(
      new HttpError(415, 'unsupported_media_type', 'request body must be application/json'),
    );
  }
  if (declared !== null && declared > maxBytes) {
    return Promise.reject(
      new HttpError(413, 'payload_too_large', `request body exceeds ${maxBytes} bytes`),
    );
  }
  if (/100-continue/i.test(req.headers.expect || '') && !res.headersSent) {
    req.smContinued = true;
    res.writeContinue();
  }
  return new Promise((resolve, reject) => {
    const chunks = [];
    let total = 0;
    let done = false;
    const finish = (fn, value) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      fn(value);
    };
    const onData = (chunk) => {
      total += chunk.length;
      if (total > maxBytes) {
        req.pause();
        finish(
          reject,
          new HttpError(413, 'payload_too_large', `request body exceeds ${maxBytes} bytes`),
        );
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      const text = Buffer.concat(chunks, total).toString('utf8');
      if (text.trim() === '') return finish(resolve, {});
      let value;
      try {
        value = JSON.parse(text);
      } catch (err) {
        return finish(reject, new HttpError(400, 'invalid_json', `malformed JSON body: ${err.message}`));
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return finish(reject, badRequest('request body must be a JSON object'));
      }
      finish(resolve, value);
    };
    const onError = () => finish(reject, new ClientGone());
    const onAborted = () => finish(reject, new ClientGone());
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

// ---------------------------------------------------------------------------------------------
// Query-string helpers

// Non-negative integer parameter; absent/empty -> dflt; above max -> max (clamped).
export function intParam(query, name, { dflt, min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  const raw = query.get(name);
  if (raw === null || raw === '') return dflt;
  if (!/^\d+$/.test(raw)) throw new HttpError(400, 'invalid_parameter', `${name} must be a non-negative integer`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new HttpError(400, 'invalid_parameter', `${name} must be an integer >= ${min}`);
  }
  return Math.min(n, max);
}

// Non-negative decimal parameter (e.g. seconds); clamped to max.
export function numberParam(query, name, { dflt, max }) {
  const raw = query.get(name);
  if (raw === null || raw === '') return dflt;
  if (!/^\d+(\.\d+)?$/.test(raw)) throw new HttpError(400, 'invalid_parameter', `${name} must be a non-negative number`);
  return Math.min(Number(raw), max);
}

// ---------------------------------------------------------------------------------------------
// Top-level handler

// Idempotency keys: a mutation sent again with the same `Idempotency-Key` (Revka's retry queue
// sends its operation id, so a retried create_agent cannot start a second agent) gets the first
// answer again, marked `idempotent-replayed: true`; one still running is waited for. Only a 2xx
// answer is kept: after an error the key is forgotten and a retry runs again (a failed mutation
// changed nothing). Bounded: at most IDEMPOTENCY_MAX keys, each for IDEMPOTENCY_TTL_MS.
export const IDEMPOTENCY_MAX = 10000;
export const IDEMPOTENCY_TTL_MS = 60 * 60 * 1000;
const IDEMPOTENCY_KEY_MAX_LEN = 200;

export function createIdempotencyCache({ max = IDEMPOTENCY_MAX, ttlMs = IDEMPOTENCY_TTL_MS } = {}) {
  const entries = new Map(); // key -> { at, answer: Promise<{status, body, headers}> }
  return {
    // The pending or settled answer under `key`, if it is still fresh.
    get(key) {
      const entry = entries.get(key);
      if (!entry) return undefined;
      if (Date.now() - entry.at > ttlMs) {
        entries.delete(key);
        return undefined;
      }
      return entry.answer;
    },
    set(key, answer) {
      entries.delete(key);
      entries.set(key, { at: Date.now(), answer });
      while (entries.size > max) entries.delete(entries.keys().next().value);
    },
    // Forgets `key` only if it still holds `answer` (not a newer entry set since).
    forget(key, answer) {
      if (entries.get(key)?.answer === answer) entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}

export function createRequestHandler({ router, maxBodyBytes, isShuttingDown, idempotency = createIdempotencyCache() }) {
  return function onRequest(req, res) {
    handle(req, res).catch((err) => {
      // handle() already catches everything; this is the last line of defence.
      log('error', 'request handler failed', { err: errorFields(err) });
      try {
        if (!res.headersSent) sendError(res, new HttpError(500, 'internal_error', 'internal server error'));
        else res.destroy();
      } catch {
        // ignore
      }
    });
  };

  async function handle(req, res) {
    const started = Date.now();
    res.once('finish', () => {
      log('debug', 'request', {
        method: req.method,
        url: req.url,
        status: res.statusCode,
        ms: Date.now() - started,
      });
    });
    try {
      if (isShuttingDown()) throw new HttpError(503, 'shutting_down', 'the session manager is shutting down');
      let url;
      try {
        url = new URL(req.url, 'http://localhost');
      } catch {
        throw new HttpError(400, 'invalid_url', 'malformed request URL');
      }
      let pathname = url.pathname;
      if (pathname.length > 1 && pathname.endsWith('/')) pathname = pathname.replace(/\/+$/, '') || '/';
      const m = router.match(req.method, pathname);
      if (!m) throw new HttpError(404, 'not_found', `no route for ${req.method} ${pathname}`);
      if (m.allowed) {
        throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${pathname}`, {
          headers: { allow: m.allowed.join(', ') },
        });
      }
      const params = {};
      for (const [k, v] of Object.entries(m.params)) {
        try {
          params[k] = decodeURIComponent(v);
        } catch {
          throw new HttpError(400, 'invalid_url', `malformed path segment ${JSON.stringify(v)}`);
        }
      }
      const ctx = {
        req,
        res,
        params,
        query: url.searchParams,
        body: () => readJsonBody(req, res, maxBodyBytes),
      };
      const rawKey = req.headers['idempotency-key'];
      if (rawKey !== undefined && req.method !== 'GET' && req.method !== 'HEAD') {
        if (typeof rawKey !== 'string' || rawKey.length === 0 || rawKey.length > IDEMPOTENCY_KEY_MAX_LEN) {
          throw new HttpError(400, 'invalid_idempotency_key', `Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_MAX_LEN} characters`);
        }
        const key = `${req.method} ${pathname} ${rawKey}`;
        // Wait for the attempt under this key, if any. One that failed was forgotten; then
        // look again, since another waiter may have started the next attempt meanwhile: one
        // attempt runs at a time. (No await between the last look and `set` below.)
        for (let earlier = idempotency.get(key); earlier; earlier = idempotency.get(key)) {
          const replayed = await earlier.catch(() => undefined);
          if (replayed) {
            req.resume(); // the repeated body is not needed
            log('info', 'idempotent request replayed', { method: req.method, url: req.url, status: replayed.status });
            sendJson(res, replayed.status, replayed.body, { ...replayed.headers, 'idempotent-replayed': 'true' });
            return;
          }
        }
        // Only a 2xx answer is kept; an error (thrown) or a streamed answer forgets the key.
        const answer = Promise.resolve().then(() => m.handler(ctx)).then((result) =>
          result === undefined || (result.status ?? 200) >= 300 ? { result, kept: false } : { result, kept: true },
        );
        const kept = answer.then(({ result, kept }) => {
          if (!kept) throw new Error('not kept');
          // A copy: the handler's object may change later (an agent's state), a replay must not.
          return { status: result.status ?? 200, body: structuredClone(result.body), headers: result.headers };
        });
        kept.catch(() => idempotency.forget(key, kept));
        idempotency.set(key, kept);
        const { result } = await answer;
        if (result === undefined) return; // the handler owns the response
        sendJson(res, result.status ?? 200, result.body, result.headers);
        return;
      }
      const result = await m.handler(ctx);
      if (result === undefined) return; // the handler owns the response (SSE, long-poll)
      sendJson(res, result.status ?? 200, result.body, result.headers);
    } catch (err) {
      if (err instanceof ClientGone) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        if (err.status >= 500) log('warn', 'request failed', { method: req.method, url: req.url, code: err.code });
        sendError(res, err, req);
        return;
      }
      log('error', 'unhandled exception in request handler', {
        method: req.method,
        url: req.url,
        err: errorFields(err),
      });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, new HttpError(500, 'internal_error', 'internal server error'), req);
    }
  }
}

// Raw-socket answer for requests the HTTP parser rejected (malformed request line, headers too
// large, ...). Node's default closes without a JSON body.
export function onClientError(err, socket) {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  let status = '400 Bad Request';
  let error = { code: 'bad_request', message: `malformed HTTP request (${err.code || 'parse error'})` };
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = '431 Request Header Fields Too Large';
    error = { code: 'headers_too_large', message: 'request headers too large' };
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = '408 Request Timeout';
    error = { code: 'request_timeout', message: 'the request was not received in time' };
  }
  const body = JSON.stringify({ error });
  log('debug', 'client error', { code: err.code });
  try {
    socket.end(
      `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `connection: close\r\n\r\n${body}`,
    );
  } catch {
    socket.destroy();
  }
}
