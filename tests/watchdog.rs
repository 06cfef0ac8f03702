//! The daemon under a (fake) systemd with the watchdog armed, during reloads that outlast the
//! watchdog: the pings go on from their own task, each reload is framed by
//! `RELOADING=1` + `MONOTONIC_USEC=` … `READY=1` + `STATUS=`, `revka reload` returns only when
//! the reload is done (with its result), a SIGHUP during a reload is not lost, and SIGTERM
//! during a reload is handled at once.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{TestDaemon, TestHome, fixture_server, process_exists, try_within, within};

/// `WATCHDOG_USEC` of these tests: pings every second.
const WATCHDOG: Duration = Duration::from_secs(2);
/// How long stopping the slow server takes: its shutdown timeout, then SIGKILL.
const SLOW_STOP_MS: u64 = 6000;
const LONG: Duration = Duration::from_secs(60);

/// The config: the slow server (ignores SIGTERM, lingers after stdin closes) unless
/// `without_slow`, plus `extra`.
fn config(home: &TestHome, without_slow: bool, extra: &str) -> String {
    let slow = if without_slow {
        String::new()
    } else {
        format!(
            r#"
[[mcp.servers]]
name = "slow"
command = "{server}"
args = ["--ignore-sigterm", "--slow-exit", "600000", "--pid-file", "{pid}"]

[mcp.servers.restart]
shutdown_timeout_ms = {SLOW_STOP_MS}
"#,
            server = fixture_server("fault_server").display(),
            pid = pid_file(home).display(),
        )
    };
    format!("[mcp]\nenabled = true\n{slow}\n{extra}\n")
}

fn pid_file(home: &TestHome) -> PathBuf {
    home.path().join("slow.pid")
}

fn quick_server(name: &str) -> String {
    format!(
        "[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{}\"\n",
        fixture_server("fault_server").display()
    )
}

/// A daemon with the watchdog armed and the slow server running; returns its pid.
fn start(home: &TestHome) -> (TestDaemon, i32) {
    home.write_config(&config(home, false, ""));
    let usec = WATCHDOG.as_micros().to_string();
    let daemon = TestDaemon::start(home, &[("WATCHDOG_USEC", &usec)]);
    let path = pid_file(home);
    assert!(
        try_within(LONG, || std::fs::read_to_string(&path)
            .is_ok_and(|s| s.ends_with('\n')))
        .is_some(),
        "the slow server never started:\n{}",
        daemon.stderr()
    );
    let pid = std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (daemon, pid)
}

/// `revka reload` in a thread: its output, and when it returned.
fn cli_reload(home: &Path) -> JoinHandle<(Output, Instant)> {
    let mut cmd = std::process::Command::new(crate::harness::revka_bin());
    cmd.env("REVKA_HOME", home)
        .env_remove("REVKA_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "off")
        .arg("reload");
    std::thread::spawn(move || {
        let output = cmd.output().expect("run revka reload");
        (output, Instant::now())
    })
}

/// One notification and when it arrived.
struct Seen {
    at: Instant,
    text: String,
}

/// Receives notifications until one satisfies `last` (included), failing after `timeout`.
fn collect_until(daemon: &TestDaemon, timeout: Duration, last: impl Fn(&str) -> bool) -> Vec<Seen> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(text) = daemon.next_notification(Duration::from_millis(100)) {
            let done = last(&text);
            seen.push(Seen {
                at: Instant::now(),
                text,
            });
            if done {
                return seen;
            }
        }
    }
    let texts: Vec<&str> = seen.iter().map(|s| s.text.as_str()).collect();
    panic!("timed out; saw {texts:?}; stderr:\n{}", daemon.stderr());
}

