// The "codex" backend: OpenAI Codex driven through `codex app-server`, its JSON-RPC 2.0 over
// stdio (one JSON object per line, no "jsonrpc" header). Protocol facts are from openai/codex
// codex-rs/app-server/README.md and codex-rs/app-server-protocol/src/protocol/v2.rs (commit
// 001cdd274ec8567d9cbce4fb736128def9755a65).
//
// One app-server process per agent (AppServer below, kept in agent.backendState.server): started
// by the agent's first run, in its own process group, and kept for the follow-ups, so the agent
// keeps one Codex thread. Handshake: `initialize` (clientInfo.name "revka") -> `initialized` ->
// `thread/start` (or `thread/resume` of the agent's previous thread when a new process replaces
// one that failed). Each prompt is one CodexRun = one `turn/start`; interrupt = `turn/interrupt`;
// closing the agent ends the process group (SIGTERM, SIGKILL after the kill grace).
//
// Notifications map to the timeline's event types (see the README): agentMessage -> assistant,
// commandExecution / fileChange / mcpToolCall / dynamicToolCall / webSearch items -> tool_use at
// item/started and tool_result at item/completed, reasoning and plans -> output {kind},
// thread/tokenUsage/updated -> usage (tokens only, cost_usd null), turn/completed -> result (and
// error + status error when the turn failed). Deltas are accumulated per item, never recorded one
// by one; the completed item is recorded, and an item a turn leaves unfinished is flushed from its
// deltas. Approval requests from the server are answered at once by the agent's approval policy
// (APPROVAL_POLICIES), each decision recorded as a `status` event with data.approval.

import { spawn } from 'node:child_process';
import { LineSplitter, runEnv, killGroup, sleep, escalateInterrupt } from '../agents.js';
import { log } from '../log.js';

const CLIENT_INFO = { name: 'revka', title: 'Revka session manager', version: '0.1.0' };
const STDERR_TAIL_BYTES = 8192; // kept for error messages
const STDERR_IN_MESSAGE = 2048; // of which this much goes into an error message
const MAX_RESULT_BYTES = 64 * 1024; // tool_result / file diff text cap (contract)
const MAX_ITEM_BYTES = 1024 * 1024; // accumulated deltas of one item
const MAX_OPEN_ITEMS = 4096; // items started and not completed in one turn
const MAX_OPEN_BYTES = 16 * 1024 * 1024; // accumulated deltas of all open items of one turn
const DEFAULT_REQUEST_TIMEOUT_MS = 120000;
const CLOSE_AFTER_EXIT_MS = 300; // how long stdout/stderr may drain after the process exits

// The approval policies, by the name given in the create body's `approval_policy` or
// REVKA_SM_CODEX_APPROVALS: what codex is told (its AskForApproval and SandboxMode) and how every
// approval request it still sends is answered.
export const APPROVAL_POLICIES = {
  // Read-only sandbox; codex asks before anything it does not trust; every request is declined.
  deny: { approvalPolicy: 'untrusted', sandbox: 'read-only', accept: false },
  // Commands and edits run in codex's workspace-write sandbox (writes confined to cwd, no
  // network) without asking; anything that would leave the sandbox fails instead of asking.
  sandboxed: { approvalPolicy: 'never', sandbox: 'workspace-write', accept: false },
  // Workspace-write sandbox; codex asks when it wants more (e.g. to run outside the sandbox)
  // and every request is approved.
  accept: { approvalPolicy: 'on-request', sandbox: 'workspace-write', accept: true },
};
export const DEFAULT_APPROVAL_POLICY = 'deny';
const POLICY_NAMES = Object.keys(APPROVAL_POLICIES);

// MCP server names become codex config keys (mcp_servers.<name>).
// Raw app-server messages (deltas included) allowed per timeline event of a run's cap.
const MESSAGES_PER_EVENT = 20;

export const CODEX_MCP_NAME_RE = /^[A-Za-z0-9_-]+$/;

