//! The scheduler of the built-in `cron_*` tools: `root/scheduler`, a supervised actor that
//! runs scheduled tool calls and keeps them, with their run history, in a journal under
//! `$REVKA_HOME/cron/`.
//!
//! Sits between the tool registry and the session table: the `cron_*` tools
//! (`crate::tools::builtin::cron`) ask the [`Scheduler`] handle, which talks to the actor
//! (`actor`); a run ([`runner`]) calls the job's tool through the same path as a session's
//! call ([`ToolRegistry::resolve`] + [`ToolRegistry::execute`]) in a session of its own
//! (label `cron:<job>`), created for the run with the job's workspace and its creator's tool
//! scope and ended after it.
//!
//! The rules:
//! - **A job** is `{id, name, schedule, tz, tool, arguments, workspace, scope, owner,
//!   enabled, created_at, next_run, last_run}`: a cron expression of 5 or 6 fields evaluated
//!   in an IANA time zone ([`schedule`]), the tool and its arguments, the creating session's
//!   workspace (its cwd) and client-token scope (a job never runs a tool its creator could
//!   not call: the run's session has that scope), and the creating client token (`owner`).
//! - **Who sees a job**: a session opened with a client token sees and changes only the jobs
//!   created under that same token; a session without one (minted by `POST /session` on the
//!   loopback listener, the owner's path) sees every job.
//! - **Caps**: [`MAX_JOBS`] jobs in all, [`MAX_JOBS_PER_OWNER`] per client token; arguments of
//!   at most [`MAX_ARGUMENTS`] bytes; names of at most [`MAX_NAME`] bytes.
//! - **Durable**: every change (add, update, remove) is appended to the journal and synced
//!   before the tool call is answered, so a `kill -9` right after loses nothing. A run's start
//!   is synced before the tool is called, so a run interrupted by a crash is recorded as an
//!   `error` on the next start and never run twice.
//! - **Runs**: each run is recorded (the last [`RUN_HISTORY`] per job, persisted) with
//!   `{run_id, trigger, scheduled_for, started_at, duration_ms, outcome, result}`, the result
//!   an excerpt of at most [`RESULT_EXCERPT`] bytes, and a `cron_run` line in the run log.
//!   Outcomes: `ok`; `error` (the tool failed, is unknown, or its workspace is gone: recorded,
//!   not retried; the next run is the next scheduled time); `refused` (the scope, the security
//!   policy, or the job's hourly budget refused it: `max_actions_per_hour` of `[security]`
//!   applies to each job, a run being one action); `missed`; `skipped_overlap`.
//! - **Missed runs** (the daemon was down, or the machine asleep, at a scheduled time): when
//!   the scheduler next looks, a job whose latest scheduled time passed less than
//!   [`CATCH_UP_WINDOW`] (one hour) ago runs **once** (trigger `catch_up`, however many times
//!   were missed); one whose latest scheduled time is older records one `missed` run (naming
//!   how many were missed) and resumes its schedule. Never a burst of runs.
//! - **No overlap**: a job whose run is still going when its next time comes skips that time,
//!   recorded as `skipped_overlap`.
//! - **Time**: wall-clock times are Unix milliseconds; the actor waits with tokio's timers,
//!   at most [`MAX_SLEEP`] at a time, so a wall-clock jump is noticed within it. Tests run it
//!   under paused tokio time with [`Clock::Paused`].

