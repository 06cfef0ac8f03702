#!/usr/bin/env node
// Revka session-manager sidecar: agent sessions, event timelines, SSE streams and inter-agent
// chat rooms, served as JSON over HTTP/1.1 on a Unix socket. Needs nothing beyond node:* to
// start and serve the echo/command backends; the claude backend loads the Claude Agent SDK
// (node_modules, `npm ci`) only when a claude run starts.
//
//   node session-manager.js [--socket PATH]
//
// Exit codes: 0 clean shutdown, 2 configuration/startup error, 3 another instance already
// answers on the socket.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, setLogLevel, isLogLevel, errorFields } from './log.js';
import { createRequestHandler, onClientError } from './http.js';
import { AgentManager, validateArgv } from './agents.js';
import { APPROVAL_POLICIES } from './backends/codex.js';
import { ChatService } from './chat.js';
import { buildRouter } from './routes.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXIT_CONFIG = 2;
const EXIT_ALREADY_RUNNING = 3;
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_SOCKET_PATH_BYTES = 107; // sun_path is 108 bytes on Linux (104 on macOS)

const USAGE = `usage: session-manager.js [--socket PATH] [--help] [--version]

  --socket PATH   Unix socket to listen on (env REVKA_SM_SOCKET;
                  default $REVKA_HOME/operator_mcp/session-manager.sock, REVKA_HOME=~/.revka)
`;

class ConfigError extends Error {}

function readVersion() {
  try {
    return JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8')).version || '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--socket') {
      if (i + 1 >= argv.length || argv[i + 1] === '') throw new ConfigError('--socket needs a path');
      out.socket = argv[++i];
    } else if (a.startsWith('--socket=')) {
      out.socket = a.slice('--socket='.length);
      if (!out.socket) throw new ConfigError('--socket needs a path');
    } else if (a === '--help' || a === '-h') {
      out.help = true;
    } else if (a === '--version') {
      out.version = true;
    } else {
      throw new ConfigError(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  return out;
}

function expandHome(p) {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return p;
}

function envInt(env, name, dflt, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a non-negative integer (got ${JSON.stringify(raw)})`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max} (got ${n})`);
  return n;
}

// One of `choices`; unset/empty = null (the consumer's default).
function envChoice(env, name, choices) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return null;
  const t = raw.trim();
  if (!choices.includes(t)) throw new ConfigError(`${name} must be one of: ${choices.join(', ')} (got ${JSON.stringify(raw)})`);
  return t;
}

// A non-negative decimal number (e.g. a cost in USD); unset/empty = dflt.
function envNumber(env, name, dflt) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const t = raw.trim();
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(t)) throw new ConfigError(`${name} must be a non-negative number (got ${JSON.stringify(raw)})`);
  return Number(t);
}