class CodexError extends Error {
  constructor(reason, message, rpcError) {
    super(message);
    this.reason = reason; // protocol | died | spawn | timeout | rpc | backend
    this.rpcError = rpcError;
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Cuts text to `max` bytes (UTF-8), with a marker saying how much was dropped.
function cut(text, max = MAX_RESULT_BYTES) {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return { text, truncated: false };
  return { text: `${buf.subarray(0, max).toString('utf8')} …[truncated: ${buf.length - max} more bytes]`, truncated: true };
}

function firstBytes(text, n = 200) {
  return Buffer.from(text, 'utf8').subarray(0, n).toString('utf8');
}

function requestTimeoutMs(cfg) {
  if (Number.isSafeInteger(cfg.codexRequestTimeoutMs) && cfg.codexRequestTimeoutMs > 0) return cfg.codexRequestTimeoutMs;
  const raw = process.env.REVKA_SM_CODEX_REQUEST_TIMEOUT_MS;
  const n = raw && /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : 0;
  return n > 0 ? n : DEFAULT_REQUEST_TIMEOUT_MS;
}

// The agent's approval policy: the create body's approval_policy, else the sidecar default
// (REVKA_SM_CODEX_APPROVALS), else "deny". Throws on an unknown name.
export function resolveApprovalPolicy(agent) {
  const cfg = agent.mgr.cfg;
  const fromEnv = cfg.codexApprovals ?? (process.env.REVKA_SM_CODEX_APPROVALS || '').trim();
  const name = agent.options?.approval_policy ?? (fromEnv || DEFAULT_APPROVAL_POLICY);
  const policy = APPROVAL_POLICIES[name];
  if (!policy) {
    const src = agent.options?.approval_policy !== undefined ? 'approval_policy' : 'REVKA_SM_CODEX_APPROVALS';
    throw new CodexError('backend', `unknown codex ${src} ${JSON.stringify(name)} (one of: ${POLICY_NAMES.join(', ')})`);
  }
  return { name, ...policy };
}

// The create body's mcp_servers as codex config overrides: one dotted key per server
// ("mcp_servers.<name>"): codex merges params.config into its `-c` overrides as dotted paths
// converted JSON->TOML (app-server derive_config_from_params), so the user's other servers stay.
export function mcpConfig(servers) {
  const config = {};
  for (const [name, srv] of Object.entries(servers ?? {})) {
    if (!CODEX_MCP_NAME_RE.test(name)) {
      throw new CodexError('backend', `mcp_servers name ${JSON.stringify(name)} cannot be used with codex (letters, digits, "_" and "-" only)`);
    }
    if (srv.type === 'http') {
      const o = { url: srv.url };
      if (srv.headers && Object.keys(srv.headers).length) o.http_headers = { ...srv.headers };
      config[`mcp_servers.${name}`] = o;
    } else {
      const o = { command: srv.command };
      if (srv.args) o.args = [...srv.args];
      if (srv.env && Object.keys(srv.env).length) o.env = { ...srv.env };
      config[`mcp_servers.${name}`] = o;
    }
  }
  return config;
}

// thread/start (ThreadStartParams) / thread/resume (ThreadResumeParams) overrides.
function threadParams(agent, policy) {
  const o = agent.options ?? {};
  const p = { cwd: agent.cwd, approvalPolicy: policy.approvalPolicy, sandbox: policy.sandbox };
  if (o.model !== undefined) p.model = o.model;
  // Added to codex's own instructions (baseInstructions would replace them, and with them
  // codex's guidance on its tools).
  if (o.system_prompt !== undefined && o.system_prompt !== '') p.developerInstructions = o.system_prompt;
  const config = mcpConfig(o.mcp_servers);
  if (Object.keys(config).length) p.config = config;
  return p;
}

// ---------------------------------------------------------------------------------------------
// One `codex app-server` process and its JSON-RPC connection.

class AppServer {
  constructor(agent, policy) {
    this.agent = agent;
    this.cfg = agent.mgr.cfg;
    this.policy = policy;
    this.path = this.cfg.codexPath ?? (process.env.REVKA_SM_CODEX_PATH || 'codex');
    this.timeoutMs = requestTimeoutMs(this.cfg);
    this.child = null;
    this.pid = undefined;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {method, resolve, reject, timer}
    this.stderrTail = '';
    this.run = null; // the CodexRun whose turn this process serves
    this.threadId = null;
    this.failure = null; // {reason, message} once the connection is unusable
    this.exitInfo = null;
    this.killing = null;
    this.closeTimer = null;
    this.exited = new Promise((r) => (this._resolveExited = r));
    this.ready = null; // handshake promise
    this.announced = false;
  }

  get usable() {
    return !this.failure && !this.killing && !this.exitInfo;
  }

  // Spawns the process (synchronously: pid known at once) and starts the handshake.
  spawn() {
    const env = runEnv(this.agent, '');
    delete env.REVKA_SM_PROMPT; // one process serves many prompts
    const child = spawn(this.path, ['app-server'], {
      cwd: this.agent.cwd,
      env,
      // Its own process group: closing the agent ends codex and everything it started.
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    this.child = child;
    this.pid = child.pid;
    const cap = this.cfg.jsonLineCap;
    this.out = new LineSplitter(cap, (text, truncated) => this.onLine(text, truncated));
    child.stdout.on('data', (c) => {
      if (!this.failure) this.out.push(c);
    });
    child.stderr.on('data', (c) => {
      this.stderrTail = (this.stderrTail + c.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    for (const s of [child.stdin, child.stdout, child.stderr]) s.on('error', () => {});
    child.on('error', (err) => {
      if (this.pid === undefined) {
        this._resolveExited();
        this.fatal(
          'spawn',
          `failed to start the codex app-server ${JSON.stringify(this.path)}: ${err.message} (set REVKA_SM_CODEX_PATH to the codex executable)`,
        );
      } else log('warn', 'codex app-server process error', { agent: this.agent.id, pid: this.pid, err: err.message });
    });
    child.on('exit', (code, signal) => this.onExit(code, signal));
    child.on('close', () => {
      if (this.exitInfo) this.onClosed();
    });
    if (this.pid !== undefined) {
      log('info', 'codex app-server started', { agent: this.agent.id, pid: this.pid, cmd: this.path });
    }
    this.ready = this.handshake();
    this.ready.catch(() => {}); // observed by the runs
  }

  async handshake() {
    await this.request('initialize', { clientInfo: CLIENT_INFO });
    this.notify('initialized');
    const params = threadParams(this.agent, this.policy);
    const previous = this.agent.backendState.thread_id;
    let res = null;
    let resumed = false;
    if (previous) {
      try {
        res = await this.request('thread/resume', { threadId: previous, ...params });
        resumed = true;
      } catch (err) {
        if (err.reason !== 'rpc') throw err;
        log('warn', 'codex thread/resume failed; starting a new thread', { agent: this.agent.id, thread: previous, err: err.message });
      }
    }
    if (!res) res = await this.request('thread/start', params);
    if (!isObject(res) || !isObject(res.thread) || typeof res.thread.id !== 'string' || res.thread.id === '') {
      throw this.fatal('protocol', `codex app-server answered ${resumed ? 'thread/resume' : 'thread/start'} without a thread id: ${firstBytes(JSON.stringify(res))}`);
    }
    this.threadId = res.thread.id;
    this.agent.backendState.thread_id = res.thread.id;
    if (typeof res.model === 'string' && res.model) this.agent.model = res.model;
    return { threadId: res.thread.id, model: res.model, resumed, previous };
  }

  write(msg) {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.destroyed || !stdin.writable) return false;
    stdin.write(JSON.stringify(msg) + '\n');
    return true;
  }

  request(method, params) {
    if (!this.usable) {
      const f = this.failure ?? { reason: 'died', message: 'the codex app-server is not running' };
      return Promise.reject(new CodexError(f.reason, f.message));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CodexError('timeout', `the codex app-server did not answer ${method} (request ${id}) within ${this.timeoutMs} ms${this.stderrNote()}`));
      }, this.timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      const msg = { id, method };
      if (params !== undefined) msg.params = params;
      if (!this.write(msg)) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new CodexError('died', `cannot send ${method}: the codex app-server's stdin is closed${this.stderrNote()}`));
      }
    });
  }

  notify(method, params) {
    const msg = { method };
    if (params !== undefined) msg.params = params;
    this.write(msg);
  }

  respond(id, result) {
    this.write({ id, result });
  }

  respondError(id, code, message) {
    this.write({ id, error: { code, message } });
  }

  stderrNote() {
    const tail = this.stderrTail.trim();
    return tail ? `; stderr: ${tail.slice(-STDERR_IN_MESSAGE)}` : '';
  }

  onLine(text, truncated) {
    if (this.failure) return;
    if (truncated) {
      this.fatal('protocol', `the codex app-server wrote a line longer than ${this.cfg.jsonLineCap} bytes: ${firstBytes(text)}`);
      return;
    }
    if (text.trim() === '') return;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this.fatal('protocol', `the codex app-server wrote a line that is not JSON: ${firstBytes(text)}`);
      return;
    }
    if (!isObject(msg)) {
      this.fatal('protocol', `the codex app-server wrote JSON that is not a JSON-RPC message: ${firstBytes(text)}`);
      return;
    }
    const run = this.run;
    if (run && !run.countMessage()) return;
    const hasId = msg.id !== undefined && msg.id !== null;
    if (typeof msg.method === 'string') {
      if (hasId) this.onServerRequest(msg.id, msg.method, isObject(msg.params) ? msg.params : {});
      else if (run) run.onNotification(msg.method, isObject(msg.params) ? msg.params : {});
      return;
    }
    if (hasId && ('result' in msg || 'error' in msg)) {
      const p = this.pending.get(msg.id);
      if (!p) {
        log('warn', 'codex app-server answered an unknown request id', { agent: this.agent.id, id: msg.id });
        return;
      }
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error !== undefined) {
        const e = isObject(msg.error) ? msg.error : { message: String(msg.error) };
        p.reject(new CodexError('rpc', `the codex app-server rejected ${p.method}: ${e.message ?? 'error'} (code ${e.code ?? '?'})`, e));
      } else p.resolve(msg.result);
      return;
    }
    this.fatal('protocol', `the codex app-server wrote JSON that is not a JSON-RPC message: ${firstBytes(text)}`);
  }

  // Server -> client requests. Every one is answered: approvals by the policy, anything we do
  // not serve with a JSON-RPC error.
  onServerRequest(id, method, params) {
    const accept = this.policy.accept;
    const run = this.run;
    const approval = (kind, decision, extra = {}) => {
      if (run && !run.finished) {
        run.recordApproval({ request: method, kind, decision, policy: this.policy.name, item_id: params.itemId, reason: params.reason ?? undefined, ...extra });
      }
    };
    switch (method) {
      case 'item/commandExecution/requestApproval': {
        const decision = accept ? 'accept' : 'decline';
        this.respond(id, { decision });
        approval('command', decision, { command: params.command ?? undefined, cwd: params.cwd ?? undefined });
        return;
      }
      case 'item/fileChange/requestApproval': {
        const decision = accept ? 'accept' : 'decline';
        this.respond(id, { decision });
        approval('file_change', decision, { grant_root: params.grantRoot ?? undefined });
        return;
      }
      case 'item/permissions/requestApproval': {
        // The granted subset of the requested profile; nothing granted = denied.
        this.respond(id, accept ? { permissions: isObject(params.permissions) ? params.permissions : {}, scope: 'turn' } : { permissions: {} });
        approval('permissions', accept ? 'accept' : 'decline', { permissions: params.permissions });
        return;
      }
      case 'execCommandApproval':
      case 'applyPatchApproval': {
        // The v1 spellings (ReviewDecision).
        const decision = accept ? 'approved' : 'denied';
        this.respond(id, { decision });
        approval(method === 'execCommandApproval' ? 'command' : 'file_change', decision, { item_id: params.callId });
        return;
      }
      case 'mcpServer/elicitation/request': {
        const meta = params._meta ?? params.meta;
        const toolApproval = isObject(meta) && meta.codex_approval_kind === 'mcp_tool_call';
        const ok = accept && toolApproval;
        this.respond(id, ok ? { action: 'accept', content: {}, _meta: null } : { action: 'decline', content: null, _meta: null });
        approval(toolApproval ? 'mcp_tool_call' : 'elicitation', ok ? 'accept' : 'decline', { server: params.serverName, message: params.message });
        return;
      }
      case 'item/tool/requestUserInput': {
        // No human is there to answer: no answers (ToolRequestUserInputResponse).
        this.respond(id, { answers: {} });
        const questions = Array.isArray(params.questions) ? params.questions.map((q) => q?.question).filter(Boolean) : [];
        approval('user_input', 'unanswered', { questions });
        return;
      }
      default:
        log('warn', 'codex app-server sent a request we do not serve', { agent: this.agent.id, method });
        this.respondError(id, -32601, `method not found: ${method} (not served by revka)`);
        if (run && !run.finished) {
          this.agent.record('output', `declined codex request ${method}`, { run: run.no, kind: 'unsupported_request', method });
        }
    }
  }

  // The connection is unusable: rejects pending requests, fails the current run (which kills
  // the process group) or, between runs, records the error and kills it. Returns the error.
  fatal(reason, message) {
    const err = new CodexError(reason, message);
    if (this.failure) return err;
    this.failure = { reason, message };
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    if (this.agent.backendState.server === this) this.agent.backendState.server = null;
    const run = this.run;
    if (run && !run.finished) {
      this.agent.fail(run, reason, message);
      // agent.fail keeps an earlier failure (e.g. a budget stop) and then does not terminate.
      run.terminate().catch((e) => log('error', 'terminate failed', { agent: this.agent.id, err: e.message }));
    } else {
      log('warn', 'codex app-server failed between runs', { agent: this.agent.id, reason, message });
      if (reason === 'died') this.agent.record('output', message, { kind: 'backend_exit', backend: 'codex' });
      else this.agent.record('error', message, { reason, backend: 'codex' });
      this.kill().catch(() => {});
    }
    return err;
  }

  onExit(code, signal) {
    if (this.exitInfo) return;
    this.exitInfo = { code, signal };
    this._resolveExited();
    log('info', 'codex app-server exited', { agent: this.agent.id, pid: this.pid, code, signal });
    // Let stdout/stderr drain (a crash message may still be in the pipe).
    this.closeTimer = setTimeout(() => this.onClosed(), CLOSE_AFTER_EXIT_MS);
  }

  onClosed() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.closeTimer);
    // A partial last line is dropped: the process died, that is the failure to report.
    if (this.agent.backendState.server === this) this.agent.backendState.server = null;
    if (this.killing || this.failure) return;
    const { code, signal } = this.exitInfo;
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    const during = this.run && !this.run.finished ? 'mid-turn' : 'between turns';
    this.fatal('died', `the codex app-server died ${during} (${how})${this.stderrNote()}`);
    // Whatever it left in its process group goes too.
    this.kill().catch(() => {});
  }

  // Ends the process group: SIGTERM, SIGKILL after the kill grace; resolves once reaped.
  kill() {
    if (!this.killing) {
      this.killing = (async () => {
        if (this.agent.backendState.server === this) this.agent.backendState.server = null;
        for (const [, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new CodexError('died', 'the codex app-server was stopped'));
        }
        this.pending.clear();
        try {
          this.child?.stdin?.end();
        } catch {
          // ignore
        }
        if (this.pid !== undefined) {
          await killGroup(this.pid, this.cfg.killGraceMs, this.exited);
          await Promise.race([this.exited, sleep(2000)]);
        }
        this.child?.stdout?.destroy();
        this.child?.stderr?.destroy();
      })();
    }
    return this.killing;
  }
}

