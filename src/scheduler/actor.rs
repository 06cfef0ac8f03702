//! [`SchedulerActor`]: owns the jobs and their journal, wakes at the next scheduled time, runs
//! jobs as tasks.
//!
//! Part of the scheduler ([`super`]). Every change is journaled (and synced) before it is
//! applied and answered. A run is a spawned task (the actor never awaits one) that reports
//! back with [`SchedulerMessage::Finished`]; one timer task wakes the actor at the earliest
//! next time (at most [`MAX_SLEEP`] away). A start attaches to the [`Scheduler`] handle and
//! loads the journal (`post_start`), then handles what is due, which is where the missed-runs
//! rule applies; dropping the state (a stop, a failure) aborts the runs and the timer and
//! detaches: the journal says which runs were going, and the next start records them as
//! interrupted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::journal::{Journal, Record};
use super::schedule::{Schedule, rfc3339};
use super::{
    CATCH_UP_WINDOW, CronError, Job, JobChange, MAX_ARGUMENTS, MAX_JOBS, MAX_JOBS_PER_OWNER,
    MAX_NAME, MAX_SLEEP, NewJob, Outcome, RESULT_EXCERPT, RUN_HISTORY, RunRecord, RunResult,
    Scheduler, Trigger, Viewer, new_id,
};

/// Where a request's answer goes.
type Reply<T> = oneshot::Sender<Result<T, CronError>>;

/// A run whose lateness is above this (or that stands for several scheduled times) is a
/// catch-up run.
const LATE_MS: i64 = 10_000;

/// The scheduler actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedulerActor;

/// Messages of [`SchedulerActor`].
#[derive(Debug)]
pub enum SchedulerMessage {
    /// Add a job (answered once durable).
    Add(Box<NewJob>, Reply<Value>),
    /// The jobs a viewer may see.
    List(Viewer, Reply<Vec<Value>>),
    /// Change a job.
    Update(Viewer, String, Box<JobChange>, Reply<Value>),
    /// Remove a job.
    Remove(Viewer, String, Reply<Value>),
    /// Run a job now; answered with the run's record when it ends.
    RunNow(Viewer, String, Reply<RunRecord>),
    /// A job's view and its last runs, newest first.
    Runs(Viewer, String, usize, Reply<(Value, Vec<RunRecord>)>),
    /// Internal: time to look at what is due.
    Tick,
    /// Internal: a run ended.
    Finished {
        /// The job.
        id: String,
        /// The run.
        run_id: String,
        /// What it produced.
        result: RunResult,
    },
}

/// One job and what the actor knows of it.
struct Entry {
    job: Job,
    /// `None` when the job's schedule no longer parses (a time zone gone from the system).
    schedule: Option<Schedule>,
    runs: VecDeque<RunRecord>,
    /// The next scheduled time (Unix ms), while enabled.
    next: Option<i64>,
    /// A run the journal says started and never ended (found at load).
    interrupted: Option<(String, Trigger, Option<i64>, i64)>,
}

/// A run in progress.
struct Running {
    run_id: String,
    trigger: Trigger,
    scheduled_for: Option<i64>,
    started_at: i64,
    started: tokio::time::Instant,
    waiters: Vec<Reply<RunRecord>>,
    task: tokio::task::AbortHandle,
    /// The job as it was when the run started.
    job: Job,
}

/// State of [`SchedulerActor`].
pub struct SchedulerState {
    scheduler: Scheduler,
    me: ActorId,
    journal: Option<Journal>,
    jobs: BTreeMap<String, Entry>,
    running: HashMap<String, Running>,
    timer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerState")
            .field("jobs", &self.jobs.len())
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Drop for SchedulerState {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.scheduler.detach(&self.me);
    }
}

impl Actor for SchedulerActor {
    type Msg = SchedulerMessage;
    type State = SchedulerState;
    type Arguments = Scheduler;

