//! Resources, prompts and completion of upstream servers, served by the real daemon to
//! standard clients: server-everything (official, TypeScript SDK) and `surface_fixture.py`
//! (official Python SDK) behind Revka. Lists, reads (by URI, by the shared-URI form
//! `revka://<server>/<uri>`, by template), prompts with arguments, completion by prompt and by
//! template, subscriptions delivered to exactly the sessions that follow a URI, a 4 MiB+
//! resource, and fail-fast while a server restarts. `live`: the same against the Rust fixture
//! `surface_server`, while its lists and processes change.

mod live;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use revka_mcp::sse::SseParser;
use serde_json::{Value, json};

use crate::harness::{Served, eventually_async, npm_bin, test_cache, venv_bin};
use crate::mcp_standard::StdSession;

const SHARED: &str = "demo://resource/static/document/instructions.md";

/// `[[mcp.servers]]` entries: server-everything as `ev` (when `everything`) and the Python
/// fixture as `fx`.
fn servers(cache: &std::path::Path, everything: bool) -> String {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/surface_fixture.py"
    );
    let mut toml = format!(
        "\n[[mcp.servers]]\nname = \"fx\"\ncommand = \"{}\"\nargs = [\"{fixture}\"]\n",
        venv_bin(cache, "python").display()
    );
    if everything {
        toml += &format!(
            "\n[[mcp.servers]]\nname = \"ev\"\ncommand = \"{}\"\nargs = [\"stdio\"]\n",
            npm_bin(cache, "mcp-server-everything").display()
        );
    }
    toml
}

/// A session of `served`'s standard path.
async fn session(served: &Served) -> StdSession {
    StdSession::open(&served.url, Some(&served.client_token())).await
}

/// The result of a request, or panics with its error.
async fn ok(session: &StdSession, method: &str, params: Value) -> Value {
    let (status, body) = session.rpc(method, params.clone()).await;
    assert_eq!(status, StatusCode::OK, "{method} {params}: {body}");
    assert!(body.get("result").is_some(), "{method} {params}: {body}");
    body["result"].clone()
}

/// The error of a request, or panics with its result.
async fn error(session: &StdSession, method: &str, params: Value) -> Value {
    let (_, body) = session.rpc(method, params.clone()).await;
    assert!(body.get("error").is_some(), "{method} {params}: {body}");
    body["error"].clone()
}