// ---------------------------------------------------------------------------------------------
// One prompt = one turn.

export class CodexRun {
  constructor(agent, no, prompt) {
    this.agent = agent;
    this.no = no;
    this.prompt = prompt;
    this.pid = undefined;
    this.server = null;
    this.turnId = null;
    this.finished = false;
    this.interrupted = false;
    this.interruptSent = false;
    this.messages = 0;
    this.flooded = false;
    this.items = new Map(); // item id -> {type, text, output, bytes, truncated, toolUse}
    this.openBytes = 0; // the sum of the open items' bytes (at most MAX_OPEN_BYTES)
    this.lastAssistant = '';
    this.retryError = null;
    this.startedAt = Date.now();
    this.escalateTimer = null;
    this.terminating = null;
    this.finishedPromise = new Promise((r) => (this._resolveFinished = r));
  }

  static closeAgent(agent) {
    const server = agent.backendState.server;
    agent.backendState.server = null;
    return server ? server.kill() : Promise.resolve();
  }

  start() {
    const agent = this.agent;
    let server = agent.backendState.server;
    try {
      const policy = resolveApprovalPolicy(agent);
      if (server && (!server.usable || server.policy.name !== policy.name)) {
        server.kill().catch(() => {});
        server = null;
      }
      if (!server) {
        threadParams(agent, policy); // validates mcp_servers before anything starts
        server = new AppServer(agent, policy);
        agent.backendState.server = server;
        server.spawn();
      }
    } catch (err) {
      const reason = err instanceof CodexError ? err.reason : 'spawn';
      const message = err instanceof CodexError ? err.message : `failed to start the codex app-server: ${err.message}`;
      setImmediate(() => this.failEarly(reason, message));
      return;
    }
    this.server = server;
    this.pid = server.pid;
    server.run = this;
    this.main().catch((err) => this.onError(err));
  }