    async fn pre_start(
        &self,
        myself: ActorRef<SchedulerMessage>,
        scheduler: Scheduler,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        // Requests sent from now on wait in the mailbox until the journal is loaded.
        scheduler.attach(myself.clone());
        Ok(SchedulerState {
            scheduler,
            me: myself.get_id(),
            journal: None,
            jobs: BTreeMap::new(),
            running: HashMap::new(),
            timer: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SchedulerMessage>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        state.load()?;
        state.pump(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<SchedulerMessage>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        state.scheduler.detach(&state.me);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedulerMessage>,
        msg: SchedulerMessage,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMessage::Add(job, reply) => {
                let _ = reply.send(state.add(*job));
            }
            SchedulerMessage::List(viewer, reply) => {
                let jobs = state
                    .jobs
                    .values()
                    .filter(|e| visible(&viewer, &e.job))
                    .map(|e| state.view(e))
                    .collect();
                let _ = reply.send(Ok(jobs));
            }
            SchedulerMessage::Update(viewer, id, change, reply) => {
                let _ = reply.send(state.update(&viewer, &id, *change));
            }
            SchedulerMessage::Remove(viewer, id, reply) => {
                let _ = reply.send(state.remove(&viewer, &id));
            }
            SchedulerMessage::RunNow(viewer, id, reply) => {
                if let Err((e, reply)) = state.run_now(&myself, &viewer, &id, reply) {
                    let _ = reply.send(Err(e));
                }
            }
            SchedulerMessage::Runs(viewer, id, limit, reply) => {
                let answer = state.entry(&viewer, &id).map(|e| {
                    let runs = e.runs.iter().rev().take(limit).cloned().collect();
                    (state.view(e), runs)
                });
                let _ = reply.send(answer);
            }
            SchedulerMessage::Tick => {}
            SchedulerMessage::Finished { id, run_id, result } => {
                state.finished(&id, &run_id, result);
            }
        }
        state.pump(&myself);
        Ok(())
    }
}

/// Whether `viewer` may see `job`: a client token sees its own jobs, no token sees all.
fn visible(viewer: &Viewer, job: &Job) -> bool {
    viewer.is_none() || viewer.as_deref() == job.owner.as_deref()
}

impl SchedulerState {
    fn now(&self) -> i64 {
        self.scheduler.now()
    }

    fn journal(&mut self) -> Result<&mut Journal, CronError> {
        self.journal
            .as_mut()
            .ok_or_else(|| CronError::Unavailable("the cron journal is not open".into()))
    }

    /// Appends and syncs `records`.
    fn write(&mut self, records: &[Record]) -> Result<(), CronError> {
        let journal = self.journal()?;
        journal.append_durable(records).map_err(|e| {
            tracing::warn!(path = %journal.path().display(), error = %e, "cron journal: write failed");
            CronError::Journal(e.to_string())
        })
    }

    /// Loads the journal, then records the runs a crash interrupted.
    fn load(&mut self) -> Result<(), ActorProcessingErr> {
        let path = self.scheduler.dir().join("jobs.jsonl");
        let jobs = &mut self.jobs;
        let (journal, _) = Journal::open(&path, "cron journal", |record| apply(jobs, record))
            .map_err(|e| format!("cannot open the cron journal {}: {e}", path.display()))?;
        self.journal = Some(journal);
        let now = self.now();
        let mut records = Vec::new();
        for entry in self.jobs.values_mut() {
            if entry.schedule.is_none() {
                entry.schedule = Schedule::parse(&entry.job.schedule, &entry.job.tz)
                    .map_err(|e| {
                        tracing::warn!(job = %entry.job.id, error = %e, "cron job: its schedule no longer parses; it does not run");
                    })
                    .ok();
            }
            if let Some((run_id, trigger, scheduled_for, started_at)) = entry.interrupted.take() {
                let run = RunRecord {
                    run_id,
                    trigger,
                    scheduled_for,
                    started_at,
                    duration_ms: u64::try_from(now - started_at).unwrap_or(0),
                    outcome: Outcome::Error,
                    result: "interrupted: the daemon stopped during this run (it is not retried)"
                        .into(),
                    truncated: false,
                };
                push_run(&mut entry.runs, run.clone());
                records.push(Record::Run {
                    id: entry.job.id.clone(),
                    run: Box::new(run),
                });
            }
            entry.next = next_of(entry);
        }
        if !records.is_empty() {
            self.write(&records)
                .map_err(|e| format!("cannot record interrupted runs: {e}"))?;
        }
        tracing::info!(jobs = self.jobs.len(), path = %path.display(), "cron jobs loaded");
        Ok(())
    }

    fn entry(&self, viewer: &Viewer, id: &str) -> Result<&Entry, CronError> {
        self.jobs
            .get(id)
            .filter(|e| visible(viewer, &e.job))
            .ok_or_else(|| CronError::NotFound(id.to_owned()))
    }

    fn add(&mut self, new: NewJob) -> Result<Value, CronError> {
        if self.jobs.len() >= MAX_JOBS {
            return Err(CronError::Limit(format!(
                "the scheduler holds {MAX_JOBS} cron jobs, the most it keeps; remove one first \
                 (cron_remove)"
            )));
        }
        if let Some(owner) = &new.owner {
            let owned = self
                .jobs
                .values()
                .filter(|e| e.job.owner.as_ref() == Some(owner))
                .count();
            if owned >= MAX_JOBS_PER_OWNER {
                return Err(CronError::Limit(format!(
                    "this client token has {MAX_JOBS_PER_OWNER} cron jobs, the most one token \
                     may have; remove one first (cron_remove)"
                )));
            }
        }
        let tz = new.tz.unwrap_or_else(|| "UTC".to_owned());
        let schedule = Schedule::parse(&new.schedule, &tz).map_err(CronError::Invalid)?;
        let now = self.now();
        if schedule.next_after(now).is_none() {
            return Err(CronError::Invalid(format!(
                "`schedule` {:?} never fires after now",
                new.schedule
            )));
        }
        let name = check_name(new.name.unwrap_or_else(|| new.tool.clone()))?;
        check_arguments(&new.arguments)?;
        let mut id = new_id("cron-");
        while self.jobs.contains_key(&id) {
            id = new_id("cron-");
        }
        let job = Job {
            id: id.clone(),
            name,
            schedule: new.schedule.trim().to_owned(),
            tz,
            tool: new.tool,
            arguments: new.arguments,
            workspace: new.workspace,
            scope: new.scope,
            owner: new.owner,
            enabled: true,
            created_at: now,
            anchor: now,
        };
        self.write(&[Record::Job {
            job: Box::new(job.clone()),
        }])?;
        let mut entry = Entry {
            job,
            schedule: Some(schedule),
            runs: VecDeque::new(),
            next: None,
            interrupted: None,
        };
        entry.next = next_of(&entry);
        tracing::info!(job = %id, tool = %entry.job.tool, schedule = %entry.job.schedule, tz = %entry.job.tz, "cron job added");
        let view = self.view(&entry);
        self.jobs.insert(id, entry);
        Ok(view)
    }

    fn update(&mut self, viewer: &Viewer, id: &str, change: JobChange) -> Result<Value, CronError> {
        let now = self.now();
        let entry = self.entry(viewer, id)?;
        let mut job = entry.job.clone();
        let mut schedule = entry.schedule.clone();
        if change.schedule.is_some() || change.tz.is_some() {
            let expr = change.schedule.unwrap_or_else(|| job.schedule.clone());
            let tz = change.tz.unwrap_or_else(|| job.tz.clone());
            let parsed = Schedule::parse(&expr, &tz).map_err(CronError::Invalid)?;
            if parsed.next_after(now).is_none() {
                return Err(CronError::Invalid(format!(
                    "`schedule` {expr:?} never fires after now"
                )));
            }
            job.schedule = expr.trim().to_owned();
            job.tz = tz;
            job.anchor = now;
            schedule = Some(parsed);
        }
        if let Some(arguments) = change.arguments {
            check_arguments(&arguments)?;
            job.arguments = arguments;
        }
        if let Some(name) = change.name {
            job.name = check_name(name)?;
        }
        if let Some(enabled) = change.enabled {
            if enabled && !job.enabled {
                // No catch-up for the time it was disabled.
                job.anchor = now;
            }
            job.enabled = enabled;
        }
        self.write(&[Record::Job {
            job: Box::new(job.clone()),
        }])?;
        let Some(entry) = self.jobs.get_mut(id) else {
            return Err(CronError::NotFound(id.to_owned()));
        };
        entry.job = job;
        entry.schedule = schedule;
        entry.next = next_of(entry);
        tracing::info!(job = %id, "cron job updated");
        let entry = &self.jobs[id];
        Ok(self.view(entry))
    }

    fn remove(&mut self, viewer: &Viewer, id: &str) -> Result<Value, CronError> {
        let view = self.view(self.entry(viewer, id)?);
        self.write(&[Record::Removed { id: id.to_owned() }])?;
        self.jobs.remove(id);
        tracing::info!(job = %id, "cron job removed");
        Ok(view)
    }

    #[allow(clippy::result_large_err)]
    fn run_now(
        &mut self,
        myself: &ActorRef<SchedulerMessage>,
        viewer: &Viewer,
        id: &str,
        reply: Reply<RunRecord>,
    ) -> Result<(), (CronError, Reply<RunRecord>)> {
        if let Err(e) = self.entry(viewer, id) {
            return Err((e, reply));
        }
        if self.running.contains_key(id) {
            return Err((CronError::Running(id.to_owned()), reply));
        }
        match self.start(myself, id, Trigger::Manual, None) {
            Ok(()) => {
                if let Some(running) = self.running.get_mut(id) {
                    running.waiters.push(reply);
                }
                Ok(())
            }
            Err(e) => Err((e, reply)),
        }
    }

    /// Starts a run of job `id`: journals its start (synced), then spawns it.
    fn start(
        &mut self,
        myself: &ActorRef<SchedulerMessage>,
        id: &str,
        trigger: Trigger,
        scheduled_for: Option<i64>,
    ) -> Result<(), CronError> {
        let Some(entry) = self.jobs.get(id) else {
            return Err(CronError::NotFound(id.to_owned()));
        };
        let job = entry.job.clone();
        let run_id = new_id("run-");
        let started_at = self.now();
        self.write(&[Record::Started {
            id: id.to_owned(),
            run_id: run_id.clone(),
            trigger,
            scheduled_for,
            started_at,
        }])?;
        let runner = self.scheduler.inner.runner.clone();
        let (me, task_job, task_run) = (myself.clone(), job.clone(), run_id.clone());
        let task = tokio::spawn(async move {
            let result = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                runner.run(&task_job, &task_run)
            })) {
                Err(_) => None,
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await.ok(),
            };
            let result = result.unwrap_or_else(|| RunResult {
                outcome: Outcome::Error,
                result: "the run failed internally (a panic)".into(),
            });
            let _ = me.send_message(SchedulerMessage::Finished {
                id: task_job.id,
                run_id: task_run,
                result,
            });
        });
        self.running.insert(
            id.to_owned(),
            Running {
                run_id,
                trigger,
                scheduled_for,
                started_at,
                started: tokio::time::Instant::now(),
                waiters: Vec::new(),
                task: task.abort_handle(),
                job,
            },
        );
        Ok(())
    }

    fn finished(&mut self, id: &str, run_id: &str, result: RunResult) {
        if self.running.get(id).is_none_or(|r| r.run_id != run_id) {
            return;
        }
        let Some(running) = self.running.remove(id) else {
            return;
        };
        let (excerpt, truncated) = excerpt(&result.result);
        let run = RunRecord {
            run_id: running.run_id,
            trigger: running.trigger,
            scheduled_for: running.scheduled_for,
            started_at: running.started_at,
            duration_ms: u64::try_from(running.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome: result.outcome,
            result: excerpt,
            truncated,
        };
        runlog(&running.job, &run);
        if self.jobs.contains_key(id) {
            let record = Record::Run {
                id: id.to_owned(),
                run: Box::new(run.clone()),
            };
            if let Err(e) = self.write(&[record]) {
                tracing::warn!(job = %id, error = %e, "cron run not journaled");
            }
            if let Some(entry) = self.jobs.get_mut(id) {
                push_run(&mut entry.runs, run.clone());
            }
        }
        for waiter in running.waiters {
            let _ = waiter.send(Ok(run.clone()));
        }
    }

    /// Records a run that did not happen (missed or skipped) for the scheduled time `at`.
    fn record_not_run(&mut self, id: &str, outcome: Outcome, at: i64, why: String) {
        let run = RunRecord {
            run_id: new_id("run-"),
            trigger: Trigger::Schedule,
            scheduled_for: Some(at),
            started_at: self.now(),
            duration_ms: 0,
            outcome,
            result: why,
            truncated: false,
        };
        if let Err(e) = self.write(&[Record::Run {
            id: id.to_owned(),
            run: Box::new(run.clone()),
        }]) {
            tracing::warn!(job = %id, error = %e, "cron run not journaled");
        }
        if let Some(entry) = self.jobs.get_mut(id) {
            runlog(&entry.job, &run);
            push_run(&mut entry.runs, run);
        }
    }

    /// Handles what is due (the missed-runs and overlap rules), compacts the journal when it
    /// is due, and re-arms the timer.
    fn pump(&mut self, myself: &ActorRef<SchedulerMessage>) {
        let now = self.now();
        let due: Vec<(String, i64)> = self
            .jobs
            .iter()
            .filter_map(|(id, e)| e.next.filter(|&n| n <= now).map(|n| (id.clone(), n)))
            .collect();
        for (id, next) in due {
            self.due(myself, &id, next, now);
        }
        self.compact();
        self.arm(myself, now);
        self.scheduler.publish(json!({
            "jobs": self.jobs.len(),
            "enabled": self.jobs.values().filter(|e| e.job.enabled).count(),
            "running": self.running.len(),
            "next_run": self.jobs.values().filter_map(|e| e.next).min().map(rfc3339),
            "journal": self.journal.as_ref().map(|j| j.path().display().to_string()),
        }));
    }

    /// Job `id` was due at `next` (and maybe since): runs it once, or records why not.
    fn due(&mut self, myself: &ActorRef<SchedulerMessage>, id: &str, next: i64, now: i64) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let Some(schedule) = entry.schedule.clone() else {
            entry.next = None;
            return;
        };
        let last = schedule.last_at_or_before(now).unwrap_or(next).max(next);
        let count = schedule.count_between(next, last, 1000);
        entry.job.anchor = last;
        entry.next = schedule.next_after(now.max(last));
        let late = now - last;
        if late >= CATCH_UP_WINDOW.as_millis() as i64 {
            let more = if count >= 1000 { "1000 or more" } else { "" };
            let times = if more.is_empty() {
                count.to_string()
            } else {
                more.to_owned()
            };
            let why = format!(
                "missed {times} scheduled run(s), the latest at {} ({} min before the scheduler \
                 could run it): the daemon was not running; missed runs older than {} min are \
                 not caught up, the job resumes its schedule",
                rfc3339(last),
                late / 60_000,
                CATCH_UP_WINDOW.as_secs() / 60
            );
            tracing::info!(job = %id, missed = count, "cron job: scheduled runs missed");
            self.record_not_run(id, Outcome::Missed, last, why);
            return;
        }
        if self.running.contains_key(id) {
            let why = format!(
                "skipped: the run started at {} was still going (runs of one job never overlap)",
                self.running
                    .get(id)
                    .map(|r| rfc3339(r.started_at))
                    .unwrap_or_default()
            );
            self.record_not_run(id, Outcome::SkippedOverlap, last, why);
            return;
        }
        let trigger = if count > 1 || late > LATE_MS {
            Trigger::CatchUp
        } else {
            Trigger::Schedule
        };
        if let Err(e) = self.start(myself, id, trigger, Some(last)) {
            tracing::warn!(job = %id, error = %e, "cron run not started");
        }
    }

    /// Compacts the journal when it holds many more records than jobs and runs.
    fn compact(&mut self) {
        let live: usize = self.jobs.values().map(|e| 1 + e.runs.len()).sum();
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if !journal.needs_compaction(live) {
            return;
        }
        let mut snapshot = Vec::with_capacity(live);
        for entry in self.jobs.values() {
            snapshot.push(Record::Job {
                job: Box::new(entry.job.clone()),
            });
            for run in &entry.runs {
                snapshot.push(Record::Run {
                    id: entry.job.id.clone(),
                    run: Box::new(run.clone()),
                });
            }
        }
        // Runs in progress keep their start, so a crash still finds them interrupted.
        for (id, r) in &self.running {
            if self.jobs.contains_key(id) {
                snapshot.push(Record::Started {
                    id: id.clone(),
                    run_id: r.run_id.clone(),
                    trigger: r.trigger,
                    scheduled_for: r.scheduled_for,
                    started_at: r.started_at,
                });
            }
        }
        if let Err(e) = journal.compact(snapshot) {
            tracing::warn!(path = %journal.path().display(), error = %e, "cron journal: compaction failed");
        }
    }

    /// Wakes the actor at the earliest next time, at most [`MAX_SLEEP`] from now.
    fn arm(&mut self, myself: &ActorRef<SchedulerMessage>, now: i64) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        let Some(next) = self.jobs.values().filter_map(|e| e.next).min() else {
            return;
        };
        let wait = u64::try_from(next - now)
            .map(std::time::Duration::from_millis)
            .unwrap_or_default()
            .min(MAX_SLEEP);
        let me = myself.clone();
        self.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = me.send_message(SchedulerMessage::Tick);
        }));
    }

    /// A job as the tools show it.
    fn view(&self, entry: &Entry) -> Value {
        let job = &entry.job;
        let last = entry.runs.back().map(|r| {
            json!({
                "run_id": r.run_id,
                "started_at": rfc3339(r.started_at),
                "outcome": r.outcome.as_str(),
            })
        });
        json!({
            "id": job.id,
            "name": job.name,
            "schedule": job.schedule,
            "tz": job.tz,
            "tool": job.tool,
            "arguments": job.arguments,
            "workspace": job.workspace,
            "scope": job.scope.as_ref().map(|s| s.patterns().to_vec()),
            "owner": job.owner,
            "enabled": job.enabled,
            "created_at": rfc3339(job.created_at),
            "next_run": entry.next.map(rfc3339),
            "last_run": last,
            "running": self.running.contains_key(&job.id),
            "runs_kept": entry.runs.len(),
            "schedule_error": entry.schedule.is_none().then_some("the schedule no longer parses (its time zone may be gone); update it"),
        })
    }
}

