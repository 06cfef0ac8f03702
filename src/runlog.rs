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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

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

    fn open(&self) -> std::io::Result<(File, u64)> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rotate_at_the_threshold_and_keep_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().join("runlogs"));
        log.record("tool_call", json!({ "tool": "x", "ok": true }));
        log.flush();
        let first: Value = serde_json::from_str(
            std::fs::read_to_string(dir.path().join("runlogs/run.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (first["kind"].as_str(), first["tool"].as_str()),
            (Some("tool_call"), Some("x"))
        );
        assert!(first["ts"].as_str().unwrap().ends_with('Z'));
        let big = "x".repeat(1024 * 1024);
        for _ in 0..(4 * 21) {
            log.record("filler", json!({ "data": big }));
        }
        let health = log.health();
        assert!(health["rotations"].as_u64().unwrap() >= 3, "{health}");
        assert!(health["size_bytes"].as_u64().unwrap() <= ROTATE_BYTES);
        for n in 1..=KEEP {
            assert!(dir.path().join(format!("runlogs/run.jsonl.{n}")).exists());
        }
        assert!(
            !dir.path().join("runlogs/run.jsonl.4").exists(),
            "only three kept"
        );
        assert!(health["writes"].as_u64().unwrap() > 80);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("runlogs/run.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn lines(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("run.jsonl")).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn a_line_is_ts_and_kind_then_the_fields_and_a_non_object_is_refused() {
        #[derive(serde::Serialize)]
        struct Fields<'a> {
            tool: &'a str,
            error: Option<String>,
        }
        #[derive(serde::Serialize)]
        struct Nothing {}
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().to_owned());
        log.record_with(
            "tool\"call",
            &Fields {
                tool: "a\nb",
                error: None,
            },
        );
        log.record_with("empty", &Nothing {});
        log.record("wrapped", json!([1, 2]));
        log.record_with("refused", &[1, 2]);
        log.flush();
        let text = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&lines[0]), ["error", "kind", "tool", "ts"]);
        assert_eq!(lines[0]["kind"], "tool\"call");
        assert_eq!(lines[0]["tool"], "a\nb");
        assert_eq!(lines[0]["error"], Value::Null);
        assert!(
            humantime::parse_rfc3339(lines[0]["ts"].as_str().unwrap()).is_ok(),
            "{text}"
        );
        assert_eq!(keys(&lines[1]), ["kind", "ts"]);
        assert_eq!(lines[2]["value"], json!([1, 2]));
        assert_eq!(
            log.errors.load(Ordering::Relaxed),
            1,
            "the array is refused"
        );
    }

    #[test]
    fn the_writer_thread_writes_queued_records_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(RunLog::new(dir.path().to_owned()));
        for i in 0..100 {
            log.record("tool_call", json!({ "n": i }));
        }
        assert_eq!(lines(dir.path()), 0, "queued, not yet written");
        spawn_writer(&log);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(dir.path()) < 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
        let order: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
        let health = log.health();
        assert_eq!(
            (health["writes"].as_u64(), health["batches"].as_u64()),
            (Some(100), Some(1))
        );
        // Later records are written too, without a flush.
        log.record("tool_call", json!({ "n": 100 }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(dir.path()) < 101 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lines(dir.path()), 101);
    }

    #[test]
    fn a_full_batch_is_written_by_the_recorder() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().to_owned());
        let big = "z".repeat(MAX_PENDING / 2 + 1);
        log.record("filler", json!({ "data": big }));
        assert_eq!(lines(dir.path()), 0);
        log.record("filler", json!({ "data": big }));
        assert_eq!(
            lines(dir.path()),
            1,
            "the first batch was written to make room"
        );
        log.flush();
        assert_eq!(lines(dir.path()), 2);
    }

    #[test]
    fn supervision_and_breaker_events_are_audited_under_their_own_kinds() {
        let targets = audit_targets();
        for target in [
            "revka_actors::supervisor",
            "revka_actors::breaker",
            "revka_actors::breaker::handle",
        ] {
            assert!(
                targets.would_enable(target, &tracing::Level::INFO),
                "{target}"
            );
            assert!(
                !targets.would_enable(target, &tracing::Level::DEBUG),
                "{target}"
            );
        }
        assert!(!targets.would_enable("revka_actors::retry_queue", &tracing::Level::WARN));
        assert!(!targets.would_enable("revka::gateway", &tracing::Level::ERROR));
        assert_eq!(kind_of("revka_actors::breaker"), "breaker");
        assert_eq!(kind_of("revka_actors::supervisor"), "supervision");
    }

    #[test]
    fn a_large_log_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().to_owned());
        let big = "y".repeat(1024 * 1024);
        for _ in 0..6 {
            log.record("filler", json!({ "data": big }));
        }
        assert_eq!(log.health()["status"], "warning");
    }
}
