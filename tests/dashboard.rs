//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven by Python selenium from the test venv: each test starts a daemon with fixture
//! servers and runs one scenario of `tests/dashboard/scenarios.py`, which mints its pairing
//! codes with the owner token and saves a screenshot per step to
//! `target/artifacts/dashboard/<test>.png` (and `<test>-<step>.png`).
//!
//! Skipped when the venv or Chromium is missing, unless `REVKA_REQUIRE_INTEROP=1` (`.ci/test`
//! installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Gateway, TestDaemon, TestHome, eventually_async, fixture_server, test_cache};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The venv's Python with selenium, if it and Chromium are installed.
fn browser_python() -> Option<PathBuf> {
    let cache = test_cache()?;
    let python = cache.join("venv/bin/python");
    let selenium = Command::new(&python)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    let chromium = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if selenium && chromium {
        return Some(python);
    }
    assert!(
        std::env::var("REVKA_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "the dashboard tests need selenium in {python:?} and {CHROMIUM} with {CHROMEDRIVER}; \
         run .ci/test"
    );
    eprintln!("skipping: selenium or chromium missing (run .ci/test)");
    None
}

/// A daemon serving `servers` echo fixture servers (`alpha`, `beta`, ... then `s004`...).
struct Dash {
    home: TestHome,
    _daemon: TestDaemon,
    gateway: Gateway,
}

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

/// The name of the `i`th configured server: `alpha`, `beta`, `gamma`, then `s003`, ...
fn server_name(i: usize) -> String {
    NAMES
        .get(i)
        .map_or_else(|| format!("s{i:03}"), |n| (*n).to_owned())
}

/// Runs `scenario` against a daemon of `servers` echo servers (`extra` appended to its
/// config), all of them running first; nothing when the browser is not installed.
async fn scenario(servers: usize, extra: &str, scenario: &str) {
    let Some(python) = browser_python() else {
        return;
    };
    let dash = Dash::start(servers, extra).await;
    dash.wait_running(servers).await;
    dash.run(&python, scenario, &[]);
}

impl Dash {
    /// `extra` is appended to the config.
    async fn start(servers: usize, extra: &str) -> Self {
        let home = TestHome::new();
        let mut config = String::from(
            "[mcp]\nenabled = true\n\n[supervisor]\n# Long enough for the page to show it.\nbackoff_min_ms = 400\n",
        );
        for i in 0..servers {
            let name = server_name(i);
            config.push_str(&format!(
                "\n[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{}\"\n",
                fixture_server("echo_server").display()
            ));
        }
        config.push_str(extra);
        home.write_config(&config);
        let daemon = TestDaemon::start(&home, &[]);
        let gateway = Gateway::of_started(home.path()).await;
        Self {
            home,
            _daemon: daemon,
            gateway,
        }
    }

    /// Whether every server's process is running.
    async fn wait_running(&self, servers: usize) {
        for name in (0..servers).map(server_name) {
            eventually_async(format!("{name} running"), async || {
                self.gateway.server_pid(&name).await.is_some()
            })
            .await;
        }
    }

    /// Runs `scenario` of scenarios.py with Chromium; panics with its output unless it passes.
    fn run(&self, python: &Path, scenario: &str, extra: &[(&str, &str)]) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let artifacts = root.join("target/artifacts/dashboard");
        std::fs::create_dir_all(&artifacts).unwrap();
        let mut cmd = Command::new(python);
        cmd.arg(root.join("tests/dashboard/scenarios.py"))
            .arg(scenario)
            .env("DASH_URL", &self.gateway.url)
            .env("DASH_OWNER_TOKEN", &self.gateway.token)
            .env("DASH_HOME", self.home.path())
            .env("DASH_ARTIFACTS", &artifacts)
            .env("DASH_CHROMIUM", CHROMIUM)
            .env("DASH_CHROMEDRIVER", CHROMEDRIVER)
            .env("DASH_FIXTURE_ECHO", fixture_server("echo_server"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        // The script bounds each of its waits; a hung browser is killed by its own timeouts.
        let out = cmd.output().expect("run scenarios.py");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("--- {scenario} stdout\n{stdout}--- stderr\n{stderr}");
        // The failure line goes into the panic message too: CI shows panics, not captured output.
        let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED")).collect();
        assert!(
            out.status.success(),
            "scenario {scenario} failed ({}): {}",
            out.status,
            failed.join(" | ")
        );
        stdout
    }
}

/// An unauthenticated load shows the sign-in form only; a pairing code signs in; the tree
/// shows every configured server; a `kill -9` of a server's process turns its row to backing
/// off and back to running, restarts up by one, without a reload (the time it took is printed); Restart
/// works for an operator; sign-out revokes the token.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_sign_in_live_tree_restart_and_sign_out() {
    scenario(3, "", "sign_in_live_tree").await;
}

/// The editor's Test button reports a good config (the echo fixture: ok, one tool) and a bad
/// one (a command that does not exist: the error).
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_test_button_good_and_bad() {
    scenario(1, "", "test_button").await;
}

/// A page of another origin (another port of 127.0.0.1) cannot read the token of the
/// dashboard's origin, cannot call the API (no token; and the gateway refuses its Origin), and
/// its WebSocket to /ws/mcp/events is refused.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_other_origin_cannot_read_the_token_or_drive_the_api() {
    scenario(1, "", "other_origin").await;
}

