// Server lifecycle and HTTP error handling.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { SM, startServer, tmpDir, request, waitFor, pidGone, sleep } from './helpers.js';

function runToExit(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SM, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stderr });
    });
  });
}

describe('server', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { REVKA_SM_DEBUG_ROUTES: '1' } });
  });
  after(async () => {
    await srv.stop();
  });

  test('GET /health', async () => {
    const r = await srv.get('/health');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.json.status, 'ok');
    assert.equal(r.json.pid, srv.pid);
    assert.equal(typeof r.json.uptime_seconds, 'number');
    assert.equal(r.json.agents, 0);
    assert.equal(r.json.rooms, 0);
    assert.equal(r.json.version, JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url))).version);
  });

  test('socket is mode 0600', () => {
    const st = fs.statSync(srv.sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  test('404 unknown route, unknown agent, unknown room', async () => {
    let r = await srv.get('/nope');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'not_found');
    assert.equal(typeof r.json.error.message, 'string');
    r = await srv.get('/agents/ag_missing');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'agent_not_found');
    r = await srv.post('/agents/ag_missing/query', { prompt: 'x' });
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'agent_not_found');
    r = await srv.get('/chat/rooms/room_missing');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'room_not_found');
    assert.ok(await srv.healthy());
  });

  test('405 with allow header', async () => {
    let r = await srv.req('PUT', '/agents');
    assert.equal(r.status, 405);
    assert.equal(r.json.error.code, 'method_not_allowed');
    assert.equal(r.headers.allow, 'POST, GET');
    r = await srv.post('/health', {});
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET');
    r = await srv.req('PATCH', '/agents/ag_x');
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, DELETE');
    assert.ok(await srv.healthy());
  });

  test('400 malformed JSON, non-object body, bad parameters', async () => {
    let r = await srv.post('/agents', '{"backend": "echo",', { headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_json');
    assert.ok(await srv.healthy());
    r = await srv.post('/agents', '[1,2]', { headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_request');
    r = await srv.post('/agents', {});
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_request');
    r = await srv.post('/agents', { backend: 'nope' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_backend');
    const a = await srv.post('/agents', { backend: 'echo' });
    assert.equal(a.status, 201);
    r = await srv.get(`/agents/${a.json.id}/events?since=abc`);
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_parameter');
    r = await srv.get(`/agents/${a.json.id}/events?limit=0`);
    assert.equal(r.status, 400);
    r = await srv.get('/agents/%E0%A4%A');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_url');
    await srv.del(`/agents/${a.json.id}`);
    assert.ok(await srv.healthy());
  });

  test('400 for a malformed HTTP request (raw socket)', async () => {
    const { default: net } = await import('node:net');
    const text = await new Promise((resolve, reject) => {
      const s = net.connect(srv.sock);
      let out = '';
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.write('THIS IS NOT HTTP\r\n\r\n');
    });
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.match(text, /"code":"bad_request"/);
    assert.ok(await srv.healthy());
  });

  test('413 body too large (content-length, chunked, expect: 100-continue)', async () => {
    const big = Buffer.alloc(1024 * 1024 + 10, 0x61);
    let r = await srv.post('/agents', big, { headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, 'payload_too_large');
    assert.ok(await srv.healthy());

    // chunked: no content-length, the limit is enforced while reading
    r = await new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: srv.sock,
          method: 'POST',
          path: '/agents',
          agent: false,
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(body) }));
          res.on('error', () => {});
        },
      );
      req.on('error', () => {});
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 3 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      req.on('close', () => {});
      pump();
      setTimeout(() => reject(new Error('no 413 for chunked body')), 5000).unref();
    });
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, 'payload_too_large');
    assert.ok(await srv.healthy());

    // Expect: 100-continue with an oversized declared length: rejected without reading
    r = await new Promise((resolve, reject) => {
      const req = http.request({
        socketPath: srv.sock,
        method: 'POST',
        path: '/agents',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': 50 * 1024 * 1024, expect: '100-continue' },
      });
      req.on('continue', () => reject(new Error('server asked for an oversized body')));
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(body) }));
      });
      req.on('error', () => {});
      req.flushHeaders();
    });
    assert.equal(r.status, 413);
    assert.ok(await srv.healthy());
  });

  test('415 wrong content type', async () => {
    let r = await srv.post('/agents', 'backend=echo', { headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 415);
    assert.equal(r.json.error.code, 'unsupported_media_type');
    assert.ok(await srv.healthy());
    r = await srv.post('/chat/rooms', '{"name":"x"}', { headers: {} });
    assert.equal(r.status, 415);
    // JSON with parameters is fine
    r = await srv.post('/chat/rooms', '{"name":"x"}', { headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal(r.status, 201);
    await srv.del(`/chat/rooms/${r.json.id}`);
    assert.ok(await srv.healthy());
  });

  test('500 on a handler exception; uncaught exceptions do not kill the process', async () => {
    let r = await srv.get('/debug/throw');
    assert.equal(r.status, 500);
    assert.equal(r.json.error.code, 'internal_error');
    assert.ok(await srv.healthy());
    r = await srv.get('/debug/throw-async');
    assert.equal(r.status, 200);
    await sleep(50);
    assert.ok(await srv.healthy());
    assert.match(srv.stderr(), /"msg":"unhandled exception in request handler"/);
    assert.match(srv.stderr(), /"msg":"uncaught exception"/);
  });

  test('logs are JSON lines with ts, level, msg', () => {
    const lines = srv.stderr().trim().split('\n');
    assert.ok(lines.length > 0);
    for (const line of lines) {
      const rec = JSON.parse(line);
      assert.equal(typeof rec.ts, 'string');
      assert.ok(['debug', 'info', 'warn', 'error'].includes(rec.level));
      assert.equal(typeof rec.msg, 'string');
    }
  });

  test('a second instance on the same socket exits 3', async () => {
    const r = await runToExit(['--socket', srv.sock]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /another session-manager instance is already listening/);
    assert.ok(fs.existsSync(srv.sock));
    assert.ok(await srv.healthy());
  });
});

describe('startup and shutdown', () => {
  test('creates a missing socket directory with mode 0700', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'a', 'b', 'sm.sock');
    const srv = await startServer({ socket: sock, dir });
    assert.equal(fs.statSync(path.join(dir, 'a', 'b')).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, 'a')).mode & 0o777, 0o700);
    await srv.stop();
  });

  test('socket path from REVKA_SM_SOCKET, then REVKA_HOME default', async () => {
    const dir = tmpDir();
    const child = spawn(process.execPath, [SM], {
      env: { ...process.env, REVKA_SM_SOCKET: '', REVKA_HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const sock = path.join(dir, 'operator_mcp', 'session-manager.sock');
    await waitFor(async () => (await request(sock, 'GET', '/health')).status === 200, { what: 'default socket' });
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));

    const sock2 = path.join(dir, 'env.sock');
    const child2 = spawn(process.execPath, [SM], {
      env: { ...process.env, REVKA_SM_SOCKET: sock2, REVKA_HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await waitFor(async () => (await request(sock2, 'GET', '/health')).status === 200, { what: 'env socket' });
    child2.kill('SIGTERM');
    await new Promise((r) => child2.on('exit', r));
  });

  test('a stale socket file is removed at startup', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'sm.sock');
    // Leave a socket file behind: a listener killed with SIGKILL cannot unlink it.
    const holder = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await new Promise((r) => holder.stdout.once('data', r));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.on('exit', r));
    assert.ok(fs.lstatSync(sock).isSocket());

    const srv = await startServer({ socket: sock, dir });
    assert.match(srv.stderr(), /"msg":"removed stale socket"/);
    assert.ok(await srv.healthy());
    await srv.stop();
  });

  test('refuses to remove a non-socket file at the socket path (exit 2)', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'sm.sock');
    fs.writeFileSync(file, 'precious');
    const r = await runToExit(['--socket', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not a socket/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'precious');
  });

  test('bad configuration exits 2', async () => {
    const dir = tmpDir();
    let r = await runToExit(['--socket', path.join(dir, 's.sock')], { REVKA_SM_AGENT_ARGV: 'not json' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /REVKA_SM_AGENT_ARGV/);
    r = await runToExit(['--socket', path.join(dir, 's.sock')], { REVKA_SM_MAX_AGENTS: 'lots' });
    assert.equal(r.code, 2);
    r = await runToExit(['--socket', path.join(dir, 's.sock')], { REVKA_SM_CODEX_APPROVALS: 'yolo' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /REVKA_SM_CODEX_APPROVALS must be one of: deny, sandboxed, accept/);
    r = await runToExit(['--bogus']);
    assert.equal(r.code, 2);
  });

  test('SIGTERM: exit 0 and the socket is removed', async () => {
    const srv = await startServer();
    const { code } = await srv.stop('SIGTERM');
    assert.equal(code, 0);
    assert.equal(fs.existsSync(srv.sock), false);
    assert.match(srv.stderr(), /"msg":"stopped"/);
  });

  test('SIGINT: exit 0 and the socket is removed', async () => {
    const srv = await startServer();
    const { code } = await srv.stop('SIGINT');
    assert.equal(code, 0);
    assert.equal(fs.existsSync(srv.sock), false);
  });

  test('shuts down when its parent process dies', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'sm.sock');
    const parent = spawn(
      process.execPath,
      [
        '-e',
        `const c = require('child_process').spawn(process.execPath, [${JSON.stringify(SM)}, '--socket', ${JSON.stringify(sock)}],
           { stdio: 'ignore', env: { ...process.env, REVKA_SM_PARENT_POLL_MS: '100' } });
         console.log(c.pid); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const pid = Number(await new Promise((r) => parent.stdout.once('data', (d) => r(String(d).trim()))));
    await waitFor(async () => (await request(sock, 'GET', '/health')).status === 200, { what: 'orphan-to-be up' });
    parent.kill('SIGKILL');
    await waitFor(() => !fs.existsSync(sock) && pidGone(pid), { timeout: 5000, what: 'orphaned sidecar to exit' });
  });
});
