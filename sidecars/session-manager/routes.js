// The REST API: route table and handlers (agents, SSE streams, chat rooms, long-poll, health).

import { Router, HttpError, badRequest, sendJson, sendError, intParam, numberParam } from './http.js';
import { log } from './log.js';
import { FeedHub } from './ringlog.js';

const EVENTS_DEFAULT_LIMIT = 500;
const EVENTS_MAX_LIMIT = 5000;
const MESSAGES_DEFAULT_LIMIT = 50;
const MESSAGES_MAX_LIMIT = 1000;
const WAIT_DEFAULT_SECS = 30;
const WAIT_MAX_SECS = 120;
const FEED_RING = 4096; // events kept for resuming the global stream
const FEED_RING_BYTES = 32 * 1024 * 1024;
const FEED_BOUND = 1000; // events queued per slow global-stream subscriber
const FEED_HIGH_WATER = 256 * 1024; // bytes buffered in a response before we queue instead

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

// The resume point of an SSE request: Last-Event-ID header, else ?since=, else dflt.
function resumeFrom(ctx, dflt) {
  let since = intParam(ctx.query, 'since', { dflt });
  const lastEventId = ctx.req.headers['last-event-id'];
  if (lastEventId !== undefined && /^\d+$/.test(String(lastEventId).trim())) {
    since = Number(String(lastEventId).trim());
  }
  return since;
}

