//! Tests of the gateway client and the operator commands against a small in-test gateway.
//!
//! The fake gateway (axum on `127.0.0.1:0`) serves the daemon's contract with the real auth
//! pieces: a [`TokenStore`] in a temporary `$REVKA_HOME` that writes the owner token file,
//! [`PairingCodes`], and a status tree built from [`StatusNode`]s. Every test passes its home
//! explicitly; nothing touches the process environment.
//!
//! `tokens`: `revka tokens list | create | revoke`.

mod tokens;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use revka_actors::supervisor::RestartType;
use revka_actors::{ActorState, Snapshot, StatusNode};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{Gateway, RemoteError, encode_actor_path, encode_segment, pid_alive};
use crate::auth::{PairingCodes, RevokeError, Role, TokenStore, ToolScope};
use crate::cli::ops::{Op, Outcome, execute, execute_on};
use crate::http::bearer::extract_bearer;

/// The fake daemon's state.
struct Fake {
    store: Arc<TokenStore>,
    pairing: PairingCodes,
    tree: Snapshot,
    /// Every request's raw URI, in order.
    seen: Mutex<Vec<String>>,
    /// The answer of `POST /api/reload`.
    reload: Mutex<(StatusCode, String)>,
}

type Shared = Arc<Fake>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn auth(State(fake): State<Shared>, req: Request, next: Next) -> Response {
    fake.seen.lock().unwrap().push(req.uri().to_string());
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(extract_bearer);
    if token.and_then(|t| fake.store.verify(t)).is_none() {
        return error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    }
    next.run(req).await
}

async fn tree(State(fake): State<Shared>) -> Json<Snapshot> {
    Json(fake.tree.clone())
}

