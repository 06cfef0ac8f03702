//! The scheduler's append-only journal: `$REVKA_HOME/cron/jobs.jsonl`.
//!
//! Part of the scheduler ([`super`]); only its actor writes it. One JSON object per line,
//! tagged by `t`:
//!
//! ```text
//! {"t":"job","job":{..}}                              a job added, or its new state
//! {"t":"rm","id":"cron-…"}                            a job removed
//! {"t":"start","id":"cron-…","run_id":"run-…","trigger":"schedule","scheduled_for":..,"started_at":..}
//! {"t":"run","id":"cron-…","run":{..}}                a run's record (it ended, or was missed or skipped)
//! ```
//!
//! Loading replays the lines in order; a torn last line (a crash mid-write) is cut off with a
//! warning, a corrupt line elsewhere is skipped with one; loading never panics. A `start`
//! without its `run` is a run a crash interrupted: the actor records it as an `error`. A
//! compaction writes a snapshot (a `job` line per job, then its kept runs) through
//! [`revka_actors::fs::write_atomic_with`] (a temporary file, synced, renamed over the
//! journal, the directory synced), so a crash leaves the old journal or the new one. The
//! directory is made private (0700) and the file, opened with
//! [`revka_actors::fs::open_in_place`], is 0600: a link planted at its path is refused, never
//! followed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use revka_actors::fs;
use serde::{Deserialize, Serialize};

use super::{Job, RunRecord, Trigger};

/// Compaction is due when the journal holds more than `COMPACT_FACTOR` records per live one
/// (a job or a kept run)...
const COMPACT_FACTOR: u64 = 4;
/// ... plus this slack ...
const COMPACT_SLACK: u64 = 256;
/// ... or when it outgrows this size and twice its size after the last compaction.
const COMPACT_BYTES: u64 = 8 << 20;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub(super) enum Record {
    /// A job was added or changed: its whole new state.
    #[serde(rename = "job")]
    Job { job: Box<Job> },
    /// A job was removed.
    #[serde(rename = "rm")]
    Removed { id: String },
    /// A run started.
    #[serde(rename = "start")]
    Started {
        id: String,
        run_id: String,
        trigger: Trigger,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled_for: Option<i64>,
        started_at: i64,
    },
    /// A run's record.
    #[serde(rename = "run")]
    Run { id: String, run: Box<RunRecord> },
}

/// The open journal.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    bytes: u64,
    base_bytes: u64,
    records: u64,
}

impl Journal {
    /// Opens (creating) the journal at `path`, its directory made private, and feeds every
    /// readable record to `apply`.
    pub(super) fn open(path: &Path, apply: impl FnMut(Record)) -> io::Result<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            fs::ensure_private_dir(dir).map_err(io::Error::other)?;
        }
        let read_append = OpenOptions::new().read(true).append(true).clone();
        let file =
            match fs::open_in_place(path, read_append.clone().create_new(true), fs::PRIVATE_FILE) {
                Ok(created) => {
                    if let Some(dir) = dir {
                        fs::sync_dir(dir).map_err(io::Error::other)?;
                    }
                    created
                }
                Err(fs::FsError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    fs::open_in_place(path, &read_append, fs::PRIVATE_FILE)
                        .map_err(io::Error::other)?
                }
                Err(e) => return Err(io::Error::other(e)),
            };
        let replayed = fs::replay_jsonl::<Record>(&file, path, "cron journal", apply)?;
        let (good_len, records) = (replayed.bytes, replayed.records);
        Ok(Self {
            path: path.to_owned(),
            file,
            bytes: good_len,
            base_bytes: good_len,
            records,
        })
    }

    /// The journal's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and syncs them to disk. On an error they are cut off again: they
    /// must not outlive a refusal.
    pub(super) fn append_durable(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| off_worker(|| self.file.sync_data()));
        if let Err(e) = written {
            let _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.bytes += buf.len() as u64;
        self.records += records.len() as u64;
        Ok(())
    }

    /// Whether the journal is large against the `live` records a snapshot would hold.
    pub(super) fn needs_compaction(&self, live: usize) -> bool {
        self.records > COMPACT_FACTOR * live as u64 + COMPACT_SLACK
            || self.bytes > COMPACT_BYTES.max(2 * self.base_bytes)
    }

    /// Replaces the journal by a snapshot made of `records`.
    pub(super) fn compact(&mut self, records: Vec<Record>) -> io::Result<()> {
        let (bytes, count) = off_worker(|| {
            fs::write_atomic_with(&self.path, fs::PRIVATE_FILE, |file| {
                write_snapshot(file, &records)
            })
            .map_err(io::Error::other)
        })?;
        let append = OpenOptions::new().append(true).clone();
        self.file =
            fs::open_in_place(&self.path, &append, fs::PRIVATE_FILE).map_err(io::Error::other)?;
        self.bytes = bytes;
        self.base_bytes = bytes;
        self.records = count;
        Ok(())
    }
}

/// Runs a disk sync without holding up the runtime's other tasks (see the retry queue's
/// journal: `block_in_place` on a multi-thread runtime, a plain call elsewhere).
fn off_worker<T>(sync: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(sync)
        }
        _ => sync(),
    }
}

fn write_snapshot(file: &mut File, records: &[Record]) -> io::Result<(u64, u64)> {
    let mut out = BufWriter::new(&*file);
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    Ok((file.metadata()?.len(), records.len() as u64))
}
