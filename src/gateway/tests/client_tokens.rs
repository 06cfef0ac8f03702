//! Client tokens and the gateway: a client token opens no gateway route (401, as an unknown
//! token), and the owner alone creates, lists and revokes client tokens through `/api/tokens`,
//! with precise 400s for a bad name, scope or lifetime.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::super::routes::{Access, table};
use super::roles::{Fixture, concrete};
use crate::auth::{Role, ToolScope};

/// Every route of the table, with a client token (scoped or not), answers 401 as to a token it
/// does not know, saying what a client token is for; `POST /pair` needs no token at all.
/// (Paused clock: the failed-attempt delays pass at once.)
#[tokio::test(start_paused = true)]
async fn a_client_token_is_refused_with_401_on_every_gateway_route() {
    let fixture = Fixture::new();
    let tokens = &fixture.services.tokens;
    let open = tokens.issue_client("zed", None, None).unwrap().token;
    let scope = ToolScope::new(["*"]).unwrap();
    let scoped = tokens.issue_client("ci", Some(scope), None).unwrap().token;
    let mut walked = 0;
    for route in table() {
        if route.access == Access::Public {
            continue;
        }
        let path = concrete(route.path);
        for token in [&open, &scoped] {
            let (status, body) = fixture.send(&route.method, &path, Some(token), "{}").await;
            let what = format!("{} {}", route.method, route.path);
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert_eq!(
                body["error"],
                "unauthorized: a valid gateway bearer token is required (an `rvkc_` client \
                 token is for the MCP endpoint of mcp.json only)",
                "{what}"
            );
        }
        walked += 1;
    }
    assert!(walked > 10, "the whole table: {walked} routes");
    // The WebSocket relay's other ways to carry a token refuse it too.
    let (status, _) = fixture
        .send(
            &Method::GET,
            &format!("/ws/mcp/events?session_id=x&token={open}"),
            None,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The same client tokens are valid ones: only the kind is wrong.
    assert!(tokens.verify_client(&open).is_some());
    assert!(tokens.verify_client(&scoped).is_some());
}

#[tokio::test]
async fn the_owner_creates_lists_and_revokes_client_tokens() {
    let fixture = Fixture::new();
    let owner = Some(fixture.token(Role::Owner));
    let body =
        json!({ "name": " ci ", "tools": ["fs__*", "health", "fs__*"], "expires_secs": 86400 });
    let (status, created) = fixture
        .send(&Method::POST, "/api/tokens", owner, &body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(token.starts_with("rvkc_") && token.len() == 69, "{token}");
    assert_eq!(created["kind"], "client");
    assert_eq!(created["label"], "ci");
    assert_eq!(created["tools"], json!(["fs__*", "health"]));
    assert_eq!(created["expired"], false);
    assert!(created["expires_at"].is_string(), "{created}");
    assert!(created.get("role").is_none(), "{created}");
    assert_eq!(
        created["mcp_url"],
        Value::Null,
        "the MCP server is not bound"
    );

    let grant = fixture.services.tokens.verify_client(token).unwrap();
    assert_eq!(grant.id.as_str(), id);
    assert_eq!(grant.name, "ci");
    assert_eq!(
        grant.scope.map(|s| s.patterns().to_vec()),
        Some(vec!["fs__*".to_owned(), "health".to_owned()])
    );

    // Without tools or expiry: every tool, never expires.
    let (status, unscoped) = fixture
        .send(&Method::POST, "/api/tokens", owner, r#"{"name":"zed"}"#)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{unscoped}");
    assert!(unscoped.get("tools").is_none(), "{unscoped}");
    assert_eq!(unscoped["expires_at"], Value::Null);

    let (status, listed) = fixture.send(&Method::GET, "/api/tokens", owner, "").await;
    assert_eq!(status, StatusCode::OK);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert_eq!(row["kind"], "client");
    assert_eq!(row["tools"], json!(["fs__*", "health"]));
    assert!(row.get("token").is_none(), "never the secret again");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "gateway")
            .all(|t| t["role"].is_string())
    );

    let (status, revoked) = fixture
        .send(&Method::DELETE, &format!("/api/tokens/{id}"), owner, "")
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked"], true);
    assert!(fixture.services.tokens.verify_client(token).is_none());

    // Only the owner: a lower role is told which it needs, and nothing is created.
    let count = fixture.services.tokens.list().len();
    for role in [Role::Viewer, Role::Operator] {
        let (status, body) = fixture
            .send(
                &Method::POST,
                "/api/tokens",
                Some(fixture.token(role)),
                r#"{"name":"x"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
    }
    assert_eq!(fixture.services.tokens.list().len(), count);
}

#[tokio::test]
async fn a_bad_client_token_request_is_a_400_saying_what_is_wrong() {
    let fixture = Fixture::new();
    let owner = Some(fixture.token(Role::Owner));
    let shape = r#"(expected {"name": "<label>", "tools": ["<pattern>", ...] (optional), "expires_secs": N (optional)})"#;
    let cases: Vec<(&str, String)> =
        vec![
        ("", format!("missing body: expected {}", &shape[10..shape.len() - 1])),
        ("{}", format!("invalid body: missing field `name` at line 1 column 2 {shape}")),
        (
            r#"{"name":"x","scope":["a"]}"#,
            "invalid body: unknown field `scope`, expected one of `name`, `tools`, `expires_secs`"
                .to_owned(),
        ),
        (
            r#"{"name":"x","tools":"fs__*"}"#,
            "invalid body: invalid type: string \"fs__*\", expected a sequence".to_owned(),
        ),
        (
            r#"{"name":"x","expires_secs":-1}"#,
            "invalid body: invalid value: integer `-1`, expected u64".to_owned(),
        ),
        (
            r#"{"name":"","tools":["fs__*"]}"#,
            "invalid token label \"\": must not be empty".to_owned(),
        ),
        (
            r#"{"name":"x","tools":[]}"#,
            "tools: a tool scope needs at least one pattern (leave it out for a client that may \
             use every tool)"
                .to_owned(),
        ),
        (
            r#"{"name":"x","tools":["fs__*","fs__*_file"]}"#,
            "tools[1]: invalid pattern \"fs__*_file\": `*` is only allowed once, at the end"
                .to_owned(),
        ),
        (
            r#"{"name":"x","tools":["fs/read"]}"#,
            "tools[0]: pattern \"fs/read\" can never match".to_owned(),
        ),
        (
            r#"{"name":"x","expires_secs":0}"#,
            "invalid expiry 0s: must be at least 1 second".to_owned(),
        ),
        (
            r#"{"name":"x","expires_secs":400000000}"#,
            "invalid expiry 12years 8months".to_owned(),
        ),
    ];
    let before = fixture.services.tokens.list().len();
    for (body, expected) in cases {
        let (status, answer) = fixture
            .send(&Method::POST, "/api/tokens", owner, body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(&expected), "{body}:\n{error}\n{expected}");
    }
    assert_eq!(
        fixture.services.tokens.list().len(),
        before,
        "nothing created"
    );
}
