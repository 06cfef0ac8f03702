//! The scheduler under paused tokio time: jobs run on time, the journal survives a restart,
//! missed runs follow the catch-up rule, runs never overlap, failures are recorded once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::Actor;
use serde_json::json;

use super::*;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

/// Counts runs; each takes `takes` (tokio time) and ends with `outcome`.
struct Counting {
    runs: AtomicUsize,
    takes: Duration,
    outcome: Outcome,
    seen: Mutex<Vec<String>>,
}

impl Counting {
    fn new(takes: Duration, outcome: Outcome) -> Arc<Self> {
        Arc::new(Self {
            runs: AtomicUsize::new(0),
            takes,
            outcome,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn count(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Runner for Counting {
    fn run(&self, job: &Job, _: &str) -> BoxFuture<'static, RunResult> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(job.tool.clone());
        let (takes, outcome) = (self.takes, self.outcome);
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            RunResult {
                outcome,
                result: json!({"content": [{"type": "text", "text": "done"}]}).to_string(),
            }
        })
    }
}

fn new_job(schedule: &str) -> NewJob {
    NewJob {
        name: None,
        schedule: schedule.into(),
        tz: None,
        tool: "fault__echo".into(),
        arguments: json!({"text": "hi"}),
        workspace: std::env::temp_dir(),
        scope: None,
        owner: None,
    }
}

async fn start(scheduler: &Scheduler) -> ActorRef<SchedulerMessage> {
    let (actor, _) = SchedulerActor::spawn(None, SchedulerActor, scheduler.clone())
        .await
        .unwrap();
    actor
}

/// A scheduler over the journal in `dir` whose runs go to `runner`, its wall clock paused at
/// `at` (milliseconds since the epoch), started.
async fn boot(
    dir: &std::path::Path,
    runner: &Arc<Counting>,
    at: i64,
) -> (Scheduler, ActorRef<SchedulerMessage>) {
    let scheduler = Scheduler::with_runner(dir.join("cron"), runner.clone(), Clock::paused_at(at));
    let actor = start(&scheduler).await;
    (scheduler, actor)
}

async fn stop(actor: ActorRef<SchedulerMessage>) {
    actor.stop_and_wait(None, None).await.unwrap();
}

/// Lets the spawned tasks and the actor catch up without moving the clock much.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_on_time_every_minute() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    // 30 s past a minute: the first run is at +30 s.
    let (scheduler, actor) = boot(dir.path(), &runner, T0 + 30_000).await;
    let job = scheduler.add(new_job("* * * * *")).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["next_run"], "2026-01-01T00:01:00Z");
    tokio::time::sleep(Duration::from_secs(29)).await;
    settle().await;
    assert_eq!(runner.count(), 0, "not before its time");
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(runner.count(), 1, "at 00:01");
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    settle().await;
    assert_eq!(runner.count(), 6, "00:01 to 00:06");
    let (view, runs) = scheduler.runs(None, id.clone(), 50).await.unwrap();
    assert_eq!(runs.len(), 6);
    assert!(
        runs.iter()
            .all(|r| r.outcome == Outcome::Ok && r.trigger == Trigger::Schedule)
    );
    assert_eq!(
        runs[0].scheduled_for.map(schedule::rfc3339).as_deref(),
        Some("2026-01-01T00:06:00Z")
    );
    assert!(runs[0].result.contains("done"));
    assert_eq!(view["next_run"], "2026-01-01T00:07:00Z");
    // Disabled, it stops; removed, it is gone.
    scheduler
        .update(
            None,
            id.clone(),
            JobChange {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(180)).await;
    settle().await;
    assert_eq!(runner.count(), 6);
    scheduler.remove(None, id.clone()).await.unwrap();
    assert_eq!(
        scheduler.runs(None, id.clone(), 5).await.unwrap_err(),
        CronError::NotFound(id)
    );
    stop(actor).await;
}

#[tokio::test(start_paused = true)]
async fn jobs_and_runs_survive_a_restart_and_missed_runs_follow_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0).await;
    let every_minute = scheduler.add(new_job("* * * * *")).await.unwrap();
    let hourly = scheduler.add(new_job("30 * * * *")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    assert_eq!(runner.count(), 1);
    stop(actor).await;

    // Down for 10 minutes: the every-minute job missed 10 runs less than an hour ago and runs
    // once (catch-up); the hourly one missed nothing.
    let wall = T0 + 61_000 + 10 * 60_000;
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, wall).await;
    settle().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runner.count(), 1, "one catch-up run, not ten");
    let id = every_minute["id"].as_str().unwrap().to_owned();
    let (_, runs) = scheduler.runs(None, id.clone(), 50).await.unwrap();
    assert_eq!(
        runs.len(),
        2,
        "the run before the restart is kept: {runs:?}"
    );
    assert_eq!(runs[0].trigger, Trigger::CatchUp);
    assert_eq!(runs[1].trigger, Trigger::Schedule);
    let hourly_id = hourly["id"].as_str().unwrap().to_owned();
    assert!(
        scheduler
            .runs(None, hourly_id.clone(), 5)
            .await
            .unwrap()
            .1
            .is_empty()
    );
    stop(actor).await;

    // Down for a day (back at 00:41:31 the next day): the every-minute job's latest time was
    // 31 s ago and the hourly job's (00:30) 11 minutes ago, both within the hour: each runs
    // once, however many times it missed.
    let wall = wall + 24 * 3_600_000 + 30 * 60_000 + 30_000;
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, wall).await;
    settle().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, hourly_runs) = scheduler.runs(None, hourly_id, 5).await.unwrap();
    assert_eq!(hourly_runs.len(), 1);
    assert_eq!(hourly_runs[0].trigger, Trigger::CatchUp);
    assert_eq!(runner.count(), 2, "one run each, never a burst");
    stop(actor).await;
}