// ctx: {agents, chat, cfg, version, startedAt}
// Returns {router, streams} — streams is the set of open SSE responses (closed on shutdown).
export function buildRouter(app) {
  const { agents, chat, cfg } = app;
  const streams = new Set();
  const r = new Router();

  // The global feed: every agent event and chat message, numbered for GET /events/stream.
  const feed = new FeedHub({ ringCapacity: FEED_RING, ringBytes: FEED_RING_BYTES, bound: FEED_BOUND });
  agents.onAgentEvent = (agent, event) =>
    feed.publish('agent', {
      agent: { id: agent.id, name: agent.name, backend: agent.backend, status: agent.status },
      event,
    });
  chat.onMessage = (room, message) => feed.publish('chat', { room: { id: room.id, name: room.name }, message });

  // -- health --------------------------------------------------------------------------------
  r.add('GET', '/health', () => ({
    body: {
      status: 'ok',
      pid: process.pid,
      uptime_seconds: Math.round((Date.now() - app.startedAt) / 1000),
      agents: agents.size,
      running: agents.list().filter((a) => a.running).length,
      rooms: chat.size,
      version: app.version,
      node: process.version,
    },
  }));

  // -- agents --------------------------------------------------------------------------------
  r.add('POST', '/agents', async (ctx) => {
    const body = await ctx.body();
    const agent = agents.create(body);
    return { status: 201, body: agent.info() };
  });

  r.add('GET', '/agents', () => ({ body: { agents: agents.list().map((a) => a.info()) } }));

  r.add('GET', '/agents/:id', (ctx) => ({ body: agents.get(ctx.params.id).info() }));

  r.add('POST', '/agents/:id/query', async (ctx) => {
    const agent = agents.get(ctx.params.id);
    const body = await ctx.body();
    if (body.queue !== undefined && typeof body.queue !== 'boolean') throw badRequest('queue must be a boolean');
    const result = agent.query(body.prompt, { queue: body.queue === true, source: 'api' });
    return { status: 202, body: { ...result, agent: agent.info() } };
  });

  r.add('POST', '/agents/:id/interrupt', async (ctx) => {
    const agent = agents.get(ctx.params.id);
    await ctx.body(); // consume/validate; no fields
    const result = agent.interrupt();
    return { body: { ...result, agent: agent.info() } };
  });

  r.add('DELETE', '/agents/:id', async (ctx) => {
    const agent = await agents.delete(ctx.params.id);
    return { body: { deleted: true, agent: agent.info() } };
  });

  r.add('GET', '/agents/:id/events', (ctx) => {
    const agent = agents.get(ctx.params.id);
    const since = intParam(ctx.query, 'since', { dflt: 0 });
    const limit = intParam(ctx.query, 'limit', { dflt: EVENTS_DEFAULT_LIMIT, min: 1, max: EVENTS_MAX_LIMIT });
    const events = agent.log.after(since, limit);
    const nextSince = events.length ? events[events.length - 1].seq : Math.max(since, agent.log.firstSeq - 1);
    return {
      body: {
        agent_id: agent.id,
        status: agent.status,
        events,
        first_seq: agent.log.firstSeq,
        last_seq: agent.log.lastSeq,
        dropped: agent.log.dropped,
        next_since: nextSince,
        has_more: nextSince < agent.log.lastSeq,
      },
    };
  });

  r.add('GET', '/agents/:id/stream', (ctx) => {
    const { res } = ctx;
    const agent = agents.get(ctx.params.id);
    const since = resumeFrom(ctx, 0);
    res.writeHead(200, SSE_HEADERS);
    const stream = { res, agentId: agent.id };
    const write = (chunk) => {
      if (res.destroyed || res.writableEnded) return;
      res.write(chunk);
      if (res.writableLength > cfg.sseMaxBufferBytes) {
        log('warn', 'SSE client too slow; dropping stream', { agent: agent.id });
        res.destroy();
      }
    };
    const sendEvent = (ev) => write(`id: ${ev.seq}\ndata: ${JSON.stringify(ev)}\n\n`);
    stream.end = (event, data) => {
      write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      if (!res.writableEnded && !res.destroyed) res.end();
    };

    write('retry: 2000\n\n');
    if (agent.log.firstSeq > since + 1 && agent.log.dropped > 0) {
      write(`: ${agent.log.firstSeq - since - 1} earlier events were dropped from the timeline\n\n`);
    }
    for (const ev of agent.log.after(since)) sendEvent(ev);

    if (agent.status === 'exited') {
      stream.end('end', { reason: 'closed', agent_id: agent.id });
      return undefined;
    }
    const unsubscribe = agent.subscribe({
      onEvent: sendEvent,
      onClose: (reason) => stream.end('end', { reason, agent_id: agent.id }),
    });
    const keepAlive = setInterval(() => write(': keep-alive\n\n'), cfg.sseKeepAliveMs);
    streams.add(stream);
    res.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
      streams.delete(stream);
    });
    return undefined;
  });

  // -- the global stream: every agent's events and every chat message ---------------------
  r.add('GET', '/events/stream', (ctx) => {
    const { res } = ctx;
    const since = resumeFrom(ctx, feed.lastId);
    res.writeHead(200, SSE_HEADERS);
    const stream = { res };
    const live = () => !res.destroyed && !res.writableEnded;
    // Writes and tells whether the response can take more (false: wait for 'drain').
    const put = (chunk) => {
      if (!live()) return true;
      res.write(chunk);
      return res.writableLength < FEED_HIGH_WATER;
    };
    const lag = (missed) => put(`event: lag\ndata: ${JSON.stringify({ missed })}\n\n`);
    const write = (item) => put(`id: ${item.id}\nevent: ${item.event}\ndata: ${item.data}\n\n`);
    put('retry: 2000\n\n');
    // The replay goes through the subscriber's bounded queue like live events: a resume from
    // far back to a client that does not read costs the queue's bound, not the whole ring.
    const { items, missed } = feed.replay(since);
    const sub = feed.subscribe({ write, lag });
    sub.paused = true;
    sub.missed = missed;
    for (const item of items) sub.offer(item);
    sub.resume();
    res.on('drain', () => sub.resume());
    stream.end = (event, data) => {
      if (live()) {
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        res.end();
      }
    };
    const keepAlive = setInterval(() => {
      if (live() && !sub.paused) res.write(': keep-alive\n\n');
    }, cfg.sseKeepAliveMs);
    streams.add(stream);
    res.on('close', () => {
      clearInterval(keepAlive);
      sub.close();
      streams.delete(stream);
    });
    return undefined;
  });

  // -- chat ----------------------------------------------------------------------------------
  r.add('POST', '/chat/rooms', async (ctx) => {
    const room = chat.create(await ctx.body());
    return { status: 201, body: room.info() };
  });

  r.add('GET', '/chat/rooms', () => ({ body: { rooms: chat.list().map((x) => x.info()) } }));

  r.add('GET', '/chat/rooms/:id', (ctx) => ({ body: chat.get(ctx.params.id).info() }));

  r.add('DELETE', '/chat/rooms/:id', (ctx) => {
    const room = chat.delete(ctx.params.id);
    return { body: { deleted: true, room: room.info() } };
  });

  r.add('POST', '/chat/rooms/:id/messages', async (ctx) => {
    chat.get(ctx.params.id);
    const body = await ctx.body();
    const msg = chat.post(ctx.params.id, body);
    return { status: 201, body: msg };
  });

  r.add('GET', '/chat/rooms/:id/messages', (ctx) => {
    const room = chat.get(ctx.params.id);
    const since = intParam(ctx.query, 'since', { dflt: undefined });
    const limit = intParam(ctx.query, 'limit', { dflt: MESSAGES_DEFAULT_LIMIT, min: 1, max: MESSAGES_MAX_LIMIT });
    const { messages, hasMore } = chat.read(room.id, { since, limit });
    return {
      body: {
        room_id: room.id,
        messages,
        last_id: room.log.lastSeq,
        dropped: room.log.dropped,
        has_more: hasMore,
      },
    };
  });

  r.add('GET', '/chat/rooms/:id/wait', (ctx) => {
    const { res } = ctx;
    const room = chat.get(ctx.params.id);
    const since = intParam(ctx.query, 'since', { dflt: room.log.lastSeq });
    const timeout = numberParam(ctx.query, 'timeout', { dflt: WAIT_DEFAULT_SECS, max: WAIT_MAX_SECS });
    const limit = intParam(ctx.query, 'limit', { dflt: MESSAGES_DEFAULT_LIMIT, min: 1, max: MESSAGES_MAX_LIMIT });
    const reply = (messages, timedOut) => ({
      room_id: room.id,
      messages,
      timeout: timedOut,
      next_since: messages.length ? messages[messages.length - 1].id : since,
      last_id: room.log.lastSeq,
    });
    const ready = room.log.after(since, limit);
    if (ready.length > 0) return { body: reply(ready, false) };
    if (timeout === 0) return { body: reply([], true) };

    let timer = null;
    const waiter = chat.addWaiter(room, since, {
      fire: () => {
        clearTimeout(timer);
        sendJson(res, 200, reply(room.log.after(since, limit), false));
      },
      gone: () => {
        clearTimeout(timer);
        sendError(res, new HttpError(404, 'room_not_found', `room ${room.id} was deleted`));
      },
      shutdown: () => {
        clearTimeout(timer);
        sendError(res, new HttpError(503, 'shutting_down', 'the session manager is shutting down'));
      },
    });
    timer = setTimeout(() => {
      waiter.cancel();
      sendJson(res, 200, reply([], true));
    }, timeout * 1000);
    // Client went away (or we answered): release the waiter and the timer.
    res.on('close', () => {
      clearTimeout(timer);
      waiter.cancel();
    });
    return undefined;
  });

  // -- test hooks (REVKA_SM_DEBUG_ROUTES=1) --------------------------------------------------
  if (cfg.debugRoutes) {
    r.add('GET', '/debug/throw', () => {
      throw new Error('deliberate handler failure (debug route)');
    });
    r.add('GET', '/debug/throw-async', () => {
      setImmediate(() => {
        throw new Error('deliberate uncaught exception outside a handler (debug route)');
      });
      return { body: { scheduled: true } };
    });
  }

  return { router: r, streams };
}
