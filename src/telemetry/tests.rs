//! The daemon's families over a real status tree and session table: the naming rules, one-hot
//! states, sessions counted but never listed, the process and build families.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::Actor;
use revka_actors::metrics::{Sample, lint_exposition};
use revka_actors::session::SessionLimits;
use revka_actors::supervisor::{
    Intensity, RestartType, Strategy, SupervisorActor, SupervisorArguments,
};
use revka_actors::{ActorState, StatusNode};

use super::*;

/// The value of the sample `name` with exactly these labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|&(l, v)| s.label(l) == Some(v))
        })
        .map(|s| s.value)
}

/// A tree like the daemon's: a configured server, and a `sessions` supervisor with real
/// session actors (created with labels) under it.
async fn daemon_like() -> (StatusNode, Arc<Sessions>, Vec<(String, String)>) {
    let root = StatusNode::root("root", "supervisor");
    root.set_state(ActorState::Running);
    let servers = root.child("mcp_servers", "supervisor", Some(RestartType::Permanent));
    servers.set_state(ActorState::Running);
    let fs = servers.child("mcp:fs", "mcp_connection", Some(RestartType::Permanent));
    fs.set_state(ActorState::BackingOff);
    fs.record_restart(Duration::from_secs(1));
    fs.record_restart(Duration::from_secs(2));
    let node = root.child("sessions", "supervisor", Some(RestartType::Permanent));
    node.set_state(ActorState::Running);
    let args = SupervisorArguments {
        node,
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let sessions = Sessions::new(SessionLimits::default());
    sessions.attach_supervisor(sup);
    let mut made = Vec::new();
    for label in ["alice-laptop", "ci runner 7", "dashboard"] {
        let (session, _token) = sessions
            .create(
                revka_actors::session::NewSession::new(Path::new("/").into())
                    .with_label(Some(label.to_owned())),
            )
            .await
            .unwrap();
        made.push((session.id().to_owned(), label.to_owned()));
    }
    // An operator under the first session, as a session's first operator call starts it.
    let first = root
        .find(&format!("root/sessions/session:{}", made[0].0))
        .expect("the session actor's node");
    let operator = first.child("operator", "supervisor", None);
    operator.set_state(ActorState::Running);
    let connection = operator.child(
        "mcp:revka-operator",
        "mcp_connection",
        Some(RestartType::Permanent),
    );
    connection.set_state(ActorState::Starting);
    connection.record_restart(Duration::from_secs(1));
    (root, sessions, made)
}

#[tokio::test]
async fn sessions_are_counted_by_kind_and_state_and_never_listed() {
    let (root, sessions, made) = daemon_like().await;
    let telemetry = Telemetry::new(&root, &sessions).unwrap();
    let text = telemetry.render();
    let samples = lint_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (id, label) in &made {
        assert!(!text.contains(id.as_str()), "session id {id} in:\n{text}");
        assert!(!text.contains(label.as_str()), "label {label} in:\n{text}");
    }
    assert!(!text.contains("session:"), "{text}");
    let paths: Vec<&str> = samples.iter().filter_map(|s| s.label("path")).collect();
    assert!(
        paths.iter().all(|p| !p.starts_with("root/sessions/")),
        "{text}"
    );
    let actors = |kind: &str, state: &str| {
        value(
            &samples,
            "revka_session_actors",
            &[("kind", kind), ("state", state)],
        )
    };
    assert_eq!(actors("session", "running"), Some(3.0), "{text}");
    assert_eq!(actors("supervisor", "running"), Some(1.0), "{text}");
    assert_eq!(actors("mcp_connection", "starting"), Some(1.0), "{text}");
    assert_eq!(
        actors("session", "failed"),
        Some(0.0),
        "every state:\n{text}"
    );
    let per_kind: f64 = samples
        .iter()
        .filter(|s| s.name == "revka_session_actors" && s.label("kind") == Some("session"))
        .map(|s| s.value)
        .sum();
    assert_eq!(per_kind, sessions.len() as f64);
    assert_eq!(value(&samples, "revka_sessions", &[]), Some(3.0));
    assert_eq!(
        value(
            &samples,
            "revka_session_events_total",
            &[("event", "created")]
        ),
        Some(3.0)
    );

    // The bounded tree, by path: one-hot states, restarts as a counter.
    let mut by_path: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == "revka_actor_state") {
        let entry = by_path.entry(s.label("path").unwrap()).or_default();
        entry.0 += 1;
        entry.1 += s.value;
    }
    let want: BTreeMap<&str, (usize, f64)> = [
        "root",
        "root/mcp_servers",
        "root/mcp_servers/mcp:fs",
        "root/sessions",
    ]
    .into_iter()
    .map(|p| (p, (ActorState::ALL.len(), 1.0)))
    .collect();
    assert_eq!(by_path, want, "{text}");
    let fs = [
        ("path", "root/mcp_servers/mcp:fs"),
        ("kind", "mcp_connection"),
    ];
    let state = |s: &str| {
        let mut labels = fs.to_vec();
        labels.push(("state", s));
        value(&samples, "revka_actor_state", &labels)
    };
    assert_eq!(
        (state("backing_off"), state("running")),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(
        value(&samples, "revka_actor_restarts_total", &fs),
        Some(2.0)
    );
    for line in [
        "# TYPE revka_actor_state gauge",
        "# TYPE revka_actor_restarts_total counter",
        "# TYPE revka_session_actors gauge",
        "# TYPE revka_session_events_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }

    // An ended session leaves the counts.
    assert!(sessions.end(&made[1].0, "test"));
    let running = || {
        let samples = lint_exposition(&telemetry.render()).unwrap();
        value(
            &samples,
            "revka_session_actors",
            &[("kind", "session"), ("state", "running")],
        )
    };
    let polled = tokio::time::timeout(Duration::from_secs(10), async {
        while running() != Some(2.0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{}", telemetry.render());
}

#[tokio::test]
async fn the_process_and_build_families_describe_this_process() {
    let telemetry = Telemetry::new(
        &StatusNode::root("root", "supervisor"),
        &Sessions::new(SessionLimits::default()),
    )
    .unwrap();
    let text = telemetry.render();
    let samples = lint_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let get = |name: &str| value(&samples, name, &[]).unwrap_or_else(|| panic!("{name}:\n{text}"));
    assert!(
        text.lines()
            .any(|l| l == "# TYPE process_cpu_seconds_total counter")
    );
    assert!(get("process_cpu_seconds_total") >= 0.0);
    let (open, max) = (get("process_open_fds"), get("process_max_fds"));
    assert!(open >= 3.0 && open <= max, "{text}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = get("process_start_time_seconds");
    assert!(start > 0.0 && start <= now + 1.0, "{start} vs {now}");
    #[cfg(target_os = "linux")]
    {
        let btime = process::linux::parse_btime(&std::fs::read_to_string("/proc/stat").unwrap());
        assert!(start >= btime.unwrap() as f64, "after boot");
        let rss = get("process_resident_memory_bytes");
        assert!(
            rss > 0.0 && rss <= get("process_virtual_memory_bytes"),
            "{text}"
        );
    }
    let build = samples
        .iter()
        .find(|s| s.name == "revka_build_info")
        .unwrap();
    assert_eq!(build.value, 1.0);
    assert_eq!(build.label("version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(build.label("os"), Some(std::env::consts::OS));
    assert_eq!(build.label("arch"), Some(std::env::consts::ARCH));
}

#[test]
fn open_fds_follow_the_descriptors_this_process_holds() {
    // Other tests in this binary open and close descriptors too: hold many, so the count
    // must rise by at least that many minus what others may have closed meanwhile.
    let files: Vec<std::fs::File> = (0..64)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let with = process_open_fds();
    drop(files);
    let without = process_open_fds();
    assert!(
        with >= without + 32.0,
        "{with} with 64 more open, {without} after"
    );
}

fn process_open_fds() -> f64 {
    let metrics = Metrics::new();
    process::register(&metrics).unwrap();
    let samples = lint_exposition(&metrics.render()).unwrap();
    value(&samples, "process_open_fds", &[]).unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn proc_stat_lines_parse_whatever_the_command_name() {
    use process::linux::{Stat, parse_btime};
    // Fields 3 to 24 after a command name with spaces and parentheses.
    let line = "4242 (revka (x) daemon) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 30 0 0 20 0 \
                12 0 98765 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0";
    assert_eq!(
        Stat::parse(line, 4096),
        Some(Stat {
            start_ticks: 98765,
            vsize_bytes: 123456789,
            rss_bytes: 2500 * 4096,
        })
    );
    assert_eq!(Stat::parse("4242 (truncated) S 1 2", 4096), None);
    assert_eq!(Stat::parse("no parenthesis", 4096), None);
    let proc_stat = "cpu  1 2 3\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";
    assert_eq!(parse_btime(proc_stat), Some(1_700_000_000));
    assert_eq!(parse_btime("cpu 1\n"), None);
}
