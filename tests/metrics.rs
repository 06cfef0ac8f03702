//! `GET /metrics` of a live daemon with sessions open, calls made, an actor restarted and a
//! circuit breaker open: `promtool check metrics` accepts it without a warning, and no session
//! id or session label appears in it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use revka_actors::metrics::{Sample, lint_exposition};
use serde_json::json;

use crate::harness::{DEADLINE, Served, metric_value, try_within_async};

/// A session manager that cannot start (no such program), and a breaker that opens on the
/// first failure: the cheapest way to a breaker with an open state and rejections.
const BROKEN_SIDECAR: &str = r#"
[session_manager]
enabled = true
command = ["/nonexistent/revka-test-sidecar"]

[session_manager.breaker]
failure_threshold = 1
recovery_timeout_secs = 600
max_recovery_timeout_secs = 600
"#;

/// Labels chosen to be findable: none is a word the exposition uses otherwise.
const LABELS: [&str; 3] = ["alice-laptop-7f3", "ci runner \"nightly\"", "dash/zq9"];

/// `promtool`, if installed. Missing: a failure under `REVKA_REQUIRE_INTEROP=1` (CI installs
/// Debian's `prometheus` package), else a skip with a note.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var("REVKA_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "promtool is not installed (Debian: apt-get install prometheus); .ci/run installs it"
    );
    eprintln!("skipping: promtool not installed (Debian: apt-get install prometheus)");
    None
}

/// `promtool check metrics` over `text`: its exit status and everything it printed.
fn promtool_check(promtool: &str, text: &str) -> (Option<i32>, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_live_metrics_and_no_session_id_or_label_appears() {
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let s = Served::start(BROKEN_SIDECAR).await;
    let mut sessions = Vec::new();
    for label in LABELS {
        sessions.push(s.session_with(Some(label)).await);
    }
    let a = &sessions[0];
    a.call_text(
        "tool_search",
        json!({ "query": "select:fault__echo,fault__typed,list_agents" }),
    )
    .await;
    a.call_text("fault__echo", json!({ "x": 1 })).await;
    a.call_text("fault__typed", json!({ "n": "one" })).await; // an error result
    // The sidecar is not there: the first call fails and opens the breaker, the second is
    // rejected by it.
    a.call_text("list_agents", json!({})).await;
    let rejected = a.call_text("list_agents", json!({})).await;
    assert!(rejected.contains("circuit breaker open"), "{rejected}");
    // A restart of a configured server.
    let (gateway, token) = s.gateway();
    let resp = s
        .http
        .post(format!(
            "{gateway}/api/actors/root/mcp_servers/mcp:fault/restart"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Scrape until the restart shows, every scrape checked by the in-house lint.
    let restarted = [("path", "root/mcp_servers/mcp:fault")];
    let mut text = String::new();
    let restart_shown = try_within_async(DEADLINE, async || {
        text = s.metrics_text().await;
        let samples = lint_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (metric_value(&samples, "revka_actor_restarts_total", &restarted) == Some(1.0))
            .then_some(samples)
    })
    .await;
    let samples = restart_shown.unwrap_or_else(|| panic!("the restart never showed:\n{text}"));

    // Nothing per session: no id, no label, no session path.
    for session in &sessions {
        assert!(
            !text.contains(&session.id),
            "session id {}:\n{text}",
            session.id
        );
    }
    for label in LABELS {
        let escaped = label.replace('\\', "\\\\").replace('"', "\\\"");
        assert!(!text.contains(&escaped), "label {label}:\n{text}");
    }
    for sample in &samples {
        for (name, v) in &sample.labels {
            assert!(
                name != "session" && name != "label" && !v.contains("session:"),
                "{sample:?}"
            );
        }
    }

    // What was exercised is there, honestly typed.
    let breaker = |state: &str| {
        metric_value(
            &samples,
            "revka_breaker_state",
            &[("breaker", "session_manager"), ("state", state)],
        )
    };
    assert_eq!(
        (breaker("open"), breaker("closed"), breaker("half_open")),
        (Some(1.0), Some(0.0), Some(0.0)),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "revka_breaker_rejections_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "revka_breaker_opens_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &samples,
            "revka_tool_calls_total",
            &[("tool", "fault__typed"), ("outcome", "error")]
        ),
        Some(1.0)
    );
    // Three labelled sessions, and the one `Served::start` used to wait for the server.
    assert_eq!(
        metric_value(&samples, "revka_sessions", &[]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &samples,
            "revka_session_actors",
            &[("kind", "session"), ("state", "running")]
        ),
        Some(4.0),
        "{text}"
    );
    for line in [
        "# TYPE revka_actor_restarts_total counter",
        "# TYPE revka_session_events_total counter",
        "# TYPE revka_breaker_rejections_total counter",
        "# TYPE revka_breaker_opens_total counter",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE revka_build_info gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    let pid = s.daemon.child.id();
    process_families_describe_the_daemon(&samples, pid, before.as_secs_f64(), &text);

    // promtool: exit 0 and not one word (a lint problem is a line and exit status 3).
    let Some(promtool) = promtool() else {
        return;
    };
    let (status, said) = promtool_check(promtool, &text);
    assert_eq!(
        (status, said.as_str()),
        (Some(0), ""),
        "promtool check metrics:\n{said}\n{text}"
    );
    // The check is real: the old types fail it.
    let old = text.replace(
        "# TYPE revka_session_events_total counter",
        "# TYPE revka_session_events_total gauge",
    );
    let (status, said) = promtool_check(promtool, &old);
    assert_ne!(status, Some(0), "{said}");
    assert!(said.contains("revka_session_events_total"), "{said}");
}

/// The `process_*` families against what Linux says of the daemon's process.
fn process_families_describe_the_daemon(
    samples: &[Sample],
    pid: u32,
    spawned_after: f64,
    text: &str,
) {
    let get =
        |name: &str| metric_value(samples, name, &[]).unwrap_or_else(|| panic!("{name}:\n{text}"));
    let start = get("process_start_time_seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Boot time in /proc/stat has a one-second grain.
    assert!(
        start >= spawned_after - 2.0 && start <= now + 2.0,
        "started at {start}, spawned after {spawned_after}, now {now}"
    );
    assert!(get("process_cpu_seconds_total") > 0.0, "{text}");
    assert!(get("process_open_fds") >= 3.0, "{text}");
    if cfg!(target_os = "linux") {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let soft = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap();
        let soft = if soft == "unlimited" {
            f64::INFINITY
        } else {
            soft.parse().unwrap()
        };
        assert_eq!(get("process_max_fds"), soft);
        let rss = get("process_resident_memory_bytes");
        assert!(
            rss > 1e6 && rss <= get("process_virtual_memory_bytes"),
            "{text}"
        );
    }
}
