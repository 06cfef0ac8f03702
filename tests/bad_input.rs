//! Bad input at every boundary of the running daemon, end to end (issue 8, item 3).
//!
//! - `/mcp`: truncated and non-UTF-8 bodies, members of the wrong type, huge ids (giant numbers,
//!   a 1 MB string), deep nesting (100,000 `[` anywhere), batches. Each gets its exact JSON-RPC
//!   code and message; nothing overflows the stack; the session keeps working.
//! - Bodies over each cap: `/mcp` (4 MiB), `/session` (64 KiB), the gateway's `/api/mcp/*`
//!   routes (64 KiB), with and without a `Content-Length`; a body of exactly the cap passes.
//! - A stdio server's stdout: garbage and invalid UTF-8 lines are skipped (the server stays up,
//!   no restart); a line over the 4 MiB frame cap fails the call in flight with the reason and
//!   restarts the server, while a line of exactly the cap is delivered.
//! - Config files with wrong types, unknown enum values, negative or out-of-range numbers:
//!   `config check` and `daemon` exit 64 naming `file:line:column`, the key and the problem.
//!
//! The unit-level and property tests of the parsers live next to them in `revka-mcp`
//! (`mcp/src/{framing,jsonrpc,sse,wrapper}/tests.rs`); coverage-guided fuzz targets are in
//! `fuzz/`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Served, Session, TestDaemon, TestHome, fixture_server, try_within_async};

/// The frame cap of a stdio server's stdout line.
const MAX_LINE: usize = 4 * 1024 * 1024;
/// The body cap of `/mcp`.
const MAX_MCP_BODY: usize = 4 * 1024 * 1024;
/// The body cap of `/session` and of every gateway `/api/*` route.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// POSTs raw bytes to `/mcp` as session `s`: (status, JSON body or `null`).
async fn post_raw(s: &Session, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let resp = s.post().body(body).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts a JSON-RPC error answer: HTTP status, `id`, code and exact message.
#[track_caller]
fn assert_rpc_error(
    got: &(StatusCode, Value),
    status: StatusCode,
    id: Value,
    code: i64,
    msg: &str,
) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["message"], msg, "{body}");
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// The result message of a `tools/call` SSE answer.
async fn call_result(s: &Session, id: Value, name: &str, arguments: Value) -> Value {
    let events = s.call(id.clone(), name, arguments, None).await;
    let messages: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter(|m| m.get("id") == Some(&id))
        .collect();
    assert_eq!(messages.len(), 1, "one answer: {events:?}");
    messages[0]["result"].clone()
}

