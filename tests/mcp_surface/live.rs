//! Resources and prompts that change while sessions use them, against `surface_server` (the
//! Rust fixture, examples/surface_server.rs) behind the real daemon: list changes announced to
//! both kinds of session and listed at once, what a scoped client token sees and cannot tell
//! apart from nothing, and subscriptions across a session's end and a server's kill.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{error, next_update, ok, open_stream, uris, wait_listed};
use crate::harness::{EventStream, Gateway, Served, eventually_async, next_id, parse_sse};
use crate::mcp_standard::StdSession;

/// `[[mcp.servers]]` entries: a `surface_server` per name, serving URIs `<name>://…`.
fn surface_servers(names: &[&str]) -> String {
    let command = env!("CARGO_BIN_EXE_surface_server");
    names
        .iter()
        .map(|name| {
            format!(
                "\n[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{command}\"\n\
                 args = [\"--scheme\", \"{name}\"]\n"
            )
        })
        .collect()
}

/// Activates the tool `name` (`tool_search`), calls it, and returns the text of the answer:
/// its result's first text, or its error's message. Never panics on an error, so it can be
/// polled while a server restarts.
async fn tool_text(session: &StdSession, name: &str, arguments: Value) -> String {
    let select = json!({ "query": format!("select:{name}") });
    call_text(session, "tool_search", select).await;
    call_text(session, name, arguments).await
}

