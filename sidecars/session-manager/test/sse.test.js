// GET /agents/:id/stream (Server-Sent Events).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, openSse, waitFor } from './helpers.js';

describe('SSE stream', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { REVKA_SM_SSE_KEEPALIVE_MS: '100' } });
  });
  after(async () => {
    await srv.stop();
  });

  test('replays the timeline, then delivers live events with id = seq', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'first' })).json;
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    const before = (await srv.get(`/agents/${a.id}`)).json.event_count;

    const sse = openSse(srv.sock, `/agents/${a.id}/stream`);
    await sse.until(() => sse.events.length >= before);
    assert.equal(sse.response.statusCode, 200);
    assert.match(sse.response.headers['content-type'], /^text\/event-stream/);
    assert.deepEqual(
      sse.events.map((e) => Number(e.id)),
      Array.from({ length: before }, (_, i) => i + 1),
    );
    for (const e of sse.events) assert.equal(e.json.seq, Number(e.id));

    await srv.post(`/agents/${a.id}/query`, { prompt: 'live one' });
    await sse.until(() => sse.events.some((e) => e.json.text === 'echo: live one'));
    const ids = sse.events.map((e) => Number(e.id));
    assert.deepEqual(
      ids,
      Array.from({ length: ids.length }, (_, i) => i + 1),
      'no gaps, no duplicates',
    );

    // keep-alive comments
    await sse.until(() => sse.comments.includes('keep-alive'), 2000);
    sse.close();
    await srv.del(`/agents/${a.id}`);
  });

  test('resumes after Last-Event-ID (and ?since=)', async () => {
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'one' })).json;
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    const total = (await srv.get(`/agents/${a.id}`)).json.event_count;
    assert.ok(total >= 5);

    const resumed = openSse(srv.sock, `/agents/${a.id}/stream`, { 'last-event-id': '3' });
    await resumed.until(() => resumed.events.length >= total - 3);
    assert.equal(Number(resumed.events[0].id), 4);
    assert.equal(Number(resumed.events.at(-1).id), total);

    await srv.post(`/agents/${a.id}/query`, { prompt: 'two' });
    await resumed.until(() => resumed.events.some((e) => e.json.text === 'echo: two'));
    const lastId = Number(resumed.events.at(-1).id);
    resumed.close();

    // a reconnect with the last id seen gets only what came after it
    await srv.post(`/agents/${a.id}/query`, { prompt: 'three' });
    await srv.agentUntil(a.id, (x) => x.status === 'idle' && x.event_count > lastId + 3);
    const again = openSse(srv.sock, `/agents/${a.id}/stream`, { 'Last-Event-ID': String(lastId) });
    await again.until(() => again.events.some((e) => e.json.text === 'echo: three'));
    assert.equal(Number(again.events[0].id), lastId + 1);
    assert.ok(!again.events.some((e) => e.json.text === 'echo: two'));
    again.close();

    const viaQuery = openSse(srv.sock, `/agents/${a.id}/stream?since=${total}`);
    await viaQuery.until(() => viaQuery.events.length > 0);
    assert.equal(Number(viaQuery.events[0].id), total + 1);
    viaQuery.close();
    await srv.del(`/agents/${a.id}`);
  });

  test('the stream ends with an "end" event when the agent is deleted', async () => {
    const a = (await srv.post('/agents', { backend: 'echo' })).json;
    const sse = openSse(srv.sock, `/agents/${a.id}/stream`);
    await sse.until(() => sse.events.length >= 1);
    await srv.del(`/agents/${a.id}`);
    await sse.until(() => sse.ended);
    const end = sse.events.at(-1);
    assert.equal(end.event, 'end');
    assert.equal(end.json.reason, 'deleted');
    assert.ok(sse.events.some((e) => e.json?.type === 'status' && e.json.text === 'exited'));
  });

  test('unknown agent -> 404 JSON, not a stream', async () => {
    const r = await srv.get('/agents/ag_nope/stream');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'agent_not_found');
  });

  test('disconnected streams are released', async () => {
    const a = (await srv.post('/agents', { backend: 'echo' })).json;
    const streams = [1, 2, 3].map(() => openSse(srv.sock, `/agents/${a.id}/stream`));
    for (const s of streams) await s.until(() => s.events.length >= 1);
    for (const s of streams) s.close();
    // the agent keeps working and nothing breaks when it emits events with nobody listening
    await waitFor(async () => (await srv.post(`/agents/${a.id}/query`, { prompt: 'x' })).status === 202);
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    assert.ok(await srv.healthy());
    await srv.del(`/agents/${a.id}`);
  });
});
