// Inter-agent chat rooms: bounded per-room message logs, long-poll waiters, @mentions that are
// injected into idle agents as follow-up prompts.

import { randomBytes } from 'node:crypto';
import { RingLog } from './ringlog.js';
import { HttpError, badRequest } from './http.js';
import { log } from './log.js';

const MAX_NAME = 128;
const MAX_FROM = 256;
const MAX_MEMBERS = 256;

// "@token" not preceded by a word character, '.', '-' or '@' (so e-mail addresses are not
// mentions). Trailing '.'/'-' (sentence punctuation) are not part of the token.
const MENTION_RE = /(^|[^A-Za-z0-9_.@-])@([A-Za-z0-9_][A-Za-z0-9_.-]*)/g;

export function mentionTokens(text) {
  const out = [];
  for (const m of text.matchAll(MENTION_RE)) {
    const token = m[2].replace(/[.-]+$/, '');
    if (token && !out.includes(token)) out.push(token);
  }
  return out;
}

class Room {
  constructor({ id, name, members, cfg }) {
    this.id = id;
    this.name = name;
    this.members = members;
    this.createdAt = new Date().toISOString();
    this.log = new RingLog({ capacity: cfg.maxMessages, maxBytes: cfg.maxRoomBytes });
    this.waiters = new Set();
    this.deleted = false;
  }

  info() {
    const last = this.log.last();
    return {
      id: this.id,
      name: this.name,
      members: this.members.slice(),
      created_at: this.createdAt,
      message_count: this.log.lastSeq,
      last_message_id: this.log.lastSeq,
      last_message_at: last ? last.ts : null,
      dropped: this.log.dropped,
      waiting: this.waiters.size,
    };
  }
}

export class ChatService {
  // cfg: {maxRooms, maxMessages, maxRoomBytes}
  constructor(agents, cfg) {
    this.agents = agents;
    this.cfg = cfg;
    this.rooms = new Map();
    this.onMessage = null; // (room, message) for every posted message (the global stream)
  }

  get size() {
    return this.rooms.size;
  }

  get(id) {
    const r = this.rooms.get(id);
    if (!r) throw new HttpError(404, 'room_not_found', `no chat room with id ${JSON.stringify(id)}`);
    return r;
  }

  list() {
    return [...this.rooms.values()];
  }

  create(body) {
    const { name } = body;
    if (typeof name !== 'string' || name.trim() === '') throw badRequest('name must be a non-empty string');
    if (name.length > MAX_NAME) throw badRequest(`name must be at most ${MAX_NAME} characters`);
    if (/[\u0000-\u001f\u007f]/.test(name)) throw badRequest('name must not contain control characters');
    const members = [];
    if (body.members !== undefined && body.members !== null) {
      if (!Array.isArray(body.members)) throw badRequest('members must be an array of agent ids');
      if (body.members.length > MAX_MEMBERS) throw badRequest(`at most ${MAX_MEMBERS} members`);
      for (const m of body.members) {
        if (typeof m !== 'string' || m === '') throw badRequest('members must be an array of agent ids');
        const agent = this.agents.resolve(m);
        if (!agent) throw new HttpError(400, 'unknown_agent', `member ${JSON.stringify(m)} is not a known agent id or name`);
        if (!members.includes(agent.id)) members.push(agent.id);
      }
    }
    if (this.rooms.size >= this.cfg.maxRooms) {
      throw new HttpError(429, 'too_many_rooms', `room limit reached (${this.cfg.maxRooms})`);
    }
    let id;
    do id = 'room_' + randomBytes(5).toString('hex');
    while (this.rooms.has(id));
    const room = new Room({ id, name, members, cfg: this.cfg });
    this.rooms.set(id, room);
    log('info', 'room created', { room: id, name, members: members.length });
    return room;
  }

  delete(id) {
    const room = this.get(id);
    this.rooms.delete(id);
    room.deleted = true;
    for (const w of [...room.waiters]) w.gone();
    room.waiters.clear();
    log('info', 'room deleted', { room: id });
    return room;
  }