mod actor;
mod journal;
pub mod runner;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use ractor::{Actor, ActorRef};
use revka_actors::session::ToolScope;
use revka_actors::supervisor::{ChildContext, ChildSpec, RestartPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::tools::ToolRegistry;
pub use actor::{SchedulerActor, SchedulerMessage};

/// Jobs at most, in all.
pub const MAX_JOBS: usize = 256;
/// Jobs at most per client token (sessions without one count against [`MAX_JOBS`] only).
pub const MAX_JOBS_PER_OWNER: usize = 32;
/// Runs kept per job (the oldest go first).
pub const RUN_HISTORY: usize = 50;
/// The longest result excerpt kept per run, in bytes.
pub const RESULT_EXCERPT: usize = 4096;
/// The largest accepted `arguments`, serialized, in bytes.
pub const MAX_ARGUMENTS: usize = 64 * 1024;
/// The longest accepted job name, in bytes.
pub const MAX_NAME: usize = 100;
/// A scheduled time missed by less than this runs once when the scheduler next looks; an
/// older one is recorded as `missed`.
pub const CATCH_UP_WINDOW: Duration = Duration::from_secs(3600);
/// The longest the actor sleeps before looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long a request waits for the actor (an add or a change includes an `fdatasync`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A scheduled tool call, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `cron-` and 12 hex digits.
    pub id: String,
    /// A name for people (defaults to the tool's).
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    /// The IANA time zone it is evaluated in.
    pub tz: String,
    /// The tool called (its full name).
    pub tool: String,
    /// The call's arguments (an object).
    #[serde(default)]
    pub arguments: Value,
    /// The creating session's workspace (its cwd): the run's session's cwd.
    pub workspace: PathBuf,
    /// The creating session's tool scope, if its client token had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ToolScope>,
    /// The id of the client token of the creating session, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether it runs on its schedule.
    pub enabled: bool,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// The schedule's next time is the first after this (Unix ms): the last scheduled time
    /// handled, or when the job was created, rescheduled or enabled.
    pub anchor: i64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool answered without `isError`.
    Ok,
    /// The tool failed, is unknown, or could not be called.
    Error,
    /// The scope, the security policy or the job's hourly budget refused the call.
    Refused,
    /// The daemon was down (or the machine asleep) at the scheduled time, longer ago than the
    /// catch-up window: nothing ran.
    Missed,
    /// The previous run was still going at the scheduled time: nothing ran.
    SkippedOverlap,
}

impl Outcome {
    /// Its name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Refused => "refused",
            Self::Missed => "missed",
            Self::SkippedOverlap => "skipped_overlap",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its scheduled time.
    Schedule,
    /// A scheduled time missed while the daemon was down, less than the catch-up window ago.
    CatchUp,
    /// `cron_run`.
    Manual,
}

/// One run of a job, as persisted and listed by `cron_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `run-` and 12 hex digits.
    pub run_id: String,
    /// What started it.
    pub trigger: Trigger,
    /// The scheduled time it is for (Unix ms); none for a manual run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<i64>,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The start of the tool's result (JSON), or what happened instead; at most
    /// [`RESULT_EXCERPT`] bytes.
    #[serde(default)]
    pub result: String,
    /// Whether `result` was cut.
    #[serde(default)]
    pub truncated: bool,
}

impl RunRecord {
    /// The record as the tools show it (times in RFC 3339).
    pub fn view(&self) -> Value {
        serde_json::json!({
            "run_id": self.run_id,
            "trigger": self.trigger,
            "scheduled_for": self.scheduled_for.map(schedule::rfc3339),
            "started_at": schedule::rfc3339(self.started_at),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome.as_str(),
            "result": self.result,
            "truncated": self.truncated,
        })
    }
}

/// What a run of a job produced ([`Runner::run`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// How it ended (`ok`, `error` or `refused`).
    pub outcome: Outcome,
    /// The tool's result as JSON, or what happened instead.
    pub result: String,
}

/// Runs a job's tool call. The daemon's is [`runner::ToolRunner`]; tests use their own.
pub trait Runner: Send + Sync + 'static {
    /// Runs `job` once (`run_id` names the run in the run log).
    fn run(&self, job: &Job, run_id: &str) -> BoxFuture<'static, RunResult>;
}

/// The scheduler's clock: wall time in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// `wall` at `at`, advancing with tokio's clock (which tests pause and advance).
    Paused {
        /// The wall time at `at` (Unix ms).
        wall: i64,
        /// The tokio instant `wall` corresponds to.
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock at `wall` (Unix ms) now, advancing with tokio's time.
    pub fn paused_at(wall: i64) -> Self {
        Self::Paused {
            wall,
            at: tokio::time::Instant::now(),
        }
    }

    /// The time now (Unix ms).
    pub fn now(&self) -> i64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            Self::Paused { wall, at } => {
                wall + i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
            }
        }
    }
}

