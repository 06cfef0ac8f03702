//! The run log (seed 000's RunLog JSONL audit trail): one JSON object per line for every tool
//! call and every supervision transition, under `$REVKA_HOME/operator_mcp/runlogs/run.jsonl`.
//!
//! Rotation by size: past 5 MB the file is flagged (`get_journal_health` warns), past 20 MB it
//! is rotated (`run.jsonl` → `run.jsonl.1` → … → `run.jsonl.3`; the oldest is dropped). Write
//! latency is tracked for `get_journal_health`. Supervision events (kind `supervision`, target
//! `revka_actors::supervisor`) and circuit-breaker transitions (kind `breaker`, target
//! `revka_actors::breaker`) reach the log through a tracing layer with its own filter
//! ([`audit_targets`]), so they are recorded whatever the console log level is.
//!
//! Writing is off the caller's path: [`RunLog::record`] appends the line to a bounded in-memory
//! batch and a `runlog-writer` thread writes each batch with one `write` (at most every
//! [`BATCH_EVERY`]), so a tool call never waits for the disk and a burst of calls costs one
//! syscall. When the batch is full the recorder writes it itself (backpressure, nothing is
//! dropped). The daemon flushes at shutdown; a `kill -9` can lose the last [`BATCH_EVERY`].
//!
//! The file is opened in place without following links ([`revka_actors::fs::open_in_place`]):
//! a link planted at `run.jsonl` is refused, never written through. The refused batches count
//! as write errors, with the reason as `last_error` in `get_journal_health`; the daemon runs on.

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use revka_actors::fs;
use revka_actors::status::rfc3339;
use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Size past which the log is flagged.
pub const WARN_BYTES: u64 = 5 * 1024 * 1024;
/// Size past which the log is rotated.
pub const ROTATE_BYTES: u64 = 20 * 1024 * 1024;
/// Rotated files kept.
pub const KEEP: u32 = 3;
/// The writer thread waits this long after the first line of a batch for more lines.
pub const BATCH_EVERY: Duration = Duration::from_millis(20);
/// Bytes held in memory before a recorder writes the batch itself.
pub const MAX_PENDING: usize = 1024 * 1024;

/// The daemon's run log, once opened (the tracing layer writes into it).
static RUNLOG: OnceLock<Arc<RunLog>> = OnceLock::new();

/// Opens the process's run log in `home` (once; later calls return the first).
pub fn install(home: &Path) -> Arc<RunLog> {
    RUNLOG
        .get_or_init(|| {
            let log = Arc::new(RunLog::new(home.join("operator_mcp").join("runlogs")));
            spawn_writer(&log);
            log
        })
        .clone()
}

/// Starts the thread that writes `log`'s batches. Without it, batches are written when full,
/// on [`RunLog::flush`] and on [`RunLog::health`].
fn spawn_writer(log: &Arc<RunLog>) {
    let writer = log.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("runlog-writer".into())
        .spawn(move || writer.write_batches())
    {
        eprintln!("revka: cannot start the run log writer thread: {e}");
    }
}

/// Writes whatever the process's run log holds (at shutdown).
pub fn flush() {
    if let Some(log) = get() {
        log.flush();
    }
}

/// The process's run log, if installed.
pub fn get() -> Option<&'static Arc<RunLog>> {
    RUNLOG.get()
}

/// An append-only, size-rotated JSONL log.
#[derive(Debug)]
pub struct RunLog {
    /// `run.jsonl`.
    path: PathBuf,
    file: Mutex<Option<(File, u64)>>,
    pending: Mutex<Pending>,
    /// Signalled when `pending` stops being empty.
    wake: Condvar,
    /// Records written.
    writes: AtomicU64,
    /// `write`s that wrote them (latency figures are per batch).
    batches: AtomicU64,
    write_ns: AtomicU64,
    max_write_ns: AtomicU64,
    errors: AtomicU64,
    /// The last write error, for `get_journal_health` (e.g. a link planted at the file).
    last_error: Mutex<Option<String>>,
    rotations: AtomicU64,
    last_rotation: Mutex<Option<SystemTime>>,
}

