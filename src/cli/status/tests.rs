//! Tests of the status renderer with fixture snapshots: a running tree, a backing-off child,
//! a failed child with its reason, colour on and off, `NO_COLOR`, and the duration formats.

use std::time::{Duration, SystemTime};

use revka_actors::status::{Failure, rfc3339};
use revka_actors::{ActorState, Snapshot};

use super::{human_duration, precise_duration, render_tree};

/// A fixed "now": 2025-06-01T12:00:00Z.
fn now() -> SystemTime {
    humantime::parse_rfc3339("2025-06-01T12:00:00Z").expect("valid time")
}

/// `secs` seconds before [`now`], as RFC 3339.
fn ago(secs: u64) -> String {
    rfc3339(now() - Duration::from_secs(secs))
}

fn node(path: &str, state: ActorState, children: Vec<Snapshot>) -> Snapshot {
    let id = path.rsplit('/').next().unwrap_or(path).to_owned();
    let running = state == ActorState::Running;
    Snapshot {
        path: path.to_owned(),
        id,
        kind: "supervisor".to_owned(),
        state,
        state_since: ago(7_500),
        restart_type: None,
        restarts: 0,
        last_failure: None,
        started_at: running.then(|| ago(7_500)),
        uptime_secs: running.then_some(7_500),
        next_restart_in_ms: None,
        details: None,
        children,
    }
}

/// root → mcp_servers → {mcp:fs, mcp:git}, gateway; everything running.
fn running_tree() -> Snapshot {
    let mut root = node(
        "root",
        ActorState::Running,
        vec![
            node(
                "root/mcp_servers",
                ActorState::Running,
                vec![
                    node("root/mcp_servers/mcp:fs", ActorState::Running, vec![]),
                    node("root/mcp_servers/mcp:git", ActorState::Running, vec![]),
                ],
            ),
            node("root/gateway", ActorState::Running, vec![]),
        ],
    );
    root.uptime_secs = Some(3 * 86_400 + 4 * 3_600 + 59);
    root
}

#[test]
fn running_tree_is_drawn_with_boxes_and_aligned_columns() {
    let text = render_tree(&running_tree(), now(), false);
    let expected = "\
root             running  up 3d 4h
├── mcp_servers  running  up 2h 5m
│   ├── mcp:fs   running  up 2h 5m
│   └── mcp:git  running  up 2h 5m
└── gateway      running  up 2h 5m
";
    assert_eq!(text, expected);
    assert!(!text.contains('\x1b'), "no colour when off");
}

#[test]
fn backing_off_child_shows_restarts_failure_and_next_restart() {
    let mut tree = running_tree();
    let git = &mut tree.children[0].children[1];
    git.state = ActorState::BackingOff;
    git.state_since = ago(4);
    git.uptime_secs = None;
    git.started_at = None;
    git.restarts = 3;
    git.last_failure = Some(Failure {
        reason: "process exited with status 1".to_owned(),
        at: ago(4),
    });
    git.next_restart_in_ms = Some(2_149);
    let text = render_tree(&tree, now(), false);
    let line = text.lines().nth(3).expect("the git line");
    assert_eq!(
        line,
        "│   └── mcp:git  backing_off  for 4s  ↻ 3  \
         last failure 4s ago: process exited with status 1  next restart in 2.1s"
    );
    // The other lines keep their state column aligned with the wider state.
    assert!(text.starts_with("root             running      up 3d 4h\n"));
}

#[test]
fn failed_child_shows_its_first_reason_line_and_how_long_ago() {
    let mut tree = running_tree();
    let gateway = &mut tree.children[1];
    gateway.state = ActorState::Failed;
    gateway.state_since = ago(120);
    gateway.uptime_secs = None;
    gateway.restarts = 5;
    gateway.last_failure = Some(Failure {
        reason: "bind 127.0.0.1:8080: address in use\nstderr tail...\x1b[31m".to_owned(),
        at: ago(182),
    });
    let text = render_tree(&tree, now(), false);
    let line = text.lines().last().expect("the gateway line");
    assert_eq!(
        line,
        "└── gateway      failed   for 2m  ↻ 5  \
         last failure 3m 2s ago: bind 127.0.0.1:8080: address in use…"
    );
}