  failEarly(reason, message) {
    if (this.finished) return;
    this.agent.record('error', message, { run: this.no, reason });
    this.finish('error', { reason, message });
  }

  async main() {
    const server = this.server;
    const info = await server.ready;
    if (this.finished) return;
    if (!server.announced) {
      // Once per process: the thread it started or resumed.
      server.announced = true;
      const text = info.resumed
        ? `codex thread ${info.threadId} resumed in a new app-server (pid ${server.pid})`
        : `codex thread ${info.threadId} started (model ${info.model ?? 'default'}, approvals ${server.policy.name})`;
      this.agent.record('output', text, {
        run: this.no,
        kind: 'thread',
        thread_id: info.threadId,
        model: info.model,
        resumed: info.resumed,
        previous_thread_id: info.previous && info.previous !== info.threadId ? info.previous : undefined,
        approval_policy: server.policy.name,
        pid: server.pid,
      });
    }
    if (this.interrupted) {
      this.finish('idle');
      return;
    }
    const res = await server.request('turn/start', { threadId: server.threadId, input: [{ type: 'text', text: this.prompt }] });
    if (this.finished) return;
    if (!isObject(res) || !isObject(res.turn) || typeof res.turn.id !== 'string') {
      server.fatal('protocol', `the codex app-server answered turn/start without a turn id: ${firstBytes(JSON.stringify(res))}`);
      return;
    }
    if (!this.turnId) this.turnId = res.turn.id;
    if (this.interrupted) this.sendInterrupt();
  }

