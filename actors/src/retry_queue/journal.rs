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
//! pair per dead letter) through [`crate::fs::write_atomic_with`] (a temporary file, synced,
//! renamed over the journal, the directory synced), so a crash leaves either the old journal
//! or the new one. The journal and its inbox are opened in place by [`crate::fs::open_in_place`]:
//! a link planted at their path is refused, never followed.

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{JournalStats, Operation};
use crate::fs;

/// Compaction is due when the journal holds more than `COMPACT_FACTOR` records per live one...
const COMPACT_FACTOR: u64 = 4;
/// ... plus this slack (so a nearly empty queue is not compacted on every record) ...
const COMPACT_SLACK: u64 = 256;
/// ... or when it outgrows this size and twice its size after the last compaction.
const COMPACT_BYTES: u64 = 8 << 20;

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

/// What loading found besides the records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LoadReport {
    /// Records replayed.
    pub(super) records: u64,
    /// Corrupt lines skipped.
    pub(super) skipped: u64,
    /// Whether the last line was torn (and ignored).
    pub(super) torn: bool,
}

/// The open journal.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    /// Current size.
    bytes: u64,
    /// Size right after the last compaction.
    base_bytes: u64,
    /// Records in the file.
    records: u64,
    /// Whether records were written since the last sync.
    dirty: bool,
    /// Syncs, their latency and compactions since the journal was opened.
    stats: SyncStats,
}

/// How the journal's writes have fared since it was opened.
#[derive(Debug, Default, Clone, Copy)]
struct SyncStats {
    syncs: u64,
    last_sync_us: Option<u64>,
    max_sync_us: u64,
    total_sync_us: u64,
    compactions: u64,
}

impl Journal {
    /// Opens (creating) the journal at `path` and feeds every readable record to `apply`. A
    /// file it creates has its directory synced, so the first record synced into it is not
    /// lost with the directory entry on a power failure.
    pub(super) fn open(path: &Path, apply: impl FnMut(Record)) -> io::Result<(Self, LoadReport)> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            fs::ensure_private_dir(dir)?;
        }
        let read_append = OpenOptions::new().read(true).append(true).clone();
        let created =
            fs::open_in_place(path, read_append.clone().create_new(true), fs::PRIVATE_FILE);
        let file = match created {
            Ok(created) => {
                if let Some(dir) = dir {
                    off_worker(|| Ok(fs::sync_dir(dir)?))?;
                }
                created
            }
            Err(fs::FsError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                fs::open_in_place(path, &read_append, fs::PRIVATE_FILE)?
            }
            Err(e) => return Err(e.into()),
        };
        let replayed = fs::replay_jsonl::<Record>(&file, path, "retry queue journal", apply)?;
        let report = LoadReport {
            records: replayed.records,
            skipped: replayed.skipped,
            torn: replayed.torn,
        };
        let good_len = replayed.bytes;
        let journal = Self {
            path: path.to_owned(),
            file,
            bytes: good_len,
            base_bytes: good_len,
            records: report.records,
            dirty: false,
            stats: SyncStats::default(),
        };
        Ok((journal, report))
    }

    /// The journal's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's size in bytes.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `records` without syncing. On an error the file is cut back to its previous
    /// length, so a failed write never leaves half a line for the next one to glue onto.
    pub(super) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        if let Err(e) = self.file.write_all(&buf) {
            let _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.bytes += buf.len() as u64;
        self.records += records.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Appends `records` and syncs them (and everything before them) to disk. On an error the
    /// records are cut off again: they must not outlive a refusal.
    pub(super) fn append_durable(&mut self, records: &[Record]) -> io::Result<()> {
        let (bytes, count) = (self.bytes, self.records);
        self.append(records)?;
        if let Err(e) = self.sync() {
            let _ = self.file.set_len(bytes);
            (self.bytes, self.records) = (bytes, count);
            return Err(e);
        }
        Ok(())
    }

    /// Syncs the written records to disk, if any are unsynced.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            let started = std::time::Instant::now();
            off_worker(|| self.file.sync_data())?;
            self.record_sync(started.elapsed());
            self.dirty = false;
        }
        Ok(())
    }

    fn record_sync(&mut self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let s = &mut self.stats;
        s.syncs += 1;
        s.last_sync_us = Some(us);
        s.max_sync_us = s.max_sync_us.max(us);
        s.total_sync_us = s.total_sync_us.saturating_add(us);
    }

    /// The journal's figures for `get_journal_health` and introspection.
    pub(super) fn stats(&self) -> JournalStats {
        let s = &self.stats;
        JournalStats {
            path: self.path.display().to_string(),
            bytes: self.bytes,
            records: self.records,
            syncs: s.syncs,
            last_sync_us: s.last_sync_us,
            max_sync_us: s.max_sync_us,
            mean_sync_us: s.total_sync_us.checked_div(s.syncs).unwrap_or(0),
            compactions: s.compactions,
        }
    }

    /// Whether the journal is large against the `live` records a snapshot would hold.
    pub(super) fn needs_compaction(&self, live: usize) -> bool {
        self.records > COMPACT_FACTOR * live as u64 + COMPACT_SLACK
            || self.bytes > COMPACT_BYTES.max(2 * self.base_bytes)
    }

    /// Replaces the journal by a snapshot made of `records`.
    pub(super) fn compact(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let (bytes, count) = off_worker(|| {
            Ok(fs::write_atomic_with(
                &self.path,
                fs::PRIVATE_FILE,
                |file| write_snapshot(file, records),
            )?)
        })?;
        let append = OpenOptions::new().append(true).clone();
        self.file = fs::open_in_place(&self.path, &append, fs::PRIVATE_FILE)?;
        self.bytes = bytes;
        self.base_bytes = bytes;
        self.records = count;
        self.dirty = false;
        self.stats.compactions += 1;
        Ok(())
    }
}

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
        off_worker(|| Ok(fs::sync_dir(dir)?))?;
    }
    Ok(())
}

/// Runs `sync`, a disk sync that may take milliseconds, without holding up the runtime's
/// other tasks: on a multi-thread runtime the worker hands them to another thread for the
/// duration (`block_in_place`). With one worker, the default on 2 cores, an `fdatasync` in
/// the queue's actor would otherwise stall every tool call of the daemon. Elsewhere (a
/// current-thread runtime, a blocking thread) it just runs.
pub(super) fn off_worker<T>(sync: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(sync)
        }
        _ => sync(),
    }
}

/// Writes a snapshot into `file` (synced and renamed into place by the caller); returns its
/// size and record count.
fn write_snapshot(
    file: &mut File,
    records: impl IntoIterator<Item = Record>,
) -> io::Result<(u64, u64)> {
    let mut out = BufWriter::new(&*file);
    let mut count = 0u64;
    for r in records {
        serde_json::to_writer(&mut out, &r).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    drop(out);
    Ok((file.metadata()?.len(), count))
}
