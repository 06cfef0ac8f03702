//! The daemon's lifecycle, end to end with the real binary: start on the embedded defaults,
//! readiness and shutdown through a fake systemd socket, watchdog pings, invalid config
//! exiting 64 before anything starts, one daemon per home, and `revka config check`.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{
    TestDaemon, TestHome, eventually, fixture_server, process_exists, try_within, try_within_async,
    within,
};

const EXIT: Duration = Duration::from_secs(30);

#[test]
fn runs_on_embedded_defaults_and_stops_cleanly_on_sigterm() {
    let home = TestHome::new();
    let mut daemon = TestDaemon::start(&home, &[]);
    assert!(home.path().join("daemon.lock").exists());
    // READY=1 means a client can connect: both discovery files are there at once.
    for file in ["mcp.json", "gateway.json"] {
        assert!(
            home.path().join(file).exists(),
            "{file} missing at READY=1; stderr:\n{}",
            daemon.stderr()
        );
    }
    daemon.signal(Signal::SIGTERM);
    daemon.expect_notification("STOPPING=1", EXIT);
    let status = daemon.wait(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    let log = daemon.stderr();
    assert!(
        log.contains("daemon started") && log.contains("daemon stopped"),
        "{log}"
    );
}

/// `[runtime] worker_threads` sizes the daemon's runtime; `0`, the default, picks half the
/// CPUs the process may run on, rounded up.
#[test]
fn the_runtime_has_the_configured_number_of_workers() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    for (config, want) in [
        ("", cpus.div_ceil(2)),
        ("[runtime]\nworker_threads = 3\n", 3),
    ] {
        let home = TestHome::new();
        home.write_config(config);
        let mut daemon = TestDaemon::start(&home, &[]);
        daemon.signal(Signal::SIGTERM);
        assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
        let log = daemon.stderr();
        let started = log
            .lines()
            .find(|l| l.contains("daemon started"))
            .unwrap_or_else(|| panic!("no start line:\n{log}"));
        assert!(
            started
                .split_whitespace()
                .any(|field| field == format!("workers={want}")),
            "{config:?}: want {want} workers: {started}"
        );
    }
}

#[test]
fn sigint_also_stops_it_with_status_0() {
    let home = TestHome::new();
    let mut daemon = TestDaemon::start(&home, &[]);
    daemon.signal(Signal::SIGINT);
    assert_eq!(
        daemon.wait(EXIT).code(),
        Some(0),
        "stderr:\n{}",
        daemon.stderr()
    );
}

#[test]
fn watchdog_is_pinged_at_half_the_timeout() {
    let home = TestHome::new();
    let daemon = TestDaemon::start(&home, &[("WATCHDOG_USEC", "400000")]);
    // Two pings prove it repeats; their exact spacing is checked under paused time in
    // `notify::tests::ready_then_watchdog_at_half_the_timeout`.
    for _ in 0..2 {
        assert_eq!(
            daemon.next_notification(Duration::from_secs(10)).as_deref(),
            Some("WATCHDOG=1")
        );
    }
}

#[test]
fn an_invalid_config_exits_64_naming_file_line_column_and_key_before_starting() {
    let home = TestHome::new();
    let path = home.write_config("[supervisor]\nmax_restarts = \"five\"\n");
    let mut daemon = TestDaemon::spawn(&home, &[]);
    let status = daemon.wait(EXIT);
    assert_eq!(status.code(), Some(64));
    let err = daemon.stderr();
    let want = format!("{}:2:16: supervisor.max_restarts", path.display());
    assert!(err.contains(&want), "wanted `{want}` in:\n{err}");
    assert!(err.contains("expected u32"), "{err}");
    assert!(
        !home.path().join("daemon.lock").exists(),
        "nothing was started"
    );
    assert!(
        daemon
            .next_notification(Duration::from_millis(100))
            .is_none(),
        "no READY=1"
    );
}

#[test]
fn a_second_daemon_on_the_same_home_is_refused() {
    let home = TestHome::new();
    let _first = TestDaemon::start(&home, &[]);
    let mut second = TestDaemon::spawn(&home, &[]);
    let status = second.wait(EXIT);
    assert_eq!(status.code(), Some(1));
    assert!(
        second.stderr().contains("another revka daemon is running"),
        "{}",
        second.stderr()
    );
}