  onError(err) {
    if (this.finished || this.failure || this.terminating) return;
    const reason = err instanceof CodexError ? (err.reason === 'rpc' ? 'backend' : err.reason) : 'backend';
    this.agent.fail(this, reason, err.message);
  }

  // Counts every message the server sends during this run; false once the run is over or past
  // the flood cap (the run is then failed with reason flood and stopped). Deltas are messages
  // that make no timeline event of their own (the events are capped by agent.record), so the
  // cap on raw messages is MESSAGES_PER_EVENT times the events' cap.
  countMessage() {
    if (this.finished || this.flooded) return false;
    this.messages += 1;
    const cap = (this.agent.mgr.cfg.maxEventsPerRun ?? 100000) * MESSAGES_PER_EVENT;
    if (this.messages > cap) {
      this.flooded = true;
      this.agent.fail(this, 'flood', `the codex app-server sent more than ${cap} messages in run ${this.no}; stopped`);
      // fail() does nothing when the run already failed (e.g. a budget stop): stop it anyway,
      // since the messages that would end it are dropped from now on.
      this.terminate().catch((err) => log('error', 'terminate failed', { agent: this.agent.id, err: err.message }));
      return false;
    }
    return true;
  }

  recordApproval(approval) {
    for (const k of Object.keys(approval)) if (approval[k] === undefined) delete approval[k];
    this.agent.record('status', 'running', { status: 'running', run: this.no, approval });
  }

