// JSON-lines logger: one object per line on stderr, {ts, level, msg, ...fields}.

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold = LEVELS.info;

export function setLogLevel(level) {
  if (!(level in LEVELS)) throw new Error(`unknown log level ${JSON.stringify(level)}`);
  threshold = LEVELS[level];
}

export function isLogLevel(level) {
  return Object.prototype.hasOwnProperty.call(LEVELS, level);
}

// A write to a closed stderr must never take the process down.
process.stderr.on('error', () => {});

export function log(level, msg, fields) {
  if ((LEVELS[level] ?? LEVELS.error) < threshold) return;
  const rec = { ts: new Date().toISOString(), level, msg };
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined || k === 'ts' || k === 'level' || k === 'msg') continue;
      rec[k] = v instanceof Error ? errorFields(v) : v;
    }
  }
  let line;
  try {
    line = JSON.stringify(rec);
  } catch {
    line = JSON.stringify({ ts: rec.ts, level, msg, note: 'unserializable log fields' });
  }
  try {
    process.stderr.write(line + '\n');
  } catch {
    // stderr gone: nothing sensible left to do
  }
}

export function errorFields(err) {
  if (!(err instanceof Error)) return { message: String(err) };
  const out = { name: err.name, message: err.message };
  if (err.code !== undefined) out.code = err.code;
  if (err.stack) out.stack = err.stack;
  return out;
}