#[test]
fn config_check_prints_the_effective_config_and_warns_about_unknown_keys() {
    let home = TestHome::new();
    home.write_config("[supervisor]\nmax_restarts = 9\nmax_restart = 3\n");
    let out = home.command().args(["config", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("max_restarts = 9"), "{stdout}");
    assert!(
        stderr.contains("unknown key supervisor.max_restart"),
        "{stderr}"
    );

    std::fs::write(home.path().join("config.toml"), "[gateway\n").unwrap();
    let out = home.command().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml:1:"));
}

#[test]
fn config_check_without_a_file_uses_the_embedded_defaults() {
    let home = TestHome::new();
    let out = home.command().args(["config", "check"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("embedded defaults"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[supervisor]"));
}

#[test]
fn sigterm_stops_mcp_servers_and_their_grandchildren() {
    let home = TestHome::new();
    let pid_file = home.path().join("server.pid");
    let grandchild_file = home.path().join("grandchild.pid");
    home.write_config(&format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "fault"
command = "{server}"
args = ["--pid-file", "{pid}", "--fork-grandchild", "{grandchild}", "--ignore-sigterm"]

[mcp.servers.restart]
shutdown_timeout_ms = 500
"#,
        server = fixture_server("fault_server").display(),
        pid = pid_file.display(),
        grandchild = grandchild_file.display(),
    ));
    let mut daemon = TestDaemon::start(&home, &[]);
    let read = |p: &std::path::Path| -> i32 {
        eventually(format_args!("a pid in {}", p.display()), || {
            std::fs::read_to_string(p).is_ok_and(|s| !s.trim().is_empty())
        });
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    };
    let (server, grandchild) = (read(&pid_file), read(&grandchild_file));
    assert!(process_exists(server) && process_exists(grandchild));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(
        daemon.wait(EXIT).code(),
        Some(0),
        "stderr:\n{}",
        daemon.stderr()
    );
    within(Duration::from_secs(10), "server reaped", || {
        !process_exists(server)
    });
    within(
        Duration::from_secs(10),
        "grandchild gone, no zombie",
        || !process_exists(grandchild),
    );
    let log = daemon.stderr();
    assert!(
        log.lines().any(|l| l.contains("process stopped")
            && l.contains("path=root/mcp_servers/mcp:fault/process")),
        "{log}"
    );
    assert!(!log.contains("not reaped"), "{log}");
}

#[test]
fn a_server_name_with_a_double_underscore_is_a_config_error() {
    let home = TestHome::new();
    home.write_config(
        "[mcp]\nenabled = true\n[[mcp.servers]]\nname = \"a__b\"\ncommand = \"true\"\n",
    );
    let mut daemon = TestDaemon::spawn(&home, &[]);
    assert_eq!(daemon.wait(EXIT).code(), Some(64));
    assert!(
        daemon.stderr().contains("mcp.servers[0].name"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn an_invalid_server_entry_fails_alone_while_the_daemon_and_other_servers_run() {
    let home = TestHome::new();
    let pid_file = home.path().join("good.pid");
    home.write_config(&format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "good"
command = "{server}"
args = ["--pid-file", "{pid}"]

[[mcp.servers]]
name = "bad"
transport = "http"
url = "https://example.com/mcp"
headers = {{ "X-Token" = "a\nb" }}
"#,
        server = fixture_server("fault_server").display(),
        pid = pid_file.display(),
    ));
    let out = home.command().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server `bad` is invalid")
            && stderr.contains("mcp.servers[1].headers.X-Token"),
        "{stderr}"
    );

    let mut daemon = TestDaemon::start(&home, &[]);
    eventually("the good server started", || pid_file.exists());
    within(Duration::from_secs(10), "the invalid entry logged", || {
        daemon.stderr().contains("invalid MCP server entry")
    });
    let log = daemon.stderr();
    assert!(
        log.contains("server=bad") && log.contains("invalid HTTP header value"),
        "{log}"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0));
}

// ==== Logs ====

/// `revka <args> daemon` on `home`, its stderr in a file: for tests that need command-line
/// arguments (`--log-format`, `--log-level`), which [`TestDaemon`] does not pass. Killed with
/// its process group on drop.
struct Launched {
    child: std::process::Child,
    stderr: std::path::PathBuf,
}

impl Launched {
    /// Starts the daemon and waits until its log contains `ready`.
    fn start(home: &TestHome, args: &[&str], ready: &str) -> Self {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let stderr = home.path().join("launched.stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        let child = home
            .command()
            .args(args)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("spawn revka daemon");
        let launched = Self { child, stderr };
        assert!(
            try_within(Duration::from_secs(60), || launched.log().contains(ready)).is_some(),
            "`{ready}` never logged:\n{}",
            launched.log()
        );
        launched
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    fn signal(&self, sig: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the daemon");
    }

    /// Waits (generously) for the daemon to exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        assert!(
            try_within(EXIT, || self.child.try_wait().unwrap().is_some()).is_some(),
            "the daemon did not exit within {EXIT:?}:\n{}",
            self.log()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A server `noisy` that writes a non-JSON line before every message and exits with status 3
/// after 1.5 s, allowed one restart: its log has garbage warnings, connects, exits, a scheduled
/// restart and a give-up.
fn noisy_server_config(home: &TestHome) {
    home.write_config(&format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "noisy"
command = "{server}"
args = ["--garbage-stdout", "--exit-after", "1500", "--exit-code", "3"]

[mcp.servers.restart]
max_restarts = 1
backoff_min_ms = 50
backoff_max_ms = 100
"#,
        server = fixture_server("fault_server").display(),
    ));
}

#[test]
fn json_log_lines_about_a_server_carry_its_supervision_path() {
    let home = TestHome::new();
    noisy_server_config(&home);
    let mut daemon = Launched::start(&home, &["--log-format", "json"], "daemon started");
    assert!(
        try_within(Duration::from_secs(60), || daemon
            .log()
            .contains("child exceeded its restart limit"))
        .is_some(),
        "{}",
        daemon.log()
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.log());

    // One JSON object per line, nothing else on stderr.
    let log = daemon.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["message"].is_string() && e["level"].is_string())
    );

    // Every event that names the server, by field or in any text, carries its path.
    let path = "root/mcp_servers/mcp:noisy";
    let about: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.to_string().contains("noisy"))
        .collect();
    for event in &about {
        let own = event["path"].as_str().unwrap_or_default();
        assert!(
            own == path || own.starts_with(&format!("{path}/")),
            "an event about `noisy` without its path: {event}"
        );
    }
    // ... including those that used to name only the server.
    let messages: Vec<&str> = about.iter().filter_map(|e| e["message"].as_str()).collect();
    for want in [
        "server wrote a non-JSON-RPC line; skipped",
        "MCP server connected",
        "process started",
        "child exited; restart scheduled",
        "child exceeded its restart limit; marked failed (restart it on request)",
    ] {
        assert!(messages.contains(&want), "no `{want}` event in:\n{log}");
    }
    let garbage = about
        .iter()
        .find(|e| e["message"] == "server wrote a non-JSON-RPC line; skipped")
        .unwrap();
    assert_eq!(garbage["server"], "noisy");
    assert_eq!(garbage["line"], "this is not json");
}

#[test]
fn text_logs_without_a_terminal_have_no_colour_and_carry_the_path() {
    let home = TestHome::new();
    noisy_server_config(&home);
    let mut daemon = Launched::start(&home, &[], "server wrote a non-JSON-RPC line");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.log());
    let raw = std::fs::read(&daemon.stderr).unwrap();
    assert!(
        !raw.contains(&0x1b),
        "ANSI escapes in a log that is not a terminal:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("server wrote a non-JSON-RPC line")
                && l.contains("path=root/mcp_servers/mcp:noisy")),
        "{log}"
    );
}

