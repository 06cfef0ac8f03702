// The "claude" backend: one prompt = one query() of the Claude Agent SDK (npm
// @anthropic-ai/claude-agent-sdk), which runs the Claude Code CLI as a subprocess speaking
// stream-json. Follow-up prompts resume the agent's session (the session id of the first run's
// system/init or result message). Part of the session-manager sidecar; the run interface is
// documented in ../agents.js.
//
// The SDK is imported lazily, when the first claude run starts: the sidecar starts and serves
// echo/command agents with no node_modules at all; a claude run without the SDK fails with reason
// sdk_missing.
//
// The CLI is started by our spawnClaudeCodeProcess: detached (its own process group, so the
// CLI and whatever it starts are killed together, and the daemon can adopt it through
// REVKA_PROCESS_TREE), its stdout checked line by line before the SDK sees it (a line that is
// not JSON fails the run with reason protocol; a line over cfg.jsonLineCap too), its stderr
// tail kept for the `died` message.

import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { LineSplitter, TREE_VAR, runEnv, signalGroup, killGroup, escalateInterrupt } from '../agents.js';
import { log } from '../log.js';

const TOOL_RESULT_CAP = 64 * 1024; // bytes of a tool_result's text kept in the event
const RAW_DATA_CAP = 64 * 1024; // an unknown message is kept whole in data up to this size
const STDERR_TAIL = 4096;
const PROTOCOL_SNIPPET = 200;

// Loaded SDK modules by specifier (a failed import is retried on the next run: `npm ci` may
// have been run since).
const sdkCache = new Map();

async function loadSdk(spec) {
  if (sdkCache.has(spec)) return sdkCache.get(spec);
  const mod = await import(spec);
  if (typeof mod.query !== 'function') throw new Error(`${spec} does not export query()`);
  sdkCache.set(spec, mod);
  return mod;
}

function cutUtf8(text, cap) {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= cap) return { text, cut: false };
  return { text: buf.subarray(0, cap).toString('utf8').replace(/\uFFFD$/, ''), cut: true };
}

// The text of a tool_result block's content (a string or an array of content blocks).
function toolResultText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return content === undefined || content === null ? '' : JSON.stringify(content);
  return content
    .map((b) => (b && b.type === 'text' ? b.text : `[${b && b.type ? b.type : 'block'}]`))
    .join('\n');
}

const n = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

export class ClaudeRun {
  constructor(agent, no, prompt) {
    this.agent = agent;
    this.cfg = agent.mgr.cfg;
    this.no = no;
    this.prompt = prompt;
    this.pid = undefined;
    this.child = null;
    this.query = null;
    this.abort = new AbortController();
    this.finished = false;
    this.interrupted = false;
    this.stopping = false; // terminate() called: everything after is expected
    this.sawResult = false;
    this.resultError = null; // {reason, message} of an is_error result
    this.exit = null; // {code, signal} once the CLI was reaped
    this.exitPromise = new Promise((r) => (this._resolveExit = r));
    this.donePromise = new Promise((r) => (this._resolveDone = r));
    this.stderrTail = '';
    this.escalateTimer = null;
    this.terminating = null;
  }

  start() {
    this.main().catch((err) => {
      log('error', 'claude run crashed', { agent: this.agent.id, run: this.no, err: err.message });
      this.finish('error', { reason: 'backend', message: `claude backend failed: ${err.message}` });
    });
  }