impl RunLog {
    /// A log in `dir` (created on the first write, 0700; the file is 0600).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            path: dir.join("run.jsonl"),
            file: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            max_write_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            rotations: AtomicU64::new(0),
            last_rotation: Mutex::new(None),
        }
    }

    /// Queues one record `{ts, kind, ...fields}` for writing. Never fails the caller: write
    /// errors are counted (and the first one printed).
    pub fn record(&self, kind: &str, fields: Value) {
        match fields {
            Value::Object(map) => self.record_with(kind, &map),
            other => self.record_with(kind, &json!({ "value": other })),
        }
    }

    /// Like [`Self::record`], for any serializable struct or map: its fields follow `ts` and
    /// `kind` on the line.
    pub fn record_with<T: serde::Serialize>(&self, kind: &str, fields: &T) {
        // `{"ts":…,"kind":…` then the fields' own object with its `{` turned into a `,`: the
        // same line `#[serde(flatten)]` would give, without its buffering of every field.
        // Sized for a tool-call record, so that serialising it does not grow the buffer.
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(b"{\"ts\":\"");
        // RFC 3339 in UTC: digits, `-`, `:`, `T` and `Z`, nothing to escape.
        bytes.extend_from_slice(rfc3339(SystemTime::now()).as_bytes());
        bytes.extend_from_slice(b"\",\"kind\":");
        let header = serde_json::to_writer(&mut bytes, kind);
        let start = bytes.len();
        let body = header.and_then(|()| serde_json::to_writer(&mut bytes, fields));
        let spliced = match (body, &bytes[start..]) {
            (Ok(()), b"{}") => {
                bytes.truncate(start);
                bytes.push(b'}');
                Ok(())
            }
            (Ok(()), [b'{', ..]) => {
                bytes[start] = b',';
                Ok(())
            }
            (Ok(()), _) => Err("the fields are not a JSON object".to_owned()),
            (Err(e), _) => Err(e.to_string()),
        };
        if let Err(e) = spliced {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, kind, "run log record not serializable");
            return;
        }
        bytes.push(b'\n');
        let mut pending = lock(&self.pending);
        if !pending.bytes.is_empty() && pending.bytes.len() + bytes.len() > MAX_PENDING {
            drop(pending);
            self.flush();
            pending = lock(&self.pending);
        }
        let was_empty = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(&bytes);
        pending.lines += 1;
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Writes the queued records now (in order with any batch being written).
    pub fn flush(&self) {
        // The file lock is taken first, so batches reach the file in the order they were taken.
        let mut file = lock(&self.file);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.bytes.is_empty() {
            return;
        }
        let started = Instant::now();
        if let Err(e) = self.append(&mut file, &batch.bytes) {
            *lock(&self.last_error) = Some(e.to_string());
            if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "revka: cannot write the run log {}: {e}",
                    self.path.display()
                );
            }
            return;
        }
        let ns = started.elapsed().as_nanos() as u64;
        self.writes.fetch_add(batch.lines, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.write_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_write_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The writer thread: waits for a first line, lets a batch gather, writes it; forever.
    fn write_batches(&self) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.bytes.is_empty() {
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(BATCH_EVERY);
            self.flush();
        }
    }

    /// Appends `bytes` to the file (opened on first use), rotating first if they would take it
    /// past [`ROTATE_BYTES`].
    fn append(&self, file: &mut Option<(File, u64)>, bytes: &[u8]) -> std::io::Result<()> {
        if file.is_none() {
            *file = Some(self.open()?);
        }
        if file
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + bytes.len() as u64 > ROTATE_BYTES)
        {
            *file = None;
            self.rotate()?;
            *file = Some(self.open()?);
        }
        let (f, size) = file.as_mut().expect("opened above");
        f.write_all(bytes)?;
        *size += bytes.len() as u64;
        Ok(())
    }

    /// Opens `run.jsonl` for appending, creating it (0600) and its directory (0700); a link
    /// planted at its path is refused, never followed ([`fs::open_in_place`]).
    fn open(&self) -> std::io::Result<(File, u64)> {
        if let Some(dir) = self.path.parent() {
            fs::ensure_private_dir(dir)?;
        }
        let append = OpenOptions::new().create(true).append(true).clone();
        let file = fs::open_in_place(&self.path, &append, fs::PRIVATE_FILE)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    fn rotate(&self) -> std::io::Result<()> {
        shift_numbered(&self.path, KEEP)?;
        self.rotations.fetch_add(1, Ordering::Relaxed);
        *self
            .last_rotation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
        Ok(())
    }

    /// Health of the log: size against the thresholds, write latency, rotations.
    pub fn health(&self) -> Value {
        self.flush();
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let writes = self.writes.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let avg_us = if batches == 0 {
            0.0
        } else {
            self.write_ns.load(Ordering::Relaxed) as f64 / batches as f64 / 1000.0
        };
        let errors = self.errors.load(Ordering::Relaxed);
        let status = if errors > 0 {
            "error"
        } else if size > WARN_BYTES {
            "warning"
        } else {
            "ok"
        };
        json!({
            "status": status,
            "path": self.path,
            "size_bytes": size,
            "warn_bytes": WARN_BYTES,
            "rotate_bytes": ROTATE_BYTES,
            "keep": KEEP,
            "rotations": self.rotations.load(Ordering::Relaxed),
            "last_rotation": self.last_rotation.lock().unwrap_or_else(PoisonError::into_inner).map(rfc3339),
            "writes": writes,
            "batches": batches,
            "avg_write_us": (avg_us * 10.0).round() / 10.0,
            "max_write_us": self.max_write_ns.load(Ordering::Relaxed) / 1000,
            "write_errors": errors,
            "last_error": lock(&self.last_error).clone(),
        })
    }
}