/// Replays one journal record into `jobs`.
fn apply(jobs: &mut BTreeMap<String, Entry>, record: Record) {
    match record {
        Record::Job { job } => match jobs.get_mut(&job.id) {
            Some(entry) => {
                entry.job = *job;
                entry.schedule = None;
            }
            None => {
                jobs.insert(
                    job.id.clone(),
                    Entry {
                        job: *job,
                        schedule: None,
                        runs: VecDeque::new(),
                        next: None,
                        interrupted: None,
                    },
                );
            }
        },
        Record::Removed { id } => {
            jobs.remove(&id);
        }
        Record::Started {
            id,
            run_id,
            trigger,
            scheduled_for,
            started_at,
        } => {
            if let Some(entry) = jobs.get_mut(&id) {
                if let Some(at) = scheduled_for {
                    entry.job.anchor = entry.job.anchor.max(at);
                }
                entry.interrupted = Some((run_id, trigger, scheduled_for, started_at));
            }
        }
        Record::Run { id, run } => {
            if let Some(entry) = jobs.get_mut(&id) {
                if let Some(at) = run.scheduled_for {
                    entry.job.anchor = entry.job.anchor.max(at);
                }
                if entry
                    .interrupted
                    .as_ref()
                    .is_some_and(|(run_id, ..)| *run_id == run.run_id)
                {
                    entry.interrupted = None;
                }
                push_run(&mut entry.runs, *run);
            }
        }
    }
}