/// The URIs a list shows.
fn uris(list: &Value, field: &str, key: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[key].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until both servers' resources are listed.
async fn wait_listed(session: &StdSession, uri: &str) {
    eventually_async(format!("{uri} listed"), async || {
        let (_, body) = session.rpc("resources/list", json!({})).await;
        body["result"]["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uri"] == uri))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_resources_prompts_and_completion_through_revka() {
    let Some(cache) = test_cache() else { return };
    let served = Served::start(&servers(&cache, true)).await;
    let s = session(&served).await;
    let (_, init) = s
        .rpc(
            "initialize",
            json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } }),
        )
        .await;
    let caps = &init["result"]["capabilities"];
    assert_eq!(
        caps["resources"],
        json!({ "subscribe": true, "listChanged": true })
    );
    assert_eq!(caps["prompts"], json!({ "listChanged": true }));
    assert_eq!(caps["completions"], json!({}));

    // Both serve SHARED: each is shown as revka://<server>/<uri>; the others as they are.
    let ev_shared = format!("revka://ev/{SHARED}");
    let fx_shared = format!("revka://fx/{SHARED}");
    wait_listed(&s, &ev_shared).await;
    wait_listed(&s, "fixture://hello").await;
    let listed = uris(
        &ok(&s, "resources/list", json!({})).await,
        "resources",
        "uri",
    );
    assert!(listed.contains(&fx_shared), "{listed:?}");
    assert!(!listed.contains(&SHARED.to_owned()), "{listed:?}");
    assert!(
        listed.contains(&"demo://resource/static/document/features.md".to_owned()),
        "{listed:?}"
    );
    let read = ok(&s, "resources/read", json!({ "uri": fx_shared })).await;
    assert_eq!(read["contents"][0]["text"], "served by the surface fixture");
    assert_eq!(read["contents"][0]["uri"], fx_shared);
    let read = ok(&s, "resources/read", json!({ "uri": ev_shared })).await;
    assert_ne!(read["contents"][0]["text"], "served by the surface fixture");
    assert_eq!(read["contents"][0]["uri"], ev_shared);
    let read = ok(&s, "resources/read", json!({ "uri": "fixture://hello" })).await;
    assert_eq!(read["contents"][0]["text"], "hello from the fixture");
    assert_eq!(read["contents"][0]["uri"], "fixture://hello");

    // Templates: ev's alone, shown as they are; an unlisted URI is routed by them.
    let templates = uris(
        &ok(&s, "resources/templates/list", json!({})).await,
        "resourceTemplates",
        "uriTemplate",
    );
    let text_template = "demo://resource/dynamic/text/{resourceId}";
    assert!(
        templates.contains(&text_template.to_owned()),
        "{templates:?}"
    );
    let read = ok(
        &s,
        "resources/read",
        json!({ "uri": "demo://resource/dynamic/text/3" }),
    )
    .await;
    let text = read["contents"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Resource 3:"), "{text}");

    // Prompts: named like tools; a unique bare name resolves; arguments are passed on.
    let prompts = uris(&ok(&s, "prompts/list", json!({})).await, "prompts", "name");
    for name in [
        "ev__simple-prompt",
        "ev__args-prompt",
        "ev__resource-prompt",
        "fx__greet",
    ] {
        assert!(prompts.contains(&name.to_owned()), "{name}: {prompts:?}");
    }
    let got = ok(
        &s,
        "prompts/get",
        json!({ "name": "args-prompt", "arguments": { "city": "Paris" } }),
    )
    .await;
    assert_eq!(
        got["messages"][0]["content"]["text"],
        "What's weather in Paris?"
    );
    let got = ok(
        &s,
        "prompts/get",
        json!({ "name": "fx__greet", "arguments": { "name": "Ada" } }),
    )
    .await;
    assert!(
        got["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("Hello, Ada!"),
        "{got}"
    );
    let got = ok(
        &s,
        "prompts/get",
        json!({ "name": "ev__resource-prompt", "arguments": { "resourceType": "Text", "resourceId": "2" } }),
    )
    .await;
    assert_eq!(got["messages"][1]["content"]["type"], "resource", "{got}");

    // Completion, by prompt and by template.
    let done = ok(
        &s,
        "completion/complete",
        json!({ "ref": { "type": "ref/prompt", "name": "ev__completable-prompt" },
                "argument": { "name": "department", "value": "Eng" } }),
    )
    .await;
    assert_eq!(done["completion"]["values"], json!(["Engineering"]));
    let done = ok(
        &s,
        "completion/complete",
        json!({ "ref": { "type": "ref/resource", "uri": text_template },
                "argument": { "name": "resourceId", "value": "5" } }),
    )
    .await;
    assert_eq!(done["completion"]["values"], json!(["5"]));

    // Bad input: precise errors.
    let e = error(&s, "prompts/get", json!({ "name": "nope" })).await;
    assert_eq!(e["code"], -32602, "{e}");
    let e = error(&s, "prompts/get", json!({})).await;
    assert_eq!(e["code"], -32602, "{e}");
    let e = error(&s, "resources/read", json!({ "uri": "nowhere://x" })).await;
    assert_eq!(e["code"], -32002, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("nowhere://x"),
        "{e}"
    );
    assert_eq!(e["data"]["uri"], "nowhere://x");
    let e = error(&s, "resources/list", json!({ "cursor": "garbage" })).await;
    assert_eq!(e["code"], -32602, "{e}");
    let e = error(
        &s,
        "completion/complete",
        json!({ "ref": { "type": "ref/other" } }),
    )
    .await;
    assert_eq!(e["code"], -32602, "{e}");

    // A resource past the transports' 4 MiB cap: a clear error, quickly.
    let started = Instant::now();
    let e = error(&s, "resources/read", json!({ "uri": "fixture://big" })).await;
    assert_eq!(e["code"], -32603, "{e}");
    assert!(e["message"].as_str().unwrap().contains("fx"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// The next JSON-RPC message on a `GET /mcp` stream that is not a list change, within `wait`.
async fn next_update(
    response: &mut reqwest::Response,
    parser: &mut SseParser,
    wait: Duration,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        while let Some(event) = parser.next_event() {
            let event = event.unwrap();
            if event.data.is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(&event.data).unwrap();
            if message["method"] == "notifications/resources/updated" {
                return Some(message);
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .ok()?;
        parser.push(&chunk.unwrap()?);
    }
}

/// An open `GET /mcp` of `session`.
async fn open_stream(session: &StdSession) -> (reqwest::Response, SseParser) {
    let response = session
        .http
        .get(&session.url)
        .header("mcp-session-id", &session.id)
        .header("accept", "text/event-stream")
        .bearer_auth(session.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (response, SseParser::new(1 << 20))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sessions_subscribed_to_different_resources_each_get_only_their_own_updates() {
    let Some(cache) = test_cache() else { return };
    let served = Served::start(&servers(&cache, false)).await;
    let a = session(&served).await;
    let b = session(&served).await;
    wait_listed(&a, "fixture://hello").await;
    let (mut a_stream, mut a_parser) = open_stream(&a).await;
    let (mut b_stream, mut b_parser) = open_stream(&b).await;

    // The fixture sends an update for every subscribed URI each time one is subscribed.
    assert_eq!(
        ok(
            &a,
            "resources/subscribe",
            json!({ "uri": "fixture://hello" })
        )
        .await,
        json!({})
    );
    let wait = Duration::from_secs(20);
    let update = next_update(&mut a_stream, &mut a_parser, wait)
        .await
        .unwrap();
    assert_eq!(update["params"]["uri"], "fixture://hello");
    // B follows the shared-form URI of another resource.
    let b_uri = "revka://fx/fixture://big";
    assert_eq!(
        ok(&b, "resources/subscribe", json!({ "uri": b_uri })).await,
        json!({})
    );
    let update = next_update(&mut b_stream, &mut b_parser, wait)
        .await
        .unwrap();
    assert_eq!(
        update["params"]["uri"], b_uri,
        "in the form B subscribed with"
    );
    let update = next_update(&mut a_stream, &mut a_parser, wait)
        .await
        .unwrap();
    assert_eq!(update["params"]["uri"], "fixture://hello");
    // Nothing of the other's.
    let short = Duration::from_millis(500);
    assert_eq!(next_update(&mut a_stream, &mut a_parser, short).await, None);
    assert_eq!(next_update(&mut b_stream, &mut b_parser, short).await, None);

    // Unsubscribed, A hears nothing more when B subscribes again.
    assert_eq!(
        ok(
            &a,
            "resources/unsubscribe",
            json!({ "uri": "fixture://hello" })
        )
        .await,
        json!({})
    );
    assert_eq!(
        ok(
            &b,
            "resources/subscribe",
            json!({ "uri": "fixture://hello" })
        )
        .await,
        json!({})
    );
    let update = next_update(&mut b_stream, &mut b_parser, wait)
        .await
        .unwrap();
    assert!(update["params"]["uri"] == b_uri || update["params"]["uri"] == "fixture://hello");
    assert_eq!(next_update(&mut a_stream, &mut a_parser, short).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_or_resource_of_a_restarting_server_fails_fast() {
    let Some(cache) = test_cache() else { return };
    let extra = format!(
        "{}\n[supervisor]\nbackoff_min_ms = 8000\nbackoff_max_ms = 8000\n",
        servers(&cache, false)
    );
    let served = Served::start(&extra).await;
    let s = session(&served).await;
    wait_listed(&s, "fixture://hello").await;
    // The 5 MiB resource ends the connection (a line past the cap): the first restart is at
    // once, the second after the backoff.
    let _ = error(&s, "resources/read", json!({ "uri": "fixture://big" })).await;
    eventually_async("fx reconnected", async || {
        let (_, body) = s
            .rpc("resources/read", json!({ "uri": "fixture://hello" }))
            .await;
        body["result"]["contents"][0]["text"] == "hello from the fixture"
    })
    .await;
    let _ = error(&s, "resources/read", json!({ "uri": "fixture://big" })).await;
    let started = Instant::now();
    let e = error(
        &s,
        "prompts/get",
        json!({ "name": "fx__greet", "arguments": { "name": "x" } }),
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("server `fx` is restarting"),
        "{e}"
    );
    let e = error(&s, "resources/read", json!({ "uri": "fixture://hello" })).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("server `fx` is restarting"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast, well inside the 8 s backoff"
    );
    // Still listed while it restarts.
    let listed = uris(
        &ok(&s, "resources/list", json!({})).await,
        "resources",
        "uri",
    );
    assert!(listed.contains(&"fixture://hello".to_owned()), "{listed:?}");
}
