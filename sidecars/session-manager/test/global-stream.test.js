// GET /events/stream: the global SSE feed of every agent's events and every chat message
// (global ids, resume by Last-Event-ID / ?since=, lag notices for slow subscribers).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, openSse, sleep } from './helpers.js';

describe('global event stream', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { REVKA_SM_SSE_KEEPALIVE_MS: '100', REVKA_SM_MAX_EVENTS_PER_RUN: '1000000' } });
  });
  after(async () => {
    await srv.stop();
  });

  test('events of two agents and a chat message arrive with increasing ids', async () => {
    const sse = openSse(srv.sock, '/events/stream');
    await sse.until(() => sse.response !== null);
    assert.equal(sse.response.statusCode, 200);
    assert.match(sse.response.headers['content-type'], /^text\/event-stream/);
    const a = (await srv.post('/agents', { name: 'ga', backend: 'echo', prompt: 'from a' })).json;
    const b = (await srv.post('/agents', { name: 'gb', backend: 'echo', prompt: 'from b' })).json;
    const room = (await srv.post('/chat/rooms', { name: 'lobby' })).json;
    await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'op', text: 'hello room' });
    await sse.until(
      () =>
        sse.events.some((e) => e.event === 'agent' && e.json.event.text === 'echo: from a') &&
        sse.events.some((e) => e.event === 'agent' && e.json.event.text === 'echo: from b') &&
        sse.events.some((e) => e.event === 'chat'),
    );
    const ids = sse.events.map((e) => Number(e.id));
    for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1, 'contiguous ids');
    const ev = sse.events.find((e) => e.event === 'agent' && e.json.event.text === 'echo: from a');
    assert.deepEqual(Object.keys(ev.json.agent).sort(), ['backend', 'id', 'name', 'status']);
    assert.equal(ev.json.agent.id, a.id);
    assert.equal(ev.json.agent.name, 'ga');
    assert.equal(ev.json.agent.backend, 'echo');
    assert.equal(ev.json.event.type, 'output');
    assert.equal(typeof ev.json.event.seq, 'number');
    const evb = sse.events.filter((e) => e.event === 'agent' && e.json.agent.id === b.id).map((e) => e.json.event.seq);
    assert.deepEqual(evb, Array.from({ length: evb.length }, (_, i) => i + 1), 'every event of b, in order');
    const chat = sse.events.find((e) => e.event === 'chat');
    assert.deepEqual(chat.json.room, { id: room.id, name: 'lobby' });
    assert.equal(chat.json.message.text, 'hello room');
    assert.equal(chat.json.message.from, 'op');
    assert.equal(chat.json.message.id, 1);
    await sse.until(() => sse.comments.includes('keep-alive'), 2000);
    sse.close();
    await srv.del(`/agents/${a.id}`);
    await srv.del(`/agents/${b.id}`);
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('resume with Last-Event-ID and ?since= replays what followed', async () => {
    const first = openSse(srv.sock, '/events/stream');
    await first.until(() => first.response !== null);
    assert.ok(first.events.length === 0, 'no replay without a resume point');
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'resume me' })).json;
    await first.until(() => first.events.some((e) => e.json?.event?.text === 'echo: resume me'));
    await srv.agentUntil(a.id, (x) => x.status === 'idle');
    await sleep(50);
    first.close();
    const cut = Number(first.events[1].id);
    const rest = first.events.slice(2).map((e) => e.id);

    const byHeader = openSse(srv.sock, '/events/stream', { 'last-event-id': String(cut) });
    await byHeader.until(() => byHeader.events.length >= rest.length);
    assert.deepEqual(byHeader.events.slice(0, rest.length).map((e) => e.id), rest);
    byHeader.close();

    const byQuery = openSse(srv.sock, `/events/stream?since=${cut}`);
    await byQuery.until(() => byQuery.events.length >= rest.length);
    assert.deepEqual(byQuery.events.slice(0, rest.length).map((e) => e.id), rest);
    byQuery.close();

    // before the ring (ids from 1 are still there in this small test): since=0 replays from 1
    const all = openSse(srv.sock, '/events/stream?since=0');
    await all.until(() => all.events.length >= Number(rest[rest.length - 1]));
    assert.equal(all.events[0].id, '1');
    assert.ok(!all.events.some((e) => e.event === 'lag'));
    all.close();
    await srv.del(`/agents/${a.id}`);
  });

  test('a slow subscriber gets a lag notice; resuming from before the ring too', async () => {
    const slow = openSse(srv.sock, '/events/stream');
    await slow.until(() => slow.response !== null);
    slow.response.pause();
    const fast = openSse(srv.sock, '/events/stream');
    await fast.until(() => fast.response !== null);
    const a = (await srv.post('/agents', { backend: 'echo', prompt: 'flood:20000' })).json;
    await srv.agentUntil(a.id, (x) => x.status === 'idle', { timeout: 20000 });
    await fast.until(() => fast.events.some((e) => e.json?.event?.type === 'status' && e.json.event.text === 'idle' && e.json.event.data.run === 1), 20000);
    // A reading subscriber normally gets every event; on a loaded machine it may lag too, but
    // then every event is either received or counted as missed.
    const fids = fast.events.filter((e) => e.id).map((e) => Number(e.id));
    const fmissed = fast.events.filter((e) => e.event === 'lag').reduce((n, e) => n + e.json.missed, 0);
    assert.equal(fids[fids.length - 1] - fids[0] + 1, fids.length + fmissed, 'received + missed = all');
    slow.response.resume();
    await slow.until(() => slow.events.some((e) => e.event === 'lag'), 10000);
    const lagEv = slow.events.find((e) => e.event === 'lag');
    assert.ok(lagEv.json.missed > 0);
    await slow.until(() => slow.events.some((e) => e.json?.event?.type === 'status' && e.json.event.text === 'idle' && e.json.event.data.run === 1), 10000);
    const got = slow.events.filter((e) => e.event !== 'lag').length;
    const lags = slow.events.filter((e) => e.event === 'lag');
    const missed = lags.reduce((n, e) => n + e.json.missed, 0);
    assert.ok(got + missed >= 20000, `${got} received + ${missed} missed`);
    // every event is either received or counted as missed: ids + missed cover the range
    const ids = slow.events.filter((e) => e.id).map((e) => Number(e.id));
    assert.equal(ids[ids.length - 1] - ids[0] + 1, ids.length + missed);
    const lastLag = lags[lags.length - 1];
    const afterLag = slow.events.slice(slow.events.indexOf(lastLag) + 1).filter((e) => e.id);
    assert.ok(afterLag.length <= 1000, `at most the bound after the last notice (${afterLag.length})`);
    slow.close();
    fast.close();

    // 20,000 events later, id 1 has left the 4,096-event ring
    const old = openSse(srv.sock, '/events/stream?since=1');
    await old.until(() => old.events.length > 0);
    assert.equal(old.events[0].event, 'lag');
    assert.ok(old.events[0].json.missed > 10000);
    old.close();
    await srv.del(`/agents/${a.id}`);
  });
});

describe('global event stream on shutdown', () => {
  test('ends with event: shutdown', async () => {
    const srv = await startServer();
    const sse = openSse(srv.sock, '/events/stream');
    await sse.until(() => sse.response !== null);
    await srv.stop();
    await sse.until(() => sse.ended);
    const last = sse.events[sse.events.length - 1];
    assert.equal(last.event, 'shutdown');
    assert.deepEqual(last.json, { reason: 'shutdown' });
  });
});