/// Checks the reload frame in `seen`: `RELOADING=1` with a plausible `MONOTONIC_USEC=`, then
/// the `READY=1` + `STATUS=` that ends it (returned).
fn reload_frame(seen: &[Seen]) -> (&Seen, &Seen) {
    let reloading = seen
        .iter()
        .find(|s| s.text.starts_with("RELOADING=1"))
        .expect("RELOADING=1");
    let usec: u64 = reloading
        .text
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("RELOADING=1 carries MONOTONIC_USEC=: {:?}", reloading.text))
        .parse()
        .expect("MONOTONIC_USEC= is a decimal number of microseconds");
    assert!(usec > 0);
    let ready = seen
        .iter()
        .find(|s| s.text.starts_with("READY=1\nSTATUS=") && s.at >= reloading.at)
        .expect("READY=1 with STATUS= after RELOADING=1");
    (reloading, ready)
}

/// Checks that no more than `WATCHDOG_USEC` passed without `WATCHDOG=1` (systemd's rule)
/// from `since` to `until`; returns how many pings there were.
fn assert_pinged_throughout(
    daemon: &TestDaemon,
    seen: &[Seen],
    since: Instant,
    until: Instant,
) -> usize {
    let pings: Vec<Instant> = seen
        .iter()
        .filter(|s| s.text == "WATCHDOG=1")
        .map(|s| s.at)
        .collect();
    let mut last = since;
    for ping in pings.iter().copied().chain([until]) {
        assert!(
            ping - last < WATCHDOG,
            "{:?} without WATCHDOG=1 during the reload; stderr:\n{}",
            ping - last,
            daemon.stderr()
        );
        last = ping;
    }
    pings.len()
}

#[test]
fn a_sighup_reload_slower_than_the_watchdog_keeps_the_pings_going() {
    let home = TestHome::new();
    let (mut daemon, slow_pid) = start(&home);
    // Removing the slow server makes the reload wait out its whole shutdown timeout. SIGHUP is
    // what systemd sends for `systemctl reload` (Type=notify-reload).
    home.write_config(&config(&home, true, ""));
    let asked = Instant::now();
    daemon.signal(Signal::SIGHUP);
    let seen = collect_until(&daemon, LONG, |t| t.starts_with("READY=1\nSTATUS="));
    let (reloading, ready) = reload_frame(&seen);
    assert!(
        ready.at - reloading.at >= Duration::from_millis(SLOW_STOP_MS - 500),
        "the reload really waited for the server to stop"
    );
    assert_eq!(
        ready.text,
        "READY=1\nSTATUS=reloaded: 1 applied, 0 need a restart, 0 failed",
        "{}",
        daemon.stderr()
    );
    let pings = assert_pinged_throughout(&daemon, &seen, asked, ready.at);
    assert!(pings >= 3, "pinged all along: {pings} pings");
    within(
        Duration::from_secs(10),
        "the slow server was killed and reaped",
        || !process_exists(slow_pid),
    );
    // The daemon lives on, still pinging.
    assert_eq!(
        daemon.next_notification(WATCHDOG).as_deref(),
        Some("WATCHDOG=1")
    );
    assert!(daemon.child.try_wait().unwrap().is_none());
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(LONG).code(), Some(0), "{}", daemon.stderr());
}

#[test]
fn revka_reload_waits_for_a_slow_reload_past_the_gateway_request_timeout() {
    let home = TestHome::new();
    home.write_config(&config(&home, false, ""));
    let usec = WATCHDOG.as_micros().to_string();
    // The default request timeout (2 s here) does not cut a reload short.
    let mut daemon = TestDaemon::start(
        &home,
        &[
            ("WATCHDOG_USEC", &usec),
            ("REVKA_GATEWAY_TIMEOUT_SECS", "2"),
        ],
    );
    let path = pid_file(&home);
    assert!(
        try_within(LONG, || std::fs::read_to_string(&path)
            .is_ok_and(|s| s.ends_with('\n')))
        .is_some(),
        "{}",
        daemon.stderr()
    );
    home.write_config(&config(&home, true, ""));
    let asked = Instant::now();
    let cli = cli_reload(home.path());
    let seen = collect_until(&daemon, LONG, |t| t.starts_with("READY=1\nSTATUS="));
    let (reloading, ready) = reload_frame(&seen);
    assert_pinged_throughout(&daemon, &seen, asked, ready.at);

    let (output, returned) = cli.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("stopped mcp:slow (removed from the config)"),
        "the report of its own reload: {stdout}"
    );
    assert!(
        returned >= reloading.at + Duration::from_millis(SLOW_STOP_MS - 500),
        "returned only once the reload was done"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(LONG).code(), Some(0), "{}", daemon.stderr());
}

