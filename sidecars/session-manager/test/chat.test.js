// Chat rooms: CRUD, messages, long-poll wait, @mention injection.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, request, sleep, waitFor } from './helpers.js';

describe('chat rooms', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.stop();
  });

  test('create, list, get, delete', async () => {
    const agent = (await srv.post('/agents', { name: 'member1', backend: 'echo' })).json;
    let r = await srv.post('/chat/rooms', { name: 'dev', members: ['member1', agent.id] });
    assert.equal(r.status, 201);
    const room = r.json;
    assert.match(room.id, /^room_[0-9a-f]{10}$/);
    assert.equal(room.name, 'dev');
    assert.deepEqual(room.members, [agent.id]); // names resolve to ids, deduplicated
    assert.equal(room.message_count, 0);

    r = await srv.get('/chat/rooms');
    assert.equal(r.status, 200);
    assert.ok(r.json.rooms.some((x) => x.id === room.id));
    r = await srv.get(`/chat/rooms/${room.id}`);
    assert.equal(r.json.name, 'dev');
    assert.equal((await srv.get('/health')).json.rooms >= 1, true);

    r = await srv.del(`/chat/rooms/${room.id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.deleted, true);
    assert.equal((await srv.get(`/chat/rooms/${room.id}`)).status, 404);
    assert.equal((await srv.del(`/chat/rooms/${room.id}`)).status, 404);
    assert.equal((await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'a', text: 'b' })).status, 404);
    await srv.del(`/agents/${agent.id}`);
  });

  test('Idempotency-Key: a repeated mutation gets the first answer, not a second room', async () => {
    const key = { headers: { 'idempotency-key': 'op-123' } };
    const before = (await srv.get('/chat/rooms')).json.rooms.length;
    // Two at once (a retry racing a slow first attempt) and one later: one room.
    const [a, b] = await Promise.all([
      srv.post('/chat/rooms', { name: 'once' }, key),
      srv.post('/chat/rooms', { name: 'once' }, key),
    ]);
    const c = await srv.post('/chat/rooms', { name: 'once' }, key);
    for (const r of [a, b, c]) assert.equal(r.status, 201);
    assert.equal(a.json.id, b.json.id);
    assert.equal(a.json.id, c.json.id);
    assert.equal(c.headers['idempotent-replayed'], 'true');
    assert.equal((await srv.get('/chat/rooms')).json.rooms.length, before + 1);
    // Another key, or none, is another request.
    const d = await srv.post('/chat/rooms', { name: 'once' }, { headers: { 'idempotency-key': 'op-124' } });
    assert.notEqual(d.json.id, a.json.id);
    // The same key on another route is independent.
    const missing = await srv.post('/chat/rooms/room_0000000000/messages', { from: 'a', text: 'b' }, key);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['idempotent-replayed'], undefined);
    // An error is not kept: the retry under the same key runs, and then that answer is kept.
    const retryKey = { headers: { 'idempotency-key': 'op-125' } };
    const refused = await srv.post(`/chat/rooms/${a.json.id}/messages`, { from: 'a' }, retryKey);
    assert.equal(refused.status, 400, JSON.stringify(refused.json));
    const posted = await srv.post(`/chat/rooms/${a.json.id}/messages`, { from: 'a', text: 'b' }, retryKey);
    assert.equal(posted.status, 201, JSON.stringify(posted.json));
    assert.equal(posted.headers['idempotent-replayed'], undefined);
    const again = await srv.post(`/chat/rooms/${a.json.id}/messages`, { from: 'a', text: 'b' }, retryKey);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.json.id, posted.json.id);
    // A key that is too long is refused.
    const long = await srv.post('/chat/rooms', { name: 'x' }, { headers: { 'idempotency-key': 'k'.repeat(201) } });
    assert.equal(long.status, 400);
    assert.equal(long.json.error.code, 'invalid_idempotency_key');
    for (const room of [a.json, d.json]) await srv.del(`/chat/rooms/${room.id}`);
  });

  test('validation', async () => {
    let r = await srv.post('/chat/rooms', {});
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_request');
    r = await srv.post('/chat/rooms', { name: 'x', members: ['ag_ghost'] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'unknown_agent');
    r = await srv.post('/chat/rooms', { name: 'x', members: 'nope' });
    assert.equal(r.status, 400);
    const room = (await srv.post('/chat/rooms', { name: 'v' })).json;
    r = await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'a' });
    assert.equal(r.status, 400);
    r = await srv.post(`/chat/rooms/${room.id}/messages`, { text: 'hi' });
    assert.equal(r.status, 400);
    r = await srv.get(`/chat/rooms/${room.id}/messages?limit=-1`);
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_parameter');
    r = await srv.get(`/chat/rooms/${room.id}/wait?timeout=soon`);
    assert.equal(r.status, 400);
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('post and read: ids, limit, since', async () => {
    const room = (await srv.post('/chat/rooms', { name: 'log' })).json;
    const posted = [];
    for (let i = 1; i <= 8; i++) {
      const r = await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'tester', text: `m${i}` });
      assert.equal(r.status, 201);
      posted.push(r.json);
    }
    assert.deepEqual(
      posted.map((m) => m.id),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    const m = posted[0];
    assert.equal(m.from, 'tester');
    assert.equal(m.text, 'm1');
    assert.equal(typeof m.ts, 'string');
    assert.deepEqual(m.mentions, []);
    assert.deepEqual(m.delivered, []);

    let r = await srv.get(`/chat/rooms/${room.id}/messages`);
    assert.equal(r.json.messages.length, 8);
    assert.equal(r.json.last_id, 8);
    r = await srv.get(`/chat/rooms/${room.id}/messages?limit=3`);
    assert.deepEqual(
      r.json.messages.map((x) => x.text),
      ['m6', 'm7', 'm8'],
    ); // newest 3
    assert.equal(r.json.has_more, true);
    r = await srv.get(`/chat/rooms/${room.id}/messages?since=5`);
    assert.deepEqual(
      r.json.messages.map((x) => x.id),
      [6, 7, 8],
    );
    r = await srv.get(`/chat/rooms/${room.id}/messages?since=2&limit=2`);
    assert.deepEqual(
      r.json.messages.map((x) => x.id),
      [3, 4],
    ); // oldest 2 after since
    assert.equal(r.json.has_more, true);
    r = await srv.get(`/chat/rooms/${room.id}/messages?since=8`);
    assert.deepEqual(r.json.messages, []);
    r = await srv.get(`/chat/rooms/${room.id}/messages?limit=5000`);
    assert.equal(r.status, 200); // clamped to 1000
    assert.equal((await srv.get(`/chat/rooms/${room.id}`)).json.message_count, 8);
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('wait: returns at once if newer messages exist, else on the next message', async () => {
    const room = (await srv.post('/chat/rooms', { name: 'poll' })).json;
    await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'a', text: 'old' });
    let r = await srv.get(`/chat/rooms/${room.id}/wait?since=0&timeout=5`);
    assert.equal(r.json.timeout, false);
    assert.deepEqual(
      r.json.messages.map((x) => x.text),
      ['old'],
    );

    const t0 = Date.now();
    const waiting = srv.get(`/chat/rooms/${room.id}/wait?since=1&timeout=10`);
    await waitFor(async () => (await srv.get(`/chat/rooms/${room.id}`)).json.waiting === 1, { what: 'waiter' });
    await sleep(100);
    await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'b', text: 'new' });
    r = await waiting;
    assert.equal(r.status, 200);
    assert.equal(r.json.timeout, false);
    assert.deepEqual(
      r.json.messages.map((x) => [x.id, x.text]),
      [[2, 'new']],
    );
    assert.equal(r.json.next_since, 2);
    assert.ok(Date.now() - t0 < 5000);

    // without since: waits for the next message after "now"
    const next = srv.get(`/chat/rooms/${room.id}/wait?timeout=10`);
    await waitFor(async () => (await srv.get(`/chat/rooms/${room.id}`)).json.waiting === 1, { what: 'waiter' });
    await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'c', text: 'newer' });
    r = await next;
    assert.deepEqual(
      r.json.messages.map((x) => x.text),
      ['newer'],
    );
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('wait: times out with {messages: [], timeout: true}', async () => {
    const room = (await srv.post('/chat/rooms', { name: 'quiet' })).json;
    const t0 = Date.now();
    const r = await srv.get(`/chat/rooms/${room.id}/wait?since=0&timeout=0.4`);
    const took = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.messages, []);
    assert.equal(r.json.timeout, true);
    assert.ok(took >= 350 && took < 3000, `took ${took}ms`);
    assert.equal((await srv.get(`/chat/rooms/${room.id}`)).json.waiting, 0);
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('wait: a disconnecting client releases its waiter; deleting the room releases waiters', async () => {
    const room = (await srv.post('/chat/rooms', { name: 'gone' })).json;
    const ac = new AbortController();
    const p = request(srv.sock, 'GET', `/chat/rooms/${room.id}/wait?timeout=60`, { signal: ac.signal }).catch((e) => e);
    await waitFor(async () => (await srv.get(`/chat/rooms/${room.id}`)).json.waiting === 1, { what: 'waiter' });
    ac.abort();
    await p;
    await waitFor(async () => (await srv.get(`/chat/rooms/${room.id}`)).json.waiting === 0, { what: 'release' });

    const w = srv.get(`/chat/rooms/${room.id}/wait?timeout=60`);
    await waitFor(async () => (await srv.get(`/chat/rooms/${room.id}`)).json.waiting === 1, { what: 'waiter' });
    await srv.del(`/chat/rooms/${room.id}`);
    const r = await w;
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'room_not_found');
    assert.ok(await srv.healthy());
  });

  test('@mention of an idle agent injects the message as a prompt', async () => {
    const alice = (await srv.post('/agents', { name: 'alice', backend: 'echo' })).json;
    const room = (await srv.post('/chat/rooms', { name: 'team', members: [alice.id] })).json;
    const before = (await srv.get(`/agents/${alice.id}`)).json.event_count;
    const r = await srv.post(`/chat/rooms/${room.id}/messages`, {
      from: 'bob',
      text: 'hey @alice, please check (mail bob@alice.example is not a mention)',
    });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json.mentions, ['alice']);
    assert.deepEqual(r.json.delivered, [{ agent: alice.id, injected: true }]);

    const expected = '[room team] bob: hey @alice, please check (mail bob@alice.example is not a mention)';
    const events = await srv.eventsUntil(alice.id, (evs) => evs.some((e) => e.type === 'output'), { since: before });
    const status = events.find((e) => e.type === 'status' && e.data.reason === 'chat_injection');
    assert.ok(status, 'a status event records the injection');
    assert.equal(status.data.room_id, room.id);
    assert.equal(status.data.message_id, r.json.id);
    assert.equal(status.data.from, 'bob');
    const prompt = events.find((e) => e.type === 'prompt');
    assert.equal(prompt.text, expected);
    assert.equal(prompt.data.source, 'chat');
    assert.equal(events.find((e) => e.type === 'output').text, `echo: ${expected}`);

    // the message as stored carries the delivery record too
    const stored = (await srv.get(`/chat/rooms/${room.id}/messages`)).json.messages[0];
    assert.deepEqual(stored.delivered, [{ agent: alice.id, injected: true }]);

    // mention by id works as well
    await srv.agentUntil(alice.id, (x) => x.status === 'idle');
    const byId = await srv.post(`/chat/rooms/${room.id}/messages`, { from: 'bob', text: `@${alice.id} again` });
    assert.deepEqual(byId.json.delivered, [{ agent: alice.id, injected: true }]);
    await srv.agentUntil(alice.id, (x) => x.status === 'idle');
    await srv.del(`/agents/${alice.id}`);
    await srv.del(`/chat/rooms/${room.id}`);
  });

  test('a busy agent is not interrupted; the sender is not injected; closed members are reported', async () => {
    const carol = (await srv.post('/agents', { name: 'carol', backend: 'echo', prompt: 'sleep:5000' })).json;
    const dave = (await srv.post('/agents', { name: 'dave', backend: 'echo' })).json;
    const erin = (await srv.post('/agents', { name: 'erin', backend: 'echo' })).json;
    const room = (await srv.post('/chat/rooms', { name: 'ops', members: [carol.id, dave.id, erin.id] })).json;
    await srv.del(`/agents/${erin.id}`);

    const r = await srv.post(`/chat/rooms/${room.id}/messages`, {
      from: 'dave',
      text: `@carol @dave @${erin.id} @nobody status?`,
    });
    assert.deepEqual(r.json.mentions, ['carol', 'dave', erin.id]);
    assert.deepEqual(r.json.delivered, [
      { agent: carol.id, injected: false, reason: 'busy' },
      { agent: dave.id, injected: false, reason: 'sender' },
      { agent: erin.id, injected: false, reason: 'not_found' },
    ]);
    const c = (await srv.get(`/agents/${carol.id}`)).json;
    assert.equal(c.status, 'running'); // still on its own run
    const events = (await srv.get(`/agents/${carol.id}/events`)).json.events;
    assert.ok(events.some((e) => e.type === 'status' && e.data.skipped === 'busy'));
    assert.ok(!events.some((e) => e.type === 'interrupt'));
    assert.equal(events.filter((e) => e.type === 'prompt').length, 1);
    await srv.del(`/agents/${carol.id}`);
    await srv.del(`/agents/${dave.id}`);
    await srv.del(`/chat/rooms/${room.id}`);
  });
});

describe('idempotency cache', () => {
  test('is bounded in size and time', async () => {
    const { createIdempotencyCache } = await import('../http.js');
    const cache = createIdempotencyCache({ max: 2, ttlMs: 50 });
    cache.set('a', Promise.resolve(1));
    cache.set('b', Promise.resolve(2));
    cache.set('c', Promise.resolve(3));
    assert.equal(cache.size, 2);
    assert.equal(cache.get('a'), undefined, 'the oldest went');
    assert.equal(await cache.get('c'), 3);
    await sleep(80);
    assert.equal(cache.get('b'), undefined, 'expired');
    // `forget` removes only the entry it was given, not a newer one under the same key.
    const first = Promise.resolve(1);
    const second = Promise.resolve(2);
    cache.set('k', first);
    cache.set('k', second);
    cache.forget('k', first);
    assert.equal(cache.get('k'), second);
    cache.forget('k', second);
    assert.equal(cache.get('k'), undefined);
  });
});
