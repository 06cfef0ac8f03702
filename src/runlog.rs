//! The run log (seed 000's RunLog JSONL audit trail): one JSON object per line for every tool
//! call and every supervision transition, under `$REVKA_HOME/operator_mcp/runlogs/run.jsonl`.
//!
//! Rotation by size: past 5 MB the file is flagged (`get_journal_health` warns), past 20 MB it
//! is rotated (`run.jsonl` → `run.jsonl.1` → … → `run.jsonl.3`; the oldest is dropped). Write
//! latency is tracked for `get_journal_health`. Supervision events reach the log through a
//! tracing layer with its own filter, so they are recorded whatever the console log level is.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime};

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

/// The daemon's run log, once opened (the tracing layer writes into it).
static RUNLOG: OnceLock<Arc<RunLog>> = OnceLock::new();

/// Opens the process's run log in `home` (once; later calls return the first).
pub fn install(home: &Path) -> Arc<RunLog> {
    RUNLOG
        .get_or_init(|| Arc::new(RunLog::new(home.join("operator_mcp").join("runlogs"))))
        .clone()
}

/// The process's run log, if installed.
pub fn get() -> Option<&'static Arc<RunLog>> {
    RUNLOG.get()
}

/// An append-only, size-rotated JSONL log.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: Mutex<Option<(File, u64)>>,
    writes: AtomicU64,
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
            writes: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            max_write_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            last_rotation: Mutex::new(None),
        }
    }

    /// Appends one record `{ts, kind, ...fields}`. Never fails the caller: errors are counted.
    pub fn record(&self, kind: &str, fields: Value) {
        let mut line = match fields {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        line.insert("ts".into(), json!(rfc3339(SystemTime::now())));
        line.insert("kind".into(), json!(kind));
        let mut bytes = Value::Object(line).to_string().into_bytes();
        bytes.push(b'\n');
        let started = Instant::now();
        if let Err(e) = self.append(&bytes) {
            if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "revka: cannot write the run log {}: {e}",
                    self.path.display()
                );
            }
            return;
        }
        let ns = started.elapsed().as_nanos() as u64;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_write_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        if guard
            .as_ref()
            .is_some_and(|(_, size)| size + bytes.len() as u64 > ROTATE_BYTES)
        {
            *guard = None;
            self.rotate()?;
            *guard = Some(self.open()?);
        }
        let (file, size) = guard.as_mut().expect("opened above");
        file.write_all(bytes)?;
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
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(KEEP));
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.rotations.fetch_add(1, Ordering::Relaxed);
        *self
            .last_rotation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
        Ok(())
    }

    /// Health of the log: size against the thresholds, write latency, rotations.
    pub fn health(&self) -> Value {
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let writes = self.writes.load(Ordering::Relaxed);
        let avg_us = if writes == 0 {
            0.0
        } else {
            self.write_ns.load(Ordering::Relaxed) as f64 / writes as f64 / 1000.0
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
            "avg_write_us": (avg_us * 10.0).round() / 10.0,
            "max_write_us": self.max_write_ns.load(Ordering::Relaxed) / 1000,
            "write_errors": errors,
        })
    }
}

/// A tracing layer that copies supervision events (target `revka_actors::supervisor`) into
/// the run log. Give it its own filter so the console level does not thin the audit trail.
#[derive(Debug, Default, Clone, Copy)]
pub struct SupervisionLayer;

impl<S: tracing::Subscriber> Layer<S> for SupervisionLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let Some(log) = get() else { return };
        let mut fields = FieldsToJson(Map::new());
        event.record(&mut fields);
        fields
            .0
            .insert("level".into(), json!(event.metadata().level().as_str()));
        log.record("supervision", Value::Object(fields.0));
    }
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
