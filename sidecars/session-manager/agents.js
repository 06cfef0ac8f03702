// Agent sessions: an agent owns a bounded event timeline and runs one prompt at a time on a
// backend: "echo" (tests), "command" (any CLI, e.g. `claude -p {prompt}`), "claude" (the Claude
// Agent SDK, backends/claude.js) and "codex" (the Codex app-server, backends/codex.js).
//
// ---------------------------------------------------------------------------------------------
// The backend interface. BACKEND_RUNS maps a backend name to a run class; one instance per
// prompt ("run"). Every run class implements:
//
//   new XRun(agent, runNo, prompt)  no side effects; runNo numbers the agent's runs from 1
//   start()                         starts the run (synchronously returns; failures to start are
//                                   reported through completion, never thrown)
//   interrupt() -> bool             asks the run to stop early; false when nothing was running.
//                                   An interrupted run completes with status 'idle' (the agent
//                                   adds reason 'interrupted' to its status event)
//   terminate() -> Promise          stops the run for good: kills its process group (SIGTERM,
//                                   SIGKILL after cfg.killGraceMs) and resolves once reaped and
//                                   completion was reported
//   pid                             the pid (= process group id) while a process runs, else
//                                   undefined
//   completion                      exactly once, asynchronously (never inside start()):
//                                   agent._runFinished(run, status, lastError?) with status
//                                   'idle' | 'error' and lastError {reason, message} on failures
//                                   (reason: one of the `error` event reasons of the contract)
//   static closeAgent(agent) -> Promise   optional; called once when the agent is closed
//                                   (DELETE, shutdown) after its current run was terminated, to
//                                   release per-agent state (e.g. codex's app-server process)
//
// Per-agent backend state lives in agent.backendState (an object the backend owns; e.g.
// {session_id} for claude, {thread_id, ...} for codex; info() exposes session_id/thread_id from
// it), the request's backend options in agent.options ({model, allowed_tools, system_prompt,
// mcp_servers, permission_mode, approval_policy}, validated, absent fields undefined), the model
// in agent.model once known.
//
// Helpers the agent offers its runs:
//   agent.record(type, text, data)  appends a timeline event (contract types; data.run = runNo).
//                                   Events of a run beyond cfg.maxEventsPerRun fail the run with
//                                   reason 'flood' and are dropped.
//   agent.addUsage({input_tokens, output_tokens, cache_read_input_tokens,
//                   cache_creation_input_tokens, cost_usd}, run)
//                                   sums into agent.usage, records the `usage` event (with the
//                                   totals) and enforces the budget: when the totals reach
//                                   max_cost_usd or max_tokens (tokens = the sum of the four
//                                   token counts) the run is interrupted, a `budget` event is
//                                   recorded, the run ends with status error / reason
//                                   budget_exceeded, and later prompts get 409 budget_exceeded.
//                                   cost_usd null/undefined = the backend does not report cost.
//   agent.fail(run, reason, message) records an `error` event {run, reason}, marks the run failed
//                                   (first failure wins) and terminates it; its completion then
//                                   ends with status error and last_error {reason, message}
//                                   whatever status the run reports. For protocol / died / flood
//                                   / backend / sdk_missing failures.
//   runEnv(agent, prompt)           the environment of a process the run starts (keeps the
//                                   daemon's REVKA_PROCESS_TREE marker)
//   signalGroup/groupAlive/killGroup  process-group helpers

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RingLog } from './ringlog.js';
import { HttpError, badRequest } from './http.js';
import { log } from './log.js';

import { ClaudeRun } from './backends/claude.js';
import { APPROVAL_POLICIES, CODEX_MCP_NAME_RE, CodexRun } from './backends/codex.js';

const MAX_NAME = 128;
const MAX_MODEL = 256;
const MAX_TOOLS = 512;
const MAX_TOOL_NAME = 512;
const MAX_SYSTEM_PROMPT = 256 * 1024;
const MAX_MCP_SERVERS = 64;
const MAX_URL = 8192;
const PERMISSION_MODES = ['default', 'acceptEdits', 'bypassPermissions', 'plan'];
const MAX_APPROVAL_POLICY = 64;
// Event types a flooding run may still record (its end is worth knowing), plus `error` events
// with a reason (failures; a command's stderr lines are `error` events without one).
const FLOOD_EXEMPT = new Set(['status', 'exit', 'interrupt', 'budget', 'usage', 'result']);
const floodExempt = (type, data) => FLOOD_EXEMPT.has(type) || (type === 'error' && data.reason !== undefined);
const MAX_ARGV = 1024;
const MAX_ENV = 1024;
const ECHO_DELAY_MS = 10;
const MAX_ECHO_SLEEP_MS = 60 * 60 * 1000;
const FINALIZE_AFTER_EXIT_MS = 500; // how long to wait for stdout/stderr to drain after exit

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => new Date().toISOString();

function newId(prefix, taken) {
  for (;;) {
    const id = prefix + randomBytes(5).toString('hex');
    if (!taken.has(id)) return id;
  }
}

// ---------------------------------------------------------------------------------------------
// Process-group helpers. Every command run is spawned detached, so its pid is also its pgid.

export function signalGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if (err.code !== 'ESRCH') log('warn', 'signal failed', { pgid, signal, err: err.message });
    return false;
  }
}

