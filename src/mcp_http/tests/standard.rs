//! The standard Streamable HTTP path in-process, on a real socket: `initialize` creates a
//! session bound to the client token, later requests need both, and every refusal has its own
//! status (400, 401, 404, 406, 429, 503); `require_token = false`; `DELETE /mcp`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use revka_actors::session::{SessionLimits, Sessions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::client_auth::{ClientAuth, ClientGrant};
use super::super::{McpServer, StandardPath};
use super::{Slow, sessions_with};
use crate::http::loopback::Hosts;
use crate::http::rate::Rate;
use crate::tools::ToolRegistry;

/// Client tokens the test servers accept.
pub(super) const TOKEN_A: &str = "rvk_client_a";
pub(super) const TOKEN_B: &str = "rvk_client_b";

const BOTH: &str = "application/json, text/event-stream";

/// The client tokens [`TOKEN_A`] and [`TOKEN_B`], without a scope or an expiry (the token
/// store's own checks are the gateway's tests; the end-to-end tests use the real store).
struct TwoTokens;

impl ClientAuth for TwoTokens {
    fn verify_client(&self, presented: &str) -> Option<ClientGrant> {
        [TOKEN_A, TOKEN_B]
            .iter()
            .position(|t| *t == presented)
            .map(|i| ClientGrant {
                id: format!("{i:08x}"),
                name: format!("client {i}"),
                scope: None,
                expires_at: None,
            })
    }
}

/// A server with client tokens [`TOKEN_A`] and [`TOKEN_B`], serving on a socket.
pub(super) struct Standard {
    pub(super) url: String,
    pub(super) sessions: Arc<Sessions>,
    pub(super) server: McpServer,
    pub(super) http: reqwest::Client,
}

impl Standard {
    pub(super) async fn start(require_token: bool, limits: SessionLimits) -> Self {
        let sessions = sessions_with(limits).await;
        let mut registry = ToolRegistry::new(revka_actors::mcp::hub::McpHub::new(), true);
        registry.register(Arc::new(Slow));
        let telemetry = crate::telemetry::Telemetry::new(
            &revka_actors::StatusNode::root("root", "supervisor"),
            &sessions,
        )
        .unwrap();
        let standard = StandardPath {
            client_auth: Arc::new(TwoTokens),
            require_token,
        };
        let server = McpServer::with_standard_path(
            sessions.clone(),
            Arc::new(registry),
            telemetry,
            CancellationToken::new(),
            standard,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = server.clone().service(Hosts::Loopback);
        tokio::spawn(async move {
            axum::serve(
                listener,
                axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
            )
            .await
        });
        Self {
            url: format!("http://{addr}/mcp"),
            sessions,
            server,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// A standard `POST /mcp` of `body`, with `token` and `session` when given.
    pub(super) fn post(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        body: Value,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", BOTH)
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    /// `initialize` with `token`: the new session's id.
    pub(super) async fn initialize(&self, token: Option<&str>) -> String {
        let response = self.post(token, None, initialize(1)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["result"]["serverInfo"]["name"], "revka-mcp", "{body}");
        id
    }
}

pub(super) fn initialize(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "standard-test", "version": "1" },
        },
    })
}

fn list(id: u64) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" })
}