/// The first load (page, scripts, styles) transfers under 300 KiB, with the security headers;
/// the terminal emulator is not loaded until the Code tab opens.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_first_load_is_small_and_strict() {
    scenario(1, "", "first_load").await;
}

/// Room for 1,000 sessions created at once from one source.
const SCALE: &str =
    "\n[sessions]\nmax_sessions = 2000\ncreate_burst = 2000\ncreate_per_minute = 100000\n";

/// The tree with 200 servers and 1,000 sessions: the renderer module (the one the page uses)
/// driven in the signed-in page with a snapshot of that size and a burst of events, and the
/// real page over a daemon with 1,000 live sessions. Figures are printed.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_tree_with_200_servers_and_1000_sessions() {
    scenario(3, SCALE, "scale").await;
}

/// The MCP editor's Save, its `file:line:col` refusal and the two-tab conflict.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_config_editor_saves_refuses_and_reports_conflicts() {
    scenario(1, "", "config_editor").await;
}

/// The Code tab: the fake CLI (`fake_cli`, a `[[terminal.launchers]]` entry) runs in the
/// browser terminal, prints the MCP config it was given, calls `fault__progress` through it on
/// `call`, and the side panel shows that call's progress; a 10 MB paste is sent in frames of
/// at most 60 KiB and the terminal stays up.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_code_tab_runs_a_cli_and_shows_its_progress() {
    let Some(python) = browser_python() else {
        return;
    };
    let extra = format!(
        r#"
[[terminal.launchers]]
name = "fake"
command = "{cli}"
args = ["--mcp-config", "{{mcp_config}}", "--args", "{{\"steps\":3,\"interval_ms\":100}}"]
"#,
        cli = env!("CARGO_BIN_EXE_fake_cli")
    );
    let served =
        crate::harness::Served::start_configured("", &[], &extra, &[("SHELL", "/bin/sh")]).await;
    let gateway = Gateway::of(served.home.path());
    let dash = Dash {
        gateway,
        home: served.home,
        _daemon: served.daemon,
    };
    dash.run(
        &python,
        "code_tab",
        &[
            ("DASH_LAUNCHER", "fake"),
            ("DASH_CLI_MARKER", "READY"),
            ("DASH_CLI_CALL", "call"),
        ],
    );
}

/// The Sidecars view with the real session manager: an agent's events and a chat room's
/// messages shown live (the gateway relays the agent's stream and turns the room's long polls
/// into one), a message posted while the page watches appearing without a reload.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_sidecars_view_watches_an_agent_and_a_room_live() {
    use crate::sidecars::{node_command, sidecar_config, tool};
    use serde_json::json;
    let Some(python) = browser_python() else {
        return;
    };
    let socket_home = tempfile::tempdir().unwrap();
    let served =
        crate::harness::Served::start(&sidecar_config(socket_home.path(), &node_command())).await;
    let session = served.session().await;
    crate::sidecar_tools::until_sidecar_answers(&session).await;
    let created = tool(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "watched", "prompt": "first words" }),
    )
    .await;
    let agent = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tool(
        &session,
        "wait_for_agent",
        json!({ "agent_id": agent, "timeout_secs": 60 }),
    )
    .await;
    let room = tool(
        &session,
        "create_chat_room",
        json!({ "name": "lounge", "members": [] }),
    )
    .await;
    let room = room["structuredContent"]["id"].as_str().unwrap().to_owned();
    let gateway = Gateway::of(served.home.path());
    let dash = Dash {
        gateway,
        home: served.home,
        _daemon: served.daemon,
    };
    dash.run(
        &python,
        "sidecars_live",
        &[("DASH_AGENT_ID", &agent), ("DASH_ROOM_ID", &room)],
    );
}
