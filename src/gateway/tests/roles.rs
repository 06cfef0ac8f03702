//! Roles: every route of the table walked with a token of each role, no route outside the
//! table, a stdio server test only for the owner, and the sessions hidden from the other roles.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode};
use revka_actors::supervisor::RestartType;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

use super::super::Gateway;
use super::super::routes::{Access, table};
use crate::auth::{Role, read_owner_token};
use crate::config::Config;
use crate::tree::Services;

/// A gateway over fresh services, with a token of each role.
pub(super) struct Fixture {
    pub(super) home: TempDir,
    app: Router,
    pub(super) services: Services,
    /// `(role, token)`, lowest role first; the owner's is the token of `gateway.token`.
    tokens: Vec<(Role, String)>,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        // A config file of its own, so a reload reads nothing outside the test's home.
        let config_path = home.path().join("config.toml");
        std::fs::write(&config_path, "").unwrap();
        let config = Config::default_in(home.path());
        let services = Services::new(config, home.path(), Some(config_path)).unwrap();
        services.tokens.ensure_owner_token(home.path()).unwrap();
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Operator] {
            let token = services.tokens.issue(role.as_str(), role).unwrap().token;
            tokens.push((role, token));
        }
        tokens.push((Role::Owner, read_owner_token(home.path()).unwrap()));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let app = Gateway::new(services.clone(), addr)
            .router()
            .layer(MockConnectInfo(addr));
        Self {
            home,
            app,
            services,
            tokens,
        }
    }

    pub(super) fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// `method path` with `token` (if any) and `body`: the status and the body as JSON.
    pub(super) async fn send(
        &self,
        method: &Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:9")
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A request path for a route pattern: each `{param}` filled in.
pub(super) fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{*path}" => "root/nope/restart",
            "{id}" => "0000",
            s if s.starts_with('{') => panic!("no example for {s} in {pattern}"),
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The route table, walked: without a token every route but `POST /pair` is 401; a token of a
/// lower role than the route's gets 403 saying which role it needs and which it has; a token
/// of that role or a higher one gets past the guards to the handler (its own answer: anything
/// but 401, 403, 405, or the router's 404 for an unknown route).
#[tokio::test]
async fn every_route_of_the_table_refuses_lower_roles_with_403_and_a_clear_message() {
    let fixture = Fixture::new();
    let routes = table();
    let mut seen = std::collections::HashSet::new();
    for route in &routes {
        assert!(
            seen.insert((route.method.clone(), route.path)),
            "{} {} is in the table twice",
            route.method,
            route.path
        );
        let path = concrete(route.path);
        let (method, what) = (&route.method, format!("{} {}", route.method, route.path));
        // Signing out revokes the caller's token, which the rest of the walk needs; its own
        // test is in `whoami.rs`.
        if route.path == "/api/logout" {
            continue;
        }
        let needed = match route.access {
            Access::Public => {
                let (status, body) = fixture.send(method, &path, None, "").await;
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                continue;
            }
            Access::Token(role) => role,
        };
        let (status, body) = fixture.send(method, &path, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let (status, body) = fixture
            .send(method, &path, Some("rvk_not_a_token"), "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        for role in Role::ALL {
            let (status, body) = fixture
                .send(method, &path, Some(fixture.token(role)), "")
                .await;
            if role.allows(needed) {
                assert!(
                    ![
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::METHOD_NOT_ALLOWED
                    ]
                    .contains(&status),
                    "{what} as {role}: {status} {body}"
                );
                let error = body["error"].as_str().unwrap_or_default();
                assert!(!error.starts_with("no route"), "{what} as {role}: {body}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} as {role}: {body}");
                let error = body["error"].as_str().unwrap();
                let expected = format!(
                    "forbidden: {method} {path} needs the {needed} role; this token has the \
                     {role} role ("
                );
                assert!(error.starts_with(&expected), "{what} as {role}: {error}");
            }
        }
    }
    // The roles of the issue, as the table declares them.
    let role_of = |method: Method, path: &str| {
        routes
            .iter()
            .find(|r| r.method == method && r.path == path)
            .map(|r| r.access)
            .unwrap_or_else(|| panic!("{method} {path} is not in the table"))
    };
    for (method, path, access) in [
        (Method::POST, "/pair", Access::Public),
        (Method::GET, "/api/actors", Access::Token(Role::Viewer)),
        (Method::GET, "/api/health", Access::Token(Role::Viewer)),
        (Method::GET, "/metrics", Access::Token(Role::Viewer)),
        (
            Method::POST,
            "/api/actors/{*path}",
            Access::Token(Role::Operator),
        ),
        (Method::POST, "/api/mcp/call", Access::Token(Role::Operator)),
        (
            Method::POST,
            "/api/mcp/servers/test",
            Access::Token(Role::Operator),
        ),
        (Method::POST, "/api/reload", Access::Token(Role::Owner)),
        (Method::POST, "/api/pair/code", Access::Token(Role::Owner)),
        (Method::GET, "/api/tokens", Access::Token(Role::Owner)),
        (Method::POST, "/api/tokens", Access::Token(Role::Owner)),
        (
            Method::DELETE,
            "/api/tokens/{id}",
            Access::Token(Role::Owner),
        ),
    ] {
        assert_eq!(role_of(method.clone(), path), access, "{method} {path}");
    }
}

/// The router is built from the table alone: no file of the gateway adds a route any other
/// way, so a new route cannot skip declaring its role.
#[test]
fn the_router_has_no_route_outside_the_table() {
    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "tests" || name == "tests.rs" {
                continue;
            }
            if path.is_dir() {
                sources(&path, out);
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![(
        "src/gateway.rs".to_owned(),
        std::fs::read_to_string(root.join("gateway.rs")).unwrap(),
    )];
    sources(&root.join("gateway"), &mut files);
    let mut adders = Vec::new();
    for (file, text) in &files {
        for needle in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            for (line, _) in text.lines().enumerate().filter(|(_, l)| l.contains(needle)) {
                adders.push(format!("{file}:{}: {needle}", line + 1));
            }
        }
    }
    assert_eq!(
        adders.len(),
        1,
        "routes added outside the table: {adders:#?}"
    );
    assert!(
        adders[0].contains("server.rs") && adders[0].ends_with(".route("),
        "{adders:?}"
    );
    let server = std::fs::read_to_string(root.join("gateway/server.rs")).unwrap();
    assert!(
        server.contains("for route in routes::table() {"),
        "the router is built by walking the table"
    );
}

/// Testing a stdio server config spawns its command: an operator gets 403 and nothing runs;
/// the owner's runs. An operator may test an http config.
#[tokio::test]
async fn a_stdio_server_test_spawns_only_for_the_owner() {
    let fixture = Fixture::new();
    let marker = fixture.home.path().join("spawned");
    let stdio = |transport: Option<&str>| {
        let mut body = json!({
            "name": "t",
            "command": "sh",
            "args": ["-c", format!("touch '{}'", marker.display())],
        });
        if let Some(t) = transport {
            body["transport"] = json!(t);
        }
        body.to_string()
    };
    let test = Method::POST;
    let path = "/api/mcp/servers/test";
    for transport in [Some("stdio"), None] {
        let operator = Some(fixture.token(Role::Operator));
        let (status, body) = fixture.send(&test, path, operator, &stdio(transport)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{transport:?}: {body}");
        assert_eq!(
            body["error"],
            "forbidden: testing a stdio server config spawns its command, which needs the owner \
             role; this token has the operator role (http, sse and url configs need operator)"
        );
    }
    // Any other transport is no stdio one: validated (and refused) without spawning.
    let operator = Some(fixture.token(Role::Operator));
    let (status, body) = fixture
        .send(&test, path, operator, &stdio(Some("STDIO")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown transport \"STDIO\""),
        "{body}"
    );
    assert!(!marker.exists(), "nothing was spawned");

    let http = json!({ "name": "t", "transport": "http", "url": "http://127.0.0.1:9/mcp" });
    let operator = Some(fixture.token(Role::Operator));
    let (status, body) = fixture.send(&test, path, operator, &http.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], false, "nothing listens there: {body}");

    let owner = Some(fixture.token(Role::Owner));
    let (status, body) = fixture
        .send(&test, path, owner, &stdio(Some("stdio")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], false, "sh is no MCP server: {body}");
    assert!(marker.exists(), "the owner's command ran");
}

/// Session ids and labels are for the owner only: the other roles see the sessions supervisor
/// with a count, and a session's path is answered as an unknown one.
#[tokio::test]
async fn introspection_hides_session_ids_and_labels_below_the_owner() {
    let fixture = Fixture::new();
    let id = "0123456789abcdef0123456789abcdef";
    let sessions =
        fixture
            .services
            .status_root
            .child("sessions", "supervisor", Some(RestartType::Permanent));
    let session = sessions.child(
        &format!("session:{id}"),
        "session",
        Some(RestartType::Temporary),
    );
    session.set_details(Arc::new(|| json!({ "label": "payroll-migration" })));
    let get = Method::GET;
    for role in Role::ALL {
        let token = Some(fixture.token(role));
        let (status, tree) = fixture.send(&get, "/api/actors", token, "").await;
        assert_eq!(status, StatusCode::OK);
        let (_, node) = fixture
            .send(&get, "/api/actors/root/sessions", token, "")
            .await;
        for shown in [&tree, &node] {
            let text = shown.to_string();
            let visible = text.contains(id) && text.contains("payroll-migration");
            assert_eq!(visible, role == Role::Owner, "{role}: {text}");
        }
        if role != Role::Owner {
            assert_eq!(node["children"], json!([]), "{node}");
            assert_eq!(node["details"]["sessions"], 1, "{node}");
        }
        let own = format!("root/sessions/session:{id}");
        let unknown = format!("root/sessions/session:{}", "f".repeat(32));
        let (status, body) = fixture
            .send(&get, &format!("/api/actors/{own}"), token, "")
            .await;
        if role == Role::Owner {
            assert_eq!(status, StatusCode::OK, "{body}");
            continue;
        }
        let (unknown_status, unknown_body) = fixture
            .send(&get, &format!("/api/actors/{unknown}"), token, "")
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{role}: {body}");
        assert_eq!(unknown_status, StatusCode::NOT_FOUND);
        assert_eq!(
            body["error"].as_str().unwrap().replace(&own, "<path>"),
            unknown_body["error"]
                .as_str()
                .unwrap()
                .replace(&unknown, "<path>"),
            "the same answer as for an unknown session"
        );
        if role == Role::Operator {
            let restart = |path: &str| format!("/api/actors/{path}/restart");
            let (status, body) = fixture.send(&Method::POST, &restart(&own), token, "").await;
            let (_, unknown_body) = fixture
                .send(&Method::POST, &restart(&unknown), token, "")
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert_eq!(
                body["error"].as_str().unwrap().replace(&own, "<path>"),
                unknown_body["error"]
                    .as_str()
                    .unwrap()
                    .replace(&unknown, "<path>"),
            );
        }
    }
}