/// Status and JSON body (`Null` when there is none).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_creates_a_session_bound_to_the_client_token() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let response = s
        .post(Some(TOKEN_A), None, initialize(7))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(
        body["result"]["capabilities"]["tools"]["listChanged"], true,
        "{body}"
    );
    // The same supervised session as POST /session's, labelled by the client.
    let live = s.sessions.get(&session).expect("in the table");
    assert_eq!(live.label(), Some("standard-test"));
    assert!(live.client_binding().is_some());

    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let (status, _) = answer(s.post(Some(TOKEN_A), Some(&session), note)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = answer(s.post(Some(TOKEN_A), Some(&session), list(2))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "slow"),
        "{body}"
    );
    // A tool call keeps its SSE answer, progress first.
    let call = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "slow", "_meta": { "progressToken": "p" } } });
    let response = s
        .post(Some(TOKEN_A), Some(&session), call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let progress = text.find(r#""progressToken":"p""#).expect("progress");
    let result = text.find(r#""text":"slept""#).expect("result");
    assert!(progress < result, "{text}");
    // The negotiated version may be restated; another is refused.
    let versioned = |v: &str| {
        s.post(Some(TOKEN_A), Some(&session), list(4))
            .header("mcp-protocol-version", v)
    };
    assert_eq!(answer(versioned("2025-06-18")).await.0, StatusCode::OK);
    let (status, body) = answer(versioned("1999-01-01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unsupported MCP-Protocol-Version \"1999-01-01\""),
        "{body}"
    );
}

/// A client declaring `capabilities.experimental.revka.federation` is answered with the same
/// capability and its session is federated: no `tool_search`, nothing deferred. A client
/// without it (or with an unknown version) keeps deferred loading and hears of no federation.
#[tokio::test(flavor = "multi_thread")]
async fn a_federating_client_is_answered_with_the_capability_and_served_undeferred() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let open = |federation: Value| {
        let mut init = initialize(1);
        init["params"]["capabilities"] =
            json!({ "experimental": { "revka": { "federation": federation } } });
        let s = &s;
        async move {
            let response = s.post(Some(TOKEN_A), None, init).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let id = response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            let (_, listed) = answer(s.post(Some(TOKEN_A), Some(&id), list(2))).await;
            let names: Vec<String> = listed["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            (id, body, names)
        }
    };
    let (id, body, names) = open(json!(1)).await;
    assert_eq!(
        body["result"]["capabilities"]["experimental"]["revka"]["federation"], 1,
        "{body}"
    );
    assert!(s.sessions.get(&id).unwrap().federated());
    assert_eq!(names, ["slow"]);

    for other in [json!(99), json!("1"), Value::Null] {
        let (id, body, names) = open(other.clone()).await;
        assert!(
            body["result"]["capabilities"].get("experimental").is_none(),
            "{other}: {body}"
        );
        assert!(!s.sessions.get(&id).unwrap().federated());
        assert_eq!(names, ["slow", "tool_search"], "{other}");
    }
}

/// Another client's token on a live session, an unknown id, and the id of a `POST /session`
/// session all get the same 404; a request without a valid client token gets 401.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_answers_only_the_client_that_created_it() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let session = s.initialize(Some(TOKEN_A)).await;
    let (minted, minted_token) = s
        .sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let not_found = |body: &Value| {
        assert_eq!(body["error"]["code"], -32001, "{body}");
        assert_eq!(body["id"], Value::Null);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("session not found"),
            "{body}"
        );
    };
    let mut found = Vec::new();
    for (token, id) in [
        (TOKEN_B, session.as_str()),
        (TOKEN_A, "0123456789abcdef0123456789abcdef"),
        (TOKEN_A, "not even hex"),
        (TOKEN_A, minted.id()),
    ] {
        let (status, body) = answer(s.post(Some(token), Some(id), list(1))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token} {id}");
        not_found(&body);
        found.push(body);
    }
    assert!(
        found.windows(2).all(|w| w[0] == w[1]),
        "the same answer each time: {found:?}"
    );
    for token in [None, Some("rvk_garbage"), Some(minted_token.as_str())] {
        let (status, body) = answer(s.post(token, Some(&session), list(1))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"]["code"], -32001);
    }
    // The session was not touched by any of them, and still answers its own client.
    let (status, _) = answer(s.post(Some(TOKEN_A), Some(&session), list(1))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_session_only_initialize_with_a_client_token_is_taken() {
    let s = Standard::start(true, SessionLimits::default()).await;
    for token in [None, Some("rvk_garbage")] {
        let response = s.post(token, None, initialize(1)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert!(response.headers().get("mcp-session-id").is_none());
    }
    let (status, body) = answer(s.post(Some(TOKEN_A), None, list(9))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32000);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send initialize first"),
        "{body}"
    );
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(
        answer(s.post(Some(TOKEN_A), None, note)).await.0,
        StatusCode::BAD_REQUEST
    );
    // A client that cannot take an SSE answer is told so before anything is created.
    let response = s
        .http
        .post(&s.url)
        .bearer_auth(TOKEN_A)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(initialize(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    // Bad params create nothing.
    let bad = json!({ "jsonrpc": "2.0", "id": 2, "method": "initialize", "params": [1] });
    let response = s.post(Some(TOKEN_A), None, bad).send().await.unwrap();
    assert!(response.headers().get("mcp-session-id").is_none());
    assert_eq!(s.sessions.len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_ends_the_session_and_it_is_then_not_found() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let session = s.initialize(Some(TOKEN_A)).await;
    let delete = |token: &str| {
        s.http
            .delete(&s.url)
            .bearer_auth(token)
            .header("mcp-session-id", &session)
    };
    assert_eq!(
        delete(TOKEN_B).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "not another client's to end"
    );
    assert_eq!(
        delete(TOKEN_A).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert!(s.sessions.get(&session).is_none());
    let (status, _) = answer(s.post(Some(TOKEN_A), Some(&session), list(1))).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the client must initialize again"
    );
    assert_eq!(
        delete(TOKEN_A).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // The two-header flow may end its session on /mcp too.
    let (minted, token) = s
        .sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let ended = s
        .http
        .delete(&s.url)
        .bearer_auth(&token)
        .header("x-revka-session", minted.id())
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert!(minted.ended().is_cancelled());
    // Other methods are refused with what is allowed.
    let put = s.http.put(&s.url).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers()["allow"], "GET, POST, DELETE");
}

/// Standard `initialize`s share `POST /session`'s per-source rate and the table's cap.
#[tokio::test(flavor = "multi_thread")]
async fn standard_sessions_count_against_the_creation_rate_and_the_cap() {
    let limits = SessionLimits {
        max_sessions: 2,
        evict_idle_floor: Duration::from_secs(600),
        ..SessionLimits::default()
    };
    let s = Standard::start(true, limits).await;
    s.initialize(Some(TOKEN_A)).await;
    s.initialize(Some(TOKEN_B)).await;
    let response = s
        .post(Some(TOKEN_A), None, initialize(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 3);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session cap (2)"),
        "{body}"
    );

    let s = Standard::start(true, SessionLimits::default()).await;
    s.server.set_creation_rate(Rate {
        burst: 1,
        per_minute: 1,
    });
    s.initialize(Some(TOKEN_A)).await;
    let response = s
        .post(Some(TOKEN_A), None, initialize(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(s.sessions.len(), 1);
}

/// Without `require_token`, any local client may open and use a standard session; the
/// two-header flow still needs its session token.
#[tokio::test(flavor = "multi_thread")]
async fn without_require_token_local_clients_need_no_token() {
    let s = Standard::start(false, SessionLimits::default()).await;
    let session = s.initialize(None).await;
    let (status, _) = answer(s.post(None, Some(&session), list(1))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.sessions
            .get(&session)
            .unwrap()
            .client_binding()
            .unwrap()
            .owner
            .as_ref(),
        "local"
    );
    let (minted, _) = s
        .sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let (status, _) = answer(s.post(None, Some(minted.id()), list(1))).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "not reachable without its token"
    );
    let two_header = s
        .http
        .post(&s.url)
        .header("x-revka-session", minted.id())
        .header("content-type", "application/json")
        .body(list(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(two_header.status(), StatusCode::UNAUTHORIZED);
    // The DNS-rebinding guard still applies.
    let rebound = s
        .post(None, Some(&session), list(1))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
}