  onNotification(method, p) {
    const server = this.server;
    if (p.threadId !== undefined && p.threadId !== server.threadId) return;
    if (p.turnId !== undefined && this.turnId && p.turnId !== this.turnId) return;
    switch (method) {
      case 'turn/started':
        if (!this.turnId && isObject(p.turn) && typeof p.turn.id === 'string') {
          this.turnId = p.turn.id;
          if (this.interrupted) this.sendInterrupt();
        }
        return;
      case 'item/started':
        if (isObject(p.item)) this.onItemStarted(p.item);
        return;
      case 'item/completed':
        if (isObject(p.item)) this.onItemCompleted(p.item);
        return;
      case 'item/agentMessage/delta':
      case 'item/reasoning/summaryTextDelta':
      case 'item/reasoning/textDelta':
      case 'item/plan/delta':
        this.accumulate(p.itemId, 'text', p.delta);
        return;
      case 'item/commandExecution/outputDelta':
      case 'item/fileChange/outputDelta':
        this.accumulate(p.itemId, 'output', p.delta);
        return;
      case 'thread/tokenUsage/updated':
        this.onUsage(p.tokenUsage);
        return;
      case 'error':
        this.onErrorNotification(p);
        return;
      case 'turn/completed':
        if (isObject(p.turn)) {
          if (this.turnId && p.turn.id !== this.turnId) return;
          this.onTurnCompleted(p.turn);
        }
        return;
      case 'mcpServer/startupStatus/updated':
        if (p.status === 'failed') {
          this.agent.record('output', `MCP server ${p.name} failed to start: ${p.error ?? 'unknown error'}`, {
            run: this.no,
            kind: 'mcp_server',
            name: p.name,
            status: p.status,
            error: p.error ?? null,
          });
        }
        return;
      default:
        // turn/diff/updated, turn/plan/updated, serverRequest/resolved, thread/status/changed,
        // account/*, item/mcpToolCall/progress, ...: nothing for the timeline.
        return;
    }
  }

  itemState(id, type) {
    let s = this.items.get(id);
    if (!s) {
      if (this.items.size >= MAX_OPEN_ITEMS) return null;
      s = { type, text: '', output: '', bytes: 0, truncated: false, toolUse: false };
      this.items.set(id, s);
    }
    return s;
  }

  accumulate(itemId, field, delta) {
    if (typeof itemId !== 'string' || typeof delta !== 'string') return;
    const s = this.itemState(itemId, undefined);
    if (!s) return;
    const n = Buffer.byteLength(delta);
    if (s.bytes + n > MAX_ITEM_BYTES || this.openBytes + n > MAX_OPEN_BYTES) {
      s.truncated = true;
      return;
    }
    s.bytes += n;
    this.openBytes += n;
    s[field] += delta;
  }

  onItemStarted(item) {
    if (typeof item.id !== 'string') return;
    const s = this.itemState(item.id, item.type);
    if (!s) return;
    s.type = item.type;
    const use = toolUse(item);
    if (use) {
      s.toolUse = true;
      this.agent.record('tool_use', use.name, { run: this.no, id: item.id, name: use.name, input: use.input });
    }
  }

  onItemCompleted(item) {
    const id = typeof item.id === 'string' ? item.id : undefined;
    const s = (id && this.items.get(id)) || { type: item.type, text: '', output: '', truncated: false, toolUse: false };
    if (id && this.items.delete(id)) this.openBytes -= s.bytes;
    const run = this.no;
    switch (item.type) {
      case 'agentMessage': {
        const text = typeof item.text === 'string' && item.text !== '' ? item.text : s.text;
        if (text) this.recordAssistant(text, s.truncated && !item.text);
        return;
      }
      case 'reasoning': {
        const parts = Array.isArray(item.summary) && item.summary.length ? item.summary : Array.isArray(item.content) ? item.content : [];
        const text = parts.filter((x) => typeof x === 'string').join('\n\n') || s.text;
        if (text) this.recordOutput(text, 'reasoning', id);
        return;
      }
      case 'plan': {
        const text = typeof item.text === 'string' && item.text ? item.text : s.text;
        if (text) this.recordOutput(text, 'plan', id);
        return;
      }
      case 'userMessage':
        return; // the prompt, already recorded
      default:
        break;
    }
    const use = toolUse(item);
    if (use) {
      if (!s.toolUse) this.agent.record('tool_use', use.name, { run, id, name: use.name, input: use.input });
      const r = toolResult(item, s);
      const c = cut(r.text);
      const data = { run, tool_use_id: id, is_error: r.isError, status: item.status };
      if (r.exitCode !== undefined) data.exit_code = r.exitCode;
      if (typeof item.durationMs === 'number') data.duration_ms = item.durationMs;
      if (c.truncated || s.truncated) data.truncated = true;
      this.agent.record('tool_result', c.text, data);
      return;
    }
    // Other items (contextCompaction, review modes, images, ...): one line each.
    const text = typeof item.review === 'string' ? item.review : typeof item.path === 'string' ? item.path : item.type;
    this.recordOutput(String(text ?? 'item'), String(item.type ?? 'item'), id);
  }