#[test]
fn revka_reload_returns_a_rejected_config_as_its_result() {
    let home = TestHome::new();
    home.write_config(&config(&home, true, ""));
    let mut daemon = TestDaemon::start(&home, &[]);
    home.write_config("[supervisor]\nmax_restarts = \"five\"\n");
    let (output, _) = cli_reload(home.path()).join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reload rejected, nothing was applied")
            && stderr.contains("supervisor.max_restarts"),
        "{stderr}"
    );
    let seen = collect_until(&daemon, LONG, |t| t.starts_with("READY=1\nSTATUS="));
    let (_, ready) = reload_frame(&seen);
    assert!(
        ready
            .text
            .starts_with("READY=1\nSTATUS=reload rejected, running configuration unchanged: "),
        "{}",
        ready.text
    );
    assert_eq!(
        ready.text.matches('\n').count(),
        1,
        "the reason stays on the STATUS= line"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(LONG).code(), Some(0));
}

#[test]
fn a_sighup_during_a_reload_runs_one_more_reload_after_it() {
    let home = TestHome::new();
    let (mut daemon, _) = start(&home);
    home.write_config(&config(&home, true, ""));
    daemon.signal(Signal::SIGHUP);
    collect_until(&daemon, LONG, |t| t.starts_with("RELOADING=1"));
    // Once the reload has read the file and is stopping the slow server, the file changes
    // again and two more signals come (they fold into one).
    assert!(
        try_within(LONG, || daemon.stderr().lines().any(|l| l
            .contains("stopping child")
            && l.contains("path=root/mcp_servers/mcp:slow ")))
        .is_some(),
        "{}",
        daemon.stderr()
    );
    home.write_config(&config(&home, true, &quick_server("late")));
    daemon.signal(Signal::SIGHUP);
    daemon.signal(Signal::SIGHUP);
    let first = collect_until(&daemon, LONG, |t| t.starts_with("READY=1\nSTATUS="));
    let second = collect_until(&daemon, LONG, |t| t.starts_with("READY=1\nSTATUS="));
    let (_, ready) = reload_frame(&second);
    assert_eq!(
        ready.text,
        "READY=1\nSTATUS=reloaded: 1 applied, 0 need a restart, 0 failed",
        "the second reload started `late`; first: {:?}",
        first.last().map(|s| &s.text)
    );
    assert!(
        try_within(Duration::from_secs(30), || daemon
            .stderr()
            .contains("started mcp:late (added to the config)"))
        .is_some(),
        "{}",
        daemon.stderr()
    );
    // No third reload: the two signals were one request.
    let after = collect_until(&daemon, LONG, |t| t == "WATCHDOG=1");
    assert!(after.iter().all(|s| !s.text.starts_with("RELOADING=1")));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(LONG).code(), Some(0), "{}", daemon.stderr());
}

#[test]
fn sigterm_during_a_slow_reload_stops_the_daemon_at_once() {
    let home = TestHome::new();
    let (mut daemon, slow_pid) = start(&home);
    home.write_config(&config(&home, true, ""));
    daemon.signal(Signal::SIGHUP);
    collect_until(&daemon, LONG, |t| t.starts_with("RELOADING=1"));
    daemon.signal(Signal::SIGTERM);
    let seen = collect_until(&daemon, LONG, |t| t == "STOPPING=1");
    assert!(
        seen.iter().all(|s| !s.text.starts_with("READY=1")),
        "shutdown began before the reload ended: {:?}",
        seen.iter().map(|s| &s.text).collect::<Vec<_>>()
    );
    assert_eq!(daemon.wait(LONG).code(), Some(0), "{}", daemon.stderr());
    within(Duration::from_secs(10), "no server left behind", || {
        !process_exists(slow_pid)
    });
}
