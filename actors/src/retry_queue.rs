//! The persistent retry queue of a sidecar: `root/sidecars/retry:session_manager`.
//!
//! Operations the daemon could not deliver to a sidecar (e.g. a call to the session manager
//! while it restarts or while its circuit breaker is open) are handed to a [`RetryQueueActor`]
//! through a [`RetryQueueHandle`]. The queue runs them through an [`Executor`] (the sidecar
//! layer's, which calls the sidecar through its breaker) until they succeed or their retries
//! are used up, then keeps them as dead letters that an operator can list, replay or drop.
//!
//! Unlike the original (unbounded, one operation at a time, no deadline, lost on restart):
//!
//! - **Bounded**: at most [`QueueConfig::capacity`] live operations (pending plus in flight).
//!   At capacity a new operation is refused with [`EnqueueError::Full`], or, with
//!   [`OnFull::DeadLetterOldest`], the oldest *pending* operation is moved to the dead letters
//!   to make room. Dead letters are bounded too ([`QueueConfig::dead_letter_capacity`]; the
//!   oldest is discarded first), so memory is bounded by the two capacities.
//! - **Retries**: an attempt that fails, panics or outlives [`QueueConfig::attempt_timeout`] is
//!   retried after an exponential delay with jitter (the supervisor's [`Backoff`]: `backoff_min`
//!   before the first retry, then up to `2·min`, `4·min`, ... capped at `backoff_max`) until
//!   `max_retries` retries are used up (`1 + max_retries` attempts); then it is dead-lettered
//!   with its last error. Up to [`QueueConfig::concurrency`] attempts run at once, each as its
//!   own task: the actor never awaits an attempt.
//! - **Duplicate ids**: an id is live (pending or in flight) at most once. Enqueuing a live id
//!   queues nothing: the existing operation stands and the reply is [`Enqueued::Duplicate`]
//!   with its state. Enqueuing the id of a *dead letter* is a fresh request for the same
//!   operation: the dead letter is replaced by the new operation, queued with zero attempts
//!   ([`Enqueued::Queued`] with `replaced_dead_letter`). Completed ids are not remembered.
//! - **Dead letters**: listed (oldest death first) in [`QueueStatus::dead_letter_list`]
//!   alongside the live operations, both bounded with a count of the rest; replayed or dropped
//!   by [`Selection`]: all, or a list of ids that is applied all or nothing (an id that is not
//!   a dead letter is named in [`QueueError::NotFound`], with its live state if it has one).
//! - **Persistent**: every change is first appended to a journal (JSON lines, see
//!   `journal.rs`), replayed on start, and compacted into a snapshot when it grows. An enqueue
//!   is acknowledged only once its record is on disk (`fdatasync`), so a `kill -9` right after
//!   the reply loses nothing. Progress records (attempt started, succeeded, failed,
//!   dead-lettered) reach the OS at once and are synced lazily (within [`LAZY_SYNC`]); an
//!   operation whose completion did not reach the disk is retried after a restart: delivery
//!   is **at least once**, so executors should be idempotent (the id is the idempotency key).
//!   An attempt that was in flight when the daemon died counts as a failed attempt.
//! - **Accepted while down**: once the actor has started, the handle takes enqueues durably
//!   even while the actor is down (e.g. while `rest_for_one` keeps it stopped during its
//!   sidecar's restart backoff): it appends them, synced, to an *inbox* next to the journal
//!   (`<journal>.inbox`, the same `enq` lines), and the next start queues the inbox and removes
//!   it. Capacity and duplicate ids are checked against what the queue held when the actor
//!   went; see [`RetryQueueHandle::enqueue`].

mod actor;
mod handle;
mod journal;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use actor::{
    RetryQueueActor, RetryQueueArguments, RetryQueueMessage, RetryQueueState, retry_queue_spec,
};
pub use handle::RetryQueueHandle;

use crate::supervisor::Backoff;

/// How long a progress record may stay unsynced.
pub const LAZY_SYNC: Duration = Duration::from_secs(1);
/// At most this many operations are listed in [`QueueStatus::operations`], and as many dead
/// letters in [`QueueStatus::dead_letter_list`].
pub const STATUS_OPS_LIMIT: usize = 100;
/// The longest [`OpStatus::payload_preview`], in bytes.
pub const PREVIEW_BYTES: usize = 200;
/// At most this many operations are listed in the status-node details.
pub const DETAILS_OPS_LIMIT: usize = 5;
/// The longest accepted operation id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// The largest accepted operation (serialized), in bytes: with the two capacities, this bounds
/// the queue's memory.
pub const MAX_OP_BYTES: usize = 1 << 20;