/// The next scheduled time of an enabled job with a schedule.
fn next_of(entry: &Entry) -> Option<i64> {
    if !entry.job.enabled {
        return None;
    }
    entry.schedule.as_ref()?.next_after(entry.job.anchor)
}

fn push_run(runs: &mut VecDeque<RunRecord>, run: RunRecord) {
    runs.push_back(run);
    while runs.len() > RUN_HISTORY {
        runs.pop_front();
    }
}

fn check_name(name: String) -> Result<String, CronError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(CronError::Invalid(format!(
            "`name` must be 1 to {MAX_NAME} bytes of printable text"
        )));
    }
    Ok(name)
}

fn check_arguments(arguments: &Value) -> Result<(), CronError> {
    if !arguments.is_object() {
        return Err(CronError::Invalid(
            "`arguments` must be an object (the tool's arguments)".into(),
        ));
    }
    let size = serde_json::to_vec(arguments).map_or(usize::MAX, |v| v.len());
    if size > MAX_ARGUMENTS {
        return Err(CronError::Invalid(format!(
            "`arguments` is {size} bytes; at most {MAX_ARGUMENTS}"
        )));
    }
    Ok(())
}

/// `text` cut to [`RESULT_EXCERPT`] bytes at a character boundary, and whether it was cut.
fn excerpt(text: &str) -> (String, bool) {
    if text.len() <= RESULT_EXCERPT {
        return (text.to_owned(), false);
    }
    let mut end = RESULT_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// The run's `cron_run` line in the run log.
fn runlog(job: &Job, run: &RunRecord) {
    let Some(log) = crate::runlog::get() else {
        return;
    };
    let error = matches!(run.outcome, Outcome::Error | Outcome::Refused)
        .then(|| run.result.chars().take(300).collect::<String>());
    log.record(
        "cron_run",
        json!({
            "job": job.id,
            "name": job.name,
            "tool": job.tool,
            "run_id": run.run_id,
            "trigger": run.trigger,
            "scheduled_for": run.scheduled_for.map(rfc3339),
            "started_at": rfc3339(run.started_at),
            "duration_ms": run.duration_ms,
            "outcome": run.outcome.as_str(),
            "error": error,
        }),
    );
}
