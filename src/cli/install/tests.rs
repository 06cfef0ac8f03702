//! Tests of `revka install --sidecars-only` against temporary homes (passed explicitly; the
//! process environment is never changed).
//!
//! `slow_real_install_doctor_and_idempotence` is the one slow test: a real venv and a real
//! `pip install` of the operator and `mcp` from the package index (about a minute, more on a
//! cold pip cache). It runs under plain `cargo test` and reuses its one install for every
//! assertion about a real install: doctor's operator checks, the handshake, idempotence.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use revka_actors::mcp::connection::probe;
use revka_actors::sidecar::SidecarClient;
use revka_mcp::spec::{ServerSpec, TransportSpec};

use super::{InstallArgs, Layout, Report, Sources, install, npm, run};
use crate::cli::doctor::{self, Check, DoctorOptions, Status};
use crate::mcp_servers::http_client;

fn args() -> InstallArgs {
    InstallArgs {
        sidecars_only: true,
        ..InstallArgs::default()
    }
}

/// Runs an install, returning its report (or error) and everything it printed.
fn install_in(args: &InstallArgs, home: &Path) -> (Result<Report, String>, String) {
    let mut out = Vec::new();
    let result = install(args, home, &mut out);
    (result, String::from_utf8(out).expect("utf-8 output"))
}

/// Every file under `dir` with its mode, sorted (the state a dry run must not change).
fn tree(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().expect("metadata");
            out.push((entry.path(), meta.permissions().mode()));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn the_embedded_files_match_the_checkout() {
    let checkout = Sources::from_checkout(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("checkout");
    let embedded = Sources::embedded();
    let names =
        |files: &[super::SourceFile]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&embedded.operator),
        names(&checkout.operator),
        "embed every package file"
    );
    assert_eq!(
        names(&embedded.session_manager),
        names(&checkout.session_manager)
    );
    assert_eq!(embedded.operator, checkout.operator);
    assert_eq!(embedded.launcher, checkout.launcher);
    assert_eq!(embedded.session_manager, checkout.session_manager);
    assert_eq!(embedded.operator_version().unwrap(), "0.1.0");
    assert!(
        !names(&embedded.operator).iter().any(|n| n.contains("test")),
        "tests are not shipped"
    );
}

#[test]
fn without_sidecars_only_it_explains_and_exits_64() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(
        run(&InstallArgs::default(), home.path(), None),
        ExitCode::from(64)
    );
    assert!(tree(home.path()).is_empty());
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dry = InstallArgs {
        dry_run: true,
        with_session_manager: true,
        skip_kumiho: true,
        ..args()
    };
    let (result, out) = install_in(&dry, &home);
    let report = result.expect(&out);
    assert!(!home.exists(), "nothing created:\n{out}");
    assert!(report.changes >= 6, "{out}");
    for expected in [
        "would: create ",
        "would: write operator package to ",
        "would: create venv ",
        "would: pip install revka-operator 0.1.0",
        "would: write launcher to ",
        "would: write session manager to ",
        "would: npm ci --omit=dev in ",
        "skip kumiho (--skip-kumiho)",
        "nothing was changed",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // On an existing home too: not one file or mode changes.
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(home.join("operator_mcp")).unwrap();
    std::fs::set_permissions(
        home.join("operator_mcp"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let before = tree(&home);
    let (result, out) = install_in(&dry, &home);
    result.expect(&out);
    assert!(out.contains("would: chmod 0700 "), "{out}");
    assert_eq!(tree(&home), before, "{out}");
}

/// The daemon refuses a home others can write in; the installer does not put programs the
/// daemon will run there either (not even in a dry run, which would promise a good install).
#[test]
fn a_home_others_can_write_in_is_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o775)).unwrap();
    for dry_run in [true, false] {
        let with = InstallArgs {
            dry_run,
            skip_kumiho: true,
            ..args()
        };
        let (result, out) = install_in(&with, &home);
        let err = result.expect_err(&out);
        assert!(err.contains("refusing to use"), "{err}");
        assert!(
            err.contains("mode 0775") && err.contains("chmod 700"),
            "{err}"
        );
        assert!(!home.join("operator_mcp").exists(), "{out}");
    }
}

