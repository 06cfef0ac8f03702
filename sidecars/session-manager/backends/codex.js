// The "codex" backend (stub): the real one (Codex app-server over JSON-RPC) is written on
// another branch and replaces this file. This stub fails every run with reason "backend".

export class CodexRun {
  constructor(agent, no, prompt) {
    this.agent = agent;
    this.no = no;
    this.prompt = prompt;
    this.pid = undefined;
    this.finished = false;
  }

  start() {
    setImmediate(() => this.finish());
  }

  finish() {
    if (this.finished) return;
    this.finished = true;
    const message = 'codex backend not built';
    this.agent.record('error', message, { run: this.no, reason: 'backend' });
    this.agent._runFinished(this, 'error', { reason: 'backend', message });
  }

  interrupt() {
    return false;
  }

  async terminate() {
    this.finish();
  }
}
