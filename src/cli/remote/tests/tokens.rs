//! `revka tokens list | create | revoke` against the fake daemon: the table shows both kinds,
//! `create` sends what was asked and prints the token once with how to use it.

use std::time::Duration;

use serde_json::Value;

use super::{Daemon, assert_failed};
use crate::auth::Role;
use crate::cli::ops::Op;

#[tokio::test]
async fn tokens_list_and_revoke() {
    let daemon = Daemon::start().await;
    let laptop = daemon
        .fake
        .store
        .issue("laptop", Role::Operator)
        .expect("issue");
    let out = daemon.run(Op::TokensList { json: false }).await;
    assert!(out.success, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "LABEL",
            "KIND",
            "TOOLS",
            "CREATED",
            "LAST USED",
            "EXPIRES",
            "FLAGS"
        ]
    );
    assert!(
        lines[0].starts_with("ID        LABEL   KIND      TOOLS  CREATED "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" owner   owner     -      "),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with("  never    gateway.token"),
        "used just now, never expires: {}",
        lines[1]
    );
    assert!(lines[2].starts_with(&format!("{}  laptop  operator  -      ", laptop.id)));
    assert!(lines[2].contains("  never  "), "{}", lines[2]);
    assert!(lines[2].ends_with("  never    -"), "{}", lines[2]);

    let out = daemon.run(Op::TokensList { json: true }).await;
    let rows: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(rows[1]["label"], "laptop");

    let revoke = |id: &str| Op::TokensRevoke { id: id.to_owned() };
    let out = daemon.run(revoke(laptop.id.as_str())).await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("revoked token {} (laptop)\n", laptop.id)
    );
    let out = daemon.run(revoke(laptop.id.as_str())).await;
    assert_failed(&out, &format!("token {} is already revoked", laptop.id));
    let out = daemon.run(Op::TokensList { json: false }).await;
    assert!(out.stdout.lines().nth(2).unwrap().ends_with("  revoked"));
    let owner = &daemon.fake.store.list()[0].id;
    let unknown = ["0000", "1111"]
        .into_iter()
        .find(|p| !owner.as_str().starts_with(p) && !laptop.id.as_str().starts_with(p))
        .unwrap();
    let out = daemon.run(revoke(unknown)).await;
    assert_failed(
        &out,
        &format!("no token has an id starting with \"{unknown}\""),
    );
}

#[tokio::test]
async fn tokens_create_sends_the_scope_and_lifetime_and_prints_the_token_once() {
    let daemon = Daemon::start().await;
    let create =
        |name: &str, tools: &[&str], expires: Option<Duration>, json: bool| Op::TokensCreate {
            name: name.to_owned(),
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
            expires,
            json,
        };
    let thirty_days = Duration::from_secs(30 * 86_400);
    let out = daemon
        .run(create("ci", &["fs__*", "health"], Some(thirty_days), false))
        .await;
    assert!(out.success, "{out:?}");
    let sent = daemon.fake.seen.lock().unwrap().last().cloned().unwrap();
    let sent: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({ "name": "ci", "tools": ["fs__*", "health"], "expires_secs": 2_592_000 })
    );
    let client = daemon.fake.store.list().pop().unwrap();
    let token = out
        .stdout
        .lines()
        .find(|l| l.starts_with("rvkc_"))
        .expect("the token on a line of its own");
    assert!(daemon.fake.store.verify_client(token).is_some());
    let expires = client
        .expires_at
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let expected = format!(
        "created client token {id} (ci)\n  tools:   fs__*, health\n  expires: {expires}\n\n\
         {token}\n\n\
         This is the only time it is shown (only its hash is kept). An MCP client sends it to\n\
         http://127.0.0.1:4242/mcp as the header\n  Authorization: Bearer {token}\n\
         Revoke it with `revka tokens revoke {id}`.\n",
        id = client.id,
        expires = expires.as_deref().unwrap(),
    );
    assert_eq!(out.stdout, expected);

    // No scope, no expiry: nothing sent for them; every tool, never.
    let out = daemon.run(create("zed", &[], None, false)).await;
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains("  tools:   every tool\n  expires: never\n"),
        "{}",
        out.stdout
    );
    let sent = daemon.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&sent).unwrap(),
        serde_json::json!({ "name": "zed", "tools": null, "expires_secs": null })
    );

    // --json: the daemon's answer, token included.
    let out = daemon.run(create("script", &["time__*"], None, true)).await;
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["kind"], "client");
    assert!(answer["token"].as_str().unwrap().starts_with("rvkc_"));

    // The list tells the kinds apart and shows scopes and expiry.
    let out = daemon.run(Op::TokensList { json: false }).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert!(
        lines[2].contains(" ci      client  fs__*,health  "),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains(expires.as_deref().unwrap()),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains(" zed     client  *             "),
        "{}",
        lines[3]
    );
    let expiry = lines[3].trim_end_matches("  -").trim_end();
    assert!(expiry.ends_with("  never"), "never expires: {}", lines[3]);

    // Revoked like any token; a refused request is reported as the daemon words it.
    let out = daemon
        .run(Op::TokensRevoke {
            id: client.id.to_string(),
        })
        .await;
    assert!(out.success, "{out:?}");
    assert!(daemon.fake.store.verify_client(token).is_none());
    let out = daemon.run(create("", &[], None, false)).await;
    assert_failed(&out, "invalid token label \"\": must not be empty");
}