#[test]
fn failures_of_healthy_actors_and_zero_restarts_are_not_shown() {
    let mut tree = running_tree();
    tree.children[1].last_failure = Some(Failure {
        reason: "old news".to_owned(),
        at: ago(3_600),
    });
    let text = render_tree(&tree, now(), false);
    assert!(!text.contains("old news"));
    assert!(!text.contains('↻'));
}

#[test]
fn colour_on_wraps_states_in_ansi_codes() {
    let mut tree = running_tree();
    tree.children[0].children[0].state = ActorState::Starting;
    tree.children[0].children[1].state = ActorState::Stopped;
    tree.children[1].state = ActorState::Failed;
    tree.children[1].last_failure = Some(Failure {
        reason: "boom".to_owned(),
        at: ago(1),
    });
    let text = render_tree(&tree, now(), true);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("\x1b[32mrunning\x1b[0m"), "{}", lines[0]);
    assert!(lines[2].contains("\x1b[33mstarting\x1b[0m"), "{}", lines[2]);
    assert!(lines[3].contains("\x1b[2mstopped\x1b[0m"), "{}", lines[3]);
    assert!(lines[4].contains("\x1b[31mfailed\x1b[0m"), "{}", lines[4]);
    assert!(
        lines[4].contains("\x1b[31mlast failure 1s ago: boom\x1b[0m"),
        "{}",
        lines[4]
    );
    // Stripping the codes gives exactly the uncoloured rendering.
    let plain = render_tree(&tree, now(), false);
    assert_eq!(strip_ansi(&text), plain);
}

#[test]
fn single_node_and_unparsable_times() {
    let mut lone = node("root/mcp_servers/mcp:fs", ActorState::Stopped, vec![]);
    lone.state_since = "not a time".to_owned();
    assert_eq!(render_tree(&lone, now(), false), "mcp:fs  stopped\n");
    lone.state_since = rfc3339(now() + Duration::from_secs(30));
    assert_eq!(
        render_tree(&lone, now(), false),
        "mcp:fs  stopped  for 0s\n",
        "a time in the future (clock skew) counts as now"
    );
}

#[test]
fn a_failure_within_the_last_second_is_just_now() {
    let mut lone = node("root/x", ActorState::BackingOff, vec![]);
    lone.state_since = rfc3339(now());
    lone.last_failure = Some(Failure {
        reason: "exit 3".to_owned(),
        at: rfc3339(now()),
    });
    let later = now() + Duration::from_millis(900);
    assert_eq!(
        render_tree(&lone, later, false),
        "x  backing_off  for 0s  last failure just now: exit 3\n"
    );
}

#[test]
fn control_characters_in_ids_are_neutralised() {
    let mut lone = node("root", ActorState::Running, vec![]);
    lone.id = "evil\x1b[2Jid".to_owned();
    let text = render_tree(&lone, now(), false);
    assert!(!text.contains('\x1b'));
    assert!(text.starts_with("evil [2Jid  running"));
}

#[test]
fn durations() {
    let s = Duration::from_secs;
    assert_eq!(human_duration(s(0)), "0s");
    assert_eq!(human_duration(s(42)), "42s");
    assert_eq!(human_duration(s(12 * 60 + 5)), "12m 5s");
    assert_eq!(human_duration(s(2 * 3_600 + 10 * 60 + 9)), "2h 10m");
    assert_eq!(human_duration(s(3 * 86_400 + 4 * 3_600 + 120)), "3d 4h");
    assert_eq!(human_duration(s(600)), "10m");
    assert_eq!(human_duration(s(2 * 3_600 + 59)), "2h");
    assert_eq!(human_duration(s(86_400)), "1d");
    assert_eq!(precise_duration(Duration::from_millis(2_149)), "2.1s");
    assert_eq!(precise_duration(Duration::from_millis(0)), "0.0s");
    assert_eq!(precise_duration(s(61)), "1m 1s");
}

/// Removes `ESC [ ... m` sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
