// The codex backend against test/fixtures/fake-codex-app-server.mjs (a fake `codex app-server`
// replaying protocol transcripts), through the sidecar's HTTP API: create, stream, follow-up on
// one thread and one process, interrupt, errors, usage, approval policies, bad app-servers
// (garbage, death, flood, silence), close without orphans, a token budget.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { startServer, tmpDir, pidGone, waitFor, openSse, sleep } from './helpers.js';

const FAKE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fake-codex-app-server.mjs');

const BASE_ENV = {
  REVKA_SM_CODEX_PATH: FAKE,
  REVKA_SM_KILL_GRACE_MS: '500',
  REVKA_SM_INTERRUPT_GRACE_MS: '3000',
  REVKA_SM_MAX_EVENTS_PER_RUN: '1000',
  REVKA_SM_CODEX_REQUEST_TIMEOUT_MS: '1500',
};

// The client messages the fake app-server logged (one JSON per line).
function clientLog(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

const ofType = (evs, type) => evs.filter((e) => e.type === type);
const lastStatus = (evs) => ofType(evs, 'status').at(-1);
const runningPid = (evs, run) => evs.find((e) => e.type === 'status' && e.text === 'running' && e.data.run === run && e.data.pid)?.data.pid;

describe('codex backend', () => {
  let srv;
  let dir;
  before(async () => {
    dir = tmpDir();
    srv = await startServer({ env: BASE_ENV });
  });
  after(async () => {
    await srv.stop();
  });

  // Creates a codex agent whose fake app-server logs to its own file.
  async function create(body, extraEnv = {}) {
    const log = path.join(dir, `log-${Math.random().toString(36).slice(2)}.jsonl`);
    const r = await srv.post('/agents', { backend: 'codex', ...body, env: { FAKE_CODEX_LOG: log, ...extraEnv, ...(body.env ?? {}) } });
    assert.equal(r.status, 201, r.text);
    return { agent: r.json, log };
  }
  const settled = (id, opts) => srv.agentUntil(id, (x) => x.status !== 'running' && x.queued === 0, { timeout: 8000, ...opts });
  const events = async (id, since = 0) => (await srv.get(`/agents/${id}/events?since=${since}&limit=5000`)).json.events;

  test('create: handshake, thread options, streamed turn mapped to assistant/output/usage/result; follow-up on the same thread and process', async () => {
    const cwd = tmpDir();
    const { agent, log } = await create({
      name: 'cx-hello',
      prompt: 'hello',
      cwd,
      model: 'gpt-5.1-codex',
      system_prompt: 'You are a Revka agent.',
      mcp_servers: {
        revka: { type: 'http', url: 'http://127.0.0.1:7777/mcp', headers: { Authorization: 'Bearer tok' } },
        local: { type: 'stdio', command: '/bin/true', args: ['-x'] },
      },
    });
    assert.equal(agent.status, 'running');
    const sse = openSse(srv.sock, `/agents/${agent.id}/stream`);
    const info = await settled(agent.id);
    assert.equal(info.status, 'idle');
    const evs = await events(agent.id);
    const types = evs.map((e) => e.type);
    // prompt, running, the thread announcement, reasoning, one assistant event (not one per
    // delta), usage, result, idle.
    assert.deepEqual(types, ['status', 'prompt', 'status', 'output', 'output', 'assistant', 'usage', 'result', 'status']);
    const [thread, reasoning] = ofType(evs, 'output');
    assert.equal(thread.data.kind, 'thread');
    assert.equal(thread.data.approval_policy, 'deny');
    assert.equal(reasoning.data.kind, 'reasoning');
    assert.equal(reasoning.text, 'Greeting the user.');
    const assistant = ofType(evs, 'assistant')[0];
    assert.equal(assistant.text, 'Hello from codex');
    assert.equal(assistant.data.model, 'gpt-5.1-codex');
    const usage = ofType(evs, 'usage')[0].data;
    assert.equal(usage.input_tokens, 60); // 100 input of which 40 cached
    assert.equal(usage.cache_read_input_tokens, 40);
    assert.equal(usage.output_tokens, 20);
    assert.equal(usage.cache_creation_input_tokens, 0);
    assert.equal(usage.cost_usd, null);
    const result = ofType(evs, 'result')[0];
    assert.equal(result.text, 'Hello from codex');
    assert.equal(result.data.is_error, false);
    assert.equal(result.data.subtype, 'completed');
    assert.match(result.data.thread_id, /^thr_/);
    assert.equal(info.thread_id, result.data.thread_id);
    assert.equal(info.model, 'gpt-5.1-codex');
    assert.equal(info.usage.input_tokens, 60);

    // What the client told the app-server.
    const msgs = clientLog(log);
    assert.equal(msgs[0].method, 'initialize');
    assert.equal(msgs[0].params.clientInfo.name, 'revka');
    assert.equal(msgs[0].jsonrpc, undefined);
    assert.deepEqual(msgs[1], { method: 'initialized' });
    const start = msgs.find((m) => m.method === 'thread/start').params;
    assert.equal(start.cwd, cwd);
    assert.equal(start.model, 'gpt-5.1-codex');
    assert.equal(start.developerInstructions, 'You are a Revka agent.');
    assert.equal(start.approvalPolicy, 'untrusted');
    assert.equal(start.sandbox, 'read-only');
    assert.deepEqual(start.config, {
      'mcp_servers.revka': { url: 'http://127.0.0.1:7777/mcp', http_headers: { Authorization: 'Bearer tok' } },
      'mcp_servers.local': { command: '/bin/true', args: ['-x'] },
    });
    const turn = msgs.find((m) => m.method === 'turn/start').params;
    assert.deepEqual(turn, { threadId: info.thread_id, input: [{ type: 'text', text: 'hello' }] });

    // The SSE stream saw the same events live.
    await sse.until(() => sse.events.some((e) => e.json?.type === 'result'));
    sse.close();

    // Follow-up: same process, same thread, usage summed.
    const pid1 = runningPid(evs, 1);
    assert.ok(pid1);
    const mark = info.event_count;
    assert.equal((await srv.post(`/agents/${agent.id}/query`, { prompt: 'usage 1000' })).status, 202);
    const info2 = await settled(agent.id);
    assert.equal(info2.status, 'idle');
    const later = await events(agent.id, mark);
    assert.equal(runningPid(later, 2), pid1, 'one app-server process per agent');
    const usages = ofType(later, 'usage').map((e) => e.data);
    assert.equal(usages.length, 2);
    const turnTokens = usages.reduce((n, u) => n + u.input_tokens + u.output_tokens + u.cache_read_input_tokens, 0);
    assert.equal(turnTokens, 1000);
    assert.equal(usages[1].totals.input_tokens + usages[1].totals.output_tokens + usages[1].totals.cache_read_input_tokens, 1120);
    assert.equal(info2.usage.runs, 2);
    assert.equal(ofType(later, 'output').length, 0, 'the thread is announced once');
    const msgs2 = clientLog(log);
    assert.equal(msgs2.filter((m) => m.method === 'initialize').length, 1);
    assert.equal(msgs2.filter((m) => m.method === 'thread/start').length, 1);
    const turns = msgs2.filter((m) => m.method === 'turn/start');
    assert.equal(turns.length, 2);
    assert.equal(turns[1].params.threadId, info.thread_id);
    const ids = msgs2.filter((m) => m.id !== undefined).map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
    await srv.del(`/agents/${agent.id}`);
    assert.ok(await waitFor(() => pidGone(pid1), { what: 'app-server gone' }));
  });

  test('interrupt: turn/interrupt, partial message kept, status idle (interrupted); interrupt of a finished agent; the thread goes on', async () => {
    const { agent, log } = await create({ prompt: 'slow' });
    await waitFor(() => clientLog(log).some((m) => m.method === 'turn/start'), { what: 'turn started' });
    await sleep(150);
    const r = await srv.post(`/agents/${agent.id}/interrupt`);
    assert.equal(r.status, 200);
    assert.equal(r.json.interrupted, true);
    const info = await settled(agent.id);
    assert.equal(info.status, 'idle');
    const evs = await events(agent.id);
    assert.equal(lastStatus(evs).data.reason, 'interrupted');
    const partial = ofType(evs, 'assistant')[0];
    assert.equal(partial.text, 'working on it');
    assert.equal(partial.data.partial, true);
    const result = ofType(evs, 'result')[0];
    assert.equal(result.data.subtype, 'interrupted');
    const intr = clientLog(log).find((m) => m.method === 'turn/interrupt');
    assert.equal(intr.params.threadId, info.thread_id);
    assert.match(intr.params.turnId, /^turn_/);

    // Nothing runs now.
    const again = await srv.post(`/agents/${agent.id}/interrupt`);
    assert.equal(again.status, 200);
    assert.equal(again.json.interrupted, false);

    assert.equal((await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello' })).status, 202);
    const info2 = await settled(agent.id);
    assert.equal(info2.status, 'idle');
    assert.equal(info2.thread_id, info.thread_id);
    await srv.del(`/agents/${agent.id}`);
  });

  test('a failed turn: error + result is_error, status error with last_error; the agent takes new prompts', async () => {
    const { agent } = await create({ prompt: 'error' });
    const info = await settled(agent.id);
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'backend');
    assert.match(info.last_error.message, /usage limit reached/);
    const evs = await events(agent.id);
    const retry = ofType(evs, 'output').find((e) => e.data.kind === 'retry');
    assert.match(retry.text, /stream disconnected/);
    const err = ofType(evs, 'error')[0];
    assert.equal(err.data.reason, 'backend');
    assert.equal(err.data.codex_error_info, 'usageLimitExceeded');
    const result = ofType(evs, 'result')[0];
    assert.equal(result.data.is_error, true);
    assert.equal(result.data.subtype, 'failed');
    assert.equal(lastStatus(evs).data.reason, 'backend');
    await srv.post(`/agents/${agent.id}/query`, { prompt: 'hi there' });
    const info2 = await settled(agent.id);
    assert.equal(info2.status, 'idle');
    assert.equal(ofType(await events(agent.id, info.event_count), 'assistant')[0].text, 'echo: hi there');
    await srv.del(`/agents/${agent.id}`);
  });

  // A "tool" turn under one policy: the approval events, the tool events, the thread options.
  async function toolTurn(policy) {
    const body = { prompt: 'tool' };
    if (policy) body.approval_policy = policy;
    const { agent, log } = await create(body);
    const info = await settled(agent.id);
    assert.equal(info.status, 'idle', JSON.stringify(info.last_error));
    const evs = await events(agent.id);
    const start = clientLog(log).find((m) => m.method === 'thread/start').params;
    await srv.del(`/agents/${agent.id}`);
    return {
      evs,
      start,
      approvals: evs.filter((e) => e.type === 'status' && e.data.approval).map((e) => e.data.approval),
      uses: ofType(evs, 'tool_use'),
      results: ofType(evs, 'tool_result'),
      assistant: ofType(evs, 'assistant').map((e) => e.text),
    };
  }

  test('approvals, policy deny (the default): read-only sandbox, every request declined and recorded', async () => {
    const t = await toolTurn(undefined);
    assert.equal(t.start.approvalPolicy, 'untrusted');
    assert.equal(t.start.sandbox, 'read-only');
    assert.deepEqual(
      t.approvals.map((a) => [a.request, a.kind, a.decision, a.policy]),
      [
        ['item/commandExecution/requestApproval', 'command', 'decline', 'deny'],
        ['item/fileChange/requestApproval', 'file_change', 'decline', 'deny'],
      ],
    );
    assert.equal(t.approvals[0].command, "/bin/bash -lc 'echo hi'");
    assert.deepEqual(
      t.uses.map((u) => u.data.name),
      ['command', 'file_change', 'mcp__revka__list_servers'],
    );
    assert.deepEqual(t.uses[0].data.input, { command: "/bin/bash -lc 'echo hi'", cwd: t.start.cwd });
    assert.equal(t.uses[1].data.input.changes[0].kind, 'add');
    assert.deepEqual(t.uses[2].data.input, { verbose: true });
    const [cmd, fc, mcp] = t.results;
    assert.equal(cmd.data.tool_use_id, t.uses[0].data.id);
    assert.equal(cmd.data.is_error, true);
    assert.equal(cmd.data.status, 'declined');
    assert.equal(cmd.text, 'command declined');
    assert.equal(fc.data.is_error, true);
    assert.match(fc.text, /^declined: .*hello\.txt$/);
    assert.equal(mcp.text, '["fs","git"]');
    assert.equal(mcp.data.is_error, false);
    assert.deepEqual(t.assistant, ['command was declined; file change declined']);
  });

  test('approvals, policy accept: workspace-write sandbox, requests approved; the fake runs what was approved', async () => {
    const t = await toolTurn('accept');
    assert.equal(t.start.approvalPolicy, 'on-request');
    assert.equal(t.start.sandbox, 'workspace-write');
    assert.deepEqual(
      t.approvals.map((a) => a.decision),
      ['accept', 'accept'],
    );
    const [cmd, fc] = t.results;
    assert.equal(cmd.text, 'hi\n');
    assert.equal(cmd.data.exit_code, 0);
    assert.equal(cmd.data.is_error, false);
    assert.equal(fc.data.is_error, false);
    assert.deepEqual(t.assistant, ['command ran; file change applied']);
  });

  test('approvals, policy sandboxed: codex never asks (approvalPolicy never, workspace-write)', async () => {
    const t = await toolTurn('sandboxed');
    assert.equal(t.start.approvalPolicy, 'never');
    assert.equal(t.start.sandbox, 'workspace-write');
    assert.deepEqual(t.approvals, []);
    assert.equal(t.results[0].data.is_error, false);
  });

  test('permissions, MCP tool elicitations and user-input requests are answered by the policy', async () => {
    const run = async (policy) => {
      const { agent } = await create({ prompt: 'perm', approval_policy: policy });
      const info = await settled(agent.id);
      assert.equal(info.status, 'idle', JSON.stringify(info.last_error));
      const evs = await events(agent.id);
      await srv.del(`/agents/${agent.id}`);
      return {
        text: ofType(evs, 'assistant')[0].text,
        approvals: evs.filter((e) => e.type === 'status' && e.data.approval).map((e) => [e.data.approval.kind, e.data.approval.decision]),
      };
    };
    const deny = await run('deny');
    assert.equal(deny.text, 'network denied; elicitation decline; 0 answers');
    assert.deepEqual(deny.approvals, [
      ['permissions', 'decline'],
      ['mcp_tool_call', 'decline'],
      ['user_input', 'unanswered'],
    ]);
    const accept = await run('accept');
    assert.equal(accept.text, 'network granted; elicitation accept; 0 answers');
    assert.deepEqual(accept.approvals, [
      ['permissions', 'accept'],
      ['mcp_tool_call', 'accept'],
      ['user_input', 'unanswered'],
    ]);
  });

  test('an unknown approval_policy or a codex-unusable MCP server name is refused at create; an unknown server request gets -32601', async () => {
    const bad = await srv.post('/agents', { backend: 'codex', prompt: 'hello', approval_policy: 'yolo' });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.message, 'unknown approval_policy "yolo" (one of: deny, sandboxed, accept)');
    const badName = await srv.post('/agents', {
      backend: 'codex',
      mcp_servers: { 'my server': { type: 'http', url: 'http://127.0.0.1:1/mcp' } },
    });
    assert.equal(badName.status, 400, badName.text);
    assert.match(badName.json.error.message, /mcp_servers name "my server" cannot be used with codex/);
    // Other backends do not use the policy: validated as a string, not refused.
    const echo = await srv.post('/agents', { backend: 'echo', approval_policy: 'yolo' });
    assert.equal(echo.status, 201, echo.text);
    await srv.del(`/agents/${echo.json.id}`);

    // The fake exits with a protocol violation unless it gets error -32601.
    const b = await create({ prompt: 'unknown' });
    const info2 = await settled(b.agent.id);
    assert.equal(info2.status, 'idle', JSON.stringify(info2.last_error));
    const evs = await events(b.agent.id);
    assert.equal(ofType(evs, 'assistant')[0].text, 'client rejected the unknown request');
    assert.equal(ofType(evs, 'output').find((e) => e.data.kind === 'unsupported_request').data.method, 'revka/notAMethod');
    const resp = clientLog(b.log).find((m) => m.id === 'srv-1');
    assert.equal(resp.error.code, -32601);
    await srv.del(`/agents/${b.agent.id}`);
  });

  // A bad app-server fails its agent with `reason`; a second codex agent mid-turn and the
  // sidecar are unaffected; the failed agent's next prompt starts a new process that resumes the
  // thread.
  async function badBackend(prompt, reason, messageRe) {
    const other = await create({ prompt: 'slow' });
    await waitFor(() => clientLog(other.log).some((m) => m.method === 'turn/start'), { what: 'other turn started' });
    const { agent, log } = await create({ prompt: 'hello' });
    const first = await settled(agent.id);
    assert.equal(first.status, 'idle');
    const pid1 = runningPid(await events(agent.id), 1);
    await srv.post(`/agents/${agent.id}/query`, { prompt });
    const info = await settled(agent.id, { timeout: 10000 });
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, reason);
    assert.match(info.last_error.message, messageRe);
    const evs = await events(agent.id, first.event_count);
    const err = ofType(evs, 'error')[0];
    assert.equal(err.data.reason, reason);
    assert.equal(lastStatus(evs).data.reason, reason);
    assert.ok(await waitFor(() => pidGone(pid1), { what: 'failed app-server gone' }));
    // Others unaffected.
    assert.ok(await srv.healthy());
    assert.equal((await srv.get(`/agents/${other.agent.id}`)).json.status, 'running');
    await srv.post(`/agents/${other.agent.id}/interrupt`);
    assert.equal((await settled(other.agent.id)).status, 'idle');
    // A new prompt: a new process resumes the thread.
    await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello' });
    const again = await settled(agent.id);
    assert.equal(again.status, 'idle');
    assert.equal(again.thread_id, first.thread_id);
    const later = await events(agent.id, info.event_count);
    const pid2 = runningPid(later, 3);
    assert.ok(pid2 && pid2 !== pid1);
    const resumed = ofType(later, 'output').find((e) => e.data.kind === 'thread');
    assert.equal(resumed.data.resumed, true);
    const resume = clientLog(log).find((m) => m.method === 'thread/resume');
    assert.equal(resume.params.threadId, first.thread_id);
    await srv.del(`/agents/${agent.id}`);
    await srv.del(`/agents/${other.agent.id}`);
    return info;
  }

  test('garbage on stdout: reason protocol with the first bytes of the line', async () => {
    await badBackend('garbage', 'protocol', /not JSON: this is not JSON \{/);
  });

  test('the app-server dies mid-turn: reason died with the exit code and the stderr tail', async () => {
    await badBackend('die', 'died', /died mid-turn \(exit code 70\); stderr: fake-codex: thread panicked: simulated crash/);
  });

  test('a flood of notifications: reason flood, bounded', async () => {
    const info = await badBackend('flood', 'flood', /more than 1000/);
    assert.ok(info.event_count < 1200, `events bounded (${info.event_count})`);
  });

  test('an app-server that does not answer: reason timeout naming the request', async () => {
    const { agent } = await create({ prompt: 'hello' }, { FAKE_CODEX_HANG: 'thread/start' });
    const info = await settled(agent.id, { timeout: 10000 });
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'timeout');
    assert.match(info.last_error.message, /did not answer thread\/start \(request 2\) within 1500 ms/);
    await srv.del(`/agents/${agent.id}`);
  });

  test('close ends the app-server process group (no orphan)', async () => {
    const pidfile = path.join(dir, 'grandchild.pid');
    const { agent } = await create({ prompt: 'hello' }, { FAKE_CODEX_CHILD_PIDFILE: pidfile });
    await settled(agent.id);
    const pid = runningPid(await events(agent.id), 1);
    const grandchild = Number(fs.readFileSync(pidfile, 'utf8'));
    assert.ok(!pidGone(pid) && !pidGone(grandchild), 'app-server and its child run between turns');
    const r = await srv.del(`/agents/${agent.id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.agent.status, 'exited');
    assert.ok(pidGone(pid), 'app-server gone when DELETE answers');
    assert.ok(await waitFor(() => pidGone(grandchild), { timeout: 3000, what: 'grandchild gone' }));
  });

  test('a token budget stops the agent: budget event, status error budget_exceeded, 409 afterwards', async () => {
    const { agent } = await create({ prompt: 'usage 2000', budget: { max_tokens: 500 } });
    const info = await settled(agent.id);
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'budget_exceeded');
    assert.deepEqual(info.budget, { max_tokens: 500 });
    const evs = await events(agent.id);
    const budget = ofType(evs, 'budget')[0];
    assert.match(budget.text, /^budget exceeded: /);
    assert.ok(budget.data.used.tokens >= 500);
    const r = await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'budget_exceeded');
    await srv.del(`/agents/${agent.id}`);
  });
});

describe('codex backend: sidecar defaults', () => {
  test('REVKA_SM_CODEX_APPROVALS sets the default policy', async () => {
    const srv = await startServer({ env: { ...BASE_ENV, REVKA_SM_CODEX_APPROVALS: 'sandboxed' } });
    try {
      const log = path.join(tmpDir(), 'log.jsonl');
      const r = await srv.post('/agents', { backend: 'codex', prompt: 'hello', env: { FAKE_CODEX_LOG: log } });
      await srv.agentUntil(r.json.id, (x) => x.status === 'idle', { timeout: 8000 });
      const start = clientLog(log).find((m) => m.method === 'thread/start').params;
      assert.equal(start.approvalPolicy, 'never');
      assert.equal(start.sandbox, 'workspace-write');
      await srv.del(`/agents/${r.json.id}`);
    } finally {
      await srv.stop();
    }
  });

  test('a missing codex executable: reason spawn naming the path and REVKA_SM_CODEX_PATH', async () => {
    const srv = await startServer({ env: { ...BASE_ENV, REVKA_SM_CODEX_PATH: '/nonexistent/codex' } });
    try {
      const r = await srv.post('/agents', { backend: 'codex', prompt: 'hello' });
      const info = await srv.agentUntil(r.json.id, (x) => x.status === 'error', { timeout: 8000 });
      assert.equal(info.last_error.reason, 'spawn');
      assert.match(info.last_error.message, /failed to start the codex app-server "\/nonexistent\/codex": .*ENOENT.*REVKA_SM_CODEX_PATH/);
      assert.ok(await srv.healthy());
      await srv.del(`/agents/${r.json.id}`);
    } finally {
      await srv.stop();
    }
  });
});

// Opt-in, never in CI: REVKA_TEST_REAL_CODEX=1 with a logged-in `codex` on PATH (or
// REVKA_SM_CODEX_PATH) runs one real prompt under the default (deny) policy.
function realCodex() {
  if (process.env.REVKA_TEST_REAL_CODEX !== '1') return null;
  const bin = process.env.REVKA_SM_CODEX_PATH || 'codex';
  try {
    execFileSync(bin, ['--version'], { stdio: 'ignore', timeout: 10000 });
    return bin;
  } catch {
    return null;
  }
}

describe('codex backend: a real codex app-server (opt-in)', () => {
  const bin = realCodex();
  test('one real prompt', { skip: bin ? false : 'set REVKA_TEST_REAL_CODEX=1 with codex installed and logged in' }, async () => {
    const srv = await startServer({ env: { REVKA_SM_CODEX_PATH: bin } });
    try {
      const r = await srv.post('/agents', { backend: 'codex', prompt: 'Reply with the single word: ok', cwd: tmpDir() });
      const info = await srv.agentUntil(r.json.id, (x) => x.status !== 'running', { timeout: 180000 });
      const evs = (await srv.get(`/agents/${r.json.id}/events?limit=5000`)).json.events;
      assert.equal(info.status, 'idle', JSON.stringify(info.last_error));
      assert.ok(evs.some((e) => e.type === 'assistant'));
      assert.ok(evs.some((e) => e.type === 'result'));
      await srv.del(`/agents/${r.json.id}`);
    } finally {
      await srv.stop();
    }
  });
});