// ==== Bad server entries ====

#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_server_entry_is_a_failed_child_with_its_reason_and_the_good_one_serves() {
    // `fault` (good) comes first in the file, these after it: entries 1 to 4.
    let served = crate::harness::Served::start(
        r#"
[[mcp.servers]]
name = "pigeon"
transport = "carrier-pigeon"
command = "true"

[[mcp.servers]]
name = "nocommand"
transport = "stdio"

[[mcp.servers]]
name = "nourl"
transport = "http"

[[mcp.servers]]
name = "badheader"
transport = "http"
url = "https://example.com/mcp"
headers = { "X-Token" = "a\nb" }
"#,
    )
    .await;
    let want = [
        (
            "pigeon",
            r#"mcp.servers[1].transport: unknown transport; expected one of "stdio", "http", "sse", "url""#,
        ),
        (
            "nocommand",
            r#"mcp.servers[2].command: required for transport "stdio""#,
        ),
        (
            "nourl",
            r#"mcp.servers[3].url: required for transport "http""#,
        ),
        (
            "badheader",
            "mcp.servers[4].headers.X-Token: invalid HTTP header value",
        ),
    ];

    // The tree, as the gateway serves it, once every invalid entry has been given up.
    let (gateway, token) = served.gateway();
    let mut servers = serde_json::Value::Null;
    let _ = try_within_async(Duration::from_secs(60), async || {
        let tree: serde_json::Value = reqwest::Client::new()
            .get(format!("{gateway}/api/actors"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        servers = tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "root/mcp_servers")
            .unwrap_or_else(|| panic!("no root/mcp_servers in {tree}"))
            .clone();
        let failed = servers["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "failed")
            .count();
        failed == want.len()
    })
    .await;
    let child = |name: &str| {
        servers["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == format!("mcp:{name}"))
            .unwrap_or_else(|| panic!("no mcp:{name} in {servers}"))
            .clone()
    };
    for (name, reason) in want {
        let node = child(name);
        assert_eq!(node["state"], "failed", "{node}");
        let failure = node["last_failure"]["reason"].as_str().unwrap_or_default();
        assert!(
            failure.starts_with("start failed: ")
                && failure.contains("invalid configuration: ")
                && failure.contains(reason),
            "mcp:{name}: wanted `{reason}` in {node}"
        );
    }
    assert_eq!(child("fault")["state"], "running");

    // The log names each, with its path.
    let log = served.daemon.stderr();
    for (name, reason) in want {
        assert!(
            log.lines().any(|l| l.contains("invalid MCP server entry")
                && l.contains(&format!("server={name} "))
                && l.contains(&format!("path=root/mcp_servers/mcp:{name} "))
                && l.contains(reason)),
            "no log line for {name}:\n{log}"
        );
    }

    // The good server serves calls.
    let session = served.session().await;
    let (is_error, text) =
        crate::reload::call(&session, "fault__echo", serde_json::json!({ "text": "hi" })).await;
    assert!(!is_error && text.contains("hi"), "{text}");
}

// ==== Shutdown and filtering ====

#[test]
fn a_second_sigterm_during_a_stuck_shutdown_forces_the_stop_and_leaves_no_child() {
    let home = TestHome::new();
    let dir = home.path();
    // A server whose whole process group shrugs off SIGTERM (SIG_IGN is inherited) and that
    // outlives its stdin: once the MCP server exits, a sleeper keeps the group alive.
    let script = dir.join("stubborn.sh");
    std::fs::write(
        &script,
        format!(
            "trap '' TERM\necho $$ > {dir}/leader.pid\n{server}\nsleep 600 &\necho $! > \
             {dir}/sleeper.pid\nwait\n",
            dir = dir.display(),
            server = fixture_server("fault_server").display(),
        ),
    )
    .unwrap();
    // Graceful budgets far beyond the test's patience: only the second signal can end it.
    home.write_config(&format!(
        r#"
[supervisor]
shutdown_grace_secs = 600

[mcp]
enabled = true

[[mcp.servers]]
name = "stubborn"
command = "/bin/sh"
args = ["{script}"]

[mcp.servers.restart]
shutdown_timeout_ms = 600000
"#,
        script = script.display(),
    ));
    let mut daemon = TestDaemon::start(&home, &[]);
    assert!(
        try_within(Duration::from_secs(60), || daemon
            .stderr()
            .contains("MCP server connected"))
        .is_some(),
        "{}",
        daemon.stderr()
    );
    let pid = |name: &str| -> i32 {
        let path = dir.join(name);
        assert!(
            try_within(Duration::from_secs(60), || {
                std::fs::read_to_string(&path).is_ok_and(|s| s.ends_with('\n'))
            })
            .is_some(),
            "{name} never written:\n{}",
            daemon.stderr()
        );
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let leader = pid("leader.pid");

    // The first signal starts the graceful stop: stdin is closed, the MCP server exits, and
    // the group lingers on, ignoring SIGTERM.
    daemon.signal(Signal::SIGTERM);
    daemon.expect_notification("STOPPING=1", EXIT);
    let sleeper = pid("sleeper.pid");
    assert!(
        daemon
            .stderr()
            .lines()
            .any(|l| l.contains("stopping child")
                && l.contains("path=root/mcp_servers/mcp:stubborn ")),
        "{}",
        daemon.stderr()
    );
    assert!(process_exists(leader) && process_exists(sleeper));
    assert!(daemon.child.try_wait().unwrap().is_none(), "still stopping");

    // The second one forces it: everything is killed and reaped, and the daemon exits.
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    let log = daemon.stderr();
    assert!(log.contains("second signal: forcing shutdown"), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    for pid in [leader, sleeper] {
        assert!(
            try_within(Duration::from_secs(10), || !process_exists(pid)).is_some(),
            "process {pid} left behind:\n{log}"
        );
    }
}

#[test]
fn log_level_filters_by_level_and_target_over_rust_log() {
    let home = TestHome::new();
    home.write_config(&format!(
        "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"quiet\"\ncommand = \"{}\"\n",
        fixture_server("fault_server").display()
    ));
    // `RUST_LOG=info` is set too (TestHome::command); --log-level wins.
    let filter = "warn,revka_actors::process=debug";
    let args = ["--log-level", filter, "--log-format", "json"];
    // The fault server logs `client initialized` to stderr; the process actor relays it at debug.
    let mut daemon = Launched::start(&home, &args, "client initialized");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for event in &events {
        let level = event["level"].as_str().unwrap();
        let target = event["target"].as_str().unwrap();
        assert!(
            matches!(level, "WARN" | "ERROR") || target.starts_with("revka_actors::process"),
            "{event} passed `{filter}`"
        );
    }
    let has = |level: &str, message: &str| {
        events
            .iter()
            .any(|e| e["level"] == level && e["message"] == message)
    };
    assert!(has("DEBUG", "child stderr"), "{log}");
    assert!(has("INFO", "process started"), "{log}");
    assert!(!log.contains("daemon started") && !log.contains("MCP server connected"));
}