/// [`tool_text`] without the activation.
async fn call_text(session: &StdSession, name: &str, arguments: Value) -> String {
    let request = json!({ "jsonrpc": "2.0", "id": next_id(), "method": "tools/call",
                          "params": { "name": name, "arguments": arguments } });
    let response = session.send(request).await;
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "text/event-stream");
    let body = response.bytes().await.unwrap();
    let messages: Vec<Value> = if sse {
        parse_sse(&body)
            .iter()
            .filter_map(|e| serde_json::from_str(&e.data).ok())
            .collect()
    } else {
        serde_json::from_slice(&body).into_iter().collect()
    };
    let Some(last) = messages.into_iter().find(|m| m.get("id").is_some()) else {
        return String::new();
    };
    last["result"]["content"][0]["text"]
        .as_str()
        .or_else(|| last["error"]["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The names a `prompts/list` shows.
async fn prompt_names(session: &StdSession) -> Vec<String> {
    uris(
        &ok(session, "prompts/list", json!({})).await,
        "prompts",
        "name",
    )
}

/// `DELETE /mcp` of a standard session.
async fn end(session: &StdSession) {
    let response = session
        .http
        .delete(&session.url)
        .header("mcp-session-id", &session.id)
        .bearer_auth(session.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// A server that adds a prompt and a resource and says so: a standard session hears Revka's
/// own `notifications/prompts/list_changed` and `notifications/resources/list_changed` on its
/// `GET /mcp`, a two-header session as events `message` on its events stream, and each lists
/// the new entries as soon as it has heard.
#[tokio::test(flavor = "multi_thread")]
async fn prompts_and_resources_a_server_adds_at_runtime_are_announced_and_listed_at_once() {
    let served = Served::start(&surface_servers(&["sf"])).await;
    let standard = StdSession::open(&served.url, Some(&served.client_token())).await;
    wait_listed(&standard, "sf://doc/a").await;
    let mut stream = standard.stream().await;
    let two_header = served.session().await;
    let mut events = EventStream::open(&served, &two_header).await;

    let text = tool_text(&standard, "sf__add_entries", json!({})).await;
    let added: Value = serde_json::from_str(&text).expect(&text);
    assert_eq!(added, json!({ "prompt": "added_1", "uri": "sf://added/1" }));
    let expected = [
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    ];

    let mut heard = Vec::new();
    while !expected.iter().all(|m| heard.contains(&m.to_string())) {
        let (_, message) = stream.message().await;
        if let Some(method) = message["method"].as_str()
            && method != "notifications/tools/list_changed"
        {
            heard.push(method.to_owned());
        }
    }
    assert!(
        prompt_names(&standard)
            .await
            .contains(&"sf__added_1".into())
    );
    let listed = ok(&standard, "resources/list", json!({})).await;
    assert!(uris(&listed, "resources", "uri").contains(&"sf://added/1".into()));

    let mut heard = Vec::new();
    while !expected.iter().all(|m| heard.contains(&m.to_string())) {
        let event = events.next().await;
        if event.event.as_deref() == Some("message") {
            let message: Value = serde_json::from_str(&event.data).unwrap();
            heard.push(message["method"].as_str().unwrap().to_owned());
        }
    }
    let list = async |method: &str| {
        let request = json!({ "jsonrpc": "2.0", "id": next_id(), "method": method });
        let (status, body) = two_header.rpc(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"].clone()
    };
    let prompts = uris(&list("prompts/list").await, "prompts", "name");
    assert!(prompts.contains(&"sf__added_1".into()), "{prompts:?}");
    let resources = uris(&list("resources/list").await, "resources", "uri");
    assert!(resources.contains(&"sf://added/1".into()), "{resources:?}");

    // The new entries work.
    let got = ok(&standard, "prompts/get", json!({ "name": "sf__added_1" })).await;
    assert_eq!(got["messages"][0]["content"]["text"], "added_1: hello, you");
    let read = ok(
        &standard,
        "resources/read",
        json!({ "uri": "sf://added/1" }),
    )
    .await;
    assert_eq!(read["contents"][0]["text"], "text of sf://added/1");
}

/// A client token scoped to `sa__greet` (`revka tokens create --tools`): its session lists only
/// that prompt and only the resources of `sa`; a prompt or resource it cannot see is the same
/// error as one that does not exist, on every method, and a bare prompt name resolves among
/// what it sees.
#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_token_sees_only_its_prompts_and_its_servers_resources() {
    let served = Served::start(&surface_servers(&["sa", "sb"])).await;
    let open = StdSession::open(&served.url, Some(&served.client_token())).await;
    wait_listed(&open, "sa://doc/a").await;
    wait_listed(&open, "sb://doc/a").await;
    let out = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .args([
            "tokens",
            "create",
            "scoped",
            "--tools",
            "sa__greet",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let scoped = StdSession::open(&served.url, created["token"].as_str()).await;

    assert_eq!(prompt_names(&scoped).await, ["sa__greet"]);
    let listed = ok(&scoped, "resources/list", json!({})).await;
    assert_eq!(
        uris(&listed, "resources", "uri"),
        ["sa://doc/a", "sa://doc/b"]
    );
    let read = ok(&scoped, "resources/read", json!({ "uri": "sa://doc/b" })).await;
    assert_eq!(read["contents"][0]["text"], "text of sa://doc/b");
    let got = ok(
        &scoped,
        "prompts/get",
        json!({ "name": "sa__greet", "arguments": { "name": "Ada" } }),
    )
    .await;
    assert_eq!(got["messages"][0]["content"]["text"], "greet: hello, Ada");
    // `greet` is a prompt of both servers, but this session sees only one.
    let got = ok(&scoped, "prompts/get", json!({ "name": "greet" })).await;
    assert_eq!(got["messages"][0]["content"]["text"], "greet: hello, you");

    // Hidden is unknown: the same error, the name or URI aside.
    let same = async |method: &str, params: &dyn Fn(&str) -> Value, hidden: &str| {
        let unknown = "zz_nothing";
        let seen = error(&scoped, method, params(hidden)).await;
        let none = error(&scoped, method, params(unknown)).await;
        assert_eq!(
            seen.to_string().replace(hidden, "X"),
            none.to_string().replace(unknown, "X"),
            "{method} {hidden}"
        );
    };
    for uri in ["sb://doc/a", "revka://sb/sb://doc/a"] {
        for method in ["resources/read", "resources/subscribe"] {
            same(method, &|u| json!({ "uri": u }), uri).await;
        }
    }
    for name in ["sb__greet", "sa__other", "other"] {
        same("prompts/get", &|n| json!({ "name": n }), name).await;
        let complete = |n: &str| {
            json!({ "ref": { "type": "ref/prompt", "name": n },
                    "argument": { "name": "name", "value": "A" } })
        };
        same("completion/complete", &complete, name).await;
    }
}

/// Subscriptions outlive neither their sessions nor a server's process: the server is sent
/// `resources/unsubscribe` when the last session following a resource ends (`DELETE /mcp`),
/// not before; killed (SIGKILL) and restarted by its supervisor, it is sent
/// `resources/subscribe` again for what sessions still follow, and its updates reach them.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_end_with_their_last_session_and_survive_a_server_kill() {
    let served = Served::start(&surface_servers(&["sf"])).await;
    let token = served.client_token();
    let a = StdSession::open(&served.url, Some(&token)).await;
    let b = StdSession::open(&served.url, Some(&token)).await;
    let c = StdSession::open(&served.url, Some(&token)).await;
    wait_listed(&a, "sf://doc/a").await;
    let (mut b_stream, mut b_parser) = open_stream(&b).await;
    for (session, uri) in [(&a, "sf://doc/a"), (&c, "sf://doc/a"), (&b, "sf://doc/b")] {
        let done = ok(session, "resources/subscribe", json!({ "uri": uri })).await;
        assert_eq!(done, json!({}));
    }
    let calls = async || -> Value {
        serde_json::from_str(&tool_text(&b, "sf__subscriptions", json!({})).await)
            .unwrap_or(Value::Null)
    };
    let subscribed = json!([["subscribe", "sf://doc/a"], ["subscribe", "sf://doc/b"]]);
    assert_eq!(calls().await, subscribed, "one subscribe per resource");

    // A ends: C still follows doc/a. C ends: the server is told, once.
    end(&a).await;
    end(&c).await;
    let mut unsubscribed = subscribed.clone();
    unsubscribed
        .as_array_mut()
        .unwrap()
        .push(json!(["unsubscribe", "sf://doc/a"]));
    eventually_async("doc/a unsubscribed", async || calls().await == unsubscribed).await;
    let wait = std::time::Duration::from_secs(20);
    tool_text(&b, "sf__touch", json!({ "uri": "sf://doc/b" })).await;
    let update = next_update(&mut b_stream, &mut b_parser, wait).await;
    assert_eq!(update.unwrap()["params"]["uri"], "sf://doc/b");

    // Killed: the new process is sent what B still follows, and B hears its updates.
    let gateway = Gateway::of(served.home.path());
    let pid = gateway.server_pid("sf").await.expect("sf's pid");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let resubscribed = json!([["subscribe", "sf://doc/b"]]);
    eventually_async("sf restarted and re-subscribed", async || {
        gateway.server_pid("sf").await.is_some_and(|p| p != pid) && calls().await == resubscribed
    })
    .await;
    tool_text(&b, "sf__touch", json!({ "uri": "sf://doc/b" })).await;
    let update = next_update(&mut b_stream, &mut b_parser, wait).await;
    assert_eq!(update.unwrap()["params"]["uri"], "sf://doc/b");
    // A resource nobody follows any more reaches nobody.
    tool_text(&b, "sf__touch", json!({ "uri": "sf://doc/a" })).await;
    let short = std::time::Duration::from_millis(500);
    assert_eq!(next_update(&mut b_stream, &mut b_parser, short).await, None);
}
