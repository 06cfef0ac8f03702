// Agent routes with the echo backend.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tmpDir } from './helpers.js';

describe('echo agents', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.stop();
  });

  test('POST /agents creates an agent (201) and runs its initial prompt', async () => {
    const cwd = tmpDir();
    const r = await srv.post('/agents', { name: 'alpha', backend: 'echo', prompt: 'hello', cwd });
    assert.equal(r.status, 201);
    const a = r.json;
    assert.match(a.id, /^ag_[0-9a-f]{10}$/);
    assert.equal(a.name, 'alpha');
    assert.equal(a.backend, 'echo');
    assert.equal(a.cwd, cwd);
    assert.ok(['idle', 'running'].includes(a.status));
    assert.equal(typeof a.created_at, 'string');
    assert.ok(a.event_count >= 1);
    const events = await srv.eventsUntil(a.id, (evs) => evs.some((e) => e.type === 'output'));
    const out = events.find((e) => e.type === 'output');
    assert.equal(out.text, 'echo: hello');
    const prompt = events.find((e) => e.type === 'prompt');
    assert.equal(prompt.text, 'hello');
    for (let i = 1; i < events.length; i++) assert.equal(events[i].seq, events[i - 1].seq + 1);
    const info = await srv.agentUntil(a.id, (x) => x.status === 'idle');
    assert.equal(info.event_count, info.event_count);
    assert.equal(info.dropped, 0);
    await srv.del(`/agents/${a.id}`);
  });

  test('GET /agents lists, GET /agents/:id describes', async () => {
    const a = (await srv.post('/agents', { name: 'beta', backend: 'echo' })).json;
    const b = (await srv.post('/agents', { backend: 'echo' })).json;
    assert.equal(b.name, b.id); // default name
    const list = await srv.get('/agents');
    assert.equal(list.status, 200);
    const ids = list.json.agents.map((x) => x.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id));
    const one = await srv.get(`/agents/${a.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.id, a.id);
    assert.equal(one.json.status, 'idle');
    assert.equal(one.json.last_event_at !== null, true);
    await srv.del(`/agents/${a.id}`);
    await srv.del(`/agents/${b.id}`);
  });

  test('query -> events; since and limit', async () => {
    const a = (await srv.post('/agents', { backend: 'echo' })).json;
    let r = await srv.post(`/agents/${a.id}/query`, { prompt: 'one' });
    assert.equal(r.status, 202);
    assert.equal(r.json.queued, false);
    assert.equal(r.json.agent.status, 'running');
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    const all = (await srv.get(`/agents/${a.id}/events`)).json;
    const mark = all.last_seq;
    assert.equal(all.next_since, mark);
    assert.equal(all.has_more, false);

    r = await srv.post(`/agents/${a.id}/query`, { prompt: 'two' });
    assert.equal(r.status, 202);
    const later = await srv.eventsUntil(a.id, (evs) => evs.some((e) => e.type === 'status' && e.text === 'idle'), {
      since: mark,
    });
    assert.ok(later.every((e) => e.seq > mark));
    assert.deepEqual(
      later.map((e) => e.type),
      ['prompt', 'status', 'output', 'status'],
    );
    assert.equal(later[2].text, 'echo: two');

    const limited = (await srv.get(`/agents/${a.id}/events?since=0&limit=2`)).json;
    assert.deepEqual(
      limited.events.map((e) => e.seq),
      [1, 2],
    );
    assert.equal(limited.next_since, 2);
    assert.equal(limited.has_more, true);
    const none = (await srv.get(`/agents/${a.id}/events?since=100000`)).json;
    assert.deepEqual(none.events, []);
    await srv.del(`/agents/${a.id}`);
  });

  test('busy agent: 409 agent_busy, or queued with queue: true', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'sleep:300' })).json;
    assert.equal(a.status, 'running');
    let r = await srv.post(`/agents/${a.id}/query`, { prompt: 'second' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'agent_busy');
    r = await srv.post(`/agents/${a.id}/query`, { prompt: 'queued one', queue: true });
    assert.equal(r.status, 202);
    assert.equal(r.json.queued, true);
    assert.equal(r.json.position, 1);
    assert.equal(r.json.agent.queued, 1);
    const events = await srv.eventsUntil(a.id, (evs) => evs.some((e) => e.text === 'echo: queued one'), {
      timeout: 3000,
    });
    const outs = events.filter((e) => e.type === 'output').map((e) => e.text);
    assert.deepEqual(outs, ['echo: slept 300ms', 'echo: queued one']);
    r = await srv.post(`/agents/${a.id}/query`, { prompt: 'x', queue: 'yes' });
    assert.equal(r.status, 400);
    r = await srv.post(`/agents/${a.id}/query`, {});
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_request');
    await srv.del(`/agents/${a.id}`);
  });

  test('interrupt stops a running echo run', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'sleep:10000' })).json;
    await srv.post(`/agents/${a.id}/query`, { prompt: 'never', queue: true });
    const t0 = Date.now();
    let r = await srv.post(`/agents/${a.id}/interrupt`);
    assert.equal(r.status, 200);
    assert.equal(r.json.interrupted, true);
    assert.equal(r.json.cleared_queue, 1);
    const info = await srv.agentUntil(a.id, (x) => x.status === 'idle', { timeout: 2000 });
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(info.queued, 0);
    const events = (await srv.get(`/agents/${a.id}/events`)).json.events;
    assert.ok(events.some((e) => e.type === 'interrupt'));
    assert.ok(!events.some((e) => e.type === 'output'));
    assert.ok(!events.some((e) => e.text === 'never'));
    // interrupting an idle agent is a no-op
    r = await srv.post(`/agents/${a.id}/interrupt`, {});
    assert.equal(r.status, 200);
    assert.equal(r.json.interrupted, false);
    await srv.del(`/agents/${a.id}`);
  });

  test('fail -> error event, status error, agent still usable', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'fail' })).json;
    await srv.agentUntil(a.id, (x) => x.status === 'error');
    const events = (await srv.get(`/agents/${a.id}/events`)).json.events;
    assert.ok(events.some((e) => e.type === 'error' && /simulated failure/.test(e.text)));
    const r = await srv.post(`/agents/${a.id}/query`, { prompt: 'again' });
    assert.equal(r.status, 202);
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    await srv.del(`/agents/${a.id}`);
  });

  test('DELETE closes the agent (then 404)', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'sleep:10000' })).json;
    const r = await srv.del(`/agents/${a.id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.deleted, true);
    assert.equal(r.json.agent.status, 'exited');
    assert.equal((await srv.get(`/agents/${a.id}`)).status, 404);
    assert.equal((await srv.del(`/agents/${a.id}`)).status, 404);
    assert.equal((await srv.get(`/agents/${a.id}/events`)).status, 404);
  });

  test('validation: names, cwd, env, argv', async () => {
    const a = (await srv.post('/agents', { name: 'Unique', backend: 'echo' })).json;
    let r = await srv.post('/agents', { name: 'unique', backend: 'echo' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'name_conflict');
    r = await srv.post('/agents', { backend: 'echo', cwd: 'relative/path' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_cwd');
    r = await srv.post('/agents', { backend: 'echo', cwd: '/definitely/not/here' });
    assert.equal(r.json.error.code, 'invalid_cwd');
    r = await srv.post('/agents', { backend: 'echo', env: { A: 1 } });
    assert.equal(r.status, 400);
    r = await srv.post('/agents', { backend: 'command', argv: [] });
    assert.equal(r.status, 400);
    r = await srv.post('/agents', { backend: 'command', argv: ['x', 3] });
    assert.equal(r.status, 400);
    r = await srv.post('/agents', { backend: 'command' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'missing_argv');
    r = await srv.post('/agents', { backend: 'echo', name: 5 });
    assert.equal(r.status, 400);
    r = await srv.post('/agents', { backend: 'echo', prompt: '' });
    assert.equal(r.status, 400);
    await srv.del(`/agents/${a.id}`);
    assert.ok(await srv.healthy());
  });
});

describe('agent limits', () => {
  test('429 too_many_agents beyond REVKA_SM_MAX_AGENTS', async () => {
    const srv = await startServer({ env: { REVKA_SM_MAX_AGENTS: '2' } });
    try {
      const a = await srv.post('/agents', { backend: 'echo' });
      const b = await srv.post('/agents', { backend: 'echo' });
      assert.equal(a.status, 201);
      assert.equal(b.status, 201);
      let r = await srv.post('/agents', { backend: 'echo' });
      assert.equal(r.status, 429);
      assert.equal(r.json.error.code, 'too_many_agents');
      await srv.del(`/agents/${a.json.id}`);
      r = await srv.post('/agents', { backend: 'echo' });
      assert.equal(r.status, 201);
      assert.equal((await srv.get('/health')).json.agents, 2);
    } finally {
      await srv.stop();
    }
  });
});