  recordAssistant(text, truncated) {
    const c = cut(text, MAX_ITEM_BYTES);
    this.lastAssistant = c.text;
    const data = { run: this.no };
    if (this.agent.model) data.model = this.agent.model;
    if (truncated || c.truncated) data.truncated = true;
    this.agent.record('assistant', c.text, data);
  }

  recordOutput(text, kind, itemId) {
    const c = cut(text, MAX_ITEM_BYTES);
    const data = { run: this.no, kind };
    if (itemId) data.item_id = itemId;
    if (c.truncated) data.truncated = true;
    this.agent.record('output', c.text, data);
  }

  // Items a turn left unfinished (interrupt, failure): what their deltas carried is recorded.
  flushItems() {
    for (const [id, s] of this.items) {
      if (s.type === 'agentMessage' || (s.type === undefined && s.text)) {
        if (s.text) {
          const c = cut(s.text, MAX_ITEM_BYTES);
          const data = { run: this.no, partial: true };
          if (this.agent.model) data.model = this.agent.model;
          this.lastAssistant = c.text;
          this.agent.record('assistant', c.text, data);
        }
      } else if (s.toolUse) {
        const c = cut(s.output || 'not completed: the turn ended first');
        this.agent.record('tool_result', c.text, { run: this.no, tool_use_id: id, is_error: true, status: 'incomplete' });
      } else if (s.text) {
        this.recordOutput(s.text, s.type ?? 'text', id);
      }
    }
    this.items.clear();
    this.openBytes = 0;
  }

  onUsage(u) {
    if (!isObject(u)) return;
    const st = this.agent.backendState;
    const b = (x) => ({
      input: Number.isFinite(x?.inputTokens) ? x.inputTokens : 0,
      cached: Number.isFinite(x?.cachedInputTokens) ? x.cachedInputTokens : 0,
      output: Number.isFinite(x?.outputTokens) ? x.outputTokens : 0,
      reasoning: Number.isFinite(x?.reasoningOutputTokens) ? x.reasoningOutputTokens : 0,
    });
    const total = b(u.total);
    const prev = st.usageTotal && st.usageThread === this.server.threadId ? st.usageTotal : null;
    // The thread's totals are cumulative: the difference is what this update adds. When they
    // went backwards (a new process, a compaction), the last model call's usage is the delta.
    let d;
    if (prev && total.input >= prev.input && total.cached >= prev.cached && total.output >= prev.output) {
      d = { input: total.input - prev.input, cached: total.cached - prev.cached, output: total.output - prev.output };
    } else if (!prev && isObject(u.total)) {
      d = total;
    } else d = b(u.last);
    st.usageTotal = total;
    st.usageThread = this.server.threadId;
    if (d.input === 0 && d.cached === 0 && d.output === 0) return;
    // codex counts cached input inside input_tokens; the timeline keeps them apart.
    const cached = Math.min(d.cached, d.input);
    this.agent.addUsage(
      {
        input_tokens: d.input - cached,
        output_tokens: d.output,
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
        cost_usd: null,
      },
      this,
    );
  }

  onErrorNotification(p) {
    const e = isObject(p.error) ? p.error : {};
    const message = typeof e.message === 'string' && e.message ? e.message : 'codex reported an error';
    if (p.willRetry) {
      this.agent.record('output', `codex will retry: ${message}`, { run: this.no, kind: 'retry', codex_error_info: e.codexErrorInfo ?? null });
    } else {
      this.retryError = { message, codexErrorInfo: e.codexErrorInfo ?? null };
    }
  }

  onTurnCompleted(turn) {
    if (this.finished) return;
    this.flushItems();
    const status = turn.status;
    const data = {
      run: this.no,
      is_error: status === 'failed',
      subtype: typeof status === 'string' ? status : 'unknown',
      duration_ms: Number.isFinite(turn.durationMs) ? turn.durationMs : Date.now() - this.startedAt,
      thread_id: this.server.threadId,
      turn_id: turn.id,
    };
    if (status === 'failed') {
      const e = isObject(turn.error) ? turn.error : this.retryError ?? {};
      const message = `codex turn failed: ${e.message || 'no message'}`;
      const info = e.codexErrorInfo ?? null;
      this.agent.record('error', message, { run: this.no, reason: 'backend', codex_error_info: info });
      this.agent.record('result', message, { ...data, codex_error_info: info });
      this.finish('error', { reason: 'backend', message });
      return;
    }
    this.agent.record('result', this.lastAssistant, data);
    this.finish('idle');
  }