  async main() {
    const agent = this.agent;
    let sdk;
    try {
      sdk = await loadSdk(this.cfg.claudeSdkModule);
    } catch (err) {
      const missing = err && (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND');
      const message = missing
        ? `the Claude Agent SDK (${this.cfg.claudeSdkModule}) is not installed next to the session manager; ` +
          'run `revka install --with-session-manager` (or `npm ci --omit=dev` in its directory)'
        : `cannot load the Claude Agent SDK (${this.cfg.claudeSdkModule}): ${err.message}`;
      agent.record('error', message, { run: this.no, reason: 'sdk_missing' });
      this.finish('error', { reason: 'sdk_missing', message });
      return;
    }
    if (this.stopping || this.interrupted) {
      this.finish('idle');
      return;
    }

    const o = agent.options;
    const env = runEnv(agent, this.prompt);
    // The SDK hands the prompt to the CLI on stdin; in the environment a long prompt would
    // exceed the kernel's 128 KiB limit for one string and fail the spawn (E2BIG).
    delete env.REVKA_SM_PROMPT;
    const options = {
      cwd: agent.cwd,
      env,
      abortController: this.abort,
      spawnClaudeCodeProcess: (spawnOpts) => this.spawnCli(spawnOpts),
    };
    if (this.cfg.claudePath) options.pathToClaudeCodeExecutable = this.cfg.claudePath;
    if (o.model !== undefined) options.model = o.model;
    if (o.allowed_tools !== undefined) options.allowedTools = o.allowed_tools;
    if (o.system_prompt !== undefined) options.systemPrompt = o.system_prompt;
    if (o.mcp_servers !== undefined) options.mcpServers = o.mcp_servers;
    if (o.permission_mode !== undefined) {
      options.permissionMode = o.permission_mode;
      if (o.permission_mode === 'bypassPermissions') options.allowDangerouslySkipPermissions = true;
    }
    if (agent.backendState.session_id) options.resume = agent.backendState.session_id;

    try {
      this.query = sdk.query({ prompt: this.prompt, options });
      for await (const m of this.query) {
        if (this.agent.run !== this || this.finished || this.run_failure()) break;
        this.onMessage(m);
      }
    } catch (err) {
      await this.settleFailure(err);
    }
    // No orphan: whatever the CLI started goes with the run.
    await this.reap();
    if (this.run_failure()) {
      this.finish('error');
    } else if (this.interrupted || this.stopping) {
      this.finish('idle');
    } else if (this.resultError) {
      this.finish('error', this.resultError);
    } else if (!this.sawResult) {
      this.failDied('the Claude Code CLI ended without a result');
      this.finish('error');
    } else {
      this.finish('idle');
    }
  }

  run_failure() {
    return this.failure !== undefined && this.failure !== null;
  }

  // The SDK's iterator threw: the CLI died, failed to start, or we stopped it.
  async settleFailure(err) {
    if (this.run_failure() || this.stopping) return;
    if (this.interrupted && (err.name === 'AbortError' || this.sawResult)) return;
    // Give the exit event a moment: the SDK may report the end before Node reaps the child.
    if (this.child && !this.exit) await Promise.race([this.exitPromise, new Promise((r) => setTimeout(r, 1000))]);
    if (this.run_failure()) return;
    if (this.spawnError) {
      const message = `failed to start the Claude Code CLI: ${this.spawnError.message}`;
      this.agent.fail(this, 'spawn', message);
      return;
    }
    if (this.exit && !this.sawResult) {
      this.failDied(err.message);
      return;
    }
    this.agent.fail(this, 'backend', `Claude Agent SDK: ${err.message}`);
  }

  failDied(detail) {
    const e = this.exit;
    const how = !e ? 'is gone' : e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
    const tail = this.stderrTail.trim();
    const message = `the Claude Code CLI ${how} mid-turn (${detail})${tail ? `; stderr: ${tail}` : ''}`;
    this.agent.fail(this, 'died', message);
  }

  // Our spawnClaudeCodeProcess: see the header. Returns what the SDK's SpawnedProcess needs.
  spawnCli({ command, args, cwd, env }) {
    const childEnv = { ...env };
    if (process.env[TREE_VAR] === undefined) delete childEnv[TREE_VAR];
    else childEnv[TREE_VAR] = process.env[TREE_VAR];
    const proc = new EventEmitter();
    const stdout = new PassThrough();
    let child;
    try {
      child = spawn(command, args, { cwd, env: childEnv, detached: true, stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    } catch (err) {
      this.spawnError = err;
      throw err;
    }
    this.child = child;
    this.pid = child.pid;
    if (this.pid !== undefined) {
      log('info', 'claude CLI started', { agent: this.agent.id, run: this.no, pid: this.pid, cmd: command });
    }
    const cap = this.cfg.jsonLineCap;
    const lines = new LineSplitter(cap, (line, truncated) => {
      if (this.run_failure()) return;
      if (truncated) {
        this.agent.fail(this, 'protocol', `the Claude Code CLI wrote a line longer than ${cap} bytes: ${line.slice(0, PROTOCOL_SNIPPET)}`);
        return;
      }
      if (line.trim() === '') return;
      try {
        JSON.parse(line);
      } catch {
        const snippet = Buffer.from(line).subarray(0, PROTOCOL_SNIPPET).toString('utf8');
        this.agent.fail(this, 'protocol', `the Claude Code CLI wrote a line that is not JSON: ${snippet}`);
        return;
      }
      stdout.write(line + '\n');
    });
    child.stdout.on('data', (c) => lines.push(c));
    child.stderr.on('data', (c) => {
      this.stderrTail = (this.stderrTail + c.toString('utf8')).slice(-STDERR_TAIL);
    });
    for (const s of [child.stdin, child.stdout, child.stderr]) s.on('error', () => {});
    child.on('error', (err) => {
      if (this.pid === undefined) this.spawnError = err;
      if (!this.exit && this.pid === undefined) {
        this.exit = { code: null, signal: null };
        this._resolveExit();
      }
      proc.emit('error', err);
    });
    child.on('exit', (code, signal) => {
      this.exit = { code, signal };
      this._resolveExit();
      log('info', 'claude CLI exited', { agent: this.agent.id, run: this.no, pid: this.pid, code, signal });
    });
    child.on('close', (code, signal) => {
      lines.end();
      stdout.end();
      // after the SDK read the last lines
      setImmediate(() => proc.emit('exit', code, signal));
    });
    Object.defineProperties(proc, {
      stdin: { value: child.stdin },
      stdout: { value: stdout },
      killed: { get: () => child.killed },
      exitCode: { get: () => child.exitCode },
      signalCode: { get: () => child.signalCode },
    });
    // The SDK's kill reaches the whole group.
    proc.kill = (sig) => (child.pid !== undefined && !this.exit ? signalGroup(child.pid, sig || 'SIGTERM') : false);
    return proc;
  }

  onMessage(m) {
    const agent = this.agent;
    const run = this.no;
    if (!m || typeof m !== 'object') return;
    if (typeof m.session_id === 'string' && m.session_id && m.type !== 'user') {
      agent.backendState.session_id = m.session_id;
    }
    switch (m.type) {
      case 'system':
        if (m.subtype === 'init') {
          if (typeof m.model === 'string') agent.model = m.model;
          agent.record('status', 'session started', {
            status: 'running',
            run,
            sdk_type: 'system',
            subtype: 'init',
            session_id: m.session_id,
            model: m.model,
            tools: m.tools,
            mcp_servers: m.mcp_servers,
            permission_mode: m.permissionMode,
            cwd: m.cwd,
            claude_code_version: m.claude_code_version,
          });
          return;
        }
        break;
      case 'assistant': {
        const msg = m.message || {};
        const content = Array.isArray(msg.content) ? msg.content : [];
        const extra = m.parent_tool_use_id ? { parent_tool_use_id: m.parent_tool_use_id } : {};
        for (const b of content) {
          if (!b || typeof b !== 'object') continue;
          if (b.type === 'text') {
            agent.record('assistant', String(b.text ?? ''), { run, model: msg.model, ...extra });
          } else if (b.type === 'tool_use' || b.type === 'server_tool_use' || b.type === 'mcp_tool_use') {
            agent.record('tool_use', String(b.name), { run, id: b.id, name: b.name, input: b.input, ...extra });
          } else if (b.type === 'thinking') {
            agent.record('output', String(b.thinking ?? ''), { run, sdk_type: 'assistant', block: 'thinking', ...extra });
          } else {
            this.recordRaw(`assistant ${b.type} block`, { sdk_type: 'assistant', block: b.type, ...extra }, b);
          }
        }
        if (m.error) agent.record('error', `assistant message error: ${m.error}`, { run, reason: 'backend', sdk_type: 'assistant' });
        return;
      }
      case 'user': {
        const c = m.message && m.message.content;
        const extra = m.parent_tool_use_id ? { parent_tool_use_id: m.parent_tool_use_id } : {};
        if (Array.isArray(c)) {
          for (const b of c) {
            if (b && b.type === 'tool_result') {
              const { text, cut } = cutUtf8(toolResultText(b.content), TOOL_RESULT_CAP);
              const data = { run, tool_use_id: b.tool_use_id, is_error: b.is_error === true, ...extra };
              if (cut) data.truncated = true;
              agent.record('tool_result', cut ? `${text} …[truncated at ${TOOL_RESULT_CAP} bytes]` : text, data);
            } else if (b && b.type === 'text') {
              agent.record('output', String(b.text), { run, sdk_type: 'user', ...extra });
            } else {
              this.recordRaw(`user ${b && b.type} block`, { sdk_type: 'user', block: b && b.type, ...extra }, b);
            }
          }
        } else if (typeof c === 'string') {
          agent.record('output', c, { run, sdk_type: 'user', ...extra });
        }
        return;
      }
      case 'result': {
        this.sawResult = true;
        const u = m.usage || {};
        agent.addUsage(
          {
            input_tokens: n(u.input_tokens),
            output_tokens: n(u.output_tokens),
            cache_read_input_tokens: n(u.cache_read_input_tokens),
            cache_creation_input_tokens: n(u.cache_creation_input_tokens),
            cost_usd: typeof m.total_cost_usd === 'number' ? m.total_cost_usd : null,
          },
          this,
        );
        const errors = Array.isArray(m.errors) ? m.errors.map(String) : [];
        const text = typeof m.result === 'string' ? m.result : errors.join('\n');
        const data = { run, is_error: m.is_error === true, subtype: m.subtype };
        if (typeof m.duration_ms === 'number') data.duration_ms = m.duration_ms;
        if (typeof m.num_turns === 'number') data.num_turns = m.num_turns;
        if (typeof m.total_cost_usd === 'number') data.cost_usd = m.total_cost_usd;
        if (m.session_id) data.session_id = m.session_id;
        if (errors.length) data.errors = errors;
        agent.record('result', text, data);
        if (m.is_error === true && !this.interrupted && !this.stopping) {
          const message = `claude reported an error (${m.subtype}): ${errors.join('; ') || text || 'no detail'}`;
          this.resultError = { reason: 'backend', message };
          agent.record('error', message, { run, reason: 'backend' });
        }
        return;
      }
      default:
        break;
    }
    this.recordRaw(m.subtype ? `${m.type}/${m.subtype}` : String(m.type), { sdk_type: m.type, subtype: m.subtype }, m);
  }

  // A message (or block) we do not map: an `output` event, the raw object in data when small.
  recordRaw(text, data, raw) {
    const d = { run: this.no, ...data };
    if (d.subtype === undefined) delete d.subtype;
    const json = JSON.stringify(raw) ?? 'null';
    if (json.length <= RAW_DATA_CAP) d.message = raw;
    else d.message_truncated = json.slice(0, RAW_DATA_CAP);
    this.agent.record('output', text, d);
  }

  // Kills the CLI's process group (if still there) and waits until it is reaped.
  async reap() {
    if (this.pid === undefined) return;
    await killGroup(this.pid, this.cfg.killGraceMs, this.exitPromise);
    if (!this.exit) await Promise.race([this.exitPromise, new Promise((r) => setTimeout(r, 2000))]);
  }

  finish(status, lastError) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.escalateTimer);
    if (this.pid !== undefined) this.agent.lastPid = this.pid;
    this.agent._runFinished(this, status, lastError);
    this._resolveDone();
  }

  interrupt() {
    if (this.finished) return false;
    this.interrupted = true;
    if (this.query) {
      this.query.interrupt().catch((err) =>
        log('info', 'claude interrupt not delivered', { agent: this.agent.id, run: this.no, err: err.message }),
      );
    }
    escalateInterrupt(this, this.cfg, () => !this.finished, 'claude run ignored the interrupt');
    return true;
  }

  terminate() {
    if (!this.terminating) this.terminating = this._terminate();
    return this.terminating;
  }

  async _terminate() {
    this.stopping = true;
    if (this.finished) return;
    this.abort.abort();
    if (this.pid !== undefined) await killGroup(this.pid, this.cfg.killGraceMs, this.exitPromise);
    // main() finishes once the SDK's iterator ends; do not wait forever on it.
    await Promise.race([this.donePromise, new Promise((r) => setTimeout(r, 3000))]);
    if (!this.finished) {
      await this.reap();
      this.finish('idle');
    }
  }
}