#[test]
fn a_too_old_or_missing_python_fails_clearly_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("python3.9");
    write_script(&old, "#!/bin/sh\necho 3.9.18\n");
    let home = tmp.path().join("home");
    let with = |python: &Path| InstallArgs {
        python: Some(python.display().to_string()),
        ..args()
    };
    let (result, out) = install_in(&with(&old), &home);
    let err = result.expect_err(&out);
    assert!(
        err.contains("Python 3.9.18") && err.contains("3.11 or newer is required"),
        "{err}"
    );
    let (result, _) = install_in(&with(&tmp.path().join("no-such-python")), &home);
    assert!(result.expect_err("missing").contains("cannot run"));
    assert!(!home.exists());
}

#[test]
fn a_failing_pip_install_shows_the_tail_of_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    // A stand-in interpreter: says 3.11.9, "creates" a venv by copying itself, and its pip fails.
    let python = tmp.path().join("python3");
    write_script(
        &python,
        r#"#!/bin/sh
case "$1 $2" in
  "-m venv") mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "-m pip") echo "Collecting mcp<3,>=2.3"; echo "ERROR: No matching distribution found for mcp<3,>=2.3" >&2; exit 1 ;;
  *) echo 3.11.9 ;;
esac
"#,
    );
    let home = tmp.path().join("home");
    let fake = InstallArgs {
        python: Some(python.display().to_string()),
        ..args()
    };
    let (result, out) = install_in(&fake, &home);
    let err = result.expect_err(&out);
    assert!(err.starts_with("pip install failed"), "{err}");
    assert!(
        err.contains("No matching distribution found for mcp<3,>=2.3"),
        "{err}"
    );
    assert!(out.contains("pip install revka-operator 0.1.0"), "{out}");
    assert!(
        !Layout::new(&home).marker.exists(),
        "a failed install is not recorded"
    );
}

#[test]
fn from_source_needs_a_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let from = InstallArgs {
        from_source: Some(tmp.path().to_path_buf()),
        ..args()
    };
    let (result, _) = install_in(&from, &tmp.path().join("home"));
    assert!(result.unwrap_err().contains("is not a Revka checkout"));
}

/// A stand-in npm: logs its arguments and working directory to `log`; `ci` lays out a
/// node_modules with the SDK's package.json (or fails, when `fail`).
fn fake_npm(dir: &Path, log: &Path, fail: bool) -> PathBuf {
    let npm = dir.join("npm");
    let body = if fail {
        "echo \"npm error code E404\"; echo \"npm error 404 Not Found - GET https://registry.npmjs.org/@anthropic-ai%2fclaude-agent-sdk\" >&2; exit 1".to_owned()
    } else {
        "mkdir -p node_modules/@anthropic-ai/claude-agent-sdk && echo '{\"name\":\"@anthropic-ai/claude-agent-sdk\"}' > node_modules/@anthropic-ai/claude-agent-sdk/package.json".to_owned()
    };
    write_script(
        &npm,
        &format!(
            "#!/bin/sh\necho \"$PWD $*\" >> {:?}\n{body}\n",
            log.display().to_string()
        ),
    );
    npm
}