  post(id, body) {
    const room = this.get(id);
    const { from, text } = body;
    if (typeof from !== 'string' || from.trim() === '') throw badRequest('from must be a non-empty string');
    if (from.length > MAX_FROM) throw badRequest(`from must be at most ${MAX_FROM} characters`);
    if (typeof text !== 'string' || text.length === 0) throw badRequest('text must be a non-empty string');

    const tokens = mentionTokens(text);
    const mentions = [];
    const targets = []; // [{id, agent?}]
    for (const token of tokens) {
      const agent = this.agents.resolve(token);
      if (agent) {
        mentions.push(token);
        if (!targets.some((t) => t.id === agent.id)) targets.push({ id: agent.id, agent });
      } else if (room.members.includes(token)) {
        // a member that has since been closed
        mentions.push(token);
        if (!targets.some((t) => t.id === token)) targets.push({ id: token });
      }
    }

    const ts = new Date().toISOString();
    const delivered = [];
    const size = 128 + Buffer.byteLength(text) + Buffer.byteLength(from);
    const msg = room.log.append((seq) => ({ id: seq, room_id: room.id, from, text, ts, mentions, delivered }), size);

    const sender = this.agents.resolve(from);
    for (const t of targets) {
      const entry = { agent: t.id, injected: false };
      const agent = t.agent;
      if (!agent) entry.reason = 'not_found';
      else if (sender === agent) entry.reason = 'sender';
      else if (agent.closing) entry.reason = 'closing';
      else if (agent.running) entry.reason = 'busy';
      else {
        try {
          agent.record('status', `chat message ${msg.id} from ${from} in room ${room.name} injected`, {
            status: agent.status,
            reason: 'chat_injection',
            room_id: room.id,
            room_name: room.name,
            message_id: msg.id,
            from,
          });
          agent.query(`[room ${room.name}] ${from}: ${text}`, { source: 'chat' });
          entry.injected = true;
        } catch (err) {
          entry.reason = err instanceof HttpError ? err.code : 'error';
          log('warn', 'chat injection failed', { room: room.id, agent: agent.id, err: err.message });
        }
      }
      if (!entry.injected && agent) {
        agent.record('status', `chat message ${msg.id} in room ${room.name} not injected (${entry.reason})`, {
          status: agent.status,
          reason: 'chat_injection_skipped',
          skipped: entry.reason,
          room_id: room.id,
          message_id: msg.id,
          from,
        });
      }
      delivered.push(entry);
    }

    for (const w of [...room.waiters]) {
      if (msg.id > w.since) w.fire();
    }
    try {
      this.onMessage?.(room, msg);
    } catch (err) {
      log('warn', 'chat message subscriber failed', { room: room.id, err: err.message });
    }
    return msg;
  }

  read(id, { since, limit }) {
    const room = this.get(id);
    const messages = since === undefined ? room.log.tail(limit) : room.log.after(since, limit);
    let hasMore;
    if (since === undefined) hasMore = messages.length > 0 && messages[0].id > room.log.firstSeq;
    else hasMore = (messages.length ? messages[messages.length - 1].id : since) < room.log.lastSeq && messages.length > 0;
    return { room, messages, hasMore };
  }

  // Registers a long-poll waiter. handlers: {fire(), gone(), shutdown()} (called at most once,
  // after the waiter was removed); returns the waiter (remove it with cancel()).
  addWaiter(room, since, handlers) {
    const w = {
      since,
      fire: () => {
        room.waiters.delete(w);
        handlers.fire();
      },
      gone: () => {
        room.waiters.delete(w);
        handlers.gone();
      },
      shutdown: () => {
        room.waiters.delete(w);
        handlers.shutdown();
      },
      cancel: () => room.waiters.delete(w),
    };
    room.waiters.add(w);
    return w;
  }

  // Releases every waiter (sidecar shutdown).
  releaseAll() {
    for (const room of this.rooms.values()) {
      for (const w of [...room.waiters]) w.shutdown();
    }
  }
}
