// The "claude" backend (placeholder until the Claude Agent SDK backend lands): fails every run.

export class ClaudeRun {
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
    const message = 'claude backend not built';
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
