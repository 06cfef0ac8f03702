//! An append-only JSON-lines journal with compaction: the retry queue's
//! (`retry_queue/journal.rs`) and the daemon's cron scheduler's (`src/scheduler/journal.rs`).
//! Part of [`crate::fs`]; each owner defines its record type and when to compact.
//!
//! - **Open** ([`Journal::open`]): the directory is made private, the file created (its
//!   directory synced, so the first synced record does not vanish with the entry on a power
//!   failure) or opened in place (no link followed), and replayed by [`super::replay_jsonl`]
//!   (corrupt lines skipped, a torn tail cut).
//! - **Append** ([`Journal::append`], [`Journal::append_durable`]): one line per record; a
//!   failed write (or, durably, a failed sync) cuts the file back, so a refused change never
//!   outlives its refusal and no half line is left for the next one to glue onto.
//! - **Compact** ([`Journal::compact`]): a snapshot of the live records written by
//!   [`super::write_atomic_with`] (a crash leaves the old journal or the new one), due by
//!   [`Journal::needs_compaction`]'s rule.
//! - Syncs run through [`off_worker`], so an `fdatasync` never stalls the runtime's other
//!   tasks; their latency is kept for [`JournalStats`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{PRIVATE_FILE, Replayed};

/// Compaction is due when the journal holds more than `COMPACT_FACTOR` records per live one...
const COMPACT_FACTOR: u64 = 4;
/// ... plus this slack (so a nearly empty journal is not compacted on every record) ...
const COMPACT_SLACK: u64 = 256;
/// ... or when it outgrows this size and twice its size after the last compaction.
const COMPACT_BYTES: u64 = 8 << 20;

/// A journal's size, and how its `fdatasync`s and compactions have fared since it was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JournalStats {
    /// The journal file.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Records in it (compaction rewrites it to the live ones).
    pub records: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// The latest `fdatasync`, in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_us: Option<u64>,
    /// The slowest `fdatasync`, in µs.
    pub max_sync_us: u64,
    /// The mean `fdatasync`, in µs.
    pub mean_sync_us: u64,
    /// Compactions.
    pub compactions: u64,
}

/// An open journal of records `R`: opened with replay, appended to, synced and compacted as
/// the [`fs` module](crate::fs) notes say.
#[derive(Debug)]
pub struct Journal<R> {
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
    syncs: u64,
    last_sync_us: Option<u64>,
    max_sync_us: u64,
    total_sync_us: u64,
    compactions: u64,
    _records: PhantomData<fn(R)>,
}

impl<R: Serialize + DeserializeOwned> Journal<R> {
    /// Opens (creating) the journal at `path` and feeds every readable record to `apply`;
    /// `what` names it in warnings.
    pub fn open(path: &Path, what: &str, apply: impl FnMut(R)) -> io::Result<(Self, Replayed)> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            super::ensure_private_dir(dir)?;
        }
        let read_append = OpenOptions::new().read(true).append(true).clone();
        let created =
            super::open_in_place(path, read_append.clone().create_new(true), PRIVATE_FILE);
        let file = match created {
            Ok(created) => {
                if let Some(dir) = dir {
                    off_worker(|| Ok(super::sync_dir(dir)?))?;
                }
                created
            }
            Err(super::FsError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                super::open_in_place(path, &read_append, PRIVATE_FILE)?
            }
            Err(e) => return Err(e.into()),
        };
        let replayed = super::replay_jsonl::<R>(&file, path, what, apply)?;
        let journal = Self {
            path: path.to_owned(),
            file,
            bytes: replayed.bytes,
            base_bytes: replayed.bytes,
            records: replayed.records,
            dirty: false,
            syncs: 0,
            last_sync_us: None,
            max_sync_us: 0,
            total_sync_us: 0,
            compactions: 0,
            _records: PhantomData,
        };
        Ok((journal, replayed))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `records` without syncing. On an error the file is cut back to its previous
    /// length, so a failed write never leaves half a line for the next one to glue onto.
    pub fn append(&mut self, records: &[R]) -> io::Result<()> {
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
    pub fn append_durable(&mut self, records: &[R]) -> io::Result<()> {
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
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            let started = std::time::Instant::now();
            off_worker(|| self.file.sync_data())?;
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.syncs += 1;
            self.last_sync_us = Some(us);
            self.max_sync_us = self.max_sync_us.max(us);
            self.total_sync_us = self.total_sync_us.saturating_add(us);
            self.dirty = false;
        }
        Ok(())
    }

    /// The journal's figures (for `get_journal_health` and introspection).
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            path: self.path.display().to_string(),
            bytes: self.bytes,
            records: self.records,
            syncs: self.syncs,
            last_sync_us: self.last_sync_us,
            max_sync_us: self.max_sync_us,
            mean_sync_us: self.total_sync_us.checked_div(self.syncs).unwrap_or(0),
            compactions: self.compactions,
        }
    }

    /// Whether the journal is large against the `live` records a snapshot would hold.
    pub fn needs_compaction(&self, live: usize) -> bool {
        self.records > COMPACT_FACTOR * live as u64 + COMPACT_SLACK
            || self.bytes > COMPACT_BYTES.max(2 * self.base_bytes)
    }

    /// Replaces the journal by a snapshot made of `records`.
    pub fn compact(&mut self, records: impl IntoIterator<Item = R>) -> io::Result<()> {
        let (bytes, count) = off_worker(|| {
            Ok(super::write_atomic_with(
                &self.path,
                PRIVATE_FILE,
                |file| write_snapshot(file, records),
            )?)
        })?;
        let append = OpenOptions::new().append(true).clone();
        self.file = super::open_in_place(&self.path, &append, PRIVATE_FILE)?;
        self.bytes = bytes;
        self.base_bytes = bytes;
        self.records = count;
        self.dirty = false;
        self.compactions += 1;
        Ok(())
    }
}

/// Runs `sync`, a disk sync that may take milliseconds, without holding up the runtime's
/// other tasks: on a multi-thread runtime the worker hands them to another thread for the
/// duration (`block_in_place`). With one worker, the default on 2 cores, an `fdatasync` in an
/// actor would otherwise stall every tool call of the daemon. Elsewhere (a current-thread
/// runtime, a blocking thread) it just runs.
pub fn off_worker<T>(sync: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
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
fn write_snapshot<R: Serialize>(
    file: &mut File,
    records: impl IntoIterator<Item = R>,
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