/// Records queued for the next write.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
}

/// Moves `path` to `path.1`, after shifting `path.1` → `path.2` … and dropping `path.<keep>`
/// (a file still open keeps being written where it moved).
pub(crate) fn shift_numbered(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    std::fs::rename(path, numbered(1))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tracing target of supervision events.
pub const SUPERVISION_TARGET: &str = "revka_actors::supervisor";
/// The tracing target of circuit-breaker transitions.
pub const BREAKER_TARGET: &str = "revka_actors::breaker";

/// The filter of [`SupervisionLayer`]: supervision events and breaker transitions, from INFO.
pub fn audit_targets() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target(SUPERVISION_TARGET, tracing::Level::INFO)
        .with_target(BREAKER_TARGET, tracing::Level::INFO)
}

/// The run-log kind of an event with `target`: `breaker` for breaker transitions, otherwise
/// `supervision`.
fn kind_of(target: &str) -> &'static str {
    if target.starts_with(BREAKER_TARGET) {
        "breaker"
    } else {
        "supervision"
    }
}

/// A tracing layer that copies supervision events and breaker transitions into the run log.
/// Give it its own filter ([`audit_targets`]) so the console level does not thin the audit
/// trail.
#[derive(Debug, Default, Clone, Copy)]
pub struct SupervisionLayer;

impl<S: tracing::Subscriber> Layer<S> for SupervisionLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let Some(log) = get() else { return };
        log.record(kind_of(event.metadata().target()), event_fields(event));
    }
}

/// An event's fields as a JSON object, with its level.
fn event_fields(event: &tracing::Event<'_>) -> Value {
    let mut fields = FieldsToJson(Map::new());
    event.record(&mut fields);
    fields
        .0
        .insert("level".into(), json!(event.metadata().level().as_str()));
    Value::Object(fields.0)
}

struct FieldsToJson(Map<String, Value>);

impl Visit for FieldsToJson {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), json!(value));
    }
}
