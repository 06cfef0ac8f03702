//! Tests of `revka doctor` against temporary homes and a small in-test gateway (the real
//! operator install is exercised by `install::tests::slow_real_install_doctor_and_idempotence`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{Check, DoctorOptions, Status, diagnose, failed, render_text};
use crate::auth::TokenStore;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A fresh home (0700) in its own temporary directory.
fn home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    chmod(home.path(), 0o700);
    home
}

async fn run(home: &Path, config: Option<&str>) -> Vec<Check> {
    let path = home.join("config.toml");
    if let Some(text) = config {
        std::fs::write(&path, text).expect("write config");
    }
    let home_str = home.display().to_string();
    let env = move |name: &str| (name == "REVKA_HOME").then(|| home_str.clone());
    diagnose(DoctorOptions {
        home,
        config_path: None,
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

const NO_OPERATOR: &str = "[operator]\nenabled = false\n";

#[tokio::test]
async fn an_enabled_operator_without_a_venv_fails_with_the_install_hint() {
    let home = home();
    let checks = run(home.path(), None).await;
    assert!(failed(&checks));
    for name in ["operator venv", "operator launcher"] {
        let check = find(&checks, name);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert_eq!(
            check.hint.as_deref(),
            Some("run: revka install --sidecars-only")
        );
    }
    assert_eq!(find(&checks, "operator package").status, Status::Skip);
    assert!(
        checks.iter().all(|c| c.name != "operator handshake"),
        "not tried without a venv"
    );
    assert_eq!(find(&checks, "config").status, Status::Ok);
    assert_eq!(find(&checks, "REVKA_HOME").status, Status::Ok);
    let daemon = find(&checks, "daemon");
    assert_eq!(
        daemon.status,
        Status::Warn,
        "not running is a warning: {daemon:?}"
    );
    assert!(daemon.detail.contains("not running"));
    assert_eq!(find(&checks, "session manager").status, Status::Skip);
    assert_eq!(find(&checks, "breaker").status, Status::Skip);

    let text = render_text(&checks);
    assert!(text.contains("FAIL operator venv: no venv at "), "{text}");
    assert!(
        text.contains("       hint: run: revka install --sidecars-only"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("2 failure(s)"), "{text}");

    // Disabled, the operator is skipped and nothing fails.
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    assert_eq!(find(&checks, "operator").status, Status::Skip);
    assert!(!failed(&checks), "{}", render_text(&checks));
}

#[tokio::test]
async fn a_world_writable_home_and_readable_secrets_fail() {
    let home = home();
    chmod(home.path(), 0o777);
    std::fs::write(home.path().join("gateway.token"), "secret").unwrap();
    chmod(&home.path().join("gateway.token"), 0o644);
    std::fs::write(home.path().join("gateway_tokens.json"), "{}").unwrap();
    chmod(&home.path().join("gateway_tokens.json"), 0o600);
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    let check = find(&checks, "REVKA_HOME");
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(
        check.detail.contains("group/world-writable (mode 0777)"),
        "{check:?}"
    );
    assert_eq!(
        check.hint,
        Some(format!("chmod 700 {}", home.path().display()))
    );
    let token = find(&checks, "file gateway.token");
    assert_eq!(token.status, Status::Fail);
    assert!(token.hint.as_deref().unwrap().starts_with("chmod 600 "));
    assert_eq!(find(&checks, "file gateway_tokens.json").status, Status::Ok);
    assert!(
        checks.iter().all(|c| c.name != "file mcp.json"),
        "absent files are not listed"
    );
    chmod(home.path(), 0o700);
}

#[tokio::test]
async fn invalid_and_failing_servers_fail_and_manual_ones_warn() {
    let home = home();
    let config = format!(
        "{NO_OPERATOR}[mcp]\nhandshake_timeout_secs = 5\n\
         [[mcp.servers]]\nname = \"broken\"\ntransport = \"stdio\"\n\
         [[mcp.servers]]\nname = \"gone\"\ncommand = \"/nonexistent/server\"\n\
         [[mcp.servers]]\nname = \"later\"\ncommand = \"/nonexistent/server\"\nauto_connect = false\n"
    );
    let checks = run(home.path(), Some(&config)).await;
    let broken = find(&checks, "server broken");
    assert_eq!(broken.status, Status::Fail, "{broken:?}");
    assert!(
        broken.detail.starts_with("invalid configuration: "),
        "{broken:?}"
    );
    assert!(
        broken.detail.contains("command"),
        "the reason names the key: {broken:?}"
    );
    assert!(broken.hint.as_deref().unwrap().contains("[[mcp.servers]]"));
    let gone = find(&checks, "server gone");
    assert_eq!(gone.status, Status::Fail, "{gone:?}");
    assert_eq!(
        gone.hint.as_deref(),
        Some("`revka mcp test gone` shows the details")
    );
    let later = find(&checks, "server later");
    assert_eq!(later.status, Status::Warn, "{later:?}");
    assert!(later.detail.contains("auto_connect = false"));

    // An unparsable config FAILs, and the rest still runs on the defaults.
    let checks = run(home.path(), Some("[mcp\n")).await;
    let config = find(&checks, "config");
    assert_eq!(config.status, Status::Fail, "{config:?}");
    assert!(
        config
            .hint
            .as_deref()
            .unwrap()
            .contains("revka config check")
    );
    assert_eq!(find(&checks, "operator venv").status, Status::Fail);
}

#[tokio::test]
async fn stale_discovery_files_are_warnings() {
    let home = home();
    let dead = json!({ "url": "http://127.0.0.1:9", "pid": 999_999_999u32 }).to_string();
    std::fs::write(home.path().join("gateway.json"), &dead).unwrap();
    std::fs::write(home.path().join("mcp.json"), &dead).unwrap();
    chmod(&home.path().join("mcp.json"), 0o600);
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    let daemon = find(&checks, "daemon");
    assert_eq!(daemon.status, Status::Warn, "{daemon:?}");
    assert!(daemon.detail.contains("stale"), "{daemon:?}");
    for name in ["discovery mcp.json", "discovery gateway.json"] {
        let check = find(&checks, name);
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(
            check.detail.contains("pid 999999999 is not running"),
            "{check:?}"
        );
        assert!(check.hint.as_deref().unwrap().starts_with("remove it: rm "));
    }
    assert!(!failed(&checks), "{}", render_text(&checks));
}

/// A fake daemon: `/api/health` and the breaker's actor, switchable between answers.
struct Fake {
    health: (StatusCode, Value),
    breaker: Option<Value>,
}

type Shared = Arc<Mutex<Fake>>;

async fn health(State(fake): State<Shared>) -> Response {
    let (status, body) = fake.lock().unwrap().health.clone();
    (status, Json(body)).into_response()
}

async fn actor(State(fake): State<Shared>, UrlPath(path): UrlPath<String>) -> Response {
    match fake.lock().unwrap().breaker.clone() {
        Some(node) if path == "root/sidecars/breaker:session_manager" => Json(node).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no actor at {path}") })),
        )
            .into_response(),
    }
}

async fn fake_daemon(home: &Path, fake: Shared) {
    let store = TokenStore::open(home).expect("token store");
    store.ensure_owner_token(home).expect("owner token");
    let router = Router::new()
        .route("/api/health", get(health))
        .route("/api/actors/{*path}", get(actor))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let doc = json!({ "url": url, "pid": std::process::id() });
    std::fs::write(home.join("gateway.json"), doc.to_string()).unwrap();
}

#[tokio::test]
async fn the_daemon_s_health_and_breaker_are_reported() {
    let home = home();
    let healthy = json!({ "status": "healthy", "components": { "gateway": "running" }, "mcp_servers": [], "sidecars": [] });
    let fake = Arc::new(Mutex::new(Fake {
        health: (StatusCode::OK, healthy),
        breaker: None,
    }));
    fake_daemon(home.path(), fake.clone()).await;
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    assert_eq!(find(&checks, "daemon").status, Status::Ok, "{checks:#?}");
    assert_eq!(find(&checks, "breaker").status, Status::Skip);
    assert_eq!(find(&checks, "discovery gateway.json").status, Status::Ok);
    assert_eq!(
        find(&checks, "file gateway.token").status,
        Status::Ok,
        "written 0600"
    );

    {
        let mut f = fake.lock().unwrap();
        f.health = (
            StatusCode::OK,
            json!({ "status": "degraded", "components": { "gateway": "running" },
                    "mcp_servers": [{ "name": "mcp:fs", "state": "failed", "last_failure": "exit 1" },
                                    { "name": "mcp:ok", "state": "running" }],
                    "sidecars": [{ "name": "session_manager", "state": "backing_off" }] }),
        );
        f.breaker = Some(json!({ "id": "breaker:session_manager", "state": "running",
            "details": { "state": "open", "consecutive_failures": 3, "next_probe_in_ms": 4200 } }));
    }
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    let daemon = find(&checks, "daemon");
    assert_eq!(daemon.status, Status::Warn, "{daemon:?}");
    assert!(daemon.detail.contains("degraded"), "{daemon:?}");
    assert!(
        daemon.detail.contains("mcp:fs (failed: exit 1)"),
        "{daemon:?}"
    );
    assert!(
        daemon.detail.contains("session_manager (backing_off)"),
        "{daemon:?}"
    );
    assert!(!daemon.detail.contains("mcp:ok"), "{daemon:?}");
    let breaker = find(&checks, "breaker");
    assert_eq!(breaker.status, Status::Warn, "{breaker:?}");
    assert!(
        breaker
            .detail
            .contains("open after 3 failure(s); next probe in 5s"),
        "{breaker:?}"
    );

    {
        let mut f = fake.lock().unwrap();
        f.health = (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "components": { "mcp_http": "failed" }, "mcp_servers": [], "sidecars": [] }),
        );
        f.breaker = Some(json!({ "details": { "state": "closed", "consecutive_failures": 0 } }));
    }
    let checks = run(home.path(), Some(NO_OPERATOR)).await;
    let daemon = find(&checks, "daemon");
    assert_eq!(daemon.status, Status::Fail, "{daemon:?}");
    assert!(daemon.detail.contains("unhealthy") && daemon.detail.contains("mcp_http (failed)"));
    assert_eq!(find(&checks, "breaker").status, Status::Ok);
    assert!(failed(&checks));

    // The session manager, enabled, does not answer while the daemon runs: a failure.
    let config = format!("{NO_OPERATOR}[session_manager]\nenabled = true\n");
    let checks = run(home.path(), Some(&config)).await;
    let sm = find(&checks, "session manager");
    assert_eq!(sm.status, Status::Fail, "{sm:?}");
    assert_eq!(find(&checks, "session manager script").status, Status::Fail);
}

#[test]
fn json_has_name_status_detail_hint() {
    let checks = vec![Check::ok("a", "fine"), Check::fail("b", "broken", "fix it")];
    let value = serde_json::to_value(&checks).unwrap();
    assert_eq!(
        value,
        json!([
            { "name": "a", "status": "ok", "detail": "fine", "hint": null },
            { "name": "b", "status": "fail", "detail": "broken", "hint": "fix it" },
        ])
    );
}

/// The installed session manager's Claude Agent SDK: a warning naming the install while its
/// `node_modules` lacks it, its version once there.
#[tokio::test]
async fn the_claude_agent_sdk_of_the_session_manager_is_checked() {
    let home = home();
    let dir = home.path().join("operator_mcp/session-manager");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("session-manager.js"), "").unwrap();
    std::fs::write(dir.join("package.json"), "{}").unwrap();
    let config = format!("{NO_OPERATOR}[session_manager]\nenabled = true\n");
    let checks = run(home.path(), Some(&config)).await;
    let sdk = find(&checks, "claude agent sdk");
    assert_eq!(sdk.status, Status::Warn, "{sdk:?}");
    assert!(sdk.detail.contains("sdk_missing"), "{sdk:?}");
    assert!(
        sdk.hint
            .as_deref()
            .is_some_and(|h| h.contains("--with-session-manager")),
        "{sdk:?}"
    );

    let sdk_dir = dir.join("node_modules/@anthropic-ai/claude-agent-sdk");
    std::fs::create_dir_all(&sdk_dir).unwrap();
    std::fs::write(sdk_dir.join("package.json"), r#"{"version":"0.3.337"}"#).unwrap();
    let checks = run(home.path(), Some(&config)).await;
    let sdk = find(&checks, "claude agent sdk");
    assert_eq!(sdk.status, Status::Ok, "{sdk:?}");
    assert!(sdk.detail.starts_with("0.3.337 in "), "{sdk:?}");
}
