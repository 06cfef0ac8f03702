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
//! compaction writes a snapshot (a `job` line per job, then its kept runs). Opening,
//! appending (each change synced before it is acknowledged) and compacting are
//! [`revka_actors::fs::Journal`]'s: a compaction is atomic (a crash leaves the old journal or
//! the new one), the directory is made private (0700) and the file, opened in place, is 0600:
//! a link planted at its path is refused, never followed.

use revka_actors::fs;
use serde::{Deserialize, Serialize};

use super::{Job, RunRecord, Trigger};

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

/// The scheduler's journal: [`revka_actors::fs::Journal`] of [`Record`]s.
pub(super) type Journal = fs::Journal<Record>;