/// What happens to an enqueue when the queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the new operation with [`EnqueueError::Full`].
    #[default]
    Reject,
    /// Move the oldest pending operation to the dead letters and accept the new one.
    DeadLetterOldest,
}

/// A retry queue's settings (the config layer converts `[session_manager.retry_queue]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Live operations (pending plus in flight) at most; at least 1. Default 1000.
    pub capacity: usize,
    /// Retries after the first attempt before an operation is dead-lettered. Default 3.
    pub max_retries: u32,
    /// Delay before the first retry; the floor of every retry delay. Default 2 s.
    pub backoff_min: Duration,
    /// Cap of the retry delay. Default 30 s.
    pub backoff_max: Duration,
    /// Deadline of one attempt. Default 30 s.
    pub attempt_timeout: Duration,
    /// Attempts in flight at once; at least 1. Default 4.
    pub concurrency: usize,
    /// What an enqueue does at capacity. Default [`OnFull::Reject`].
    pub on_full: OnFull,
    /// Dead letters kept (the oldest is discarded first). Default 1000.
    pub dead_letter_capacity: usize,
    /// The journal file (its directory is created 0700, the file 0600).
    pub journal: PathBuf,
}

impl QueueConfig {
    /// The defaults, journaling to `journal`.
    pub fn new(journal: impl Into<PathBuf>) -> Self {
        Self {
            capacity: 1000,
            max_retries: 3,
            backoff_min: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
            concurrency: 4,
            on_full: OnFull::Reject,
            dead_letter_capacity: 1000,
            journal: journal.into(),
        }
    }

    /// The same settings with out-of-range values clamped (capacities and concurrency at
    /// least 1, a non-zero attempt timeout, `backoff_max >= backoff_min`).
    pub fn normalized(mut self) -> Self {
        self.capacity = self.capacity.max(1);
        self.concurrency = self.concurrency.max(1);
        self.attempt_timeout = self.attempt_timeout.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_min);
        self
    }

    /// The retry delays as a [`Backoff`].
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.backoff_min,
            max: self.backoff_max,
            reset_after: Duration::MAX,
        }
    }

    /// The delay before the next attempt of an operation whose `attempts`-th attempt just
    /// failed: `backoff_min` after the first, then random in `[min, min·2^(attempts-1)]`,
    /// capped at `backoff_max`.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        self.backoff().delay(attempts.saturating_add(1).max(2))
    }
}

/// One queued operation, as stored in the journal and listed in the dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The caller's id: unique among live operations, the idempotency key of the executor.
    pub id: String,
    /// What to do (e.g. `post_message`); interpreted by the executor.
    pub kind: String,
    /// The operation's arguments; interpreted by the executor.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    /// When it was enqueued (Unix milliseconds).
    #[serde(default)]
    pub enqueued_at: u64,
    /// When the next attempt is due (Unix milliseconds).
    #[serde(default)]
    pub next_attempt_at: u64,
    /// The error of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Operation {
    /// A new operation, due now, with no attempts.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, payload: serde_json::Value) -> Self {
        let now = now_ms();
        Self {
            id: id.into(),
            kind: kind.into(),
            payload,
            attempts: 0,
            enqueued_at: now,
            next_attempt_at: now,
            last_error: None,
        }
    }
}

/// Runs operations; implemented by the sidecar layer (e.g. a POST to the session manager
/// through its circuit breaker). `Err` (or a panic) is a failed attempt. The future is dropped
/// when the attempt times out, so it must be cancel-safe. Closures of the same shape are
/// executors too.
pub trait Executor: Send + Sync + 'static {
    /// Attempts `op` once.
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>>;

    /// Whether attempts can start now: `None` (the default) means yes; `Some(wait)` means the
    /// target is known to be unavailable (a circuit breaker is open) for about `wait`. The
    /// queue then starts no attempt and looks again after `wait`, so an outage does not use
    /// up the operations' retries and dead-letter them.
    fn unavailable_for(&self) -> Option<std::time::Duration> {
        None
    }
}