  sendInterrupt() {
    if (this.interruptSent || !this.turnId || this.finished) return;
    this.interruptSent = true;
    this.server.request('turn/interrupt', { threadId: this.server.threadId, turnId: this.turnId }).catch((err) => {
      if (!this.finished) log('warn', 'codex turn/interrupt failed', { agent: this.agent.id, run: this.no, err: err.message });
    });
  }

  interrupt() {
    if (this.finished) return false;
    this.interrupted = true;
    this.sendInterrupt();
    escalateInterrupt(this, this.agent.mgr.cfg, () => !this.finished, 'codex turn ignored turn/interrupt');
    return true;
  }

  // Stops the run for good: the app-server process group is ended (the next prompt starts a new
  // one, which resumes the thread). Resolves once it is reaped and completion was reported.
  terminate() {
    if (!this.terminating) {
      this.terminating = (async () => {
        if (this.server) await this.server.kill();
        this.flushItems();
        this.finish('idle');
        await this.finishedPromise;
      })();
    }
    return this.terminating;
  }

  finish(status, lastError) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.escalateTimer);
    if (this.server && this.server.run === this) this.server.run = null;
    if (this.server) this.agent.lastPid = this.server.pid;
    setImmediate(() => {
      this.agent._runFinished(this, status, lastError);
      this._resolveFinished();
    });
  }
}

// The tool_use of an item, or null when the item is not a tool call.
function toolUse(item) {
  switch (item.type) {
    case 'commandExecution':
      return { name: 'command', input: { command: item.command, cwd: item.cwd } };
    case 'fileChange': {
      let budget = MAX_RESULT_BYTES;
      const changes = (Array.isArray(item.changes) ? item.changes : []).map((ch) => {
        const c = cut(typeof ch?.diff === 'string' ? ch.diff : '', Math.max(0, budget));
        budget -= Buffer.byteLength(c.text);
        return { path: ch?.path, kind: isObject(ch?.kind) ? ch.kind.type : ch?.kind, diff: c.text };
      });
      return { name: 'file_change', input: { changes } };
    }
    case 'mcpToolCall':
      return { name: `mcp__${item.server}__${item.tool}`, input: item.arguments ?? {} };
    case 'dynamicToolCall':
      return { name: String(item.tool), input: item.arguments ?? {} };
    case 'webSearch':
      return { name: 'web_search', input: { query: item.query } };
    case 'collabAgentToolCall':
      return { name: `collab_${item.tool}`, input: { prompt: item.prompt ?? null, receiver_thread_ids: item.receiverThreadIds } };
    default:
      return null;
  }
}

function contentText(items) {
  return (Array.isArray(items) ? items : [])
    .map((c) => (isObject(c) && typeof c.text === 'string' ? c.text : JSON.stringify(c)))
    .join('\n');
}

// The tool_result of a completed tool item: {text, isError, exitCode?}.
function toolResult(item, s) {
  switch (item.type) {
    case 'commandExecution': {
      let text = typeof item.aggregatedOutput === 'string' ? item.aggregatedOutput : s.output;
      if (item.status === 'declined' && !text) text = 'command declined';
      const exitCode = Number.isInteger(item.exitCode) ? item.exitCode : null;
      return { text: text ?? '', isError: item.status !== 'completed' || (exitCode !== null && exitCode !== 0), exitCode };
    }
    case 'fileChange': {
      const paths = (Array.isArray(item.changes) ? item.changes : []).map((c) => c?.path).filter(Boolean);
      const text = `${item.status}: ${paths.join(', ')}${s.output ? `\n${s.output}` : ''}`;
      return { text, isError: item.status !== 'completed' };
    }
    case 'mcpToolCall': {
      if (isObject(item.error)) return { text: String(item.error.message ?? 'error'), isError: true };
      const r = isObject(item.result) ? item.result : {};
      const text = contentText(r.content) || (r.structuredContent != null ? JSON.stringify(r.structuredContent) : '');
      return { text, isError: item.status === 'failed' };
    }
    case 'dynamicToolCall':
      return { text: contentText(item.contentItems), isError: item.success === false || item.status === 'failed' };
    case 'webSearch':
      return { text: item.action ? JSON.stringify(item.action) : String(item.query ?? ''), isError: false };
    case 'collabAgentToolCall':
      return { text: JSON.stringify(item.agentsStates ?? {}), isError: item.status === 'failed' };
    default:
      return { text: '', isError: false };
  }
}
