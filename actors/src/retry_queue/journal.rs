//! The retry queue's append-only journal.
//!
//! One JSON object per line, tagged by `t`:
//!
//! ```text
//! {"t":"enq","op":{"id":"a","kind":"post","payload":{..},"attempts":0,"enqueued_at":..,"next_attempt_at":..}}
//! {"t":"try","id":"a"}                       an attempt started (attempts + 1)
//! {"t":"ok","id":"a"}                        it succeeded: the operation is gone
//! {"t":"fail","id":"a","err":"..","next_ms":1700000000000}   failed; next attempt due then (Unix ms)
//! {"t":"dead","id":"a","err":".."}           moved to the dead letters
//! {"t":"replay","id":"a"}                    a dead letter back to pending, attempts reset
//! {"t":"drop","id":"a"}                      a dead letter discarded
//! ```
//!
//! Loading replays the lines in order. A torn last line (a crash mid-write) is ignored with a
//! warning, as is a corrupt line anywhere else; loading never panics. A compaction writes a
//! snapshot (an `enq` per live operation, a `try` per operation in flight, an `enq` + `dead`
//! pair per dead letter). Opening, appending, syncing and compacting are
//! [`crate::fs::Journal`]'s (a compaction is atomic: a crash leaves either the old journal or
//! the new one). The journal and its inbox are opened in place by
//! [`crate::fs::open_in_place`]: a link planted at their path is refused, never followed.

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Operation;
use crate::fs;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub(super) enum Record {
    /// An operation was queued.
    #[serde(rename = "enq")]
    Enqueued { op: Operation },
    /// An attempt started.
    #[serde(rename = "try")]
    Started { id: String },
    /// The operation succeeded.
    #[serde(rename = "ok")]
    Succeeded { id: String },
    /// An attempt failed; the next one is due at `next_ms` (Unix ms).
    #[serde(rename = "fail")]
    Failed {
        id: String,
        err: String,
        next_ms: u64,
    },
    /// The operation was dead-lettered.
    #[serde(rename = "dead")]
    Dead { id: String, err: String },
    /// A dead letter was replayed.
    #[serde(rename = "replay")]
    Replayed { id: String },
    /// A dead letter was dropped.
    #[serde(rename = "drop")]
    Dropped { id: String },
}

/// The queue's journal: [`crate::fs::Journal`] of [`Record`]s.
pub(super) type Journal = fs::Journal<Record>;

/// The inbox of the journal at `journal`: `<journal>.inbox`, `enq` lines the handle appends
/// while the actor is down (see `handle.rs`).
pub(super) fn inbox_path(journal: &Path) -> PathBuf {
    let mut name = journal.file_name().unwrap_or_default().to_owned();
    name.push(".inbox");
    journal.with_file_name(name)
}

/// Removes `path` and syncs its directory, so the removal survives a crash.
pub(super) fn remove_synced(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::off_worker(|| Ok(fs::sync_dir(dir)?))?;
    }
    Ok(())
}