function loadConfig(args, env = process.env) {
  const home = path.resolve(expandHome(env.REVKA_HOME && env.REVKA_HOME.trim() ? env.REVKA_HOME : '~/.revka'));
  const socketRaw = args.socket ?? (env.REVKA_SM_SOCKET && env.REVKA_SM_SOCKET.trim() ? env.REVKA_SM_SOCKET : null);
  const socketPath = path.resolve(expandHome(socketRaw ?? path.join(home, 'operator_mcp', 'session-manager.sock')));
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(`socket path is too long for a Unix socket (${Buffer.byteLength(socketPath)} bytes > ${MAX_SOCKET_PATH_BYTES}): ${socketPath}`);
  }

  let defaultArgv = null;
  if (env.REVKA_SM_AGENT_ARGV && env.REVKA_SM_AGENT_ARGV.trim()) {
    let parsed;
    try {
      parsed = JSON.parse(env.REVKA_SM_AGENT_ARGV);
    } catch (err) {
      throw new ConfigError(`REVKA_SM_AGENT_ARGV is not valid JSON: ${err.message}`);
    }
    try {
      defaultArgv = validateArgv(parsed, 'REVKA_SM_AGENT_ARGV');
    } catch (err) {
      throw new ConfigError(err.message);
    }
  }

  const logLevel = (env.REVKA_SM_LOG_LEVEL || 'info').trim().toLowerCase();
  if (!isLogLevel(logLevel)) throw new ConfigError(`REVKA_SM_LOG_LEVEL must be debug, info, warn or error`);

  return {
    socketPath,
    logLevel,
    maxBodyBytes: MAX_BODY_BYTES,
    // agents
    maxAgents: envInt(env, 'REVKA_SM_MAX_AGENTS', 64, { min: 1, max: 100000 }),
    defaultArgv,
    maxEvents: 10000,
    maxEventBytes: envInt(env, 'REVKA_SM_MAX_EVENT_BYTES', 64 * 1024 * 1024, { min: 1024 }),
    lineCap: 64 * 1024,
    // one line of a JSON-speaking backend (claude CLI stream, codex): a whole message, which
    // may carry a large tool result
    jsonLineCap: envInt(env, 'REVKA_SM_JSON_LINE_CAP', 4 * 1024 * 1024, { min: 1024, max: 256 * 1024 * 1024 }),
    maxQueue: 100,
    killGraceMs: envInt(env, 'REVKA_SM_KILL_GRACE_MS', 3000, { max: 600000 }),
    interruptGraceMs: envInt(env, 'REVKA_SM_INTERRUPT_GRACE_MS', 5000, { max: 3600000 }),
    maxEventsPerRun: envInt(env, 'REVKA_SM_MAX_EVENTS_PER_RUN', 100000, { min: 1 }),
    maxCostUsd: envNumber(env, 'REVKA_SM_MAX_COST_USD', 0), // 0 = no limit
    maxTokens: envInt(env, 'REVKA_SM_MAX_TOKENS', 0), // 0 = no limit
    // backends
    claudePath: env.REVKA_SM_CLAUDE_PATH && env.REVKA_SM_CLAUDE_PATH.trim() ? env.REVKA_SM_CLAUDE_PATH.trim() : null,
    // Tests only: the module specifier the claude backend imports instead of the SDK.
    claudeSdkModule: env.REVKA_SM_CLAUDE_SDK_MODULE && env.REVKA_SM_CLAUDE_SDK_MODULE.trim() ? env.REVKA_SM_CLAUDE_SDK_MODULE.trim() : '@anthropic-ai/claude-agent-sdk',
    codexPath: env.REVKA_SM_CODEX_PATH && env.REVKA_SM_CODEX_PATH.trim() ? env.REVKA_SM_CODEX_PATH.trim() : 'codex',
    codexApprovals: envChoice(env, 'REVKA_SM_CODEX_APPROVALS', Object.keys(APPROVAL_POLICIES)),
    // chat
    maxRooms: envInt(env, 'REVKA_SM_MAX_ROOMS', 256, { min: 1, max: 100000 }),
    maxMessages: 10000,
    maxRoomBytes: envInt(env, 'REVKA_SM_MAX_ROOM_BYTES', 32 * 1024 * 1024, { min: 1024 }),
    // streams / lifecycle
    sseKeepAliveMs: envInt(env, 'REVKA_SM_SSE_KEEPALIVE_MS', 15000, { min: 10, max: 3600000 }),
    sseMaxBufferBytes: 8 * 1024 * 1024,
    parentPollMs: envInt(env, 'REVKA_SM_PARENT_POLL_MS', 2000, { max: 3600000 }),
    debugRoutes: env.REVKA_SM_DEBUG_ROUTES === '1',
  };
}

// 'alive' if something accepts connections on the socket, 'dead' if nothing does.
function probeSocket(socketPath, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect(socketPath);
    const done = (state) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(state);
    };
    // No answer in time: assume a live but busy owner; never delete what might be in use.
    const timer = setTimeout(() => done('alive'), timeoutMs);
    sock.once('connect', () => done('alive'));
    sock.once('error', (err) => done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'dead' : 'alive'));
  });
}

function fatal(code, msg, fields) {
  log('error', msg, fields);
  process.exit(code);
}