#[test]
fn a_failing_or_missing_npm_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let log = tmp.path().join("npm.log");
    let failing = InstallArgs {
        with_session_manager: true,
        skip_operator: true,
        npm: Some(fake_npm(tmp.path(), &log, true).display().to_string()),
        ..args()
    };
    let (result, out) = install_in(&failing, &home);
    let err = result.expect_err(&out);
    assert!(err.contains("ci --omit=dev` in "), "{err}");
    assert!(err.contains("failed (exit status: 1)"), "{err}");
    assert!(
        err.contains("npm error 404 Not Found"),
        "the tail of its output: {err}"
    );
    let sm = Layout::new(&home).session_manager;
    assert!(
        !npm::marker(&sm).exists(),
        "a failed npm ci is not recorded"
    );
    assert!(
        sm.join("package-lock.json").is_file(),
        "the lock file is installed"
    );

    let missing = InstallArgs {
        npm: Some(tmp.path().join("no-such-npm").display().to_string()),
        ..failing
    };
    let (result, out) = install_in(&missing, &home);
    let err = result.expect_err(&out);
    assert!(err.contains("are installed with npm"), "{err}");
    assert!(err.contains("was not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_manager_is_copied_kept_in_sync_and_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    let npm_log = tmp.path().join("npm.log");
    let sm_only = InstallArgs {
        with_session_manager: true,
        skip_operator: true,
        from_source: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        npm: Some(fake_npm(tmp.path(), &npm_log, false).display().to_string()),
        ..args()
    };
    let (result, out) = install_in(&sm_only, &home);
    assert!(result.expect(&out).changes >= 3, "{out}");
    let layout = Layout::new(&home);
    let script = layout.session_manager.join("session-manager.js");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&layout.dir), 0o700);
    assert_eq!(mode(&script), 0o700);
    assert_eq!(mode(&layout.session_manager.join("package.json")), 0o600);
    assert_eq!(
        mode(&layout.session_manager.join("package-lock.json")),
        0o600
    );
    assert!(layout.session_manager.join("backends/claude.js").is_file());
    assert!(!layout.venv.exists(), "--skip-operator");
    // npm ci ran once, in the session manager's directory, without dev dependencies.
    let calls = std::fs::read_to_string(&npm_log).unwrap();
    assert_eq!(
        calls.trim(),
        format!(
            "{} ci --omit=dev --no-audit --no-fund",
            layout.session_manager.display()
        ),
        "{out}"
    );
    assert!(out.contains("ci --omit=dev in "), "{out}");

    // In sync: only what differs is rewritten, stale files go, a second run is a no-op.
    std::fs::write(layout.session_manager.join("chat.js"), "// edited").unwrap();
    std::fs::write(layout.session_manager.join("old.js"), "// stale").unwrap();
    let (result, out) = install_in(&sm_only, &home);
    result.expect(&out);
    assert!(out.contains("(1 file: chat.js; remove old.js)"), "{out}");
    assert!(!layout.session_manager.join("old.js").exists());
    let (result, out) = install_in(&sm_only, &home);
    assert_eq!(result.expect(&out).changes, 0, "{out}");
    assert!(out.contains("already installed; nothing changed"), "{out}");
    assert!(
        out.contains("ok: session manager dependencies installed"),
        "{out}"
    );
    // A changed script does not rerun npm; only a changed manifest or lost dependencies do.
    assert_eq!(
        std::fs::read_to_string(&npm_log).unwrap().lines().count(),
        1
    );
    std::fs::remove_dir_all(layout.session_manager.join("node_modules")).unwrap();
    let (result, out) = install_in(&sm_only, &home);
    assert_eq!(result.expect(&out).changes, 1, "{out}");
    assert_eq!(
        std::fs::read_to_string(&npm_log).unwrap().lines().count(),
        2
    );

    // The copy runs on its own and answers /health.
    let socket = home.join("sm.sock");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg("--socket")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let client = SidecarClient::new(&socket, Duration::from_secs(2));
    let mut health = None;
    for _ in 0..200 {
        if let Ok(v) = client.get("/health").await {
            health = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = health.expect("the copied session manager answers /health");
    assert_eq!(health["status"], "ok", "{health}");

    // Doctor sees it when it is enabled (the daemon is not running: its socket still answers).
    let config = home.join("config.toml");
    let toml = format!(
        "[operator]\nenabled = false\n[session_manager]\nenabled = true\nsocket_path = {:?}\n",
        socket.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let checks = diagnose(&home, Some(&config)).await;
    assert_eq!(
        status_of(&checks, "session manager script"),
        Status::Ok,
        "{checks:#?}"
    );
    assert_eq!(
        status_of(&checks, "session manager"),
        Status::Ok,
        "{checks:#?}"
    );
    child.kill().await.ok();
    let checks = diagnose(&home, Some(&config)).await;
    let sm = find(&checks, "session manager");
    assert_eq!(sm.status, Status::Warn, "daemon down: a warning, {sm:?}");
    assert!(
        sm.detail
            .contains("the daemon, which starts it, is not running"),
        "{sm:?}"
    );
}

async fn diagnose(home: &Path, config: Option<&Path>) -> Vec<Check> {
    let home_str = home.display().to_string();
    let env = move |name: &str| (name == "REVKA_HOME").then(|| home_str.clone());
    doctor::diagnose(DoctorOptions {
        home,
        config_path: config,
        env: &env,
    })
    .await
}

#[track_caller]
fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

#[track_caller]
fn status_of(checks: &[Check], name: &str) -> Status {
    find(checks, name).status
}

/// The slow one: a real install (venv + pip from the index), reused for every assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_real_install_doctor_and_idempotence() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let layout = Layout::new(&home);
    let first = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || install_in(&args(), &home))
            .await
            .unwrap()
    };
    let (result, out) = first;
    assert!(result.expect(&out).changes >= 5, "{out}");
    assert!(out.contains("installed ("), "{out}");
    assert_eq!(mode(&layout.launcher), 0o700);
    assert_eq!(mode(&layout.src.join("revka_operator/server.py")), 0o600);
    assert!(
        !layout.src.join("build").exists(),
        "build artifacts are cleaned up"
    );

    // Doctor: every operator check is green, and the handshake lists the tools.
    let checks = diagnose(&home, None).await;
    for name in [
        "config",
        "REVKA_HOME",
        "python",
        "operator venv",
        "operator launcher",
        "operator package",
        "operator handshake",
    ] {
        assert_eq!(status_of(&checks, name), Status::Ok, "{name}: {checks:#?}");
    }
    assert!(
        find(&checks, "operator handshake")
            .detail
            .contains("save_plan")
    );
    assert!(!doctor::failed(&checks), "{}", doctor::render_text(&checks));

    // The launcher, started the way the daemon starts it, answers a handshake.
    let spec = ServerSpec {
        name: "operator".to_owned(),
        transport: TransportSpec::Stdio {
            command: "python3".to_owned(),
            args: vec![layout.launcher.display().to_string()],
            env: vec![("REVKA_HOME".to_owned(), home.display().to_string())],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(30),
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(30),
        roots: Vec::new(),
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    };
    let report = probe(&spec, &http_client()).await;
    assert!(report.ok, "{report:?}");
    let tools = report.tools.unwrap_or_default();
    for tool in [
        "save_plan",
        "recall_plans",
        "get_plan",
        "set_goal",
        "list_goals",
        "complete_goal",
        "operator_status",
        "slow_count",
    ] {
        assert!(
            tools.iter().any(|t| t == tool),
            "{tool} missing from {tools:?}"
        );
    }

    // The venv's operator also works as a configured MCP server.
    let config = home.join("config.toml");
    let toml = format!(
        "[[mcp.servers]]\nname = \"op\"\ncommand = {:?}\nargs = [\"-m\", \"revka_operator.server\"]\nenv = {{ REVKA_HOME = {:?} }}\n",
        layout.venv_python.display().to_string(),
        home.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let checks = diagnose(&home, Some(&config)).await;
    let server = find(&checks, "server op");
    assert_eq!(server.status, Status::Ok, "{server:?}");
    assert!(server.detail.starts_with("8 tools"), "{server:?}");

    // Idempotent: a second run changes nothing and says so; so does a dry run.
    let (result, out) = install_in(&args(), &home);
    assert_eq!(result.expect(&out).changes, 0, "{out}");
    assert!(
        out.contains("ok: revka-operator 0.1.0 already installed"),
        "{out}"
    );
    assert!(out.contains("already installed; nothing changed"), "{out}");
    let dry = InstallArgs {
        dry_run: true,
        ..args()
    };
    let (result, out) = install_in(&dry, &home);
    assert_eq!(result.expect(&out).changes, 0, "{out}");

    // A changed package file is re-copied and reinstalled (same version), then all is quiet.
    let store = layout.src.join("revka_operator/store.py");
    std::fs::write(&store, "raise ImportError('tampered')\n").unwrap();
    let (result, out) = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || install_in(&args(), &home))
            .await
            .unwrap()
    };
    let report = result.expect(&out);
    assert!(out.contains("(1 file: revka_operator/store.py)"), "{out}");
    assert!(out.contains("ok: venv "), "the venv is kept: {out}");
    assert!(out.contains("\npip install revka-operator 0.1.0"), "{out}");
    assert_eq!(report.changes, 2, "{out}");
    let (result, out) = install_in(&args(), &home);
    assert_eq!(result.expect(&out).changes, 0, "{out}");
}