impl<F> Executor for F
where
    F: Fn(&Operation) -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>> {
        self(op)
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is running.
    InFlight,
    /// In the dead letters.
    Dead,
}

/// The reply to an accepted enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Enqueued {
    /// Queued (durably).
    Queued {
        /// Pending operations ahead of it (0 = next in line).
        position: usize,
        /// Whether a dead letter with the same id was replaced.
        replaced_dead_letter: bool,
    },
    /// An operation with the same id is live; it stands and nothing was queued. `state` is
    /// [`OpState::Pending`] or [`OpState::InFlight`] (a dead id is replaced instead).
    Duplicate {
        /// The existing operation's state.
        state: OpState,
    },
}

/// Why an enqueue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue is at capacity (and could not make room).
    #[error("the retry queue is full ({capacity} operations)")]
    Full {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The operation is malformed (empty or too long id, larger than [`MAX_OP_BYTES`]).
    #[error("invalid operation: {0}")]
    Invalid(String),
    /// The journal could not be written; nothing was queued.
    #[error("the retry queue journal cannot be written: {0}")]
    Journal(String),
    /// The queue actor is not running or did not answer.
    #[error("the retry queue is unavailable: {0}")]
    Unavailable(String),
}

/// Which dead letters a replay or a drop is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter (a replay moves as many as fit, oldest first).
    All,
    /// These ids (duplicates ignored), all or nothing: if one is not a dead letter, or (for a
    /// replay) they do not all fit in the queue, nothing changes.
    Ids(Vec<String>),
}

/// An id asked for that is not a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotDead {
    /// The id.
    pub id: String,
    /// Where it is instead: `Some` if it is a live (pending or in-flight) operation, `None` if
    /// the queue does not know it.
    pub live: Option<OpState>,
}

/// At most this many ids are named in a [`QueueError::NotFound`] message.
const NOT_FOUND_SHOWN: usize = 10;

fn describe_not_found(ids: &[NotDead]) -> String {
    let mut out = String::from(if ids.len() == 1 {
        "no dead letter "
    } else {
        "no dead letters "
    });
    let shown: Vec<String> = ids
        .iter()
        .take(NOT_FOUND_SHOWN)
        .map(|n| match n.live {
            Some(OpState::Pending) => format!("`{}` (pending, not dead-lettered)", n.id),
            Some(OpState::InFlight) => format!("`{}` (in flight, not dead-lettered)", n.id),
            _ => format!("`{}`", n.id),
        })
        .collect();
    out.push_str(&shown.join(", "));
    if ids.len() > NOT_FOUND_SHOWN {
        out.push_str(&format!(" and {} more", ids.len() - NOT_FOUND_SHOWN));
    }
    out
}

/// Why a replay or drop of dead letters failed (in each case nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Ids that are not dead letters (in the order asked).
    #[error("{}", describe_not_found(.0))]
    NotFound(Vec<NotDead>),
    /// The queue is at capacity: nothing can be replayed.
    #[error("the retry queue is full ({capacity} operations)")]
    Full {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The queue has room for some but not all of the dead letters asked for.
    #[error(
        "the retry queue has room for {room} more operations ({capacity} at most); {requested} dead letters were asked to replay"
    )]
    NoRoom {
        /// Dead letters asked for.
        requested: usize,
        /// Free places in the queue.
        room: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The journal could not be written; nothing changed.
    #[error("the retry queue journal cannot be written: {0}")]
    Journal(String),
    /// The queue actor is not running or did not answer.
    #[error("the retry queue is unavailable: {0}")]
    Unavailable(String),
}

/// One operation in a [`QueueStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStatus {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Pending, in flight, or dead.
    pub state: OpState,
    /// Attempts started.
    pub attempts: u32,
    /// When it was enqueued (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<String>,
    /// Milliseconds until its next attempt, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_in_ms: Option<u64>,
    /// When its next attempt is due (RFC 3339, UTC), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The error of its last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The start of its payload as JSON, at most [`PREVIEW_BYTES`] (cut at a character
    /// boundary, `…` appended when cut).
    #[serde(default)]
    pub payload_preview: String,
}

