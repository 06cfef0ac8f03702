// The claude backend driven through the real Claude Agent SDK (node_modules) against
// test/fixtures/fake-claude.mjs, a fake Claude Code CLI (no network, no model): event mapping,
// session resume, interrupts, error results, protocol garbage, a CLI dying mid-turn, floods,
// budgets, and the SDK missing. Skipped (with a message) only when node_modules is absent.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, tmpDir, pidGone, waitFor } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FAKE = path.join(HERE, 'fixtures', 'fake-claude.mjs');
const SDK_DIR = path.join(HERE, '..', 'node_modules', '@anthropic-ai', 'claude-agent-sdk');
const haveSdk = fs.existsSync(path.join(SDK_DIR, 'package.json'));
const skip = haveSdk ? false : 'node_modules is absent: run `npm ci` in sidecars/session-manager to test the claude backend';

const readLog = (file) =>
  fs.existsSync(file)
    ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
    : [];
const types = (evs) => evs.map((e) => e.type);
const runEnded = (run) => (evs) =>
  evs.some((e) => e.type === 'status' && e.data.run === run && (e.text === 'idle' || e.text === 'error'));

describe('claude backend (real SDK, fake CLI)', { skip }, () => {
  let srv;
  const dir = tmpDir();
  before(async () => {
    srv = await startServer({
      dir,
      env: {
        REVKA_SM_CLAUDE_PATH: FAKE,
        REVKA_PROCESS_TREE: 'tree-of-this-test',
        REVKA_SM_MAX_EVENTS_PER_RUN: '1000',
        REVKA_SM_INTERRUPT_GRACE_MS: '5000',
        REVKA_SM_KILL_GRACE_MS: '1000',
      },
    });
  });
  after(async () => {
    await srv.stop();
    assert.doesNotMatch(srv.stderr(), /uncaught exception|unhandled promise rejection/);
  });

  const create = async (body) => {
    const logFile = path.join(dir, `fake-${Math.random().toString(16).slice(2)}.log`);
    const env = { ...body.env, FAKE_CLAUDE_LOG: logFile };
    const r = await srv.post('/agents', { backend: 'claude', cwd: dir, ...body, env });
    assert.equal(r.status, 201, r.text);
    return { agent: r.json, logFile };
  };

  // The prompt goes to the CLI on stdin, never in its environment: a single environment string
  // over 128 KiB makes the spawn fail (E2BIG).
  test('a 300 KiB prompt reaches the CLI (not through its environment)', async () => {
    const prompt = `hello ${'x'.repeat(300 * 1024)}`;
    const { agent, logFile } = await create({ name: 'long', prompt });
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.status, 'idle', JSON.stringify(info.last_error));
    assert.ok(types(evs).includes('result'), `${types(evs)}`);
    const started = readLog(logFile).find((l) => l.argv);
    assert.equal(started.prompt_env, null, 'REVKA_SM_PROMPT is not set for the CLI');
    await srv.del(`/agents/${agent.id}`);
  });

  test('a prompt with a tool call: assistant, tool_use, tool_result, usage, result; follow-up resumes', async () => {
    const { agent, logFile } = await create({
      name: 'toolie',
      env: { REVKA_PROCESS_TREE: 'forged' },
      prompt: 'please use a tool',
      model: 'claude-fake-1',
      allowed_tools: ['Read'],
      system_prompt: 'be terse',
      permission_mode: 'acceptEdits',
      mcp_servers: { revka: { type: 'http', url: 'http://127.0.0.1:9/mcp', headers: { authorization: 'Bearer t' } } },
    });
    let evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const t = types(evs);
    for (const x of ['prompt', 'assistant', 'tool_use', 'tool_result', 'usage', 'result']) assert.ok(t.includes(x), `${x} in ${t}`);
    assert.ok(t.indexOf('usage') < t.indexOf('result'), 'usage before result');
    const init = evs.find((e) => e.type === 'status' && e.data.subtype === 'init');
    assert.match(init.data.session_id, /^fake-session-/);
    assert.equal(init.data.model, 'claude-fake-1');
    assert.deepEqual(init.data.tools, ['Read', 'Bash']);
    const tu = evs.find((e) => e.type === 'tool_use');
    assert.equal(tu.text, 'Read');
    assert.deepEqual(tu.data, { run: 1, id: 'toolu_fake_1', name: 'Read', input: { file_path: '/etc/hostname' } });
    const tr = evs.find((e) => e.type === 'tool_result');
    assert.equal(tr.text, 'fake file contents');
    assert.deepEqual(tr.data, { run: 1, tool_use_id: 'toolu_fake_1', is_error: false });
    const as = evs.filter((e) => e.type === 'assistant').map((e) => e.text);
    assert.deepEqual(as, ['Let me look.', 'The file says: fake file contents']);
    assert.equal(evs.find((e) => e.type === 'assistant').data.model, 'claude-fake-1');
    const u = evs.find((e) => e.type === 'usage');
    assert.equal(u.data.input_tokens, 12);
    assert.equal(u.data.output_tokens, 34);
    assert.equal(u.data.cache_read_input_tokens, 10);
    assert.equal(u.data.cache_creation_input_tokens, 5);
    assert.equal(u.data.cost_usd, 0.001);
    const res = evs.find((e) => e.type === 'result');
    assert.equal(res.text, 'The file says: fake file contents');
    assert.equal(res.data.is_error, false);
    assert.equal(res.data.subtype, 'success');
    assert.equal(res.data.session_id, init.data.session_id);
    assert.equal(res.data.num_turns, 1);
    const end = evs[evs.length - 1];
    assert.equal(end.type, 'status');
    assert.equal(end.text, 'idle');

    let info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.session_id, init.data.session_id);
    assert.equal(info.model, 'claude-fake-1');
    assert.equal(info.usage.runs, 1);
    assert.equal(info.usage.cost_usd, 0.001);

    // what the SDK handed the CLI
    const log1 = readLog(logFile);
    const argv = log1[0].argv;
    assert.equal(log1[0].tree, 'tree-of-this-test', 'the daemon marker is kept, the forged one ignored');
    assert.equal(log1[0].cwd, fs.realpathSync(dir));
    assert.equal(log1[0].agent, agent.id);
    assert.ok(argv.includes('--model=claude-fake-1'), argv.join(' '));
    assert.ok(argv.includes('--allowedTools=Read'), argv.join(' '));
    assert.ok(argv.includes('--permission-mode=acceptEdits'), argv.join(' '));
    assert.ok(!argv.some((a) => a.startsWith('--resume')));
    const initReq = log1.find((x) => x.stdin && x.stdin.type === 'control_request').stdin.request;
    assert.equal(initReq.subtype, 'initialize');
    assert.deepEqual(initReq.systemPrompt, ['be terse']);
    assert.deepEqual(initReq.mcpServers, {
      revka: { type: 'http', url: 'http://127.0.0.1:9/mcp', headers: { authorization: 'Bearer t' } },
    });
    const userMsg = log1.find((x) => x.stdin && x.stdin.type === 'user').stdin;
    assert.deepEqual(userMsg.message.content, [{ type: 'text', text: 'please use a tool' }]);

    // follow-up: same session, resumed
    const r = await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello again' });
    assert.equal(r.status, 202);
    evs = await srv.eventsUntil(agent.id, runEnded(2), { timeout: 15000 });
    const log2 = readLog(logFile).filter((x) => x.argv);
    assert.equal(log2.length, 2);
    assert.ok(log2[1].argv.includes(`--resume=${init.data.session_id}`), log2[1].argv.join(' '));
    const a2 = evs.filter((e) => e.type === 'assistant' && e.data.run === 2);
    assert.deepEqual(a2.map((e) => e.text), ['Hello from fake claude: hello again']);
    info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.session_id, init.data.session_id);
    assert.equal(info.usage.runs, 2);
    assert.equal(info.usage.input_tokens, 24);
    assert.equal(info.status, 'idle');
    // the CLI processes are gone
    for (const x of log2) assert.ok(pidGone(x.pid), `pid ${x.pid} gone`);
    await srv.del(`/agents/${agent.id}`);
  });

  test('interrupt a slow run: the turn ends idle (interrupted), the CLI group is gone', async () => {
    const { agent, logFile } = await create({ prompt: 'be slow please' });
    await srv.eventsUntil(agent.id, (evs) => evs.some((e) => e.type === 'assistant' && e.text === 'working'), { timeout: 15000 });
    const grandchild = await waitFor(() => readLog(logFile).find((x) => x.grandchild)?.grandchild, { what: 'grandchild' });
    const running = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(running.status, 'running');
    assert.equal(typeof running.pid, 'number');
    const r = await srv.post(`/agents/${agent.id}/interrupt`, {});
    assert.equal(r.status, 200);
    assert.equal(r.json.interrupted, true);
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const end = evs[evs.length - 1];
    assert.equal(end.text, 'idle');
    assert.equal(end.data.reason, 'interrupted');
    assert.ok(evs.some((e) => e.type === 'interrupt'));
    assert.ok(!evs.some((e) => e.type === 'error'), 'an interrupt is not an error');
    await waitFor(() => pidGone(running.pid) && pidGone(grandchild), { what: 'CLI and grandchild gone' });
    // interrupting the finished agent: a clean answer
    const again = await srv.post(`/agents/${agent.id}/interrupt`, {});
    assert.equal(again.status, 200);
    assert.equal(again.json.interrupted, false);
    assert.equal(again.json.agent.status, 'idle');
    await srv.del(`/agents/${agent.id}`);
  });

  test('DELETE during a run kills the CLI and what it started', async () => {
    const { agent, logFile } = await create({ prompt: 'slow' });
    const grandchild = await waitFor(() => readLog(logFile).find((x) => x.grandchild)?.grandchild, {
      what: 'grandchild',
      timeout: 15000,
    });
    const cli = readLog(logFile)[0].pid;
    const r = await srv.del(`/agents/${agent.id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.agent.status, 'exited');
    await waitFor(() => pidGone(cli) && pidGone(grandchild), { what: 'no orphan' });
  });

  test('an error result: status error with last_error, the agent takes new prompts', async () => {
    const { agent } = await create({ prompt: 'produce an error' });
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const res = evs.find((e) => e.type === 'result');
    assert.equal(res.data.is_error, true);
    assert.equal(res.data.subtype, 'error_during_execution');
    const err = evs.find((e) => e.type === 'error');
    assert.equal(err.data.reason, 'backend');
    assert.match(err.text, /simulated failure/);
    const info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'backend');
    assert.match(info.last_error.message, /simulated failure/);
    const r = await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello' });
    assert.equal(r.status, 202);
    await srv.eventsUntil(agent.id, runEnded(2), { timeout: 15000 });
    assert.equal((await srv.get(`/agents/${agent.id}`)).json.status, 'idle');
    await srv.del(`/agents/${agent.id}`);
  });

  test('garbage on the CLI stream: reason protocol; another agent and the sidecar are unaffected', async () => {
    const { agent: good } = await create({ prompt: 'slow' });
    const { agent, logFile } = await create({ prompt: 'garbage' });
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const err = evs.find((e) => e.type === 'error');
    assert.equal(err.data.reason, 'protocol');
    assert.match(err.text, /not JSON: this is not JSON \{"type": /);
    const info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'protocol');
    await waitFor(() => pidGone(readLog(logFile)[0].pid), { what: 'garbage CLI killed' });
    assert.ok(await srv.healthy());
    assert.equal((await srv.get(`/agents/${good.id}`)).json.status, 'running');
    await srv.post(`/agents/${good.id}/interrupt`, {});
    await srv.eventsUntil(good.id, runEnded(1), { timeout: 15000 });
    assert.equal((await srv.get(`/agents/${good.id}`)).json.status, 'idle');
    await srv.del(`/agents/${good.id}`);
    await srv.del(`/agents/${agent.id}`);
  });

  test('the CLI dies mid-turn: reason died with the exit code and stderr tail', async () => {
    const { agent } = await create({ prompt: 'die now' });
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const err = evs.find((e) => e.type === 'error');
    assert.equal(err.data.reason, 'died');
    assert.match(err.text, /exited with code 3/);
    assert.match(err.text, /simulated crash mid-turn/);
    assert.ok(evs.some((e) => e.type === 'assistant' && e.text === 'about to die'));
    const info = (await srv.get(`/agents/${agent.id}`)).json;
    assert.equal(info.status, 'error');
    assert.equal(info.last_error.reason, 'died');
    await srv.del(`/agents/${agent.id}`);
  });

  test('a flooding run is stopped at REVKA_SM_MAX_EVENTS_PER_RUN (reason flood)', async () => {
    const { agent } = await create({ prompt: 'flood' });
    await srv.agentUntil(agent.id, (x) => x.status === 'error', { timeout: 20000 });
    const evs = (await srv.get(`/agents/${agent.id}/events?limit=5000`)).json.events;
    assert.ok(runEnded(1)(evs));
    const err = evs.find((e) => e.type === 'error');
    assert.equal(err.data.reason, 'flood');
    const content = evs.filter((e) => e.data && e.data.run === 1 && !['status', 'error', 'prompt'].includes(e.type));
    assert.ok(content.length <= 1000, `${content.length} events kept`);
    assert.equal((await srv.get(`/agents/${agent.id}`)).json.last_error.reason, 'flood');
    await srv.del(`/agents/${agent.id}`);
  });

  test('a budget stops the agent: budget event, status error budget_exceeded, 409 after', async () => {
    const { agent } = await create({ prompt: 'usage 0.3', budget: { max_cost_usd: 0.5 } });
    await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    assert.equal((await srv.get(`/agents/${agent.id}`)).json.status, 'idle');
    await srv.post(`/agents/${agent.id}/query`, { prompt: 'usage 0.3' });
    const evs = await srv.eventsUntil(agent.id, runEnded(2), { timeout: 15000 });
    const b = evs.find((e) => e.type === 'budget');
    assert.ok(b, 'budget event');
    assert.match(b.text, /^budget exceeded: cost \$0.6 reached the limit of \$0.5/);
    assert.deepEqual(b.data, { limit: { max_cost_usd: 0.5 }, used: { cost_usd: 0.6, tokens: 3030 } });
    const end = evs[evs.length - 1];
    assert.equal(end.text, 'error');
    assert.equal(end.data.reason, 'budget_exceeded');
    const r = await srv.post(`/agents/${agent.id}/query`, { prompt: 'hello' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'budget_exceeded');
    await srv.del(`/agents/${agent.id}`);
  });

  test('unknown SDK messages are recorded as output with their sdk_type', async () => {
    const { agent } = await create({ prompt: 'something unknown' });
    const evs = await srv.eventsUntil(agent.id, runEnded(1), { timeout: 15000 });
    const st = evs.find((e) => e.type === 'output' && e.data.sdk_type === 'system');
    assert.equal(st.data.subtype, 'status');
    assert.equal(st.data.message.status, 'compacting');
    const fut = evs.find((e) => e.type === 'output' && e.data.sdk_type === 'fake_future_message');
    assert.ok(fut, `the unknown message type is kept: ${JSON.stringify(types(evs))}`);
    assert.ok(evs.some((e) => e.type === 'assistant' && e.text === 'known answer'));
    await srv.del(`/agents/${agent.id}`);
  });

  test('a CLI that cannot be started: the run fails, the agent stays usable', async () => {
    const other = await startServer({ env: { REVKA_SM_CLAUDE_PATH: path.join(dir, 'no-such-claude') } });
    try {
      const a = (await other.post('/agents', { backend: 'claude', prompt: 'hello' })).json;
      const info = await other.agentUntil(a.id, (x) => x.status === 'error', { timeout: 15000 });
      assert.equal(info.last_error.reason, 'spawn', JSON.stringify(info.last_error));
      assert.match(info.last_error.message, /no-such-claude/);
      assert.ok(await other.healthy());
    } finally {
      await other.stop();
    }
  });
});

describe('claude backend: a CLI that ignores the interrupt', { skip }, () => {
  test('is terminated after REVKA_SM_INTERRUPT_GRACE_MS; the run ends idle (interrupted)', async () => {
    const srv = await startServer({
      env: { REVKA_SM_CLAUDE_PATH: FAKE, REVKA_SM_INTERRUPT_GRACE_MS: '300', REVKA_SM_KILL_GRACE_MS: '500' },
    });
    try {
      const a = (await srv.post('/agents', { backend: 'claude', prompt: 'be stubborn' })).json;
      await srv.eventsUntil(a.id, (evs) => evs.some((e) => e.text === 'ignoring you'), { timeout: 15000 });
      const pid = (await srv.get(`/agents/${a.id}`)).json.pid;
      assert.equal((await srv.post(`/agents/${a.id}/interrupt`, {})).json.interrupted, true);
      const evs = await srv.eventsUntil(a.id, runEnded(1), { timeout: 10000 });
      const end = evs[evs.length - 1];
      assert.equal(end.text, 'idle');
      assert.equal(end.data.reason, 'interrupted');
      await waitFor(() => pidGone(pid), { what: 'stubborn CLI gone' });
      assert.ok(!evs.some((e) => e.type === 'result'), 'it never finished its turn');
    } finally {
      await srv.stop();
    }
  });
});

describe('claude backend without the SDK', () => {
  test('a copy without node_modules starts, serves echo, and fails claude runs with sdk_missing', async () => {
    const copy = tmpDir();
    const src = path.join(HERE, '..');
    for (const f of fs.readdirSync(src)) if (f.endsWith('.js') || f === 'package.json') fs.copyFileSync(path.join(src, f), path.join(copy, f));
    fs.mkdirSync(path.join(copy, 'backends'));
    for (const f of fs.readdirSync(path.join(src, 'backends'))) fs.copyFileSync(path.join(src, 'backends', f), path.join(copy, 'backends', f));
    const srv = await startServer({ script: path.join(copy, 'session-manager.js'), env: { NODE_PATH: '' } });
    try {
      const e = (await srv.post('/agents', { backend: 'echo', prompt: 'hi' })).json;
      await srv.agentUntil(e.id, (x) => x.status === 'idle');
      const a = (await srv.post('/agents', { backend: 'claude', prompt: 'hello' })).json;
      const info = await srv.agentUntil(a.id, (x) => x.status === 'error');
      assert.equal(info.last_error.reason, 'sdk_missing');
      assert.ok(await srv.healthy());
    } finally {
      await srv.stop();
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  test('a claude run fails with reason sdk_missing naming the install command', async () => {
    const srv = await startServer({ env: { REVKA_SM_CLAUDE_SDK_MODULE: '@revka/no-such-claude-sdk' } });
    try {
      const a = (await srv.post('/agents', { backend: 'claude', prompt: 'hello' })).json;
      const info = await srv.agentUntil(a.id, (x) => x.status === 'error');
      assert.equal(info.last_error.reason, 'sdk_missing');
      assert.match(info.last_error.message, /revka install --with-session-manager/);
      assert.match(info.last_error.message, /npm ci/);
      const evs = (await srv.get(`/agents/${a.id}/events`)).json.events;
      assert.equal(evs.find((e) => e.type === 'error').data.reason, 'sdk_missing');
      // echo still works
      const e = (await srv.post('/agents', { backend: 'echo', prompt: 'hi' })).json;
      await srv.agentUntil(e.id, (x) => x.status === 'idle');
      assert.ok(await srv.healthy());
    } finally {
      await srv.stop();
    }
  });
});

// Opt-in, never in CI: REVKA_TEST_REAL_CLAUDE=1 with the SDK installed and a logged-in `claude`
// on PATH (or REVKA_SM_CLAUDE_PATH; unset = the SDK's own binary) runs one real prompt.
function realClaude() {
  if (process.env.REVKA_TEST_REAL_CLAUDE !== '1' || !haveSdk) return null;
  const bin = process.env.REVKA_SM_CLAUDE_PATH || 'claude';
  try {
    execFileSync(bin, ['--version'], { stdio: 'ignore', timeout: 10000 });
    return bin;
  } catch {
    return null;
  }
}

describe('claude backend: a real Claude Code (opt-in)', () => {
  const bin = realClaude();
  test('one real prompt', { skip: bin ? false : 'set REVKA_TEST_REAL_CLAUDE=1 with the SDK installed and claude logged in' }, async () => {
    const srv = await startServer({ env: { REVKA_SM_CLAUDE_PATH: bin } });
    try {
      const r = await srv.post('/agents', { backend: 'claude', prompt: 'Reply with the single word: ok', cwd: tmpDir() });
      assert.equal(r.status, 201, r.text);
      const info = await srv.agentUntil(r.json.id, (x) => x.status !== 'running', { timeout: 180000 });
      const evs = (await srv.get(`/agents/${r.json.id}/events?limit=5000`)).json.events;
      assert.equal(info.status, 'idle', JSON.stringify(info.last_error));
      assert.ok(evs.some((e) => e.type === 'assistant'));
      assert.ok(evs.some((e) => e.type === 'usage'));
      assert.ok(evs.some((e) => e.type === 'result'));
      await srv.del(`/agents/${r.json.id}`);
    } finally {
      await srv.stop();
    }
  });
});
