// Shared test helpers: start the sidecar as a child process on a temp socket, talk HTTP over the
// socket, read SSE streams. (No tests in this file.)

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SM = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'session-manager.js');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tmpDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rsm-'));
}

export async function waitFor(fn, { timeout = 5000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(interval);
  }
}

// A process is gone when it no longer exists, or is a zombie we cannot reap (not our child).
export function pidGone(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (err.code === 'ESRCH') return true;
    throw err;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

// HTTP over the Unix socket. body: object (sent as JSON) | string/Buffer (raw, pass headers).
// Resolves {status, headers, text, json}. A server that answers and then drops the connection
// while we are still sending (413) still yields its response.
export function request(sock, method, urlPath, { body, headers = {}, timeout = 10000, signal } = {}) {
  return new Promise((resolve, reject) => {
    let payload;
    const hdrs = { ...headers };
    if (body !== undefined) {
      if (typeof body === 'string' || Buffer.isBuffer(body)) payload = body;
      else {
        payload = JSON.stringify(body);
        if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) hdrs['content-type'] = 'application/json';
      }
      if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'transfer-encoding')) {
        hdrs['content-length'] = Buffer.byteLength(payload);
      }
    }
    let settled = false;
    let response = null;
    const req = http.request({ socketPath: sock, method, path: urlPath, headers: hdrs, agent: false, signal }, (res) => {
      response = res;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const finish = () => {
        if (settled) return;
        settled = true;
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        if ((res.headers['content-type'] || '').startsWith('application/json')) {
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      };
      res.on('end', finish);
      res.on('close', finish);
      res.on('error', () => finish());
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`request timed out: ${method} ${urlPath}`)));
    req.on('error', (err) => {
      if (response) return; // the server answered; a reset while we were still writing is fine
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
    if (payload !== undefined) {
      req.write(payload, () => {});
    }
    req.end();
  });
}

// script: another copy of session-manager.js (default: this checkout's)
export async function startServer({ env = {}, socket, dir, script = SM } = {}) {
  dir = dir ?? tmpDir();
  const sock = socket ?? path.join(dir, 'sm.sock');
  const child = spawn(process.execPath, [script, '--socket', sock], {
    env: { ...process.env, REVKA_SM_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  let exitInfo = null;
  exited.then((e) => (exitInfo = e));
  await waitFor(
    async () => {
      if (exitInfo) throw new Error(`sidecar exited early: ${JSON.stringify(exitInfo)}\n${stderr}`);
      const r = await request(sock, 'GET', '/health', { timeout: 1000 });
      return r.status === 200;
    },
    { timeout: 8000, what: 'sidecar health' },
  ).catch((err) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${stderr}`);
  });
  const srv = {
    sock,
    dir,
    child,
    pid: child.pid,
    exited,
    stderr: () => stderr,
    req: (method, urlPath, opts) => request(sock, method, urlPath, opts),
    get: (urlPath, opts) => request(sock, 'GET', urlPath, opts),
    post: (urlPath, body, opts) => request(sock, 'POST', urlPath, { body: body ?? {}, ...opts }),
    del: (urlPath, opts) => request(sock, 'DELETE', urlPath, opts),
    async stop(signal = 'SIGTERM') {
      if (!exitInfo) child.kill(signal);
      return exited;
    },
    async healthy() {
      const r = await request(sock, 'GET', '/health');
      return r.status === 200 && r.json.status === 'ok';
    },
    // Events of an agent (after `since`), waiting until pred(events) holds.
    async eventsUntil(agentId, pred, { since = 0, timeout = 5000 } = {}) {
      return waitFor(
        async () => {
          const r = await request(sock, 'GET', `/agents/${agentId}/events?since=${since}`);
          return pred(r.json.events, r.json) ? r.json.events : false;
        },
        { timeout, what: `events of ${agentId}` },
      );
    },
    async agentUntil(agentId, pred, { timeout = 5000 } = {}) {
      return waitFor(
        async () => {
          const r = await request(sock, 'GET', `/agents/${agentId}`);
          return pred(r.json) ? r.json : false;
        },
        { timeout, what: `agent ${agentId} state` },
      );
    },
  };
  return srv;
}

// Minimal SSE client over the socket. Collects {id, event, data} records and comment lines.
export function openSse(sock, urlPath, headers = {}) {
  const events = [];
  const comments = [];
  let buf = '';
  let res = null;
  let ended = false;
  const listeners = new Set();
  const notify = () => listeners.forEach((f) => f());
  const req = http.request({ socketPath: sock, method: 'GET', path: urlPath, headers, agent: false }, (r) => {
    res = r;
    r.setEncoding('utf8');
    r.on('data', (chunk) => {
      buf += chunk;
      let idx;
      while ((idx = buf.indexOf('\n\n')) !== -1) {
        const block = buf.slice(0, idx);
        buf = buf.slice(idx + 2);
        const rec = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else {
            const c = line.indexOf(':');
            const field = c === -1 ? line : line.slice(0, c);
            const value = c === -1 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'data') rec.data = rec.data === undefined ? value : rec.data + '\n' + value;
            else if (field === 'id' || field === 'event' || field === 'retry') rec[field] = value;
          }
        }
        if (rec.data !== undefined) {
          rec.event = rec.event ?? 'message';
          try {
            rec.json = JSON.parse(rec.data);
          } catch {
            // not JSON
          }
          events.push(rec);
        }
      }
      notify();
    });
    r.on('end', () => {
      ended = true;
      notify();
    });
    r.on('close', () => {
      ended = true;
      notify();
    });
  });
  req.on('error', () => {
    ended = true;
    notify();
  });
  req.end();
  const until = (pred, timeout = 5000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pred()) {
          listeners.delete(check);
          clearTimeout(t);
          resolve();
        }
      };
      const t = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`SSE: timed out; got ${JSON.stringify(events.map((e) => e.id + ':' + (e.json?.type ?? e.event)))}`));
      }, timeout);
      listeners.add(check);
      check();
    });
  return {
    events,
    comments,
    get response() {
      return res;
    },
    get ended() {
      return ended;
    },
    until,
    close() {
      req.destroy();
    },
  };
}