async function main() {
  let args;
  let cfg;
  try {
    args = parseArgs(process.argv.slice(2));
    if (args.help) {
      process.stdout.write(USAGE);
      return;
    }
    if (args.version) {
      process.stdout.write(readVersion() + '\n');
      return;
    }
    cfg = loadConfig(args);
    setLogLevel(cfg.logLevel);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(USAGE);
    fatal(EXIT_CONFIG, `configuration error: ${err.message}`);
  }

  const version = readVersion();
  const socketPath = cfg.socketPath;
  const dir = path.dirname(socketPath);
  try {
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      log('info', 'created socket directory', { dir });
    }
  } catch (err) {
    fatal(EXIT_CONFIG, `cannot create socket directory ${dir}: ${err.message}`, { dir });
  }

  // A leftover socket file is removed only when nothing answers on it.
  let st = null;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    if (err.code !== 'ENOENT') fatal(EXIT_CONFIG, `cannot stat ${socketPath}: ${err.message}`);
  }
  if (st) {
    if (!st.isSocket()) {
      fatal(EXIT_CONFIG, `${socketPath} exists and is not a socket; refusing to remove it`, { socket: socketPath });
    }
    const state = await probeSocket(socketPath);
    if (state === 'alive') {
      fatal(EXIT_ALREADY_RUNNING, `another session-manager instance is already listening on ${socketPath}; exiting`, {
        socket: socketPath,
      });
    }
    try {
      fs.unlinkSync(socketPath);
      log('info', 'removed stale socket', { socket: socketPath });
    } catch (err) {
      if (err.code !== 'ENOENT') fatal(EXIT_CONFIG, `cannot remove stale socket ${socketPath}: ${err.message}`);
    }
  }

  const startedAt = Date.now();
  const agents = new AgentManager(cfg);
  const chat = new ChatService(agents, cfg);
  const { router, streams } = buildRouter({ agents, chat, cfg, version, startedAt });
  let shuttingDown = false;
  const onRequest = createRequestHandler({ router, maxBodyBytes: cfg.maxBodyBytes, isShuttingDown: () => shuttingDown });
  const server = http.createServer(onRequest);
  // Route and validate first; "100 Continue" is sent only when the body is actually read.
  server.on('checkContinue', onRequest);
  server.on('clientError', onClientError);
  server.keepAliveTimeout = 5000;

  // Keep the socket private from the moment it exists; chmod afterwards for good measure.
  const oldUmask = process.umask(0o177);
  let socketIno = null;
  await new Promise((resolve) => {
    const onError = (err) => {
      process.umask(oldUmask);
      if (err.code === 'EADDRINUSE') {
        fatal(EXIT_ALREADY_RUNNING, `socket ${socketPath} is already in use by another instance; exiting`, {
          socket: socketPath,
        });
      }
      fatal(EXIT_CONFIG, `cannot listen on ${socketPath}: ${err.message}`, { socket: socketPath, code: err.code });
    };
    server.once('error', onError);
    server.listen(socketPath, () => {
      server.off('error', onError);
      process.umask(oldUmask);
      resolve();
    });
  });
  try {
    fs.chmodSync(socketPath, 0o600);
    socketIno = fs.statSync(socketPath).ino;
  } catch (err) {
    log('warn', 'cannot chmod socket', { socket: socketPath, err: err.message });
  }
  server.on('error', (err) => log('error', 'server error', { err: errorFields(err) }));
  log('info', 'listening', { socket: socketPath, pid: process.pid, version, node: process.version });

  const removeSocket = () => {
    try {
      const now = fs.lstatSync(socketPath);
      // Only remove our own socket, never one a newer instance created meanwhile.
      if (now.isSocket() && (socketIno === null || now.ino === socketIno)) fs.unlinkSync(socketPath);
    } catch {
      // already gone
    }
  };

  async function shutdown(reason) {
    if (shuttingDown) return;
    shuttingDown = true;
    log('info', 'shutting down', { reason, agents: agents.size });
    const hardStop = setTimeout(() => {
      log('error', 'shutdown took too long; exiting anyway');
      removeSocket();
      process.exit(0);
    }, cfg.killGraceMs + 5000);
    hardStop.unref();

    server.close(); // stop accepting
    chat.releaseAll();
    for (const s of [...streams]) s.end('shutdown', { reason: 'shutdown' });
    server.closeIdleConnections?.();
    try {
      await agents.shutdown();
    } catch (err) {
      log('error', 'agent shutdown failed', { err: errorFields(err) });
    }
    server.closeAllConnections?.();
    removeSocket();
    log('info', 'stopped');
    process.exit(0);
  }

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => shutdown('SIGHUP'));

  // The daemon (or operator) that started us is gone: we are orphaned, shut down.
  if (cfg.parentPollMs > 0) {
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) shutdown(`parent process ${parent} exited`);
    }, cfg.parentPollMs).unref();
  }
}

// Never die on a stray exception: log it and keep serving.
process.on('uncaughtException', (err) => {
  log('error', 'uncaught exception', { err: errorFields(err) });
});
process.on('unhandledRejection', (reason) => {
  log('error', 'unhandled promise rejection', { err: errorFields(reason) });
});

main().catch((err) => {
  log('error', 'startup failed', { err: errorFields(err) });
  process.exit(EXIT_CONFIG);
});