export function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// Processes that left their run's process group (a tool that starts commands in groups of their
// own) but still carry this agent's REVKA_SM_AGENT_ID in their environment: SIGKILLed once the
// agent is closed, so none outlives it. Linux (/proc); elsewhere none is found. Returns how many.
export function killMarked(agentId) {
  const needle = Buffer.from(`\0REVKA_SM_AGENT_ID=${agentId}\0`);
  let pids;
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return 0;
  }
  let killed = 0;
  for (const name of pids) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    let environ;
    try {
      environ = fs.readFileSync(`/proc/${name}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    if (!Buffer.concat([Buffer.from([0]), environ]).includes(needle)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed += 1;
    } catch {
      // already gone
    }
  }
  if (killed > 0) log('warn', 'killed processes that outlived their agent', { agent: agentId, killed });
  return killed;
}

// After an interrupt: a run still going `interruptGraceMs` later (`running()`) is terminated
// (`run.terminate()`: its process group ended). `what` names the ignored interrupt in the log.
// Sets `run.escalateTimer` (once per run; the run clears it when it ends).
export function escalateInterrupt(run, cfg, running, what) {
  const grace = cfg.interruptGraceMs;
  if (grace <= 0 || run.escalateTimer) return;
  run.escalateTimer = setTimeout(() => {
    if (!running()) return;
    log('warn', `${what}; terminating`, { agent: run.agent.id, run: run.no });
    run.terminate().catch((err) => log('error', 'terminate failed', { agent: run.agent.id, err: err.message }));
  }, grace);
}

// SIGTERM to the group, SIGKILL after graceMs if any member survives; resolves once the group
// is gone (or after a last short wait). exited: optional promise resolved when the leader is
// reaped.
export async function killGroup(pgid, graceMs, exited) {
  if (pgid === undefined || !groupAlive(pgid)) return;
  const deadline = Date.now() + graceMs;
  signalGroup(pgid, 'SIGTERM');
  if (exited) await Promise.race([exited, sleep(graceMs)]);
  while (Date.now() < deadline && groupAlive(pgid)) await sleep(25);
  if (groupAlive(pgid)) {
    log('warn', 'process group survived SIGTERM; sending SIGKILL', { pgid });
    signalGroup(pgid, 'SIGKILL');
    const until = Date.now() + 2000;
    while (Date.now() < until && groupAlive(pgid)) await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// Splits a byte stream into lines; lines longer than `cap` bytes are cut at `cap` and reported
// as truncated (the rest of that line is discarded). Memory use is bounded by `cap`.

export class LineSplitter {
  constructor(cap, onLine) {
    this.cap = cap;
    this.onLine = onLine;
    this.parts = [];
    this.len = 0;
    this.skipping = false;
  }

  push(chunk) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.skipping) {
        const piece = chunk.subarray(start, end);
        const room = this.cap - this.len;
        if (piece.length > room) {
          this.parts.push(piece.subarray(0, room));
          this.len += room;
          this.emit(true);
          this.skipping = true;
        } else if (piece.length > 0) {
          this.parts.push(piece);
          this.len += piece.length;
        }
      }
      if (nl === -1) break;
      if (this.skipping) this.skipping = false;
      else this.emit(false);
      start = nl + 1;
    }
  }

  end() {
    if (!this.skipping && this.len > 0) this.emit(false);
    this.skipping = false;
    this.parts = [];
    this.len = 0;
  }

  emit(truncated) {
    let text = Buffer.concat(this.parts, this.len).toString('utf8');
    this.parts = [];
    this.len = 0;
    if (!truncated && text.endsWith('\r')) text = text.slice(0, -1);
    this.onLine(text, truncated);
  }
}

// ---------------------------------------------------------------------------------------------
// Backends. A run reports completion exactly once through agent._runFinished(run, status),
// always asynchronously.

export class EchoRun {
  constructor(agent, no, prompt) {
    this.agent = agent;
    this.no = no;
    this.prompt = prompt;
    this.pid = undefined;
    this.timer = null;
    this.finished = false;
    this.interrupted = false;
  }

  start() {
    const p = this.prompt.trim();
    const sleepMatch = /^sleep:(\d+)$/.exec(p);
    if (sleepMatch) {
      const ms = Math.min(Number(sleepMatch[1]), MAX_ECHO_SLEEP_MS);
      this.timer = setTimeout(() => {
        this.agent.record('output', `echo: slept ${ms}ms`, { run: this.no });
        this.finish('idle');
      }, ms);
    } else if (/^usage:\d+:\d+:[\d.]+$/.test(p)) {
      // usage:<input_tokens>:<output_tokens>:<cost_usd> reports usage (budget tests)
      const [, i, o, c] = p.split(':');
      this.timer = setTimeout(() => {
        this.agent.record('output', `echo: ${this.prompt}`, { run: this.no });
        this.agent.addUsage({ input_tokens: Number(i), output_tokens: Number(o), cost_usd: Number(c) }, this);
        this.finish('idle');
      }, ECHO_DELAY_MS);
    } else if (/^flood:\d+$/.test(p)) {
      // flood:<n> records n output events (flood guard tests)
      const n = Math.min(Number(p.slice(6)), 10_000_000);
      let k = 0;
      const burst = () => {
        // 200 events a turn of the event loop, like a real backend reading a pipe
        for (let m = 0; m < 200 && k < n && !this.failure && !this.finished; m++) {
          this.agent.record('output', `echo: ${++k}`, { run: this.no });
        }
        if (k < n && !this.failure && !this.finished) this.timer = setTimeout(burst, 0);
        else this.finish('idle');
      };
      this.timer = setTimeout(burst, ECHO_DELAY_MS);
    } else if (p === 'fail') {
      this.timer = setTimeout(() => {
        this.agent.record('error', 'echo: simulated failure', { run: this.no, reason: 'backend' });
        this.finish('error', { reason: 'backend', message: 'echo: simulated failure' });
      }, ECHO_DELAY_MS);
    } else {
      this.timer = setTimeout(() => {
        this.agent.record('output', `echo: ${this.prompt}`, { run: this.no });
        this.finish('idle');
      }, ECHO_DELAY_MS);
    }
  }

  finish(status, lastError) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.agent._runFinished(this, status, lastError);
  }

  interrupt() {
    if (this.finished) return false;
    this.interrupted = true;
    clearTimeout(this.timer);
    setImmediate(() => this.finish('idle'));
    return true;
  }

  async terminate() {
    if (this.finished) return;
    clearTimeout(this.timer);
    this.finish('idle');
  }
}

// The Revka daemon marks every process it supervises (and so everything they start) with
// REVKA_PROCESS_TREE. When this sidecar dies without shutting down (SIGKILL, crash), the daemon
// adopts the orphaned agent runs, recognises them by this marker and terminates them. A request's
// `env` can therefore neither change nor invent it.
export const TREE_VAR = 'REVKA_PROCESS_TREE';

// The environment of a command run: ours, the request's `env`, the REVKA_SM_* variables, and
// the daemon's marker unchanged.
export function runEnv(agent, prompt) {
  const env = {
    ...process.env,
    ...agent.env,
    REVKA_SM_AGENT_ID: agent.id,
    REVKA_SM_AGENT_NAME: agent.name,
    REVKA_SM_PROMPT: prompt,
  };
  if (process.env[TREE_VAR] === undefined) delete env[TREE_VAR];
  else env[TREE_VAR] = process.env[TREE_VAR];
  return env;
}

export function substitutePrompt(template, prompt) {
  return template.map((arg) => (arg === '{prompt}' ? prompt : arg.split('{prompt}').join(prompt)));
}

export class CommandRun {
  constructor(agent, no, prompt) {
    this.agent = agent;
    this.mgr = agent.mgr;
    this.no = no;
    this.prompt = prompt;
    this.pid = undefined;
    this.child = null;
    this.exited = false; // the child was reaped (or never started)
    this.finished = false; // exit event recorded, agent notified
    this.interrupted = false;
    this.code = null;
    this.signal = null;
    this.spawnError = null;
    this.startedAt = Date.now();
    this.exitPromise = new Promise((r) => (this._resolveExit = r));
    this.finishedPromise = new Promise((r) => (this._resolveFinished = r));
    this.finalizeTimer = null;
    this.escalateTimer = null;
    this.terminating = null;
  }

  start() {
    const agent = this.agent;
    const argv = substitutePrompt(agent.argv, this.prompt);
    const cap = this.mgr.cfg.lineCap;
    const onLine = (type) => (text, truncated) => {
      if (truncated) {
        agent.record(type, `${text} …[truncated: line exceeded ${cap} bytes]`, { run: this.no, truncated: true });
      } else {
        agent.record(type, text, { run: this.no });
      }
    };
    this.out = new LineSplitter(cap, onLine('output'));
    this.err = new LineSplitter(cap, onLine('error'));
    let child;
    try {
      child = spawn(argv[0], argv.slice(1), {
        cwd: agent.cwd,
        env: runEnv(agent, this.prompt),
        // Its own session and process group: DELETE and interrupt signal the whole run (what it
        // forked included) without touching the sidecar. If the sidecar is SIGKILLed, the daemon
        // terminates the orphaned runs (see TREE_VAR).
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (err) {
      setImmediate(() => this.onSpawnError(err));
      return;
    }
    this.child = child;
    this.pid = child.pid; // undefined if the spawn failed (reported through 'error')
    child.stdout.on('data', (c) => this.out.push(c));
    child.stderr.on('data', (c) => this.err.push(c));
    child.stdout.on('error', () => {});
    child.stderr.on('error', () => {});
    child.on('error', (err) => {
      if (this.pid === undefined || this.exited) this.onSpawnError(err);
      else log('warn', 'child process error', { agent: agent.id, pid: this.pid, err: err.message });
    });
    child.on('exit', (code, signal) => this.onExit(code, signal));
    child.on('close', () => {
      if (this.exited) this.finalize();
    });
    if (this.pid !== undefined) {
      log('info', 'agent run started', { agent: agent.id, run: this.no, pid: this.pid, cmd: argv[0] });
    }
  }

  onSpawnError(err) {
    if (this.finished) return;
    if (!this.exited) {
      this.exited = true;
      this._resolveExit();
    }
    this.spawnError = err;
    log('warn', 'agent run failed to start', { agent: this.agent.id, err: err.message });
    this.agent.record('error', `failed to start ${JSON.stringify(this.agent.argv[0])}: ${err.message}`, {
      run: this.no,
      errno: err.code,
    });
    this.finalize();
  }

  onExit(code, signal) {
    if (this.exited) return;
    this.exited = true;
    this.code = code;
    this.signal = signal;
    clearTimeout(this.escalateTimer);
    this._resolveExit();
    log('info', 'agent run exited', { agent: this.agent.id, run: this.no, pid: this.pid, code, signal });
    // Give stdout/stderr a moment to drain; grandchildren holding the pipes open must not keep
    // the run alive forever.
    this.finalizeTimer = setTimeout(() => this.finalize(), FINALIZE_AFTER_EXIT_MS);
  }

  finalize() {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.finalizeTimer);
    clearTimeout(this.escalateTimer);
    this.out.end();
    this.err.end();
    if (this.child) {
      this.child.stdout?.destroy();
      this.child.stderr?.destroy();
    }
    const data = {
      run: this.no,
      pid: this.pid,
      code: this.code,
      signal: this.signal,
      duration_ms: Date.now() - this.startedAt,
    };
    if (this.interrupted) data.interrupted = true;
    if (this.spawnError) data.spawn_error = this.spawnError.code || this.spawnError.message;
    const text = this.spawnError
      ? 'failed to start'
      : this.signal
        ? `killed by ${this.signal}`
        : `exited with code ${this.code}`;
    this.agent.record('exit', text, data);
    this.agent.lastPid = this.pid;
    this.agent.exitCode = this.code;
    this.agent.exitSignal = this.signal;
    const ok = !this.spawnError && this.code === 0;
    const failure = this.spawnError
      ? { reason: 'spawn', message: `failed to start ${JSON.stringify(this.agent.argv[0])}: ${this.spawnError.message}` }
      : { reason: 'backend', message: `the command ${text}` };
    this.agent._runFinished(this, ok || this.interrupted ? 'idle' : 'error', failure);
    this._resolveFinished();
  }

  interrupt() {
    if (this.exited || this.pid === undefined) return false;
    this.interrupted = true;
    signalGroup(this.pid, 'SIGINT');
    escalateInterrupt(this, this.mgr.cfg, () => !this.exited, 'agent ignored SIGINT');
    return true;
  }

  // SIGTERM to the process group, SIGKILL after killGraceMs (also for group members that
  // outlive the leader). Resolves once the leader is reaped and the run is finalized.
  terminate() {
    if (!this.terminating) this.terminating = this._terminate();
    return this.terminating;
  }

  async _terminate() {
    const graceMs = this.mgr.cfg.killGraceMs;
    if (this.pid !== undefined && (!this.exited || groupAlive(this.pid))) {
      const pgid = this.pid;
      const deadline = Date.now() + graceMs;
      signalGroup(pgid, 'SIGTERM');
      await Promise.race([this.exitPromise, sleep(graceMs)]);
      while (Date.now() < deadline && groupAlive(pgid)) await sleep(25);
      if (groupAlive(pgid)) {
        log('warn', 'process group survived SIGTERM; sending SIGKILL', { agent: this.agent.id, pgid });
        signalGroup(pgid, 'SIGKILL');
      }
      await Promise.race([this.exitPromise, sleep(2000)]);
      if (!this.exited) log('error', 'child not reaped after SIGKILL', { agent: this.agent.id, pid: pgid });
    }
    await Promise.race([this.finishedPromise, sleep(FINALIZE_AFTER_EXIT_MS + 100)]);
    this.finalize();
  }
}

// The registry of backends. BACKENDS (sorted) is what error messages list.
export const BACKEND_RUNS = { claude: ClaudeRun, codex: CodexRun, command: CommandRun, echo: EchoRun };
export const BACKENDS = Object.keys(BACKEND_RUNS).sort();

const emptyUsage = () => ({
  input_tokens: 0,
  output_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
  cost_usd: 0,
  runs: 0,
});
const USAGE_FIELDS = ['input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens'];
const usedTokens = (u) => USAGE_FIELDS.reduce((n, k) => n + u[k], 0);

// ---------------------------------------------------------------------------------------------

class Agent {
  constructor(mgr, { id, name, backend, cwd, argv, env, options, budget }) {
    this.mgr = mgr;
    this.id = id;
    this.name = name;
    this.backend = backend;
    this.Run = BACKEND_RUNS[backend];
    this.cwd = cwd;
    this.argv = argv;
    this.env = env;
    this.options = options;
    this.budget = budget; // {max_cost_usd?, max_tokens?} or null
    this.budgetExceeded = null; // {message} once the budget stopped the agent
    this.usage = emptyUsage();
    this.backendState = {};
    this.model = options.model;
    this.lastError = null;
    this.createdAt = now();
    this.lastEventAt = null;
    this.status = 'idle';
    this.log = new RingLog({ capacity: mgr.cfg.maxEvents, maxBytes: mgr.cfg.maxEventBytes });
    this.subscribers = new Set();
    this.queue = [];
    this.run = null;
    this.runCount = 0;
    this.lastPid = undefined;
    this.exitCode = undefined;
    this.exitSignal = undefined;
    this.closing = null; // promise while/after DELETE
  }

  get running() {
    return this.run !== null;
  }

  info() {
    const o = {
      id: this.id,
      name: this.name,
      backend: this.backend,
      status: this.status,
      created_at: this.createdAt,
      last_event_at: this.lastEventAt,
      event_count: this.log.lastSeq,
      dropped: this.log.dropped,
      runs: this.runCount,
      queued: this.queue.length,
      cwd: this.cwd,
    };
    if (this.backend === 'command') o.argv = this.argv;
    o.usage = { ...this.usage };
    if (this.budget) o.budget = { ...this.budget };
    if (this.model !== undefined) o.model = this.model;
    if (this.backendState.session_id !== undefined) o.session_id = this.backendState.session_id;
    if (this.backendState.thread_id !== undefined) o.thread_id = this.backendState.thread_id;
    if (this.lastError) o.last_error = { ...this.lastError };
    if (this.run && this.run.pid !== undefined) o.pid = this.run.pid;
    if (this.lastPid !== undefined) o.last_pid = this.lastPid;
    if (this.exitCode !== undefined) o.exit_code = this.exitCode;
    if (this.exitSignal) o.exit_signal = this.exitSignal;
    return o;
  }

  record(type, text, data) {
    // Flood guard: the events of one run are counted; past the cap the run fails ('flood') and
    // its further content events are dropped.
    const run = this.run;
    if (run && data && data.run === run.no && !floodExempt(type, data)) {
      run.eventCount = (run.eventCount || 0) + 1;
      if (run.eventCount > this.mgr.cfg.maxEventsPerRun) {
        if (!run.failure) {
          this.fail(run, 'flood', `run ${run.no} produced more than ${this.mgr.cfg.maxEventsPerRun} events; stopped`);
        }
        return null;
      }
    }
    const ts = now();
    const size = 96 + (text ? Buffer.byteLength(text) : 0) + (data ? JSON.stringify(data).length : 0);
    const ev = this.log.append((seq) => {
      const e = { seq, ts, type };
      if (text !== undefined) e.text = text;
      if (data !== undefined) e.data = data;
      return e;
    }, size);
    this.lastEventAt = ts;
    try {
      this.mgr.onAgentEvent?.(this, ev);
    } catch (err) {
      log('warn', 'global event feed failed', { agent: this.id, err: err.message });
    }
    for (const sub of this.subscribers) {
      try {
        sub.onEvent(ev);
      } catch (err) {
        log('warn', 'event subscriber failed', { agent: this.id, err: err.message });
      }
    }
    return ev;
  }

  subscribe(sub) {
    this.subscribers.add(sub);
    return () => this.subscribers.delete(sub);
  }

  setStatus(status, data) {
    this.status = status;
    this.record('status', status, { status, ...data });
  }

  startRun(prompt, source) {
    const no = ++this.runCount;
    this.record('prompt', prompt, { run: no, source });
    const run = new this.Run(this, no, prompt);
    this.run = run;
    this.status = 'running';
    run.start();
    const data = { status: 'running', run: no };
    if (run.pid !== undefined) data.pid = run.pid;
    this.record('status', 'running', data);
  }

  _runFinished(run, status, lastError) {
    if (this.run !== run) return;
    this.run = null;
    const data = { run: run.no };
    if (run.failure) {
      status = 'error';
      lastError = run.failure;
    } else if (status === 'error' && !lastError) {
      lastError = { reason: 'backend', message: `run ${run.no} failed` };
    }
    if (status === 'error') {
      this.lastError = { reason: lastError.reason, message: lastError.message };
      data.reason = lastError.reason;
    } else if (run.interrupted) {
      data.reason = 'interrupted';
    }
    if (this.closing) return; // close() records the final status
    this.setStatus(status, data);
    if (this.budgetExceeded) {
      this.queue = [];
      return;
    }
    if (this.queue.length > 0) {
      const next = this.queue.shift();
      this.startRun(next.prompt, next.source);
    }
  }

  // Fails `run`: records the `error` event, marks the run (its completion will report status
  // error with this reason whatever it says) and terminates it. First failure wins.
  fail(run, reason, message) {
    if (!run || run.failure) return;
    run.failure = { reason, message };
    this.record('error', message, { run: run.no, reason });
    log('warn', 'agent run failed', { agent: this.id, run: run.no, reason, message });
    Promise.resolve()
      .then(() => run.terminate())
      .catch((err) => log('error', 'terminate failed', { agent: this.id, err: err.message }));
  }

  // Adds a run's usage to the agent's totals, records the `usage` event, enforces the budget.
  addUsage(u, run) {
    const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
    const cost = typeof u.cost_usd === 'number' && Number.isFinite(u.cost_usd) ? u.cost_usd : null;
    const delta = {};
    for (const k of USAGE_FIELDS) delta[k] = num(u[k]);
    for (const k of USAGE_FIELDS) this.usage[k] += delta[k];
    if (cost !== null) this.usage.cost_usd = Math.round((this.usage.cost_usd + Math.max(0, cost)) * 1e9) / 1e9;
    if (run && !run.usageCounted) {
      run.usageCounted = true;
      this.usage.runs += 1;
    }
    const totals = { ...this.usage };
    delete totals.runs;
    this.record('usage', undefined, { run: run?.no, ...delta, cost_usd: cost, totals });
    this.checkBudget(run);
  }

  checkBudget(run) {
    const b = this.budget;
    if (!b || this.budgetExceeded) return;
    const tokens = usedTokens(this.usage);
    const costOver = b.max_cost_usd !== undefined && this.usage.cost_usd >= b.max_cost_usd;
    const tokensOver = b.max_tokens !== undefined && tokens >= b.max_tokens;
    if (!costOver && !tokensOver) return;
    const what = costOver
      ? `cost $${this.usage.cost_usd} reached the limit of $${b.max_cost_usd}`
      : `${tokens} tokens reached the limit of ${b.max_tokens}`;
    const message = `budget exceeded: ${what}`;
    this.budgetExceeded = { message };
    this.queue = [];
    this.record('budget', message, {
      limit: { ...b },
      used: { cost_usd: this.usage.cost_usd, tokens },
    });
    log('warn', 'agent budget exceeded', { agent: this.id, message });
    const failure = { reason: 'budget_exceeded', message };
    if (run && this.run === run) {
      if (!run.failure) run.failure = failure;
      if (!run.interrupt()) {
        run.terminate().catch((err) => log('error', 'terminate failed', { agent: this.id, err: err.message }));
      }
    } else if (!this.closing) {
      this.lastError = failure;
      this.setStatus('error', { reason: 'budget_exceeded' });
    }
  }

  query(prompt, { queue = false, source = 'api' } = {}) {
    if (typeof prompt !== 'string' || prompt.length === 0) throw badRequest('prompt must be a non-empty string');
    if (this.backend === 'command' && prompt.includes('\0')) throw badRequest('prompt contains a NUL byte');
    if (this.closing) throw new HttpError(409, 'agent_closing', `agent ${this.id} is being closed`);
    if (this.budgetExceeded) {
      throw new HttpError(409, 'budget_exceeded', `agent ${this.id} is stopped: ${this.budgetExceeded.message}`);
    }
    if (this.running) {
      if (!queue) throw new HttpError(409, 'agent_busy', `agent ${this.id} is busy; retry later or pass queue: true`);
      if (this.queue.length >= this.mgr.cfg.maxQueue) {
        throw new HttpError(429, 'queue_full', `agent ${this.id} already has ${this.queue.length} queued prompts`);
      }
      this.queue.push({ prompt, source });
      this.record('status', 'queued', { status: this.status, queued: this.queue.length, source });
      return { queued: true, position: this.queue.length };
    }
    this.startRun(prompt, source);
    return { queued: false };
  }

  interrupt() {
    const cleared = this.queue.length;
    this.queue = [];
    if (!this.run) return { interrupted: false, cleared_queue: cleared };
    const run = this.run;
    this.record('interrupt', 'interrupt requested', {
      run: run.no,
      signal: this.backend === 'command' ? 'SIGINT' : undefined,
      cleared_queue: cleared,
    });
    return { interrupted: run.interrupt(), cleared_queue: cleared };
  }

  close(reason) {
    if (!this.closing) {
      // Set before _close() runs: an echo run finishes synchronously inside it.
      this.closing = true;
      this.closing = this._close(reason);
    }
    return this.closing;
  }

  async _close(reason) {
    this.queue = [];
    const run = this.run;
    if (run) await run.terminate();
    this.run = null;
    if (typeof this.Run.closeAgent === 'function') {
      try {
        await this.Run.closeAgent(this);
      } catch (err) {
        log('error', 'backend close failed', { agent: this.id, backend: this.backend, err: err.message });
      }
    }
    killMarked(this.id);
    this.setStatus('exited', { reason });
    for (const sub of this.subscribers) {
      try {
        sub.onClose(reason);
      } catch {
        // ignore
      }
    }
    this.subscribers.clear();
  }
}

// ---------------------------------------------------------------------------------------------

function validString(v, field, { max = Infinity, allowEmpty = false } = {}) {
  if (typeof v !== 'string') throw badRequest(`${field} must be a string`);
  if (!allowEmpty && v.length === 0) throw badRequest(`${field} must not be empty`);
  if (v.length > max) throw badRequest(`${field} must be at most ${max} characters`);
  return v;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

// kind 'env': names as the top-level env's (no '=' or NUL), values without NUL; kind 'header':
// an HTTP token for the name, no control character in the value (no header injection).
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
function validStringMap(v, field, { maxEntries = MAX_ENV, kind = 'env' } = {}) {
  if (!isObject(v)) throw badRequest(`${field} must be an object of strings`);
  const entries = Object.entries(v);
  if (entries.length > maxEntries) throw badRequest(`${field} has more than ${maxEntries} entries`);
  const out = {};
  for (const [k, x] of entries) {
    const badName = kind === 'header' ? !HEADER_NAME_RE.test(k) : k === '' || k.includes('=') || k.includes('\0');
    if (badName) throw badRequest(`invalid ${field} name ${JSON.stringify(k)}`);
    if (typeof x !== 'string') throw badRequest(`${field}.${k} must be a string`);
    if (kind === 'header' ? /[\u0000-\u0008\u000a-\u001f\u007f]/.test(x) : x.includes('\0')) {
      throw badRequest(`${field}.${k} contains a control character`);
    }
    out[k] = x;
  }
  return out;
}

function validMcpServers(v) {
  if (!isObject(v)) throw badRequest('mcp_servers must be an object of {name: server}');
  const entries = Object.entries(v);
  if (entries.length > MAX_MCP_SERVERS) throw badRequest(`mcp_servers has more than ${MAX_MCP_SERVERS} entries`);
  const out = {};
  for (const [name, srv] of entries) {
    const f = `mcp_servers.${name}`;
    if (name === '' || name.length > MAX_NAME || CONTROL_RE.test(name)) {
      throw badRequest(`invalid mcp_servers name ${JSON.stringify(name)} (1..${MAX_NAME} characters, no control characters)`);
    }
    if (!isObject(srv)) throw badRequest(`${f} must be an object`);
    if (srv.type === 'http') {
      const url = validString(srv.url, `${f}.url`, { max: MAX_URL });
      if (!/^https?:\/\/[^\s]+$/i.test(url)) throw badRequest(`${f}.url must be an http(s) URL`);
      const o = { type: 'http', url };
      if (srv.headers !== undefined && srv.headers !== null) o.headers = validStringMap(srv.headers, `${f}.headers`, { maxEntries: 64, kind: 'header' });
      for (const k of Object.keys(srv)) {
        if (!['type', 'url', 'headers'].includes(k)) throw badRequest(`${f}: unknown field ${JSON.stringify(k)} for type http`);
      }
      out[name] = o;
    } else if (srv.type === 'stdio') {
      const command = validString(srv.command, `${f}.command`, { max: 4096 });
      if (command.includes('\0')) throw badRequest(`${f}.command contains a NUL byte`);
      const o = { type: 'stdio', command };
      if (srv.args !== undefined && srv.args !== null) {
        if (!Array.isArray(srv.args)) throw badRequest(`${f}.args must be an array of strings`);
        o.args = srv.args.length ? validateArgv(srv.args, `${f}.args`) : [];
      }
      if (srv.env !== undefined && srv.env !== null) o.env = validStringMap(srv.env, `${f}.env`);
      for (const k of Object.keys(srv)) {
        if (!['type', 'command', 'args', 'env'].includes(k)) throw badRequest(`${f}: unknown field ${JSON.stringify(k)} for type stdio`);
      }
      out[name] = o;
    } else {
      throw badRequest(`${f}.type must be "http" or "stdio"`);
    }
  }
  return out;
}

// The request's budget, missing limits filled from the sidecar's defaults
// (REVKA_SM_MAX_COST_USD / REVKA_SM_MAX_TOKENS). null when there is no limit at all.
function validBudget(v, cfg) {
  const b = {};
  if (v !== undefined && v !== null) {
    if (!isObject(v)) throw badRequest('budget must be an object {max_cost_usd?, max_tokens?}');
    for (const k of Object.keys(v)) {
      if (k !== 'max_cost_usd' && k !== 'max_tokens') throw badRequest(`budget: unknown field ${JSON.stringify(k)}`);
    }
    if (v.max_cost_usd !== undefined && v.max_cost_usd !== null) {
      if (typeof v.max_cost_usd !== 'number' || !Number.isFinite(v.max_cost_usd) || v.max_cost_usd <= 0) {
        throw badRequest('budget.max_cost_usd must be a number > 0');
      }
      b.max_cost_usd = v.max_cost_usd;
    }
    if (v.max_tokens !== undefined && v.max_tokens !== null) {
      if (!Number.isSafeInteger(v.max_tokens) || v.max_tokens <= 0) throw badRequest('budget.max_tokens must be an integer > 0');
      b.max_tokens = v.max_tokens;
    }
  }
  if (b.max_cost_usd === undefined && cfg.maxCostUsd > 0) b.max_cost_usd = cfg.maxCostUsd;
  if (b.max_tokens === undefined && cfg.maxTokens > 0) b.max_tokens = cfg.maxTokens;
  return Object.keys(b).length ? b : null;
}

// The backend options of the create body (every backend validates all of them; each uses its
// own). Absent fields are left out.
export function validateOptions(body) {
  const o = {};
  const given = (k) => body[k] !== undefined && body[k] !== null;
  if (given('model')) {
    o.model = validString(body.model, 'model', { max: MAX_MODEL });
    if (CONTROL_RE.test(o.model)) throw badRequest('model must not contain control characters');
  }
  if (given('allowed_tools')) {
    const t = body.allowed_tools;
    if (!Array.isArray(t)) throw badRequest('allowed_tools must be an array of strings');
    if (t.length > MAX_TOOLS) throw badRequest(`allowed_tools has more than ${MAX_TOOLS} elements`);
    o.allowed_tools = t.map((x, i) => {
      const v = validString(x, `allowed_tools[${i}]`, { max: MAX_TOOL_NAME });
      if (CONTROL_RE.test(v)) throw badRequest(`allowed_tools[${i}] must not contain control characters`);
      return v;
    });
  }
  if (given('system_prompt')) {
    o.system_prompt = validString(body.system_prompt, 'system_prompt', { max: MAX_SYSTEM_PROMPT, allowEmpty: true });
    if (o.system_prompt.includes('\0')) throw badRequest('system_prompt contains a NUL byte');
  }
  if (given('mcp_servers')) o.mcp_servers = validMcpServers(body.mcp_servers);
  if (given('permission_mode')) {
    if (!PERMISSION_MODES.includes(body.permission_mode)) {
      throw badRequest(`permission_mode must be one of: ${PERMISSION_MODES.join(', ')}`);
    }
    o.permission_mode = body.permission_mode;
  }
  if (given('approval_policy')) {
    o.approval_policy = validString(body.approval_policy, 'approval_policy', { max: MAX_APPROVAL_POLICY });
    if (CONTROL_RE.test(o.approval_policy)) throw badRequest('approval_policy must not contain control characters');
  }
  return o;
}

// What only the codex backend restricts, refused at create rather than at the first run: the
// approval policy's name and MCP server names (they become codex config keys).
function checkCodexOptions(o) {
  if (o.approval_policy !== undefined && !Object.hasOwn(APPROVAL_POLICIES, o.approval_policy)) {
    throw badRequest(
      `unknown approval_policy ${JSON.stringify(o.approval_policy)} (one of: ${Object.keys(APPROVAL_POLICIES).join(', ')})`,
    );
  }
  for (const name of Object.keys(o.mcp_servers ?? {})) {
    if (!CODEX_MCP_NAME_RE.test(name)) {
      throw badRequest(`mcp_servers name ${JSON.stringify(name)} cannot be used with codex (letters, digits, "_" and "-" only)`);
    }
  }
}

export function validateArgv(argv, field = 'argv') {
  if (!Array.isArray(argv) || argv.length === 0) throw badRequest(`${field} must be a non-empty array of strings`);
  if (argv.length > MAX_ARGV) throw badRequest(`${field} has more than ${MAX_ARGV} elements`);
  argv.forEach((a, i) => {
    if (typeof a !== 'string') throw badRequest(`${field}[${i}] must be a string`);
    if (a.includes('\0')) throw badRequest(`${field}[${i}] contains a NUL byte`);
  });
  if (argv[0] === '') throw badRequest(`${field}[0] (the program) must not be empty`);
  return argv.slice();
}

export class AgentManager {
  // cfg: {maxAgents, maxEvents, maxEventBytes, lineCap, killGraceMs, interruptGraceMs,
  //       maxQueue, defaultArgv, maxEventsPerRun, maxCostUsd, maxTokens, jsonLineCap,
  //       claudePath, claudeSdkModule, codexPath, codexApprovals}
  // onAgentEvent(agent, event), when set, sees every recorded event (the global stream).
  constructor(cfg) {
    this.cfg = {
      maxEventsPerRun: 100000,
      maxCostUsd: 0,
      maxTokens: 0,
      jsonLineCap: 4 * 1024 * 1024,
      claudePath: null,
      claudeSdkModule: '@anthropic-ai/claude-agent-sdk',
      ...cfg,
    };
    this.onAgentEvent = null;
    this.agents = new Map();
  }

  get size() {
    return this.agents.size;
  }

  get(id) {
    const a = this.agents.get(id);
    if (!a) throw new HttpError(404, 'agent_not_found', `no agent with id ${JSON.stringify(id)}`);
    return a;
  }

  // Mention/member resolution: exact id first, then case-insensitive name.
  resolve(token) {
    const byId = this.agents.get(token);
    if (byId) return byId;
    const lower = token.toLowerCase();
    for (const a of this.agents.values()) if (a.name.toLowerCase() === lower) return a;
    return undefined;
  }

  list() {
    return [...this.agents.values()];
  }

  create(body) {
    const backend = body.backend;
    if (backend === undefined) throw badRequest(`backend is required (one of: ${BACKENDS.join(', ')})`);
    if (!BACKENDS.includes(backend)) {
      throw new HttpError(400, 'invalid_backend', `unknown backend ${JSON.stringify(backend)} (one of: ${BACKENDS.join(', ')})`);
    }
    let name;
    if (body.name !== undefined && body.name !== null) {
      name = validString(body.name, 'name', { max: MAX_NAME });
      if (/[\u0000-\u001f\u007f]/.test(name)) throw badRequest('name must not contain control characters');
    }
    let prompt;
    if (body.prompt !== undefined && body.prompt !== null) prompt = validString(body.prompt, 'prompt');
    let cwd = process.cwd();
    if (body.cwd !== undefined && body.cwd !== null) {
      cwd = validString(body.cwd, 'cwd');
      if (!path.isAbsolute(cwd)) throw new HttpError(400, 'invalid_cwd', 'cwd must be an absolute path');
      let st;
      try {
        st = fs.statSync(cwd);
      } catch {
        throw new HttpError(400, 'invalid_cwd', `cwd ${JSON.stringify(cwd)} does not exist`);
      }
      if (!st.isDirectory()) throw new HttpError(400, 'invalid_cwd', `cwd ${JSON.stringify(cwd)} is not a directory`);
    }
    const env = {};
    if (body.env !== undefined && body.env !== null) {
      if (typeof body.env !== 'object' || Array.isArray(body.env)) throw badRequest('env must be an object of strings');
      const entries = Object.entries(body.env);
      if (entries.length > MAX_ENV) throw badRequest(`env has more than ${MAX_ENV} entries`);
      for (const [k, v] of entries) {
        if (k === '' || k.includes('=') || k.includes('\0')) throw badRequest(`invalid env name ${JSON.stringify(k)}`);
        if (typeof v !== 'string') throw badRequest(`env.${k} must be a string`);
        if (v.includes('\0')) throw badRequest(`env.${k} contains a NUL byte`);
        env[k] = v;
      }
    }
    let argv = null;
    if (backend === 'command') {
      if (body.argv !== undefined && body.argv !== null) argv = validateArgv(body.argv);
      else if (this.cfg.defaultArgv) argv = this.cfg.defaultArgv.slice();
      else {
        throw new HttpError(
          400,
          'missing_argv',
          'the command backend needs argv in the request or REVKA_SM_AGENT_ARGV in the environment',
        );
      }
      if (prompt !== undefined && prompt.includes('\0')) throw badRequest('prompt contains a NUL byte');
    } else if (body.argv !== undefined && body.argv !== null) {
      validateArgv(body.argv);
    }
    const options = validateOptions(body);
    if (backend === 'codex') checkCodexOptions(options);
    const budget = validBudget(body.budget, this.cfg);
    if (name !== undefined && this.resolveName(name)) {
      throw new HttpError(409, 'name_conflict', `an agent named ${JSON.stringify(name)} already exists`);
    }
    if (this.agents.size >= this.cfg.maxAgents) {
      throw new HttpError(429, 'too_many_agents', `agent limit reached (${this.cfg.maxAgents})`);
    }
    const id = newId('ag_', this.agents);
    const agent = new Agent(this, { id, name: name ?? id, backend, cwd, argv, env, options, budget });
    this.agents.set(id, agent);
    agent.record('status', 'created', { status: 'idle', backend });
    log('info', 'agent created', { agent: id, name: agent.name, backend });
    if (prompt !== undefined) agent.startRun(prompt, 'create');
    return agent;
  }

  resolveName(name) {
    const lower = name.toLowerCase();
    for (const a of this.agents.values()) if (a.name.toLowerCase() === lower) return a;
    return undefined;
  }

  async delete(id, reason = 'deleted') {
    const agent = this.get(id);
    await agent.close(reason);
    if (this.agents.get(id) === agent) this.agents.delete(id);
    log('info', 'agent closed', { agent: id, reason });
    return agent;
  }

  async shutdown() {
    await Promise.all(
      [...this.agents.values()].map((a) =>
        a.close('shutdown').catch((err) => log('error', 'agent close failed', { agent: a.id, err: err.message })),
      ),
    );
  }
}

