//! The run log: line format, batching, rotation, health, and its file's safety.

use super::*;

#[test]
fn records_rotate_at_the_threshold_and_keep_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = RunLog::new(dir.path().join("runlogs"));
    log.record("tool_call", json!({ "tool": "x", "ok": true }));
    log.flush();
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

fn lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("run.jsonl")).map_or(0, |s| s.lines().count())
}

#[test]
fn a_line_is_ts_and_kind_then_the_fields_and_a_non_object_is_refused() {
    #[derive(serde::Serialize)]
    struct Fields<'a> {
        tool: &'a str,
        error: Option<String>,
    }
    #[derive(serde::Serialize)]
    struct Nothing {}
    let dir = tempfile::tempdir().unwrap();
    let log = RunLog::new(dir.path().to_owned());
    log.record_with(
        "tool\"call",
        &Fields {
            tool: "a\nb",
            error: None,
        },
    );
    log.record_with("empty", &Nothing {});
    log.record("wrapped", json!([1, 2]));
    log.record_with("refused", &[1, 2]);
    log.flush();
    let text = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&lines[0]), ["error", "kind", "tool", "ts"]);
    assert_eq!(lines[0]["kind"], "tool\"call");
    assert_eq!(lines[0]["tool"], "a\nb");
    assert_eq!(lines[0]["error"], Value::Null);
    assert!(
        humantime::parse_rfc3339(lines[0]["ts"].as_str().unwrap()).is_ok(),
        "{text}"
    );
    assert_eq!(keys(&lines[1]), ["kind", "ts"]);
    assert_eq!(lines[2]["value"], json!([1, 2]));
    assert_eq!(
        log.errors.load(Ordering::Relaxed),
        1,
        "the array is refused"
    );
}

#[test]
fn the_writer_thread_writes_queued_records_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(RunLog::new(dir.path().to_owned()));
    for i in 0..100 {
        log.record("tool_call", json!({ "n": i }));
    }
    assert_eq!(lines(dir.path()), 0, "queued, not yet written");
    spawn_writer(&log);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(dir.path()) < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
    let order: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>());
    let health = log.health();
    assert_eq!(
        (health["writes"].as_u64(), health["batches"].as_u64()),
        (Some(100), Some(1))
    );
    // Later records are written too, without a flush.
    log.record("tool_call", json!({ "n": 100 }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(dir.path()) < 101 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lines(dir.path()), 101);
}

#[test]
fn a_full_batch_is_written_by_the_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let log = RunLog::new(dir.path().to_owned());
    let big = "z".repeat(MAX_PENDING / 2 + 1);
    log.record("filler", json!({ "data": big }));
    assert_eq!(lines(dir.path()), 0);
    log.record("filler", json!({ "data": big }));
    assert_eq!(
        lines(dir.path()),
        1,
        "the first batch was written to make room"
    );
    log.flush();
    assert_eq!(lines(dir.path()), 2);
}

#[test]
fn supervision_and_breaker_events_are_audited_under_their_own_kinds() {
    let targets = audit_targets();
    for target in [
        "revka_actors::supervisor",
        "revka_actors::breaker",
        "revka_actors::breaker::handle",
    ] {
        assert!(
            targets.would_enable(target, &tracing::Level::INFO),
            "{target}"
        );
        assert!(
            !targets.would_enable(target, &tracing::Level::DEBUG),
            "{target}"
        );
    }
    assert!(!targets.would_enable("revka_actors::retry_queue", &tracing::Level::WARN));
    assert!(!targets.would_enable("revka::gateway", &tracing::Level::ERROR));
    assert_eq!(kind_of("revka_actors::breaker"), "breaker");
    assert_eq!(kind_of("revka_actors::supervisor"), "supervision");
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

#[test]
fn a_link_planted_at_the_log_is_refused_and_reported_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("run.jsonl")).unwrap();
    let log = RunLog::new(dir.path().to_owned());
    log.record("tool_call", json!({ "tool": "x" }));
    let health = log.health();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(health["status"], "error", "{health}");
    assert_eq!(health["write_errors"], 1, "{health}");
    let reason = health["last_error"].as_str().unwrap();
    assert!(reason.contains("run.jsonl is a symbolic link"), "{reason}");
}