/// Activates deferred tools in session `s` through `tool_search`.
async fn activate(s: &Session, tools: &[&str]) {
    let query = format!("select:{}", tools.join(","));
    let answer = s.call_text("tool_search", json!({ "query": query })).await;
    assert!(!answer.contains("Not found"), "{answer}");
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

// ==== JSON-RPC on /mcp ====

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_rpc_gets_its_exact_code_and_message() {
    let served = Served::start("").await;
    let s = served.session().await;
    activate(&s, &["fault__echo"]).await;
    let bad = StatusCode::BAD_REQUEST;
    let deep = nested("[", "", "]", 100_000);
    let cases: Vec<(String, i64, &str)> = vec![
        // Truncated, empty, not UTF-8, trailing bytes, duplicated members.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"pi"#.into(),
            -32700,
            "message is not valid JSON: EOF while parsing a string at line 1 column 36",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"#.into(),
            -32700,
            "message is not valid JSON: EOF while parsing a value at line 1 column 24",
        ),
        (
            String::new(),
            -32700,
            "message is not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"ping"} x"#.into(),
            -32700,
            "message is not valid JSON: trailing characters at line 1 column 35",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#.into(),
            -32700,
            "message is not valid JSON: duplicate field `id` at line 1 column 28",
        ),
        // Members of the wrong type.
        (
            r#"{"id":1,"method":"ping"}"#.into(),
            -32600,
            r#"message has no "jsonrpc" member (must be "2.0")"#,
        ),
        (
            r#"{"jsonrpc":2,"id":1,"method":"ping"}"#.into(),
            -32600,
            r#"message's "jsonrpc" member must be "2.0", got 2"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.into(),
            -32600,
            r#"message's "id" must be a string or a number, got object"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#.into(),
            -32600,
            r#"message's "id" must be a string or a number, got boolean"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(),
            -32600,
            r#"message's "id" must be a string or a number, got null"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#.into(),
            -32600,
            r#"message's "id" must be a string or a number, got a string with an invalid escape"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#.into(),
            -32600,
            r#"message's "method" must be a string, got number"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":["ping"]}"#.into(),
            -32600,
            r#"message's "method" must be a string, got array"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#.into(),
            -32600,
            r#"message's "params" must be an object or an array, got string"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":5}"#.into(),
            -32600,
            r#"message's "params" must be an object or an array, got number"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#.into(),
            -32600,
            r#"message has both "method" and "result"/"error""#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1}"#.into(),
            -32600,
            r#"message has neither "method" nor "result"/"error""#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#.into(),
            -32600,
            r#"message's "error" is not a valid error object: invalid type: string "x", expected i64 at line 1 column 11"#,
        ),
        // Batches (MCP removed them) and other non-objects.
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(),
            -32600,
            "message must be a JSON object, got array",
        ),
        (
            "\"ping\"".into(),
            -32600,
            "message must be a JSON object, got string",
        ),
        // 100,000 levels of nesting: never a stack overflow.
        (
            deep.clone(),
            -32600,
            "message must be a JSON object, got array",
        ),
        (
            "[".repeat(100_000),
            -32700,
            "message is not valid JSON: EOF while parsing a list at line 1 column 100000",
        ),
        (
            "this is not JSON".into(),
            -32700,
            "message is not valid JSON: expected ident at line 1 column 2",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":{deep},"method":"ping"}}"#),
            -32600,
            r#"message's "id" must be a string or a number, got array"#,
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":{deep}}}"#),
            -32600,
            r#"message's "method" must be a string, got array"#,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}"#,
                "[".repeat(100_000)
            ),
            -32700,
            "message is not valid JSON: EOF while parsing a list at line 1 column 100049",
        ),
        (
            nested(r#"{"a":"#, "1", "}", 100_000),
            -32600,
            r#"message has no "jsonrpc" member (must be "2.0")"#,
        ),
    ];
    let mut wrong = Vec::new();
    for (body, code, message) in &cases {
        let (status, got) = post_raw(&s, body.clone()).await;
        let expected =
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
        if (status, &got) != (bad, &expected) {
            let shown: String = body.chars().take(80).collect();
            wrong.push(format!("{shown}\n  got {status} {got}\n  want {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let got = post_raw(
        &s,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec(),
    )
    .await;
    assert_rpc_error(
        &got,
        bad,
        Value::Null,
        -32700,
        "message is not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 34",
    );

    // Deep params are kept raw while the message is classified, then hit serde_json's recursion
    // limit when read (a tool call's arguments, Revka's nesting limit, as they stay raw): an
    // invalid-params answer to that id.
    let got = post_raw(
        &s,
        format!(r#"{{"jsonrpc":"2.0","id":"d","method":"ping","params":{deep}}}"#),
    )
    .await;
    assert_rpc_error(
        &got,
        StatusCode::OK,
        json!("d"),
        -32602,
        "invalid params: recursion limit exceeded at line 1 column 128",
    );
    let got = post_raw(
        &s,
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"fault__echo","arguments":{{"x":{deep}}}}}}}"#
        ),
    )
    .await;
    assert_rpc_error(
        &got,
        StatusCode::OK,
        json!(4),
        -32602,
        "invalid params: tool arguments nest deeper than 127 levels",
    );

    // tools/call params of the wrong shape.
    for (params, message) in [
        (json!([1, 2]), "tools/call needs params.name (a string)"),
        (
            json!({ "name": 5 }),
            "tools/call needs params.name (a string)",
        ),
        (
            json!({ "name": "fault__echo", "arguments": "x" }),
            "tools/call arguments must be an object, not a string",
        ),
        (
            json!({ "name": "fault__echo", "arguments": [1] }),
            "tools/call arguments must be an object, not an array",
        ),
    ] {
        let got = s
            .rpc(json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params }))
            .await;
        assert_rpc_error(&got, StatusCode::OK, json!(9), -32602, message);
    }

    // A response or a notification from the client is accepted without an answer.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[[[1]]]}}"#,
    ] {
        let resp = s.post().body(body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{body}");
    }

    // The session still works.
    assert_eq!(
        s.call_text("fault__echo", json!({ "ok": 2 })).await,
        r#"{"ok":2}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_ids_and_deep_arguments_come_back_as_sent() {
    let served = Served::start("").await;
    let s = served.session().await;
    activate(&s, &["fault__echo"]).await;
    let ping = |id: Value| json!({ "jsonrpc": "2.0", "id": id, "method": "ping" });

    // A 1 MB string id, with escapes, is echoed exactly.
    let big = format!("{}\"\\\n\u{e9}", "i".repeat(1 << 20));
    let (status, body) = s.rpc(ping(json!(big))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"].as_str(), Some(big.as_str()));
    assert_eq!(body["result"], json!({}));

    // Numbers keep their value: integers exactly, others as the same f64.
    for raw in [
        "18446744073709551615",
        "-9223372036854775808",
        "123456789012345678901234567890",
        "2.555555555e79",
        "1e-300",
        "0.1",
    ] {
        let resp = s
            .post()
            .body(format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{raw}");
        let text = resp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        let sent: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(body["id"], sent, "{raw} came back as {text}");
    }
    let (_, body) = s.rpc(ping(json!(u64::MAX))).await;
    assert_eq!(body["id"], json!(u64::MAX));

    // A tool call's id of any kind comes back on its answer.
    let result = call_result(&s, json!(big), "fault__echo", json!({ "n": 1 })).await;
    assert_eq!(result["isError"], false, "{result}");

    // Arguments nested close to serde_json's limit of 128 (the envelope takes 3 levels) reach
    // the server and come back unchanged; so do floats at the edge of f64.
    let deep = serde_json::from_str::<Value>(&nested("[", "1", "]", 120)).unwrap();
    let floats = json!([
        2.555555555e79,
        9.764829805038653e-160,
        f64::MAX,
        f64::MIN_POSITIVE,
        0.1
    ]);
    let args = json!({ "deep": deep, "floats": floats });
    let result = call_result(&s, json!(2), "fault__echo", args.clone()).await;
    let echoed: Value = serde_json::from_str(text(&result)).unwrap();
    assert_eq!(echoed, args);
}

// ==== Bodies over each cap ====

/// A streamed body of `len` bytes of spaces, sent without a `Content-Length`.
fn chunked_body(len: usize) -> reqwest::Body {
    let chunk = vec![b' '; 16 * 1024];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..len.div_ceil(chunk.len()))
        .map(|i| Ok(chunk[..chunk.len().min(len - i * chunk.len())].to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_and_session_bodies_over_their_caps_get_413() {
    let served = Served::start("").await;
    let s = served.session().await;
    activate(&s, &["fault__echo"]).await;

    // /mcp: 4 MiB. Exactly the cap is read (and is not JSON); one byte more is refused.
    let got = post_raw(&s, vec![b' '; MAX_MCP_BODY]).await;
    assert_rpc_error(
        &got,
        StatusCode::BAD_REQUEST,
        Value::Null,
        -32700,
        "message is not valid JSON: EOF while parsing a value at line 1 column 4194304",
    );
    for body in [
        reqwest::Body::from(vec![b' '; MAX_MCP_BODY + 1]),
        chunked_body(MAX_MCP_BODY + 1),
    ] {
        let got = post_raw(&s, body).await;
        assert_rpc_error(
            &got,
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            -32600,
            "request body exceeds 4 MiB",
        );
    }

    // /session: 64 KiB. A body of only whitespace is an empty request.
    let session = |body: reqwest::Body| {
        served
            .http
            .post(format!("{}/session", served.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = session(vec![b' '; MAX_SMALL_BODY].into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for body in [
        reqwest::Body::from(vec![b' '; MAX_SMALL_BODY + 1]),
        chunked_body(MAX_SMALL_BODY + 1),
    ] {
        let resp = session(body).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The unread body leaves the connection unusable: the client is told not to reuse it.
        assert_eq!(resp.headers()["connection"], "close");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"],
            "cannot read the body: Failed to buffer the request body: length limit exceeded"
        );
    }
    // Wrong types in a session request.
    for (body, message) in [
        (
            r#"{"cwd": 5}"#,
            "invalid session request: invalid type: integer `5`, expected a string at line 1 column 9",
        ),
        (
            r#"{"label": ["x"]}"#,
            "invalid session request: invalid type: sequence, expected a string at line 1 column 10",
        ),
        (
            r#"{"cwd": "/"#,
            "invalid session request: EOF while parsing a string at line 1 column 10",
        ),
        (
            r#""x""#,
            "invalid session request: invalid type: string \"x\", expected struct NewSession at line 1 column 3",
        ),
    ] {
        let resp = session(body.into()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(got["error"], message, "{body}");
    }
    let long_label = json!({ "label": "é".repeat(201) }).to_string();
    let resp = session(long_label.into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "label is longer than 200 characters"
    );

    // Still serving.
    assert_eq!(
        s.call_text("fault__echo", json!({ "ok": 1 })).await,
        r#"{"ok":1}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_bodies_over_64_kib_get_413() {
    let served = Served::start("").await;
    let (url, token) = served.gateway();
    let http = reqwest::Client::new();
    let post = |path: &str, body: reqwest::Body| {
        http.post(format!("{url}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for path in ["/api/mcp/session", "/api/mcp/call", "/api/mcp/servers/test"] {
        for body in [
            reqwest::Body::from(vec![b' '; MAX_SMALL_BODY + 1]),
            chunked_body(MAX_SMALL_BODY + 1),
        ] {
            let resp = post(path, body).await.unwrap();
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
            assert_eq!(resp.headers()["connection"], "close", "{path}");
            let got: Value = resp.json().await.unwrap();
            assert_eq!(
                got,
                json!({ "error": "request body exceeds 64 KiB" }),
                "{path}"
            );
        }
    }

    // Exactly 64 KiB passes the gateway; /mcp then says what is wrong with it.
    let s = served.session().await;
    let resp = http
        .post(format!("{url}/api/mcp/call"))
        .bearer_auth(&token)
        .header("X-Revka-Session", &s.id)
        .header("X-Revka-Mcp-Token", &s.token)
        .body(vec![b' '; MAX_SMALL_BODY])
        .send()
        .await
        .unwrap();
    let got = (resp.status(), resp.json::<Value>().await.unwrap());
    assert_rpc_error(
        &got,
        StatusCode::BAD_REQUEST,
        Value::Null,
        -32700,
        "message is not valid JSON: EOF while parsing a value at line 1 column 65536",
    );
    // Malformed bodies of the server test.
    for (body, message) in [
        (
            "{oops",
            "invalid JSON body: key must be a string at line 1 column 2",
        ),
        (
            r#"{"name": "t", "command": 5}"#,
            "invalid JSON body: invalid type: integer `5`, expected a string at line 1 column 26",
        ),
    ] {
        let resp = post("/api/mcp/servers/test", body.into()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            message,
            "{body}"
        );
    }
    // Nesting as deep as fits in 64 KiB.
    let resp = post("/api/mcp/servers/test", nested("[", "", "]", 30_000).into())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid JSON body: invalid type: sequence, expected a string at line 1 column 1"
    );
}

// ==== A stdio server's stdout ====

#[tokio::test(flavor = "multi_thread")]
async fn garbage_invalid_utf8_and_overlong_lines_from_a_stdio_server() {
    let noisy = format!(
        "\n[[mcp.servers]]\nname = \"noisy\"\ncommand = \"{}\"\nargs = [\"--garbage-stdout\"]\n",
        fixture_server("fault_server").display()
    );
    let served = Served::start(&noisy).await;
    served.wait_for_tool("noisy__echo").await;
    let s = served.session().await;
    let tools = [
        "fault__garbage",
        "fault__invalid_utf8",
        "fault__oversized",
        "fault__echo",
    ];
    activate(&s, &tools).await;
    activate(&s, &["noisy__echo"]).await;
    let (gw_url, gw_token) = served.gateway();
    let http = reqwest::Client::new();
    let restarts = |server: &'static str| {
        let req = http
            .get(format!("{gw_url}/api/actors/root/mcp_servers/mcp:{server}"))
            .bearer_auth(&gw_token);
        async move {
            let node: Value = req.send().await.unwrap().json().await.unwrap();
            node["restarts"].as_u64().unwrap()
        }
    };

    // Non-JSON and non-UTF-8 lines are skipped; the call they precede is answered.
    let result = call_result(&s, json!(1), "fault__garbage", json!({})).await;
    assert_eq!(
        (text(&result), &result["isError"]),
        ("wrote a garbage line", &json!(false))
    );
    let result = call_result(&s, json!(2), "fault__invalid_utf8", json!({})).await;
    assert_eq!(
        (text(&result), &result["isError"]),
        ("wrote an invalid UTF-8 line", &json!(false))
    );
    // A server that writes garbage before every message is fully usable.
    let result = call_result(&s, json!(3), "noisy__echo", json!({ "a": 1 })).await;
    assert_eq!(
        serde_json::from_str::<Value>(text(&result)).unwrap(),
        json!({ "a": 1 })
    );
    assert_eq!((restarts("fault").await, restarts("noisy").await), (0, 0));

    // A line of exactly the frame cap is delivered.
    let result = call_result(
        &s,
        json!(4),
        "fault__oversized",
        json!({ "bytes": MAX_LINE }),
    )
    .await;
    assert_eq!(result["isError"], false);
    assert!(
        text(&result).len() > MAX_LINE - 200,
        "{}",
        text(&result).len()
    );

    // One byte more: the call in flight fails with the reason, the server is restarted, and
    // calls succeed again.
    let result = call_result(
        &s,
        json!(5),
        "fault__oversized",
        json!({ "bytes": MAX_LINE + 1 }),
    )
    .await;
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        text(&result),
        "server `fault` failed: server wrote a stdout line longer than 4194304 bytes"
    );
    let usable = async || {
        call_result(&s, json!(6), "fault__echo", json!({ "b": 2 })).await["isError"] == false
    };
    if try_within_async(Duration::from_secs(60), usable)
        .await
        .is_none()
    {
        let result = call_result(&s, json!(6), "fault__echo", json!({ "b": 2 })).await;
        panic!("never usable again: {result}");
    }
    assert_eq!(restarts("fault").await, 1);
    assert_eq!(restarts("noisy").await, 0);
}

// ==== Config files ====

#[test]
fn config_files_with_wrong_types_exit_64_naming_file_line_column_and_key() {
    // (config, "line:column: key: message" after the file name)
    let cases: &[(&str, &str)] = &[
        (
            "[supervisor]\nmax_restarts = \"five\"\n",
            "2:16: supervisor.max_restarts: invalid type: string \"five\", expected u32",
        ),
        (
            "[supervisor]\nrestart = \"sometimes\"\n",
            "2:11: supervisor.restart: unknown variant `sometimes`, expected one of `permanent`, `transient`, `temporary`",
        ),
        (
            "[supervisor]\nbackoff_min_ms = 18446744073709551616\n",
            "2:18: supervisor.backoff_min_ms: invalid type: integer `18446744073709551616` as i128, expected u64",
        ),
        (
            "[supervisor]\nwindow_secs = 0\n",
            "2:15: supervisor.window_secs: must be greater than 0",
        ),
        (
            "[gateway]\nport = 70000\n",
            "2:8: gateway.port: invalid value: integer `70000`, expected u16",
        ),
        (
            "[gateway]\nport = -1\n",
            "2:8: gateway.port: invalid value: integer `-1`, expected u16",
        ),
        (
            "[gateway]\nhost = 127\n",
            "2:8: gateway.host: invalid type: integer `127`, expected a string",
        ),
        (
            "[sessions]\nmax_sessions = -5\n",
            "2:16: sessions.max_sessions: invalid value: integer `-5`, expected u32",
        ),
        (
            "[mcp]\nenabled = \"yes\"\n",
            "2:11: mcp.enabled: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[mcp]\nhandshake_timeout_secs = 1.5\n",
            "2:26: mcp.handshake_timeout_secs: invalid type: floating point `1.5`, expected u64",
        ),
        (
            "[mcp]\nroots = \"~/x\"\n",
            "2:9: mcp.roots: invalid type: string \"~/x\", expected a sequence",
        ),
        (
            "mcp = 5\n",
            "1:7: mcp: invalid type: integer `5`, expected an [mcp] table",
        ),
        (
            "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nargs = \"not-a-list\"\n",
            "4:8: mcp.servers[0].args: invalid type: string \"not-a-list\", expected a sequence",
        ),
        (
            "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nenv = { A = 1 }\n",
            "4:13: mcp.servers[0].env.A: invalid type: integer `1`, expected a string",
        ),
        (
            "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\ntool_timeout_secs = -1\n",
            "4:21: mcp.servers[0].tool_timeout_secs: invalid value: integer `-1`, expected u64",
        ),
        (
            "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nrestart = { restart = \"always\" }\n",
            "4:23: mcp.servers[0].restart.restart: unknown variant `always`, expected one of `permanent`, `transient`, `temporary`",
        ),
        (
            "[operator]\nmax_tool_iterations = true\n",
            "2:23: operator.max_tool_iterations: invalid type: boolean `true`, expected u32",
        ),
        (
            "[session_manager.retry_queue]\non_full = \"drop\"\n",
            "2:11: session_manager.retry_queue.on_full: unknown variant `drop`, expected `reject` or `dead_letter_oldest`",
        ),
        // CRLF line ends and a BOM do not shift the position.
        (
            "\u{feff}[supervisor]\r\nmax_restarts = \"x\"\r\n",
            "2:16: supervisor.max_restarts: invalid type: string \"x\", expected u32",
        ),
        // Syntax errors, and nesting past the TOML parser's limit, are positioned too.
        (
            "[mcp\nenabled = true\n",
            "1:5: unclosed table, expected `]`",
        ),
    ];
    let deep = format!("[mcp]\nroots = {}\n", nested("[", "", "]", 100_000));
    let mut cases: Vec<(String, String)> = cases
        .iter()
        .map(|(toml, want)| (toml.to_string(), want.to_string()))
        .collect();
    cases.push((
        deep,
        "2:89: cannot recurse further; max recursion depth met".into(),
    ));

    for (toml, want) in &cases {
        let home = TestHome::new();
        let path = home.write_config(toml);
        let want = format!("{}:{want}", path.display());
        let shown: String = toml.chars().take(80).collect();

        let out = home.command().args(["config", "check"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{shown}: {stderr}");
        assert!(
            stderr.contains(&want),
            "{shown}: wanted `{want}` in:\n{stderr}"
        );

        let mut daemon = TestDaemon::spawn(&home, &[]);
        let status = daemon.wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(64), "{shown}: {}", daemon.stderr());
        assert!(
            daemon.stderr().contains(&want),
            "{shown}: {}",
            daemon.stderr()
        );
        assert!(
            !home.path().join("daemon.lock").exists(),
            "{shown}: nothing started"
        );
    }

    // Not UTF-8: the file is named, nothing starts.
    let home = TestHome::new();
    let path = home.path().join("config.toml");
    std::fs::write(&path, b"[mcp]\nenabled = true\n# \xff\xfe\n").unwrap();
    let out = home.command().args(["config", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let want = format!(
        "{}: cannot read: stream did not contain valid UTF-8",
        path.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}