/// Why a scheduler request failed; each message is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// No job with this id (or none the caller may see).
    #[error("no cron job `{0}` (cron_list shows the jobs)")]
    NotFound(String),
    /// An argument is wrong; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// A cap is reached; the text names it.
    #[error("{0}")]
    Limit(String),
    /// `cron_run` of a job whose run is going.
    #[error("cron job `{0}` has a run in progress; runs of one job never overlap")]
    Running(String),
    /// The journal could not be written: nothing changed.
    #[error("the cron journal cannot be written ({0}); nothing changed")]
    Journal(String),
    /// The scheduler actor is not running or did not answer.
    #[error("the scheduler is not available: {0}")]
    Unavailable(String),
}

/// Who asks: the client token of the calling session, if it has one. `None` sees every job.
pub type Viewer = Option<String>;

/// A new job, as `cron_add` asks for it (checked by the actor: caps, schedule, time zone).
#[derive(Debug, Clone)]
pub struct NewJob {
    /// A name (defaults to the tool's).
    pub name: Option<String>,
    /// The cron expression.
    pub schedule: String,
    /// The time zone (default `UTC`).
    pub tz: Option<String>,
    /// The tool's full name.
    pub tool: String,
    /// Its arguments (an object).
    pub arguments: Value,
    /// The creating session's cwd.
    pub workspace: PathBuf,
    /// The creating session's scope.
    pub scope: Option<ToolScope>,
    /// The creating session's client token.
    pub owner: Option<String>,
}

/// A change to a job (`cron_update`): each field given replaces the job's.
#[derive(Debug, Clone, Default)]
pub struct JobChange {
    /// A new expression.
    pub schedule: Option<String>,
    /// A new time zone.
    pub tz: Option<String>,
    /// New arguments.
    pub arguments: Option<Value>,
    /// Enabled or disabled.
    pub enabled: Option<bool>,
    /// A new name.
    pub name: Option<String>,
}

