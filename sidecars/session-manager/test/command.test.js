// The command backend: real child processes from argv templates (node -e ...).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, tmpDir, pidGone } from './helpers.js';

const NODE = process.execPath;
const exitOf = (events) => events.find((e) => e.type === 'exit');

describe('command backend', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { REVKA_SM_KILL_GRACE_MS: '500', REVKA_SM_INTERRUPT_GRACE_MS: '2000' } });
  });
  after(async () => {
    await srv.stop();
  });

  test('stdout -> output, stderr -> error, exit -> exit event; {prompt} is one argv element', async () => {
    const cwd = tmpDir();
    const r = await srv.post('/agents', {
      name: 'cmd1',
      backend: 'command',
      argv: [NODE, '-e', "console.log(process.argv[1]); console.error('err line'); console.log(process.cwd())", '{prompt}'],
      prompt: 'hello world; $(touch /tmp/nope) "quoted"',
      cwd,
    });
    assert.equal(r.status, 201);
    assert.equal(r.json.status, 'running');
    assert.equal(typeof r.json.pid, 'number');
    const events = await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'status' && e.text === 'idle'));
    const outputs = events.filter((e) => e.type === 'output').map((e) => e.text);
    assert.deepEqual(outputs, ['hello world; $(touch /tmp/nope) "quoted"', fs.realpathSync(cwd)]);
    assert.deepEqual(
      events.filter((e) => e.type === 'error').map((e) => e.text),
      ['err line'],
    );
    const exit = exitOf(events);
    assert.equal(exit.data.code, 0);
    assert.equal(exit.data.signal, null);
    assert.equal(exit.data.pid, r.json.pid);
    const exitIdx = events.indexOf(exit);
    assert.ok(events.slice(0, exitIdx).some((e) => e.type === 'output'), 'output precedes exit');
    const info = (await srv.get(`/agents/${r.json.id}`)).json;
    assert.equal(info.status, 'idle');
    assert.equal(info.exit_code, 0);
    assert.equal(info.pid, undefined);
    assert.ok(pidGone(r.json.pid), 'child reaped');

    // each query is a new run
    const mark = info.event_count;
    await srv.post(`/agents/${r.json.id}/query`, { prompt: 'second run' });
    const later = await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'exit'), { since: mark });
    assert.equal(later.find((e) => e.type === 'output').text, 'second run');
    assert.equal(later.find((e) => e.type === 'prompt').data.run, 2);
    await srv.del(`/agents/${r.json.id}`);
  });

  test('non-zero exit -> status error with exit_code', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', 'console.log("bye"); process.exit(3)'],
      prompt: 'x',
    });
    const info = await srv.agentUntil(r.json.id, (x) => x.status === 'error');
    assert.equal(info.exit_code, 3);
    const exit = exitOf((await srv.get(`/agents/${r.json.id}/events`)).json.events);
    assert.equal(exit.data.code, 3);
    assert.equal(exit.text, 'exited with code 3');
    await srv.del(`/agents/${r.json.id}`);
  });

  test('spawn failure -> error + exit events, status error', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [path.join(tmpDir(), 'no-such-binary'), '{prompt}'],
      prompt: 'x',
    });
    assert.equal(r.status, 201);
    const info = await srv.agentUntil(r.json.id, (x) => x.status === 'error');
    const events = (await srv.get(`/agents/${info.id}/events`)).json.events;
    assert.ok(events.some((e) => e.type === 'error' && /failed to start/.test(e.text)));
    assert.equal(exitOf(events).data.spawn_error, 'ENOENT');
    assert.ok(await srv.healthy());
    await srv.del(`/agents/${r.json.id}`);
  });

  test('output lines are capped at 64 KiB', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', "process.stdout.write('x'.repeat(200000) + '\\nafter\\n' + 'y'.repeat(10))"],
      prompt: 'x',
    });
    const events = await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'exit'));
    const outs = events.filter((e) => e.type === 'output');
    assert.equal(outs.length, 3);
    assert.equal(outs[0].data.truncated, true);
    assert.ok(outs[0].text.startsWith('x'.repeat(65536)));
    assert.match(outs[0].text, /truncated: line exceeded 65536 bytes/);
    assert.ok(outs[0].text.length < 65536 + 100);
    assert.equal(outs[1].text, 'after');
    assert.equal(outs[2].text, 'y'.repeat(10)); // unterminated last line is flushed
    await srv.del(`/agents/${r.json.id}`);
  });

  test('interrupt sends SIGINT to the process group', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [
        NODE,
        '-e',
        "process.on('SIGINT', () => { console.log('got SIGINT'); process.exit(130) }); console.log('ready'); setInterval(() => {}, 1000)",
      ],
      prompt: 'x',
    });
    const id = r.json.id;
    await srv.eventsUntil(id, (evs) => evs.some((e) => e.text === 'ready'));
    let q = await srv.post(`/agents/${id}/query`, { prompt: 'y' });
    assert.equal(q.status, 409);
    const i = await srv.post(`/agents/${id}/interrupt`);
    assert.equal(i.status, 200);
    assert.equal(i.json.interrupted, true);
    const events = await srv.eventsUntil(id, (evs) => evs.some((e) => e.type === 'exit'));
    assert.ok(events.some((e) => e.type === 'interrupt' && e.data.signal === 'SIGINT'));
    assert.ok(events.some((e) => e.text === 'got SIGINT'));
    const exit = exitOf(events);
    assert.equal(exit.data.code, 130);
    assert.equal(exit.data.interrupted, true);
    const info = await srv.agentUntil(id, (x) => x.status === 'idle');
    assert.ok(pidGone(r.json.pid));
    q = await srv.post(`/agents/${id}/query`, { prompt: 'z' });
    assert.equal(q.status, 202);
    await srv.del(`/agents/${info.id}`);
  });

  test('interrupt escalates when SIGINT is ignored', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', "process.on('SIGINT', () => {}); console.log('ready'); setInterval(() => {}, 1000)"],
      prompt: 'x',
    });
    await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.text === 'ready'));
    await srv.post(`/agents/${r.json.id}/interrupt`);
    const info = await srv.agentUntil(r.json.id, (x) => x.status === 'idle', { timeout: 5000 });
    assert.equal(info.exit_signal, 'SIGTERM');
    assert.ok(pidGone(r.json.pid));
    await srv.del(`/agents/${r.json.id}`);
  });

  test('DELETE kills the process group and reaps the child', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [
        NODE,
        '-e',
        // the child ignores SIGTERM: DELETE must escalate to SIGKILL
        "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)",
      ],
      prompt: 'x',
    });
    const pid = r.json.pid;
    await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.text === 'ready'));
    assert.equal(pidGone(pid), false);
    const d = await srv.del(`/agents/${r.json.id}`);
    assert.equal(d.status, 200);
    assert.equal(d.json.agent.status, 'exited');
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
  });

  test('REVKA_SM_AGENT_ARGV is the default template; {prompt} inside a larger argument', async () => {
    const srv2 = await startServer({
      env: { REVKA_SM_AGENT_ARGV: JSON.stringify([NODE, '-e', 'console.log(process.argv[1])', '--', '--p={prompt}!']) },
    });
    try {
      const r = await srv2.post('/agents', { backend: 'command', prompt: 'abc' });
      assert.equal(r.status, 201);
      const events = await srv2.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'exit'));
      assert.equal(events.find((e) => e.type === 'output').text, '--p=abc!');
    } finally {
      await srv2.stop();
    }
  });

  test('the daemon\'s REVKA_PROCESS_TREE marker reaches every run unchanged; a request cannot set it', async () => {
    const printMarker = [NODE, '-e', 'console.log(String(process.env.REVKA_PROCESS_TREE))'];
    const marked = await startServer({ env: { REVKA_PROCESS_TREE: '4242.7' } });
    try {
      for (const env of [undefined, { REVKA_PROCESS_TREE: 'forged', OTHER: 'x' }]) {
        const r = await marked.post('/agents', { backend: 'command', argv: printMarker, prompt: 'x', env });
        assert.equal(r.status, 201);
        const events = await marked.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'exit'));
        assert.equal(events.find((e) => e.type === 'output').text, '4242.7');
      }
    } finally {
      await marked.stop();
    }
    // Not under the daemon (this test's own environment, normally unmarked): a request cannot
    // make a run look like part of a supervised tree.
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: printMarker,
      prompt: 'x',
      env: { REVKA_PROCESS_TREE: 'forged' },
    });
    const events = await srv.eventsUntil(r.json.id, (evs) => evs.some((e) => e.type === 'exit'));
    const expected = process.env.REVKA_PROCESS_TREE ?? 'undefined';
    assert.equal(events.find((e) => e.type === 'output').text, expected);
    await srv.del(`/agents/${r.json.id}`);
  });

  test('the timeline keeps the last 10,000 events and reports dropped', async () => {
    const r = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', "let s = ''; for (let i = 1; i <= 12000; i++) s += 'line ' + i + '\\n'; process.stdout.write(s)"],
      prompt: 'x',
    });
    const id = r.json.id;
    const info = await srv.agentUntil(id, (x) => x.status === 'idle', { timeout: 10000 });
    assert.ok(info.event_count > 12000);
    assert.equal(info.dropped, info.event_count - 10000);
    const page = (await srv.get(`/agents/${id}/events?limit=99999`)).json;
    assert.equal(page.events.length, 5000); // limit is capped at 5000
    assert.equal(page.events[0].seq, info.dropped + 1);
    assert.equal(page.first_seq, info.dropped + 1);
    assert.equal(page.dropped, info.dropped);
    const tail = (await srv.get(`/agents/${id}/events?since=${info.event_count - 3}`)).json.events;
    assert.deepEqual(
      tail.map((e) => e.type),
      ['output', 'exit', 'status'],
    );
    assert.equal(tail[0].text, 'line 12000');
    await srv.del(`/agents/${id}`);
  });
});

describe('sidecar shutdown', () => {
  test('SIGTERM kills and reaps every agent child, then exits 0', async () => {
    const srv = await startServer({ env: { REVKA_SM_KILL_GRACE_MS: '500' } });
    const polite = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', "console.log('ready'); setInterval(() => {}, 1000)"],
      prompt: 'x',
    });
    const stubborn = await srv.post('/agents', {
      backend: 'command',
      argv: [NODE, '-e', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"],
      prompt: 'x',
    });
    await srv.eventsUntil(polite.json.id, (evs) => evs.some((e) => e.text === 'ready'));
    await srv.eventsUntil(stubborn.json.id, (evs) => evs.some((e) => e.text === 'ready'));
    const pids = [polite.json.pid, stubborn.json.pid];
    for (const pid of pids) assert.equal(pidGone(pid), false);
    const { code } = await srv.stop('SIGTERM');
    assert.equal(code, 0);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
    assert.equal(fs.existsSync(srv.sock), false);
  });
});