/// The queue's state, for `get_retry_queue_status` and introspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QueueStatus {
    /// Operations waiting for an attempt.
    pub pending: usize,
    /// Attempts running.
    pub in_flight: usize,
    /// Dead letters kept.
    pub dead_letters: usize,
    /// Live operations at most.
    pub capacity: usize,
    /// Dead letters at most.
    pub dead_letter_capacity: usize,
    /// Attempts at once at most.
    pub concurrency: usize,
    /// Operations that succeeded (since the daemon started).
    pub succeeded: u64,
    /// Attempts that failed or timed out (since the daemon started).
    pub failed: u64,
    /// Operations moved to the dead letters (since the daemon started).
    pub dead_lettered: u64,
    /// Enqueues refused because the queue was full (since the daemon started).
    pub rejected: u64,
    /// Live operations in queue order (oldest first), at most a bounded number.
    pub operations: Vec<OpStatus>,
    /// Live operations not listed in `operations`.
    pub operations_omitted: usize,
    /// Dead letters, oldest first, at most a bounded number.
    #[serde(default)]
    pub dead_letter_list: Vec<OpStatus>,
    /// Dead letters not listed in `dead_letter_list`.
    #[serde(default)]
    pub dead_letters_omitted: usize,
    /// Operations accepted while the queue actor was down, waiting in the inbox to be queued at
    /// its next start (not counted in `pending`).
    #[serde(default)]
    pub inbox: usize,
    /// The journal's size and write figures, once the actor has opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalStats>,
}

/// The retry queue's journal figures: its size, and how its `fdatasync`s and compactions
/// have fared since the queue actor last opened it.
pub use crate::fs::JournalStats;

/// Refuses an empty or too long id.
fn check_id(op: &Operation) -> Result<(), EnqueueError> {
    if op.id.is_empty() || op.id.len() > MAX_ID_LEN {
        return Err(EnqueueError::Invalid(format!(
            "the id must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// Refuses an operation larger than [`MAX_OP_BYTES`] serialized.
fn check_size(op: &Operation) -> Result<(), EnqueueError> {
    let size = serde_json::to_vec(op).map_or(usize::MAX, |v| v.len());
    if size > MAX_OP_BYTES {
        return Err(EnqueueError::Invalid(format!(
            "the operation is {size} bytes; at most {MAX_OP_BYTES}"
        )));
    }
    Ok(())
}

/// Whether a payload's key names something secret: its value is never shown in a preview
/// (request headers and environments as a whole, and any authorization, token, secret,
/// password, API key or cookie).
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(key.as_str(), "headers" | "http_headers" | "env" | "token")
        || key.ends_with("_token")
        || [
            "authorization",
            "secret",
            "password",
            "api_key",
            "apikey",
            "cookie",
        ]
        .iter()
        .any(|word| key.contains(word))
}

/// A payload serialized with the values of [`secret_key`]s replaced by `"***"` (streamed: no
/// copy of the payload is made).
struct Redacted<'a>(&'a serde_json::Value);

impl serde::Serialize for Redacted<'_> {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(map) => {
                let mut m = out.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    if secret_key(key) {
                        m.serialize_entry(key, "***")?;
                    } else {
                        m.serialize_entry(key, &Redacted(value))?;
                    }
                }
                m.end()
            }
            serde_json::Value::Array(items) => {
                let mut seq = out.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Redacted(item))?;
                }
                seq.end()
            }
            other => other.serialize(out),
        }
    }
}

/// The first [`PREVIEW_BYTES`] of `value` as JSON, secrets masked (a preview is shown to
/// every viewer of the queue). Serialization stops there, so a large payload costs no more
/// than a small one.
pub(crate) fn preview(value: &serde_json::Value) -> String {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = (PREVIEW_BYTES + 1).saturating_sub(self.0.len());
            if room == 0 {
                return Err(std::io::Error::other("preview full"));
            }
            let n = buf.len().min(room);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::with_capacity(64));
    let complete =
        serde_json::to_writer(&mut out, &Redacted(value)).is_ok() && out.0.len() <= PREVIEW_BYTES;
    let mut bytes = out.0;
    if complete {
        return String::from_utf8(bytes).unwrap_or_default();
    }
    bytes.truncate(PREVIEW_BYTES);
    let valid = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    bytes.truncate(valid);
    let mut text = String::from_utf8(bytes).unwrap_or_default();
    text.push('…');
    text
}

/// `ms` (Unix milliseconds) in RFC 3339.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    crate::status::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}