/// The cheap, cloneable front of the scheduler: what the `cron_*` tools call. The actor
/// attaches itself when it starts and detaches when it stops; requests while it is down fail
/// with [`CronError::Unavailable`].
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    /// `$REVKA_HOME/cron`.
    dir: PathBuf,
    runner: Arc<dyn Runner>,
    clock: Clock,
    /// The registry the runs and the tools' checks resolve tools in, once attached.
    registry: Arc<OnceLock<Weak<ToolRegistry>>>,
    actor: RwLock<Option<ActorRef<SchedulerMessage>>>,
    /// What the actor last published for introspection (`root/scheduler`'s details).
    summary: std::sync::Mutex<Value>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// The daemon's scheduler: journal under `home/cron`, runs through the tool registry
    /// ([`Scheduler::attach_registry`]) in sessions of `sessions`, each job within `policy`'s
    /// hourly action budget.
    pub fn new(
        home: &Path,
        sessions: Arc<revka_actors::session::Sessions>,
        policy: Arc<crate::security::Policy>,
    ) -> Self {
        let registry: Arc<OnceLock<Weak<ToolRegistry>>> = Arc::default();
        let runner = runner::ToolRunner::new(sessions, policy, registry.clone());
        Self::build(home.join("cron"), Arc::new(runner), Clock::System, registry)
    }

    /// A scheduler journaling in `dir`, running jobs with `runner`, on `clock` (tests).
    pub fn with_runner(dir: PathBuf, runner: Arc<dyn Runner>, clock: Clock) -> Self {
        Self::build(dir, runner, clock, Arc::default())
    }

    fn build(
        dir: PathBuf,
        runner: Arc<dyn Runner>,
        clock: Clock,
        registry: Arc<OnceLock<Weak<ToolRegistry>>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                runner,
                clock,
                registry,
                actor: RwLock::new(None),
                summary: std::sync::Mutex::new(Value::Null),
            }),
        }
    }

    /// Gives the scheduler the registry to run tools in (once; the registry is built with
    /// the `cron_*` tools in it, so it exists only after them). Held weakly: the registry
    /// holds the tools, which hold the scheduler.
    pub fn attach_registry(&self, registry: &Arc<ToolRegistry>) {
        let _ = self.inner.registry.set(Arc::downgrade(registry));
    }

    /// The registry, once attached and while it lives.
    pub fn registry(&self) -> Option<Arc<ToolRegistry>> {
        self.inner.registry.get().and_then(Weak::upgrade)
    }

    /// The journal's directory (`$REVKA_HOME/cron`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The time now on the scheduler's clock (Unix ms).
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// The scheduler's figures for introspection: jobs, enabled, running, the next run, the
    /// journal's path.
    pub fn summary(&self) -> Value {
        self.inner
            .summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, summary: Value) {
        *self
            .inner
            .summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = summary;
    }

    fn attach(&self, actor: ActorRef<SchedulerMessage>) {
        *self
            .inner
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(actor);
    }

    fn detach(&self, actor: &ractor::ActorId) {
        let mut slot = self
            .inner
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|a| a.get_id() == *actor) {
            *slot = None;
        }
    }

    fn actor(&self) -> Result<ActorRef<SchedulerMessage>, CronError> {
        self.inner
            .actor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| CronError::Unavailable("the scheduler actor is not running".into()))
    }

    /// Sends a request and waits for its answer (at most [`CALL_TIMEOUT`] unless `wait`).
    async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CronError>>) -> SchedulerMessage,
        wait: Option<Duration>,
    ) -> Result<T, CronError> {
        let actor = self.actor()?;
        let (tx, rx) = oneshot::channel();
        actor
            .send_message(make(tx))
            .map_err(|_| CronError::Unavailable("the scheduler actor stopped".into()))?;
        let answer = match wait {
            Some(limit) => tokio::time::timeout(limit, rx)
                .await
                .map_err(|_| CronError::Unavailable("the scheduler did not answer".into()))?,
            None => rx.await,
        };
        answer
            .map_err(|_| CronError::Unavailable("the scheduler stopped before answering".into()))?
    }

    /// Adds a job; its view (see `cron_list`).
    pub async fn add(&self, job: NewJob) -> Result<Value, CronError> {
        self.ask(
            |tx| SchedulerMessage::Add(Box::new(job), tx),
            Some(CALL_TIMEOUT),
        )
        .await
    }

    /// The jobs `viewer` may see, by id.
    pub async fn list(&self, viewer: Viewer) -> Result<Vec<Value>, CronError> {
        self.ask(|tx| SchedulerMessage::List(viewer, tx), Some(CALL_TIMEOUT))
            .await
    }

    /// Changes job `id`; its new view.
    pub async fn update(
        &self,
        viewer: Viewer,
        id: String,
        change: JobChange,
    ) -> Result<Value, CronError> {
        self.ask(
            |tx| SchedulerMessage::Update(viewer, id, Box::new(change), tx),
            Some(CALL_TIMEOUT),
        )
        .await
    }

    /// Removes job `id`; its last view. A run in progress finishes; it is not recorded.
    pub async fn remove(&self, viewer: Viewer, id: String) -> Result<Value, CronError> {
        self.ask(
            |tx| SchedulerMessage::Remove(viewer, id, tx),
            Some(CALL_TIMEOUT),
        )
        .await
    }

    /// Runs job `id` now (enabled or not) and waits for the run's record.
    pub async fn run_now(&self, viewer: Viewer, id: String) -> Result<RunRecord, CronError> {
        self.ask(|tx| SchedulerMessage::RunNow(viewer, id, tx), None)
            .await
    }

    /// Job `id`'s view and its last `limit` runs, newest first.
    pub async fn runs(
        &self,
        viewer: Viewer,
        id: String,
        limit: usize,
    ) -> Result<(Value, Vec<RunRecord>), CronError> {
        self.ask(
            |tx| SchedulerMessage::Runs(viewer, id, limit, tx),
            Some(CALL_TIMEOUT),
        )
        .await
    }
}

/// The child spec of the scheduler actor (`root/scheduler`), attaching to `scheduler`.
pub fn scheduler_spec(scheduler: Scheduler, policy: RestartPolicy) -> ChildSpec {
    ChildSpec::new(
        "scheduler",
        "scheduler",
        policy,
        move |ctx: ChildContext| {
            let scheduler = scheduler.clone();
            async move {
                let shown = scheduler.clone();
                ctx.node.set_details(Arc::new(move || shown.summary()));
                let (actor, _) =
                    SchedulerActor::spawn_linked(None, SchedulerActor, scheduler, ctx.supervisor)
                        .await?;
                Ok(actor.get_cell())
            }
        },
    )
}

/// A random id: `prefix` and 12 hex digits.
fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS random source failed: a time-based id is still unique enough here (the actor
        // checks for a clash).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}