#[tokio::test(start_paused = true)]
async fn a_miss_older_than_the_window_is_recorded_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0).await;
    // Daily at 00:10 UTC.
    let job = scheduler.add(new_job("10 0 * * *")).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    stop(actor).await;
    // Back at 05:00: 00:10 was missed by almost five hours.
    let runner = Counting::new(Duration::from_millis(10), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0 + 5 * 3_600_000).await;
    settle().await;
    assert_eq!(runner.count(), 0);
    let (view, runs) = scheduler.runs(None, id, 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Outcome::Missed);
    assert!(
        runs[0].result.contains("missed 1 scheduled run"),
        "{}",
        runs[0].result
    );
    assert_eq!(view["next_run"], "2026-01-02T00:10:00Z");
    stop(actor).await;
}

#[tokio::test(start_paused = true)]
async fn runs_never_overlap_and_failures_are_recorded_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Every second, each run taking 2.5 s and failing.
    let runner = Counting::new(Duration::from_millis(2500), Outcome::Error);
    let (scheduler, actor) = boot(dir.path(), &runner, T0).await;
    let job = scheduler.add(new_job("* * * * * *")).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    settle().await;
    let (_, runs) = scheduler.runs(None, id.clone(), 50).await.unwrap();
    let started = runner.count();
    assert!(
        (2..=3).contains(&started),
        "{started} runs in 6.5 s of 2.5 s each"
    );
    let errors = runs.iter().filter(|r| r.outcome == Outcome::Error).count();
    let skipped = runs
        .iter()
        .filter(|r| r.outcome == Outcome::SkippedOverlap)
        .count();
    assert!(errors >= 2, "{runs:?}");
    assert!(skipped >= 3, "{runs:?}");
    // A manual run while one is going is refused.
    let manual = scheduler.run_now(None, id.clone()).await;
    if let Err(e) = manual {
        assert_eq!(e, CronError::Running(id.clone()));
    }
    stop(actor).await;
}

#[tokio::test(start_paused = true)]
async fn caps_and_bad_values_are_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Counting::new(Duration::from_millis(1), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0).await;
    let mut bad = new_job("* * *");
    assert!(matches!(
        scheduler.add(bad.clone()).await,
        Err(CronError::Invalid(_))
    ));
    bad.schedule = "* * * * *".into();
    bad.tz = Some("Nowhere/Town".into());
    let e = scheduler.add(bad.clone()).await.unwrap_err();
    assert!(e.to_string().contains("Nowhere/Town"), "{e}");
    bad.tz = None;
    bad.arguments = json!([1]);
    assert!(matches!(
        scheduler.add(bad).await,
        Err(CronError::Invalid(_))
    ));
    let mut owned = new_job("* * * * *");
    owned.owner = Some("tok1".into());
    for _ in 0..MAX_JOBS_PER_OWNER {
        scheduler.add(owned.clone()).await.unwrap();
    }
    let e = scheduler.add(owned.clone()).await.unwrap_err();
    assert!(matches!(e, CronError::Limit(_)), "{e}");
    // Another token sees none of them; no token sees all.
    assert!(
        scheduler
            .list(Some("tok2".into()))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        scheduler.list(None).await.unwrap().len(),
        MAX_JOBS_PER_OWNER
    );
    let some = scheduler.list(None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        scheduler
            .remove(Some("tok2".into()), some.clone())
            .await
            .unwrap_err(),
        CronError::NotFound(some)
    );
    stop(actor).await;
    // Without the actor, requests fail precisely.
    let e = scheduler.list(None).await.unwrap_err();
    assert!(matches!(e, CronError::Unavailable(_)), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_run_interrupted_by_a_crash_is_recorded_as_an_error_and_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Counting::new(Duration::from_secs(3600), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0).await;
    let job = scheduler.add(new_job("* * * * *")).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    assert_eq!(runner.count(), 1);
    // Killed mid-run.
    actor.kill();
    settle().await;
    let runner = Counting::new(Duration::from_millis(1), Outcome::Ok);
    let (scheduler, actor) = boot(dir.path(), &runner, T0 + 61_000 + 20_000).await;
    settle().await;
    let (_, runs) = scheduler.runs(None, id, 5).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, Outcome::Error);
    assert!(runs[0].result.contains("interrupted"));
    assert_eq!(runner.count(), 0, "the interrupted time is not run again");
    stop(actor).await;
}

#[test]
fn the_journal_is_private_and_refuses_a_planted_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cron = dir.path().join("cron");
    let journal = journal::Journal::open(&cron.join("jobs.jsonl"), "cron journal", |_| {}).unwrap();
    drop(journal);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cron), 0o700);
    assert_eq!(mode(&cron.join("jobs.jsonl")), 0o600);
    let other = dir.path().join("elsewhere");
    std::fs::write(&other, "").unwrap();
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&other, linked.join("jobs.jsonl")).unwrap();
    let e = journal::Journal::open(&linked.join("jobs.jsonl"), "cron journal", |_| {}).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
}