async fn actor(State(fake): State<Shared>, UrlPath(path): UrlPath<String>) -> Response {
    match fake.tree.find(&path) {
        Some(node) => Json(node.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no actor at {path}")),
    }
}

async fn restart(State(fake): State<Shared>, UrlPath(path): UrlPath<String>) -> Response {
    let Some(path) = path.strip_suffix("/restart") else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    match fake.tree.find(path) {
        None => error(StatusCode::NOT_FOUND, &format!("no actor at {path}")),
        Some(node) if node.restart_type.is_none() => {
            error(StatusCode::CONFLICT, "the root cannot be restarted")
        }
        Some(node) if node.restart_type == Some(RestartType::Temporary) => error(
            StatusCode::CONFLICT,
            &format!("{path} is a temporary child: it is never restarted"),
        ),
        Some(node) => Json(json!({ "restarted": node.path })).into_response(),
    }
}

async fn pair_code(State(fake): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let role: Role = body["role"].as_str().unwrap().parse().unwrap();
    let code = fake.pairing.issue_for(role, Duration::from_secs(600));
    Json(json!({ "code": code, "role": role, "expires_in_secs": 600 }))
}

async fn tokens(State(fake): State<Shared>) -> Response {
    Json(fake.store.list()).into_response()
}

/// `POST /api/tokens` as the daemon answers it, recording the body it was sent.
async fn create_token(State(fake): State<Shared>, Json(body): Json<Value>) -> Response {
    fake.seen.lock().unwrap().push(body.to_string());
    let tools = body["tools"].as_array().map(|tools| {
        let patterns = tools.iter().map(|t| t.as_str().unwrap().to_owned());
        ToolScope::new(patterns).unwrap()
    });
    let expires = body["expires_secs"].as_u64().map(Duration::from_secs);
    let name = body["name"].as_str().unwrap();
    match fake.store.issue_client(name, tools, expires) {
        Ok(new) => {
            let info = fake.store.list().into_iter().find(|t| t.id == new.id);
            let mut answer = serde_json::to_value(info.unwrap()).unwrap();
            answer["token"] = json!(new.token);
            answer["mcp_url"] = json!("http://127.0.0.1:4242/mcp");
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn revoke(State(fake): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    match fake.store.revoke(&id) {
        Ok(info) => Json(info).into_response(),
        Err(e @ (RevokeError::Unknown(_) | RevokeError::InvalidPrefix(_))) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

async fn reload(State(fake): State<Shared>) -> Response {
    let (status, body) = fake.reload.lock().unwrap().clone();
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    (status, [("content-type", content_type)], body).into_response()
}

/// root → {mcp_servers → {mcp:fs, "mcp:my server", call:1 (temporary)}, gateway (failed)}.
fn fixture_tree() -> Snapshot {
    let root = StatusNode::root("root", "supervisor");
    root.set_state(ActorState::Running);
    let servers = root.child("mcp_servers", "supervisor", Some(RestartType::Permanent));
    servers.set_state(ActorState::Running);
    servers
        .child("mcp:fs", "mcp_connection", Some(RestartType::Permanent))
        .set_state(ActorState::Running);
    let spaced = servers.child(
        "mcp:my server",
        "mcp_connection",
        Some(RestartType::Transient),
    );
    spaced.set_state(ActorState::BackingOff);
    spaced.record_failure("process exited with status 1");
    spaced.record_restart(Duration::from_secs(2));
    servers
        .child("call:1", "call", Some(RestartType::Temporary))
        .set_state(ActorState::Running);
    let gateway = root.child("gateway", "listener", Some(RestartType::Permanent));
    gateway.record_failure("bind: address in use");
    gateway.set_state(ActorState::Failed);
    root.snapshot()
}

/// A running fake daemon: its home (with `gateway.json` and `gateway.token`) and state.
struct Daemon {
    home: TempDir,
    url: String,
    fake: Shared,
}

impl Daemon {
    async fn start() -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(TokenStore::open(home.path()).expect("token store"));
        store.ensure_owner_token(home.path()).expect("owner token");
        let fake = Arc::new(Fake {
            pairing: PairingCodes::new(store.clone()),
            store,
            tree: fixture_tree(),
            seen: Mutex::new(Vec::new()),
            reload: Mutex::new((StatusCode::OK, "{}".to_owned())),
        });
        let router = Router::new()
            .route("/api/actors", get(tree))
            .route("/api/actors/{*path}", get(actor).post(restart))
            .route("/api/pair/code", post(pair_code))
            .route("/api/tokens", get(tokens).post(create_token))
            .route("/api/tokens/{id}", delete(revoke))
            .route("/api/reload", post(reload))
            .layer(middleware::from_fn_with_state(fake.clone(), auth))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        write_gateway_json(home.path(), &url, std::process::id());
        Self { home, url, fake }
    }

    async fn run(&self, op: Op) -> Outcome {
        execute(self.home.path(), &op, false).await
    }

    fn set_reload(&self, status: StatusCode, body: &str) {
        *self.fake.reload.lock().unwrap() = (status, body.to_owned());
    }
}

fn write_gateway_json(home: &Path, url: &str, pid: u32) {
    let doc = json!({ "url": url, "pid": pid, "started_at": "2025-06-01T12:00:00Z" });
    std::fs::write(home.join("gateway.json"), doc.to_string()).expect("write gateway.json");
}

/// Asserts a failed outcome whose stderr is `revka: <message>`.
#[track_caller]
fn assert_failed(outcome: &Outcome, message: &str) {
    assert!(!outcome.success, "{outcome:?}");
    assert_eq!(outcome.stdout, "");
    assert_eq!(outcome.stderr, format!("revka: {message}\n"));
}

#[tokio::test]
async fn status_prints_the_tree_and_the_json() {
    let daemon = Daemon::start().await;
    let out = daemon
        .run(Op::Status {
            json: false,
            path: None,
        })
        .await;
    assert!(out.success, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(lines[0].starts_with("root "));
    assert!(lines[1].starts_with("├── mcp_servers "));
    assert!(lines[2].starts_with("│   ├── mcp:fs "));
    assert!(lines[3].starts_with("│   ├── mcp:my server  backing_off"));
    assert!(lines[3].contains("↻ 1"));
    assert!(lines[3].contains(": process exited with status 1"));
    assert!(lines[3].contains("next restart in "));
    assert!(lines[4].starts_with("│   └── call:1 "));
    assert!(lines[5].starts_with("└── gateway "));
    assert!(lines[5].contains("failed"));
    assert!(lines[5].contains(": bind: address in use"));
    assert!(!out.stdout.contains('\x1b'));

    let out = daemon
        .run(Op::Status {
            json: true,
            path: None,
        })
        .await;
    assert!(out.success, "{out:?}");
    let back: Snapshot = serde_json::from_str(&out.stdout).expect("snapshot JSON");
    assert_eq!(back, daemon.fake.tree);
}

#[tokio::test]
async fn status_of_a_subtree_encodes_the_path() {
    let daemon = Daemon::start().await;
    let path = "root/mcp_servers/mcp:my server".to_owned();
    let out = daemon
        .run(Op::Status {
            json: false,
            path: Some(path),
        })
        .await;
    assert!(out.success, "{out:?}");
    assert!(out.stdout.starts_with("mcp:my server  backing_off"));
    assert_eq!(out.stdout.lines().count(), 1);
    let seen = daemon.fake.seen.lock().unwrap().clone();
    assert_eq!(seen, ["/api/actors/root/mcp_servers/mcp:my%20server"]);

    let out = daemon
        .run(Op::Status {
            json: true,
            path: Some("root/nope".to_owned()),
        })
        .await;
    assert_failed(&out, "no actor at root/nope");
}

#[tokio::test]
async fn restart_reports_success_unknown_paths_and_conflicts() {
    let daemon = Daemon::start().await;
    let restart = |path: &str| Op::Restart {
        path: path.to_owned(),
    };
    let out = daemon.run(restart("root/mcp_servers/mcp:fs")).await;
    assert_eq!(
        out,
        Outcome {
            stdout: "restarted root/mcp_servers/mcp:fs\n".to_owned(),
            stderr: String::new(),
            success: true,
        }
    );
    let out = daemon
        .run(restart("/root/mcp_servers/mcp:my server/"))
        .await;
    assert_eq!(out.stdout, "restarted root/mcp_servers/mcp:my server\n");
    let out = daemon.run(restart("root/mcp_servers/mcp:gone")).await;
    assert_failed(&out, "no actor at root/mcp_servers/mcp:gone");
    let out = daemon.run(restart("root/mcp_servers/call:1")).await;
    assert_failed(
        &out,
        "root/mcp_servers/call:1 is a temporary child: it is never restarted",
    );
    let out = daemon.run(restart("root")).await;
    assert_failed(&out, "the root cannot be restarted");
    let seen = daemon.fake.seen.lock().unwrap().clone();
    assert_eq!(
        seen[1],
        "/api/actors/root/mcp_servers/mcp:my%20server/restart"
    );
    let out = daemon.run(restart("//")).await;
    assert!(!out.success);
    assert!(out.stderr.starts_with("revka: invalid actor path \"//\""));
    assert_eq!(daemon.fake.seen.lock().unwrap().len(), 5, "not sent");
}

#[tokio::test]
async fn pair_prints_a_code_that_redeems_for_the_role_asked_for() {
    let daemon = Daemon::start().await;
    for role in Role::ALL {
        let out = daemon.run(Op::Pair { role }).await;
        assert!(out.success, "{out:?}");
        let first = out.stdout.lines().next().unwrap();
        let code = first
            .strip_prefix("pairing code: ")
            .and_then(|rest| rest.split(' ').next())
            .expect("a code");
        assert_eq!(
            first,
            format!("pairing code: {code} (valid for 10m, once) for a token with the {role} role")
        );
        assert_eq!(
            out.stdout.lines().nth(1).unwrap(),
            format!(
                "trade it for a token: POST {}/pair with header X-Pairing-Code: {code}",
                daemon.url
            )
        );
        let redeemed = daemon.fake.pairing.redeem(code, "phone").expect("redeems");
        assert_eq!(redeemed.role, role);
    }
}

#[tokio::test]
async fn reload_prints_changes_and_fails_on_422() {
    let daemon = Daemon::start().await;
    let out = daemon.run(Op::Reload).await;
    assert_eq!(out.stdout, "reloaded: nothing changed\n");
    daemon.set_reload(
        StatusCode::OK,
        r#"{"applied": ["mcp.servers[fs].tool_timeout_secs"], "restart_required": ["gateway.port"]}"#,
    );
    let out = daemon.run(Op::Reload).await;
    assert!(out.success);
    assert_eq!(
        out.stdout,
        "applied:\n  - mcp.servers[fs].tool_timeout_secs\n\
         restart required (takes effect at the next daemon start):\n  - gateway.port\n"
    );
    daemon.set_reload(
        StatusCode::UNPROCESSABLE_ENTITY,
        r#"{"error": "config.toml:3:1: unknown key `mcp.srvers`", "path": "/h/config.toml"}"#,
    );
    let out = daemon.run(Op::Reload).await;
    assert!(!out.success);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "revka: reload rejected, nothing was applied: \
         config.toml:3:1: unknown key `mcp.srvers`\npath: /h/config.toml\n"
    );
    daemon.set_reload(StatusCode::INTERNAL_SERVER_ERROR, "oops");
    let out = daemon.run(Op::Reload).await;
    assert_failed(&out, "the gateway answered 500 Internal Server Error: oops");
}

#[tokio::test]
async fn a_stale_owner_token_is_named_as_such() {
    let daemon = Daemon::start().await;
    let other = format!("rvk_{}", "ab".repeat(32));
    std::fs::write(daemon.home.path().join("gateway.token"), other).unwrap();
    let out = daemon.run(Op::Pair { role: Role::Viewer }).await;
    let token_file = daemon.home.path().join("gateway.token");
    assert_failed(
        &out,
        &format!(
            "the gateway rejected the owner token in {} (401 Unauthorized): the token is \
             stale; is the daemon running under another REVKA_HOME, or was the file replaced?",
            token_file.display()
        ),
    );
}

#[tokio::test]
async fn no_gateway_file_means_not_running() {
    let home = tempfile::tempdir().unwrap();
    let out = execute(home.path(), &Op::Reload, false).await;
    let file = home.path().join("gateway.json");
    assert_failed(
        &out,
        &format!("the daemon is not running (no {})", file.display()),
    );
    std::fs::write(&file, "{not json").unwrap();
    let out = execute(home.path(), &Op::Reload, false).await;
    assert!(
        out.stderr
            .contains("gateway.json: not a gateway discovery document"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_dead_pid_means_a_stale_gateway_file() {
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("reaped");
    write_gateway_json(home.path(), "http://127.0.0.1:9", pid);
    let out = execute(home.path(), &Op::Pair { role: Role::Viewer }, false).await;
    let file = home.path().join("gateway.json");
    assert_failed(
        &out,
        &format!("stale {} (pid {pid} is not running)", file.display()),
    );
}

#[tokio::test]
async fn a_missing_owner_token_is_reported() {
    let home = tempfile::tempdir().unwrap();
    write_gateway_json(home.path(), "http://127.0.0.1:9", std::process::id());
    let out = execute(home.path(), &Op::Pair { role: Role::Viewer }, false).await;
    assert!(!out.success);
    assert!(
        out.stderr
            .starts_with("revka: cannot read the owner token: cannot read "),
        "{out:?}"
    );
    assert!(out.stderr.contains("gateway.token"), "{out:?}");
}

#[tokio::test]
async fn a_refused_connection_names_the_gateway() {
    let daemon = Daemon::start().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    write_gateway_json(daemon.home.path(), &url, std::process::id());
    let out = daemon
        .run(Op::Status {
            json: false,
            path: None,
        })
        .await;
    assert!(!out.success);
    let prefix = format!("revka: the daemon's gateway at {url} does not answer: ");
    assert!(out.stderr.starts_with(&prefix), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("connection refused"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_silent_gateway_times_out() {
    let daemon = Daemon::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    write_gateway_json(daemon.home.path(), &url, std::process::id());
    let gateway =
        Gateway::connect_with_timeout(daemon.home.path(), Duration::from_millis(200)).unwrap();
    let err = gateway.pair_code(Role::Viewer).await.unwrap_err();
    assert!(matches!(err, RemoteError::Timeout { .. }), "{err:?}");
    let out = execute_on(&gateway, &Op::Pair { role: Role::Viewer }, false).await;
    assert_failed(
        &out,
        &format!("the daemon's gateway at {url} did not answer within 0.2 s"),
    );
}

#[test]
fn actor_paths_are_encoded_segment_by_segment() {
    let enc = |p: &str| encode_actor_path(p).unwrap();
    assert_eq!(enc("root/mcp_servers/mcp:fs"), "root/mcp_servers/mcp:fs");
    assert_eq!(enc("/root//gateway/"), "root/gateway");
    assert_eq!(enc("root/a b/c?d#e%f"), "root/a%20b/c%3Fd%23e%25f");
    assert_eq!(enc("root/x+y&z=1"), "root/x%2By%26z%3D1");
    assert_eq!(enc("root/../gateway"), "root/%2E%2E/gateway");
    assert_eq!(enc("root/./a.b"), "root/%2E/a.b");
    assert_eq!(enc("root/é"), "root/%C3%A9");
    assert_eq!(enc("root/u@h:~-_."), "root/u@h:~-_.");
    assert!(matches!(
        encode_actor_path("/"),
        Err(RemoteError::InvalidPath(_))
    ));
    assert!(encode_actor_path("").is_err());
    assert_eq!(encode_segment("ab12/cd"), "ab12%2Fcd");
}

#[test]
fn pid_liveness() {
    assert!(pid_alive(std::process::id()));
    assert!(pid_alive(1), "init exists (EPERM counts as alive)");
    assert!(!pid_alive(0), "0 addresses a process group");
    assert!(!pid_alive(u32::MAX), "-1 would address every process");
}
