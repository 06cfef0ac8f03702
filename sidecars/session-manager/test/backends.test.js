// The backend registry and what every backend shares: unknown backends, the new create fields
// (validation, defaults), usage sums and budgets, the per-run flood guard, the codex stub
// (or real backend) failing cleanly. Uses the echo backend's usage:/flood: prompts.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, tmpDir, waitFor, pidGone } from './helpers.js';

describe('backend registry and shared agent features', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { REVKA_SM_MAX_EVENTS_PER_RUN: '50', REVKA_SM_MAX_TOKENS: '1000000' } });
  });
  after(async () => {
    await srv.stop();
  });

  test('unknown backend: 400 invalid_backend naming all four', async () => {
    const r = await srv.post('/agents', { backend: 'gpt' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_backend');
    assert.equal(r.json.error.message, 'unknown backend "gpt" (one of: claude, codex, command, echo)');
  });

  test('new create fields are validated', async () => {
    const bad = [
      [{ model: 5 }, /model must be a string/],
      [{ allowed_tools: 'Read' }, /allowed_tools must be an array/],
      [{ allowed_tools: ['Read', 3] }, /allowed_tools\[1\] must be a string/],
      [{ system_prompt: ['x'] }, /system_prompt must be a string/],
      [{ mcp_servers: [] }, /mcp_servers must be an object/],
      [{ mcp_servers: { revka: { type: 'ws', url: 'x' } } }, /mcp_servers.revka.type must be "http" or "stdio"/],
      [{ mcp_servers: { revka: { type: 'http', url: 'ftp://x' } } }, /http\(s\) URL/],
      [{ mcp_servers: { revka: { type: 'http', url: 'http://x', headers: { a: 1 } } } }, /headers.a must be a string/],
      [{ mcp_servers: { revka: { type: 'http', url: 'http://x', headers: { 'a b': 'v' } } } }, /invalid mcp_servers.revka.headers name "a b"/],
      [{ mcp_servers: { revka: { type: 'http', url: 'http://x', headers: { a: 'v\r\nX-Evil: 1' } } } }, /headers.a contains a control character/],
      [{ mcp_servers: { s: { type: 'stdio', command: 'x', env: { 'A=B': 'v' } } } }, /invalid mcp_servers.s.env name "A=B"/],
      [{ mcp_servers: { s: { type: 'stdio', command: 'x', args: 'y' } } }, /args must be an array/],
      [{ mcp_servers: { s: { type: 'stdio', command: 'x', cwd: '/' } } }, /unknown field "cwd"/],
      [{ budget: 5 }, /budget must be an object/],
      [{ budget: { max_cost_usd: 0 } }, /max_cost_usd must be a number > 0/],
      [{ budget: { max_tokens: 1.5 } }, /max_tokens must be an integer > 0/],
      [{ budget: { max_dollars: 1 } }, /unknown field "max_dollars"/],
      [{ permission_mode: 'yolo' }, /permission_mode must be one of: default, acceptEdits, bypassPermissions, plan/],
      [{ approval_policy: '' }, /approval_policy must not be empty/],
    ];
    for (const [fields, re] of bad) {
      const r = await srv.post('/agents', { backend: 'echo', ...fields });
      assert.equal(r.status, 400, JSON.stringify(fields));
      assert.match(r.json.error.message, re, JSON.stringify(fields));
    }
    const ok = await srv.post('/agents', {
      backend: 'echo',
      model: 'claude-test',
      allowed_tools: ['Read', 'mcp__revka__*'],
      system_prompt: 'be brief',
      mcp_servers: {
        revka: { type: 'http', url: 'http://127.0.0.1:1/mcp', headers: { authorization: 'Bearer x' } },
        local: { type: 'stdio', command: 'srv', args: ['--x'], env: { A: 'b' } },
      },
      permission_mode: 'plan',
      approval_policy: 'never',
      budget: { max_cost_usd: 2.5 },
    });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.model, 'claude-test');
    // the missing max_tokens comes from REVKA_SM_MAX_TOKENS
    assert.deepEqual(ok.json.budget, { max_cost_usd: 2.5, max_tokens: 1000000 });
    assert.deepEqual(ok.json.usage, {
      input_tokens: 0,
      output_tokens: 0,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
      cost_usd: 0,
      runs: 0,
    });
    await srv.del(`/agents/${ok.json.id}`);
  });

  test('usage sums into the agent; a budget stops it (budget event, 409 on later prompts)', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', budget: { max_cost_usd: 0.05 } })).json;
    let r = await srv.post(`/agents/${a.id}/query`, { prompt: 'usage:100:20:0.02' });
    assert.equal(r.status, 202);
    let info = await srv.agentUntil(a.id, (x) => x.status === 'idle' && x.usage.runs === 1);
    assert.equal(info.usage.input_tokens, 100);
    assert.equal(info.usage.output_tokens, 20);
    assert.equal(info.usage.cost_usd, 0.02);
    let evs = await srv.eventsUntil(a.id, (e) => e.some((x) => x.type === 'usage'));
    const u = evs.find((x) => x.type === 'usage');
    assert.equal(u.data.run, 1);
    assert.equal(u.data.input_tokens, 100);
    assert.equal(u.data.cost_usd, 0.02);
    assert.deepEqual(u.data.totals, {
      input_tokens: 100,
      output_tokens: 20,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
      cost_usd: 0.02,
    });

    r = await srv.post(`/agents/${a.id}/query`, { prompt: 'usage:100:20:0.04' });
    assert.equal(r.status, 202);
    info = await srv.agentUntil(a.id, (x) => x.status === 'error');
    assert.equal(info.last_error.reason, 'budget_exceeded');
    assert.match(info.last_error.message, /^budget exceeded: cost \$0.06 reached the limit of \$0.05/);
    evs = await srv.eventsUntil(a.id, (e) => e.some((x) => x.type === 'status' && x.data.reason === 'budget_exceeded'));
    const b = evs.find((x) => x.type === 'budget');
    assert.deepEqual(b.data, { limit: { max_cost_usd: 0.05, max_tokens: 1000000 }, used: { cost_usd: 0.06, tokens: 240 } });
    assert.ok(evs.indexOf(b) < evs.findIndex((x) => x.type === 'status' && x.data.reason === 'budget_exceeded'));

    r = await srv.post(`/agents/${a.id}/query`, { prompt: 'more' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'budget_exceeded');
    await srv.del(`/agents/${a.id}`);
  });

  test('a token budget counts all four token kinds', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', budget: { max_tokens: 50 } })).json;
    await srv.post(`/agents/${a.id}/query`, { prompt: 'usage:40:10:0' });
    const info = await srv.agentUntil(a.id, (x) => x.status === 'error');
    assert.equal(info.last_error.reason, 'budget_exceeded');
    assert.match(info.last_error.message, /50 tokens reached the limit of 50/);
    await srv.del(`/agents/${a.id}`);
  });

  test('a run flooding events is stopped (reason flood) and the agent takes new prompts', async () => {
    const a = (await srv.post('/agents', { backend: 'echo' })).json;
    await srv.post(`/agents/${a.id}/query`, { prompt: 'flood:500' });
    const info = await srv.agentUntil(a.id, (x) => x.status === 'error');
    assert.equal(info.last_error.reason, 'flood');
    const evs = await srv.eventsUntil(a.id, (e) => e.some((x) => x.type === 'status' && x.data.reason === 'flood'));
    assert.equal(evs.filter((x) => x.type === 'output').length, 50);
    const err = evs.find((x) => x.type === 'error');
    assert.equal(err.data.reason, 'flood');
    const r = await srv.post(`/agents/${a.id}/query`, { prompt: 'again' });
    assert.equal(r.status, 202);
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    await srv.del(`/agents/${a.id}`);
  });

  test('failed echo and command runs leave last_error', async () => {
    const e = (await srv.post('/agents', { backend: 'echo', prompt: 'fail' })).json;
    let info = await srv.agentUntil(e.id, (x) => x.status === 'error');
    assert.deepEqual(info.last_error, { reason: 'backend', message: 'echo: simulated failure' });
    const c = (await srv.post('/agents', { backend: 'command', argv: ['sh', '-c', 'exit 3'], prompt: 'x' })).json;
    info = await srv.agentUntil(c.id, (x) => x.status === 'error');
    assert.deepEqual(info.last_error, { reason: 'backend', message: 'the command exited with code 3' });
    const m = (await srv.post('/agents', { backend: 'command', argv: ['/nonexistent/prog'], prompt: 'x' })).json;
    info = await srv.agentUntil(m.id, (x) => x.status === 'error');
    assert.equal(info.last_error.reason, 'spawn');
    assert.match(info.last_error.message, /failed to start "\/nonexistent\/prog": .*ENOENT/);
    for (const a of [e, c, m]) await srv.del(`/agents/${a.id}`);
  });

  test('a command run flooding stderr is stopped too, its process group killed', async () => {
    const script = 'i=0; while [ $i -lt 100000 ]; do echo err $i >&2; i=$((i+1)); done; sleep 30';
    const a = (await srv.post('/agents', { backend: 'command', argv: ['sh', '-c', script], prompt: 'x' })).json;
    const info = await srv.agentUntil(a.id, (x) => x.status === 'error', { timeout: 20000 });
    assert.equal(info.last_error.reason, 'flood');
    assert.ok(info.event_count < 80, `${info.event_count} events`);
    const evs = (await srv.get(`/agents/${a.id}/events?limit=5000`)).json.events;
    assert.ok(evs.some((e) => e.type === 'exit'), 'the run was reaped');
    await srv.del(`/agents/${a.id}`);
  });

  test('a codex agent without its backend built fails its run cleanly', async () => {
    // Passes with the stub (reason backend) and with the real backend when codex is missing.
    const a = (await srv.post('/agents', { backend: 'codex', prompt: 'hi', env: { PATH: '/nonexistent' } })).json;
    const info = await srv.agentUntil(a.id, (x) => x.status === 'error', { timeout: 10000 });
    assert.ok(info.last_error && typeof info.last_error.reason === 'string');
    assert.ok(await srv.healthy());
    await srv.del(`/agents/${a.id}`);
  });

  // A process that left its run's process group (setsid) is out of reach of the group kill;
  // it still carries the agent's REVKA_SM_AGENT_ID, and closing the agent ends it.
  test('closing an agent kills what escaped its process group', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
    const pidFile = path.join(tmpDir(), 'escaped.pid');
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: ['sh', '-c', `setsid sh -c 'echo $$ > "${pidFile}"; exec sleep 300' </dev/null >/dev/null 2>&1 & echo started`],
      prompt: 'go',
    });
    assert.equal(r.status, 201, r.text);
    await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', { what: 'the escaped pid' });
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    await srv.agentUntil(r.json.id, (a) => a.status !== 'running');
    assert.equal(pidGone(pid), false, 'the escaped process outlives its run');
    const d = await srv.del(`/agents/${r.json.id}`);
    assert.equal(d.status, 200, d.text);
    await waitFor(() => pidGone(pid), { what: 'the escaped process killed' });
  });
});
