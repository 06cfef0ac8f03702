//! `revka status | restart | pair | tokens` against the real daemon, through its gateway.

use crate::harness::Served;

fn revka(served: &Served, args: &[&str]) -> (Option<i32>, String, String) {
    let out = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operating_the_running_daemon_from_the_cli() {
    let served = Served::start("").await;
    let (code, out, err) = revka(&served, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "root",
        "progress",
        "mcp_servers",
        "mcp:fault",
        "sessions",
        "mcp_http",
        "gateway",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    assert!(out.contains("running"), "{out}");
    let (code, json, _) = revka(&served, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let snapshot: revka_actors::Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot.path, "root");

    let (code, out, err) = revka(&served, &["restart", "root/mcp_servers/mcp:fault"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("restarted root/mcp_servers/mcp:fault"),
        "{out}"
    );
    let (code, _, err) = revka(&served, &["restart", "root/nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no actor at `root/nope`"), "{err}");

    let (code, out, _) = revka(&served, &["pair"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("pairing code: "), "{out}");
    assert!(out.contains("for a token with the viewer role"), "{out}");
    let (code, out, _) = revka(&served, &["pair", "--role", "operator"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("for a token with the operator role"), "{out}");
    let (code, _, err) = revka(&served, &["pair", "--role", "admin"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown role \"admin\": expected viewer, operator or owner"),
        "{err}"
    );
    let (code, out, _) = revka(&served, &["tokens", "list"]);
    assert_eq!(code, Some(0));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "LABEL", "KIND", "TOOLS", "CREATED", "LAST", "USED", "EXPIRES", "FLAGS"
        ]
    );
    assert!(out.contains("  owner  "), "{out}");
    assert!(out.contains("gateway.token"), "{out}");
}

/// `revka tokens create` against the real daemon: the token is printed once with the daemon's
/// MCP URL, listed as a client token with its scope and expiry, refused (401) by the gateway,
/// and revoked like any token.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_token_is_created_listed_and_revoked_from_the_cli_and_refused_by_the_gateway() {
    let served = Served::start("").await;
    let (code, out, err) = revka(
        &served,
        &[
            "tokens",
            "create",
            "editor",
            "--tools",
            "fault__*,health",
            "--tools",
            "tool_search",
            "--expires",
            "30d",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let token = out
        .lines()
        .find(|l| l.starts_with("rvkc_"))
        .unwrap_or_else(|| panic!("no token in:\n{out}"))
        .to_owned();
    assert_eq!(token.len(), 69, "{token}");
    assert!(out.starts_with("created client token "), "{out}");
    assert!(
        out.contains("  tools:   fault__*, health, tool_search\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} as the header", served.url))
            && out.contains(&format!("Authorization: Bearer {token}")),
        "the MCP URL of mcp.json and the header: {out}"
    );
    let id = out["created client token ".len()..][..8].to_owned();

    let (code, out, _) = revka(&served, &["tokens", "list"]);
    assert_eq!(code, Some(0));
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains(" editor  client  fault__*,health,tool_search  "),
        "{row}"
    );
    assert!(!row.contains("never  -"), "it expires: {row}");
    let (_, json, _) = revka(&served, &["tokens", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["kind"], "client");
    assert!(listed["expires_at"].is_string(), "{listed}");
    assert!(!json.contains(&token[5..]), "never the secret again");

    // The gateway knows it only as a token it does not accept.
    let (gateway, _) = served.gateway();
    let refused = served
        .http
        .get(format!("{gateway}/api/health"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("client token is for the MCP endpoint"),
        "{body}"
    );

    // Bad input is refused before anything is created.
    let (code, _, err) = revka(&served, &["tokens", "create", "x", "--tools", "fault.*"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("tools[0]: pattern \"fault.*\" can never match"),
        "{err}"
    );
    let (code, _, err) = revka(&served, &["tokens", "create", "x", "--expires", "20years"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("must be at most 10 years"), "{err}");

    let (code, out, err) = revka(&served, &["tokens", "revoke", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("revoked token {id} (editor)\n"));
    let (_, out, _) = revka(&served, &["tokens", "list"]);
    assert!(
        out.lines()
            .find(|l| l.starts_with(&id))
            .unwrap()
            .ends_with("  revoked"),
        "{out}"
    );
}

#[test]
fn without_a_daemon_the_cli_says_so() {
    let home = crate::harness::TestHome::new();
    let out = home.command().args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
